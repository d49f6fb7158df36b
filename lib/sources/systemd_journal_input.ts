/**
 * serve's journal input in one piece: a {@linkcode SystemdJournalSource}
 * started after the cursor a {@linkcode JournalCursorFile} saved, each batch
 * kept by `onBatch` and only then its cursor handed to the file,
 * and on close the source stopped before the file's last save.
 *
 * The file records what the cursor belongs to ({@linkcode journalSourceId}:
 * the system journal or the directory's real path, and the matches and
 * priority filter): a cursor saved for another source (`--journal` then
 * `--journal-dir`, another directory, other matches, in the same state
 * directory) is not applied; the input then reads as on its first start
 * (from the oldest entry) and logs one line saying so; the other file is
 * kept as `journal-cursor.json.replaced`.
 *
 * @module
 */

import { resolve } from "node:path";
import type { BatchHandler, Source } from "../batch.ts";
import {
  JOURNAL_CURSOR_FILE,
  JournalCursorFile,
  parseCursorFile,
} from "../state/journal_cursor.ts";
import { describeFsError } from "../util/errors.ts";
import { parseJsonObject } from "../util/json.ts";
import { log } from "../util/log.ts";
import { SystemdJournalReader } from "./systemd_journal.ts";
import {
  type JournalGap,
  type JournalReaderStats,
  SystemdJournalSource,
  type SystemdJournalSourceOptions,
} from "./systemd_journal_source.ts";

/** Options for {@linkcode JournalInput.open}. */
export interface JournalInputOptions
  extends Omit<SystemdJournalSourceOptions, "onBatch" | "onGap" | "afterCursor"> {
  /** Directory of `journal-cursor.json` (serve: the spool directory, or its state directory). */
  stateDir: string;
  /**
   * Keeps the batch (serve: `journal.append(stream, message)` for each, e.g.
   * serve's `toJournal` handler); once it returned (or its promise resolved)
   * the batch's cursor is handed to the cursor file. A handler that throws
   * stops the input (logged), the cursor stays before that batch.
   */
  onBatch: BatchHandler;
  /** Entries gone from the journal before they were read (see {@linkcode SystemdJournalSourceOptions.onGap}). */
  onGap?: (gap: JournalGap) => void;
  /**
   * Shortest time between two cursor saves, ms; after a SIGKILL at most
   * the entries of this long come again.
   * @default {200}
   */
  cursorIntervalMs?: number;
  /**
   * While false, the cursor is not saved (serve: "the spool is healthy", so
   * the cursor never gets ahead of what is on disk).
   * @default {() => true}
   */
  canSave?: () => boolean;
}

/**
 * The journal input of serve: see the module doc. `open` reads the saved
 * cursor (a damaged cursor file is a one-line error naming it);
 * `listen` starts journalctl after it; `close` is safe twice.
 *
 * @example Feed reclog's journal from the system journal
 * ```ts ignore
 * import { JournalInput } from "./systemd_journal_input.ts";
 * const stream = new TextEncoder().encode("journal");
 * await using input = await JournalInput.open({
 *   stateDir: "/var/spool/reclog",
 *   onBatch: (batch) => {
 *     for (let i = 0; i < batch.count; i++) journal.append(stream, batch.message(i));
 *   },
 *   onGap: (gap) => console.warn(`${gap.count} journal entries lost`),
 * });
 * await input.listen();
 * ```
 */
export class JournalInput implements Source {
  /** `journal` or `journal:DIR`. */
  readonly description: string;
  /** The cursor file. */
  readonly cursors: JournalCursorFile;
  readonly #source: SystemdJournalSource;
  readonly #startCursor: string | undefined;

  private constructor(
    cursors: JournalCursorFile,
    startCursor: string | undefined,
    options: JournalInputOptions,
  ) {
    this.cursors = cursors;
    this.#startCursor = startCursor;
    const { onBatch, stateDir: _stateDir, cursorIntervalMs: _i, canSave: _c, ...rest } = options;
    this.#source = new SystemdJournalSource({
      ...rest,
      afterCursor: startCursor,
      onBatch: (batch): void | Promise<void> => {
        const kept = onBatch(batch);
        if (kept instanceof Promise) return kept.then(() => cursors.update(batch.cursor));
        cursors.update(batch.cursor);
        return undefined;
      },
    });
    this.description = this.#source.description;
  }

  /**
   * Checks the options (a `RangeError` for a bad match, priority or
   * format) and reads the saved cursor; nothing runs yet.
   */
  static async open(options: JournalInputOptions): Promise<JournalInput> {
    // The options first (a RangeError): a typo must not set the cursor aside.
    await new SystemdJournalReader({
      matches: options.matches,
      priority: options.priority,
      format: { format: options.format, sdFields: options.sdFields, maxBytes: options.maxBytes },
    }).close();
    const source = await journalSourceId(options);
    await setAsideOthers(options.stateDir, source, options);
    const cursors = await JournalCursorFile.open(options.stateDir, {
      intervalMs: options.cursorIntervalMs,
      canSave: options.canSave,
      source,
    });
    const start = cursors.loaded;
    try {
      return new JournalInput(cursors, start, options);
    } catch (error) {
      await cursors.close();
      throw error;
    }
  }

  /** The cursor the input started after (undefined: none was saved, or it was another source's). */
  get startCursor(): string | undefined {
    return this.#startCursor;
  }

  /** The reader's counters. */
  get stats(): JournalReaderStats {
    return this.#source.stats;
  }

  /** Starts journalctl; see {@linkcode SystemdJournalSource.listen}. */
  listen(): Promise<undefined> {
    return this.#source.listen();
  }

  /** Stops journalctl, then saves the last cursor; safe to call twice. */
  async close(): Promise<void> {
    try {
      await this.#source.close();
    } finally {
      await this.cursors.close();
    }
  }

  /** Same as {@linkcode JournalInput.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * What a saved cursor belongs to, as written into the cursor file:
 * `journal` (the system journal) or `journal:<real path of the directory>`,
 * then ` match=<JSON list>` and ` priority=<P>` when given.
 *
 * @example The id of a filtered directory source
 * ```ts
 * import { journalSourceId } from "./systemd_journal_input.ts";
 * await journalSourceId({ directory: "/srv/journal", matches: ["_SYSTEMD_UNIT=nginx.service"] });
 * // 'journal:/srv/journal match=["_SYSTEMD_UNIT=nginx.service"]'
 * ```
 */
export async function journalSourceId(
  options: { directory?: string; matches?: string[]; priority?: string },
): Promise<string> {
  let id = "journal";
  if (options.directory !== undefined) {
    let path: string;
    try {
      path = await Deno.realPath(options.directory);
    } catch {
      path = resolve(options.directory); // not there (yet): listen() says so
    }
    id += `:${path}`;
  }
  if ((options.matches ?? []).length > 0) id += ` match=${JSON.stringify(options.matches)}`;
  if (options.priority !== undefined) id += ` priority=${options.priority}`;
  return id;
}

/**
 * A valid cursor file saved for another source is renamed to
 * `journal-cursor.json.replaced` (one line logged), so the input starts as
 * on its first start; a damaged one is left for {@linkcode JournalCursorFile.open}
 * to refuse.
 */
async function setAsideOthers(
  dir: string,
  source: string,
  options: { directory?: string; matches?: string[]; priority?: string },
): Promise<void> {
  const path = `${dir}/${JOURNAL_CURSOR_FILE}`;
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch {
    return; // none (or unreadable: JournalCursorFile.open says so)
  }
  const saved = parseJsonObject(text)?.source;
  if (parseCursorFile(text) === null || typeof saved !== "string") return;
  if (sameSource(saved, source, options)) return;
  try {
    await Deno.rename(path, `${path}.replaced`);
  } catch (error) {
    throw new Error(`Cannot move journal cursor file '${path}' aside: ${describeFsError(error)}`);
  }
  log("journal").warning(
    "the cursor in {path} was saved for {saved}, not {source}: reading from the oldest entry, as on a first start (old file: {path}.replaced)",
    { path, saved, source },
  );
}

/**
 * Whether a cursor saved for `saved` applies to `source`. One written before
 * the id had real paths and filters (`journal:DIR` as given) applies to an
 * unfiltered source of that directory. A file without a source (none is
 * written so) is taken as it is.
 */
function sameSource(
  saved: string,
  source: string,
  options: { directory?: string; matches?: string[]; priority?: string },
): boolean {
  if (saved === source) return true;
  const unfiltered = (options.matches ?? []).length === 0 && options.priority === undefined;
  return unfiltered && options.directory !== undefined && saved === `journal:${options.directory}`;
}
