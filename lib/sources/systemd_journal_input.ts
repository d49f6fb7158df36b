/**
 * serve's journal input in one piece: a {@linkcode SystemdJournalSource}
 * started after the cursor a {@linkcode JournalCursorFile} saved, each batch
 * kept by `onBatch` and only then its cursor handed to the file,
 * and on close the source stopped before the file's last save.
 *
 * @module
 */

import type { BatchHandler, Source } from "../batch.ts";
import { JournalCursorFile } from "../state/journal_cursor.ts";
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

  private constructor(cursors: JournalCursorFile, options: JournalInputOptions) {
    this.cursors = cursors;
    const { onBatch, stateDir: _stateDir, cursorIntervalMs: _i, canSave: _c, ...rest } = options;
    this.#source = new SystemdJournalSource({
      ...rest,
      afterCursor: cursors.loaded,
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
    const source = options.directory === undefined ? "journal" : `journal:${options.directory}`;
    const cursors = await JournalCursorFile.open(options.stateDir, {
      intervalMs: options.cursorIntervalMs,
      canSave: options.canSave,
      source,
    });
    try {
      return new JournalInput(cursors, options);
    } catch (error) {
      await cursors.close();
      throw error;
    }
  }

  /** The cursor the input started after (undefined: none was saved). */
  get startCursor(): string | undefined {
    return this.cursors.loaded;
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
