/**
 * Where each followed file was read to, saved atomically (write, fsync,
 * rename) a few times a second and on stop, so a restarted `serve` continues
 * every file exactly where it stopped.
 *
 * @module
 */

import { describeFsError } from "./cli.ts";
import type { FilePosition } from "./source_file.ts";
import { log } from "./log.ts";
import { writeFileAtomic } from "./atomic_file.ts";

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
export class FileCheckpoints implements AsyncDisposable {
  /** The checkpoint file, as given to {@linkcode FileCheckpoints.open}. */
  readonly path: string;
  readonly #saved: Record<string, FilePosition>;
  readonly #current: () => Record<string, FilePosition | undefined>;
  #timer: ReturnType<typeof setInterval> | undefined;
  #saving: Promise<void> = Promise.resolve();
  #last = "";

  private constructor(
    path: string,
    saved: Record<string, FilePosition>,
    current: () => Record<string, FilePosition | undefined>,
  ) {
    this.path = path;
    this.#saved = saved;
    this.#current = current;
    this.#last = JSON.stringify(saved);
  }

  /**
   * Reads the checkpoint file (absent: none yet); `current` is asked for the
   * live positions whenever they are saved.
   */
  static async open(
    path: string,
    current: () => Record<string, FilePosition | undefined>,
    options: FileCheckpointsOptions = {},
  ): Promise<FileCheckpoints> {
    let saved: Record<string, FilePosition> = {};
    try {
      saved = JSON.parse(await Deno.readTextFile(path));
    } catch (error) {
      if (error instanceof SyntaxError) {
        log("file").warn("checkpoint file {path} is corrupt; files start afresh", { path });
      } else if (!(error instanceof Deno.errors.NotFound)) {
        throw new Error(`Cannot read file checkpoints '${path}': ${describeFsError(error)}`);
      }
    }
    const dir = path.slice(0, path.lastIndexOf("/"));
    if (dir) await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    const checkpoints = new FileCheckpoints(path, saved, current);
    checkpoints.#timer = setInterval(() => checkpoints.save(), options.intervalMs ?? 250);
    return checkpoints;
  }

  /** The saved position of a stream, if any. */
  get(name: string): FilePosition | undefined {
    return this.#saved[name];
  }

  /** Saves the live positions if they changed. */
  save(): Promise<void> {
    this.#saving = this.#saving.then(async () => {
      const positions = { ...this.#saved };
      for (const [name, position] of Object.entries(this.#current())) {
        if (position) positions[name] = position;
      }
      const text = JSON.stringify(positions);
      if (text === this.#last) return;
      try {
        await writeFileAtomic(this.path, text + "\n", { sync: true });
        this.#last = text;
      } catch (error) {
        log("file").error("cannot save file checkpoints {path}: {error}", {
          path: this.path,
          error: describeFsError(error),
        });
      }
    });
    return this.#saving;
  }

  /** Saves a last time and stops; safe to call twice. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.save();
  }

  /** Saves a last time and stops, like {@linkcode FileCheckpoints.close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
