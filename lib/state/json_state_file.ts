/**
 * A small JSON state file kept by a long-lived part: read once at start
 * (absent: nothing saved yet; unreadable: a clear error naming the file),
 * then saved atomically (temp file, fsync, rename, fsync of the directory)
 * on a timer while it changes and a last time on close. The pull resume
 * point (`ResumeState`) and the file checkpoints (`FileCheckpoints`) are the
 * two kinds.
 *
 * @module
 */

import { describeFsError } from "../util/errors.ts";
import { log } from "../util/log.ts";
import { parentDir, writeFileAtomic } from "./atomic_file.ts";

/** Options for {@linkcode JsonStateFile}. */
export interface JsonStateFileOptions {
  /**
   * What the file is called in messages, e.g. `--state`.
   * @default {"state file"}
   */
  what?: string;
  /**
   * Log category of save errors.
   * @default {"state"}
   */
  category?: string;
  /**
   * Call {@linkcode JsonStateFile.save} this often, ms.
   * @default {1000}
   */
  intervalMs?: number;
  /**
   * The text the file holds now (as the snapshot would render it), so an
   * unchanged state is not written again.
   * @default {undefined}
   */
  saved?: string;
}

export { parseJsonObject } from "../util/json.ts";

/**
 * Saves what `snapshot` renders to a file whenever it changed.
 *
 * @example Keep a counter in a file
 * ```ts
 * import { JsonStateFile } from "./json_state_file.ts";
 * let count = 0;
 * const text = await JsonStateFile.read("count.json", "--count-file");
 * if (text !== undefined) count = Number(JSON.parse(text));
 * await using file = new JsonStateFile("count.json", () => JSON.stringify(count), {
 *   what: "--count-file",
 * });
 * count++;
 * await file.save();
 * ```
 */
export class JsonStateFile implements AsyncDisposable {
  /** The file, as given. */
  readonly path: string;
  readonly #snapshot: () => string | undefined;
  readonly #what: string;
  readonly #category: string;
  #last: string | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #saving: Promise<void> = Promise.resolve();
  #closed = false;

  /**
   * Reads a state file and creates its directory (mode 0700) for the saves
   * to come. Absent: undefined. Unreadable (a directory, no permission): an
   * error `Cannot read <what> '<path>': ...`.
   */
  static async read(path: string, what: string): Promise<string | undefined> {
    let text: string | undefined;
    try {
      text = await Deno.readTextFile(path);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) {
        throw new Error(`Cannot read ${what} '${path}': ${describeFsError(error)}`);
      }
    }
    const dir = parentDir(path);
    if (dir !== ".") await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    return text;
  }

  /**
   * Starts the save timer. `snapshot` renders the state to save, or
   * undefined for nothing to save.
   */
  constructor(
    path: string,
    snapshot: () => string | undefined,
    options: JsonStateFileOptions = {},
  ) {
    this.path = path;
    this.#snapshot = snapshot;
    this.#what = options.what ?? "state file";
    this.#category = options.category ?? "state";
    this.#last = options.saved;
    this.#timer = setInterval(() => this.save(), options.intervalMs ?? 1000);
  }

  /** Writes the snapshot if it changed since the last save; errors are logged. */
  save(): Promise<void> {
    this.#saving = this.#saving.then(async () => {
      const text = this.#snapshot();
      if (text === undefined || text === this.#last) return;
      try {
        await writeFileAtomic(this.path, text + "\n", { sync: true });
        this.#last = text;
      } catch (error) {
        log(this.#category).error("cannot save {what} {path}: {error}", {
          what: this.#what,
          path: this.path,
          error: describeFsError(error),
        });
      }
    });
    return this.#saving;
  }

  /** Saves a last time and stops the timer; safe to call twice. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      clearInterval(this.#timer);
      this.#timer = undefined;
      return await this.save();
    }
    return await this.#saving;
  }

  /** Saves and stops, like {@linkcode JsonStateFile.close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * The base of a part whose state lives in one {@linkcode JsonStateFile}
 * (`ResumeState`, `FileCheckpoints`): it makes the file, saving what
 * {@linkcode JsonStateOwner.render} returns, and its `save`, `close` and
 * `await using` are the file's.
 *
 * @example A counter kept in a file
 * ```ts
 * import { JsonStateOwner } from "./json_state_file.ts";
 * class Counter extends JsonStateOwner {
 *   count = 0;
 *   constructor(path: string) {
 *     super(path, { what: "--count-file" });
 *   }
 *   protected override render(): string {
 *     return JSON.stringify(this.count);
 *   }
 * }
 * await using counter = new Counter("count.json");
 * counter.count++;
 * await counter.save();
 * ```
 */
export abstract class JsonStateOwner implements AsyncDisposable {
  /** The state file, as given. */
  readonly path: string;
  readonly #file: JsonStateFile;

  /** Starts the file's save timer (see {@linkcode JsonStateFileOptions}). */
  protected constructor(path: string, options: JsonStateFileOptions = {}) {
    this.path = path;
    this.#file = new JsonStateFile(path, () => this.render(), options);
  }

  /** The text to save now, or undefined for nothing to save. */
  protected abstract render(): string | undefined;

  /** Writes the state if it changed since the last save: temp file, fsync, rename. */
  save(): Promise<void> {
    return this.#file.save();
  }

  /** Saves a last time and stops the timer; safe to call twice. */
  close(): Promise<void> {
    return this.#file.close();
  }

  /** Saves a last time and stops, like {@linkcode JsonStateOwner.close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
