/**
 * Where each followed file was read to, saved atomically (write, fsync,
 * rename) a few times a second and on stop, so a restarted `serve` continues
 * every file exactly where it stopped.
 *
 * @module
 */

import type { FilePosition } from "../sources/file.ts";
import { log } from "../util/log.ts";
import { JsonStateFile, JsonStateOwner, parseJsonObject } from "./json_state_file.ts";

/** Options for {@linkcode FileCheckpoints.open}. */
export interface FileCheckpointsOptions {
  /**
   * How often positions are saved while they change, ms.
   * @default {250}
   */
  intervalMs?: number;
}

/**
 * A JSON file of stream name → {@linkcode FilePosition}.
 *
 * @example Keep positions of tails
 * ```ts
 * import { FileCheckpoints } from "./file_checkpoints.ts";
 * await using checkpoints = await FileCheckpoints.open("/var/lib/reclog/files.json", () => ({}));
 * console.log(checkpoints.get("messages"));
 * ```
 */
export class FileCheckpoints extends JsonStateOwner {
  readonly #saved: Map<string, FilePosition>;
  readonly #current: () => Record<string, FilePosition | undefined>;

  private constructor(
    path: string,
    saved: Map<string, FilePosition>,
    current: () => Record<string, FilePosition | undefined>,
    options: FileCheckpointsOptions,
  ) {
    super(path, {
      what: "file checkpoints",
      category: "file",
      intervalMs: options.intervalMs ?? 250,
      saved: JSON.stringify(Object.fromEntries(saved)),
    });
    this.#saved = saved;
    this.#current = current;
  }

  /**
   * Reads the checkpoint file (absent: none yet); `current` is asked for the
   * live positions whenever they are saved. A file that is not a JSON object
   * is logged and treated as absent; an entry that is not a valid position
   * (`dev`, `ino`, `offset` non-negative safe integers) is logged and
   * dropped (that file starts afresh). Unreadable (a directory, no
   * permission): a clear error.
   */
  static async open(
    path: string,
    current: () => Record<string, FilePosition | undefined>,
    options: FileCheckpointsOptions = {},
  ): Promise<FileCheckpoints> {
    const text = await JsonStateFile.read(path, "file checkpoints");
    const saved = new Map<string, FilePosition>();
    if (text !== undefined) {
      const parsed = parseCheckpoints(text);
      if (!parsed) {
        log("file").warn("checkpoint file {path} is corrupt; files start afresh", { path });
      } else {
        for (const [name, position] of parsed.valid) saved.set(name, position);
        if (parsed.invalid.length > 0) {
          log("file").warn(
            "checkpoint file {path}: invalid positions for {names}; those files start afresh",
            { path, names: parsed.invalid.join(", ") },
          );
        }
      }
    }
    return new FileCheckpoints(path, saved, current, options);
  }

  /** The saved position of a stream, if any. */
  get(name: string): FilePosition | undefined {
    return this.#saved.get(name);
  }

  /** The saved positions updated with the live ones. */
  protected override render(): string {
    const positions = new Map(this.#saved);
    for (const [name, position] of Object.entries(this.#current())) {
      if (position && isFilePosition(position)) positions.set(name, position);
    }
    return JSON.stringify(Object.fromEntries(positions));
  }
}

/**
 * Whether `value` is a valid {@linkcode FilePosition}: `dev`, `ino` and
 * `offset` non-negative safe integers.
 *
 * @example Check a parsed entry
 * ```ts
 * import { isFilePosition } from "./file_checkpoints.ts";
 * isFilePosition({ dev: 2049, ino: 131, offset: 4096 }); // true
 * isFilePosition({ dev: 2049, ino: "131", offset: -1 }); // false
 * ```
 */
export function isFilePosition(value: unknown): value is FilePosition {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const { dev, ino, offset } = value as Record<string, unknown>;
  return [dev, ino, offset].every((n) => Number.isSafeInteger(n) && (n as number) >= 0);
}

/**
 * Parses a checkpoint file's text: the valid positions by stream name and
 * the names of invalid entries, or undefined if it is not a JSON object.
 * Never throws.
 *
 * @example Parse a checkpoint file
 * ```ts
 * import { parseCheckpoints } from "./file_checkpoints.ts";
 * parseCheckpoints('{"messages":{"dev":1,"ino":2,"offset":3},"x":5}');
 * // { valid: Map { "messages" => {...} }, invalid: ["x"] }
 * ```
 */
export function parseCheckpoints(
  text: string,
): { valid: Map<string, FilePosition>; invalid: string[] } | undefined {
  const parsed = parseJsonObject(text);
  if (!parsed) return undefined;
  const valid = new Map<string, FilePosition>();
  const invalid: string[] = [];
  for (const [name, entry] of Object.entries(parsed)) {
    if (isFilePosition(entry)) {
      valid.set(name, { dev: entry.dev, ino: entry.ino, offset: entry.offset });
    } else {
      invalid.push(name);
    }
  }
  return { valid, invalid };
}
