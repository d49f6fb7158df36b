/**
 * The cursor of the last systemd journal entry that went into reclog's
 * journal, kept in a small file beside it (`journal-cursor.json` in the
 * spool or state directory) so that a restarted `serve` continues right
 * after it.
 *
 * The file is replaced atomically ({@linkcode writeFileAtomic}): at most
 * once every `intervalMs` while the cursor changes, and on close. The caller
 * hands over a cursor only after the entries up to it were appended, and
 * the file is written from a timer, so after the append's spool write (the
 * journal writes its spool in the microtask after an append); with
 * `canSave` (e.g. "the spool is healthy") nothing is saved while appended
 * entries may exist only in memory.
 *
 * What a restart re-sends: after `close()` (SIGTERM, SIGINT), nothing.
 * After SIGKILL or a crash, the entries appended after the last save: those
 * of the last `intervalMs` (default 200 ms) plus the batch being appended,
 * and nothing older; a batch is one read of journalctl's output (256 KiB of
 * JSON, ~250 to ~1,000 entries). So: a few on an idle VPS, at most
 * 0.2 s × the entry rate + one batch under load (measured: 245 entries
 * re-sent at full speed with a 5 ms interval, `tests/systemd_journal_source_test.ts`).
 * Nothing is ever lost by it: the saved cursor is never ahead of the
 * appended (and, with `canSave`, spooled) entries.
 *
 * A damaged file (not the JSON this writes, or not a journal cursor) is not
 * guessed at: {@linkcode JournalCursorFile.open} throws a one-line error
 * naming it, so the operator chooses between moving it away (serve then
 * starts without a cursor) and repairing it, instead of serve silently
 * re-sending or skipping the journal.
 *
 * File: `{"version":1,"source":"journal:/dir","cursor":"s=...;i=...;b=...;m=...;t=...;x=..."}`.
 *
 * @module
 */

import { describeFsError, errorMessage } from "../util/errors.ts";
import { parseJsonObject } from "../util/json.ts";
import { log } from "../util/log.ts";
import { writeFileAtomic } from "./atomic_file.ts";

/** The file's name in the directory given to {@linkcode JournalCursorFile.open}. */
export const JOURNAL_CURSOR_FILE = "journal-cursor.json";

const CURSOR =
  /^s=[0-9a-f]{32};i=[0-9a-f]{1,16};b=[0-9a-f]{32};m=[0-9a-f]{1,16};t=[0-9a-f]{1,16};x=[0-9a-f]{1,16}$/;

/**
 * Whether `text` is a systemd journal cursor as journalctl prints it
 * (`s=<seqnum id>;i=<seqnum>;b=<boot id>;m=<monotonic>;t=<realtime>;x=<xor hash>`, hex).
 *
 * @example Check a cursor
 * ```ts
 * import { isJournalCursor } from "./journal_cursor.ts";
 * const id = "0123456789abcdef0123456789abcdef";
 * console.log(isJournalCursor(`s=${id};i=1;b=${id};m=3e8;t=661a1e6443880;x=b23269e781e12a2a`)); // true
 * console.log(isJournalCursor("s=x")); // false
 * ```
 */
export function isJournalCursor(text: string): boolean {
  return CURSOR.test(text);
}

/** Options for {@linkcode JournalCursorFile.open}. */
export interface JournalCursorFileOptions {
  /**
   * Shortest time between two saves while the cursor changes, ms (0: after
   * each update, in the next task).
   * @default {200}
   */
  intervalMs?: number;
  /**
   * Asked before each save; while it returns false nothing is saved (tried
   * again after `intervalMs`). Serve passes "the spool is healthy".
   * @default {() => true}
   */
  canSave?: () => boolean;
  /** Written into the file for whoever reads it (`journal`, `journal:DIR`); not checked. */
  source?: string;
  /**
   * fsync the file and directory on each save (survives a power loss, not only a crash).
   * @default {false}
   */
  sync?: boolean;
}

/**
 * The saved cursor of a journal source: {@linkcode JournalCursorFile.loaded}
 * at start, {@linkcode JournalCursorFile.update} after each append.
 * `close()` saves the last cursor; safe to call twice.
 *
 * @example Resume a journal source
 * ```ts ignore
 * import { JournalCursorFile } from "./journal_cursor.ts";
 * await using cursors = await JournalCursorFile.open("/var/spool/reclog");
 * console.log(cursors.loaded ?? "no cursor yet: from the oldest entry");
 * cursors.update("s=...;i=2a;b=...;m=...;t=...;x=...");
 * ```
 */
export class JournalCursorFile implements AsyncDisposable {
  /** The file: `<dir>/journal-cursor.json`. */
  readonly path: string;
  /** The cursor read at open, or undefined when there was no file. */
  readonly loaded: string | undefined;
  readonly #options: JournalCursorFileOptions;
  #pending: string | undefined;
  #saved: string | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #saving: Promise<void> = Promise.resolve();
  #closed = false;
  #failing = false;
  /** Saves done (for tests and metrics). */
  saves = 0;

  private constructor(path: string, loaded: string | undefined, options: JournalCursorFileOptions) {
    this.path = path;
    this.loaded = loaded;
    this.#saved = loaded;
    this.#pending = loaded;
    this.#options = options;
  }

  /**
   * Reads `<dir>/journal-cursor.json`: absent → no cursor; unreadable or
   * damaged → throws a one-line `Error` naming the file.
   */
  static async open(
    dir: string,
    options: JournalCursorFileOptions = {},
  ): Promise<JournalCursorFile> {
    const interval = options.intervalMs ?? 200;
    if (!Number.isFinite(interval) || interval < 0) {
      throw new RangeError(`intervalMs must be a number of at least 0, got ${interval}`);
    }
    const path = `${dir}/${JOURNAL_CURSOR_FILE}`;
    let text: string | undefined;
    try {
      text = await Deno.readTextFile(path);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) {
        throw new Error(`Cannot read journal cursor file '${path}': ${describeFsError(error)}`);
      }
    }
    const loaded = text === undefined ? undefined : parseCursorFile(text);
    if (loaded === null) {
      throw new Error(
        `Cannot use journal cursor file '${path}': not a saved journal cursor (damaged?); move it away to start without one`,
      );
    }
    return new JournalCursorFile(path, loaded, options);
  }

  /** The newest cursor handed to {@linkcode JournalCursorFile.update} (or loaded). */
  get cursor(): string | undefined {
    return this.#pending;
  }

  /** The cursor in the file now. */
  get saved(): string | undefined {
    return this.#saved;
  }

  /**
   * The entries up to `cursor` are in reclog's journal: save it (within
   * `intervalMs`). Throws a `RangeError` for a text that is not a cursor.
   */
  update(cursor: string): void {
    if (!CURSOR.test(cursor)) {
      throw new RangeError(`Cannot save journal cursor '${cursor.slice(0, 80)}': not a cursor`);
    }
    if (this.#closed) return;
    this.#pending = cursor;
    this.#schedule();
  }

  /** Saves the newest cursor now (if `canSave` allows); resolves when written. */
  flush(): Promise<void> {
    this.#saving = this.#saving.then(() => this.#save());
    return this.#saving;
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.flush().then(() => {
        if (this.#pending !== this.#saved) this.#schedule();
      });
    }, this.#options.intervalMs ?? 200);
  }

  async #save(): Promise<void> {
    const cursor = this.#pending;
    if (cursor === undefined || cursor === this.#saved) return;
    if (this.#options.canSave && !this.#options.canSave()) return;
    const body = JSON.stringify({
      version: 1,
      ...(this.#options.source === undefined ? {} : { source: this.#options.source }),
      cursor,
    });
    try {
      await writeFileAtomic(this.path, body + "\n", { sync: this.#options.sync ?? false });
      this.#saved = cursor;
      this.saves++;
      if (this.#failing) {
        this.#failing = false;
        log("journal").info("journal cursor saved to {path} again", { path: this.path });
      }
    } catch (error) {
      if (!this.#failing) {
        this.#failing = true;
        log("journal").warning(
          "cannot save the journal cursor to {path}: {error}; a restart re-sends the entries since the last save",
          { path: this.path, error: describeFsError(error) || errorMessage(error) },
        );
      }
    }
  }

  /** Saves the newest cursor and stops the timer; safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return await this.#saving;
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.flush();
    if (this.#pending !== this.#saved) {
      log("journal").warning(
        "journal cursor not saved on stop ({path}): a restart re-sends the entries since the last save",
        { path: this.path },
      );
    }
  }

  /** Same as {@linkcode JournalCursorFile.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * The cursor in a cursor file's text, or null when the text is not a valid
 * cursor file (never throws).
 *
 * @example Parse a cursor file
 * ```ts
 * import { parseCursorFile } from "./journal_cursor.ts";
 * console.log(parseCursorFile("{}")); // null
 * ```
 */
export function parseCursorFile(text: string): string | null {
  const parsed = parseJsonObject(text);
  if (!parsed) return null;
  const { version, cursor, source } = parsed;
  if (version !== 1 || typeof cursor !== "string" || !CURSOR.test(cursor)) return null;
  if (source !== undefined && typeof source !== "string") return null;
  return cursor;
}
