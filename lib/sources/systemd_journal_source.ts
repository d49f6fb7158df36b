/**
 * The systemd journal as a {@linkcode Source}: a {@linkcode SystemdJournalReader}
 * (journalctl, followed) whose entries are handed on as batches of syslog
 * messages, each batch with the cursor of its last entry, and whose
 * sequence-number gaps (entries vacuumed or rotated away unseen) are
 * reported to `onGap`.
 *
 * Saving the cursor is the caller's: after the batch is appended to reclog's
 * journal, hand `batch.cursor` to a {@linkcode JournalCursorFile}
 * (`lib/state/journal_cursor.ts`), and start the next run with
 * `afterCursor` = what it loaded.
 *
 * @module
 */

import type { MessageBatch, Source } from "../batch.ts";
import { describeFsError, errorMessage } from "../util/errors.ts";
import { log } from "../util/log.ts";
import type { JournalFormat } from "../framing/journal_entry.ts";
import {
  type JournalGap,
  type JournalReaderStats,
  type JournalRecord,
  SystemdJournalReader,
} from "./systemd_journal.ts";

export type { JournalGap, JournalReaderStats } from "./systemd_journal.ts";

/**
 * A batch of journal entries as syslog messages (or JSON lines). Valid only
 * until the `onBatch` call that received it settles (copy to keep).
 *
 * @example Save the cursor after keeping a batch
 * ```ts
 * import type { JournalMessageBatch } from "./systemd_journal_source.ts";
 * function keep(batch: JournalMessageBatch, save: (cursor: string) => void): void {
 *   for (let i = 0; i < batch.count; i++) console.log(batch.message(i).length);
 *   save(batch.cursor);
 * }
 * ```
 */
export interface JournalMessageBatch extends MessageBatch {
  /**
   * The cursor of the batch's last entry (or of a later entry the formatter
   * dropped): save it once the batch is kept, resume after it.
   */
  readonly cursor: string;
  /** The stream name of every message (the source's `stream`). */
  stream(i: number): string;
  /** The cursor of entry `i`. */
  cursorAt(i: number): string;
  /** The journal's own sequence number of entry `i` (`i=` of its cursor), or -1. */
  journalSeqnum(i: number): number;
}

/** Options for {@linkcode SystemdJournalSource}. */
export interface SystemdJournalSourceOptions {
  /** A directory of journal files (`journalctl --directory`); undefined: the system journal. */
  directory?: string;
  /**
   * journalctl matches, `FIELD=value`, `+` between groups for OR.
   * @default {[]}
   */
  matches?: string[];
  /** journalctl `--priority`: `warning`, `0..4`, `err..crit`. */
  priority?: string;
  /**
   * `rfc5424`: a syslog message per entry (field mapping: `lib/framing/journal_entry.ts`);
   * `json`: the entry's JSON line as journalctl prints it, every field.
   * @default {"rfc5424"}
   */
  format?: JournalFormat;
  /**
   * Fields to add as RFC 5424 structured data (`[journal@32473 NAME="value"]`).
   * @default {[]}
   */
  sdFields?: string[];
  /**
   * HOSTNAME of entries without `_HOSTNAME`.
   * @default {"-"}
   */
  hostname?: string;
  /**
   * Longest message, bytes; longer RFC 5424 messages are cut, longer JSON lines dropped.
   * @default {65536}
   */
  maxBytes?: number;
  /** Continue after this entry (a saved {@linkcode JournalMessageBatch.cursor}). */
  afterCursor?: string;
  /**
   * Without `afterCursor`: from the oldest entry (`start`) or only new ones (`end`).
   * @default {"start"}
   */
  from?: "start" | "end";
  /**
   * Stream name the batch gives for every message.
   * @default {"journal"}
   */
  stream?: string;
  /**
   * Receives each batch; while its promise is pending nothing more is read
   * (journalctl waits on its pipe).
   */
  onBatch: (batch: JournalMessageBatch) => void | Promise<void>;
  /**
   * Entries that were in the journal but are gone (vacuumed, rotated away
   * while stopped), counted from the journal's sequence numbers; called
   * before the batch that follows them. Only checked without `matches` and
   * `priority` (those leave gaps of their own).
   */
  onGap?: (gap: JournalGap) => void | Promise<void>;
  /**
   * The journalctl program.
   * @default {"journalctl"}
   */
  journalctl?: string;
  /**
   * First wait before restarting a journalctl that exited, ms (doubles up to 5 s).
   * @default {200}
   */
  restartDelayMs?: number;
  /** Stops the source. */
  signal?: AbortSignal;
}

/** What a {@linkcode JournalMessageBatch} is made of: the records of one reader step. */
class RecordBatch implements JournalMessageBatch {
  readonly #records: JournalRecord[];
  readonly #stream: string;
  readonly cursor: string;

  constructor(records: JournalRecord[], cursor: string, stream: string) {
    this.#records = records;
    this.cursor = cursor;
    this.#stream = stream;
  }

  get count(): number {
    return this.#records.length;
  }

  message(i: number): Uint8Array {
    return this.#records[i]!.message;
  }

  stream(_i: number): string {
    return this.#stream;
  }

  cursorAt(i: number): string {
    return this.#records[i]!.cursor;
  }

  journalSeqnum(i: number): number {
    return this.#records[i]!.seqnum;
  }
}

/**
 * Reads the systemd journal (or a directory of journal files) and hands on
 * batches of syslog messages. `listen()` resolves once journalctl runs and
 * its output is being read (it rejects when the directory is not one or
 * journalctl cannot be run); a journalctl that exits later is restarted
 * from the last entry read. `close()` stops journalctl and waits for it;
 * safe to call twice.
 *
 * @example Follow a directory of journal files
 * ```ts ignore
 * import { SystemdJournalSource } from "./systemd_journal_source.ts";
 * await using source = new SystemdJournalSource({
 *   directory: "/var/log/journal/0123456789abcdef0123456789abcdef",
 *   onBatch: (batch) => console.log(batch.count, "entries up to", batch.cursor),
 *   onGap: (gap) => console.log(`${gap.count} entries lost`),
 * });
 * await source.listen();
 * ```
 */
export class SystemdJournalSource implements Source {
  /** `journal` (the system journal) or `journal:DIR`. */
  readonly description: string;
  readonly #options: SystemdJournalSourceOptions;
  readonly #reader: SystemdJournalReader;
  readonly #started = Promise.withResolvers<undefined>();
  #loop: Promise<void> | undefined;
  #closed = false;
  #cursor: string | undefined;

  /** Checks the options (matches, priority, format: a `RangeError` naming the value); nothing runs before {@linkcode SystemdJournalSource.listen}. */
  constructor(options: SystemdJournalSourceOptions) {
    this.#options = options;
    this.description = options.directory === undefined ? "journal" : `journal:${options.directory}`;
    this.#cursor = options.afterCursor;
    this.#reader = new SystemdJournalReader({
      directory: options.directory,
      matches: options.matches,
      priority: options.priority,
      afterCursor: options.afterCursor,
      from: options.from,
      format: {
        format: options.format,
        sdFields: options.sdFields,
        hostname: options.hostname,
        maxBytes: options.maxBytes,
      },
      journalctl: options.journalctl,
      restartDelayMs: options.restartDelayMs,
      onStart: () => this.#started.resolve(undefined),
      onError: (error) => this.#started.reject(error),
    });
    this.#started.promise.catch(() => {});
  }

  /** The cursor of the last entry handed on (or `afterCursor`), undefined before any. */
  get cursor(): string | undefined {
    return this.#cursor;
  }

  /** Counters of the reader: entries, lost, malformed, oversize, truncated, dropped, restarts. */
  get stats(): JournalReaderStats {
    return this.#reader.stats;
  }

  /**
   * Starts journalctl; resolves (with `undefined`: no address) once it runs.
   * Rejects with a one-line error when `directory` is not a readable
   * directory or journalctl cannot be run.
   */
  async listen(): Promise<undefined> {
    if (this.#loop) throw new Error(`${this.description}: listen() called twice`);
    if (this.#closed) throw new Error(`${this.description}: closed`);
    const { directory, signal } = this.#options;
    if (directory !== undefined) {
      let info: Deno.FileInfo;
      try {
        info = await Deno.stat(directory);
      } catch (error) {
        throw new Error(`Cannot read journal directory '${directory}': ${describeFsError(error)}`);
      }
      if (!info.isDirectory) {
        throw new Error(`Cannot read journal directory '${directory}': not a directory`);
      }
    }
    if (signal?.aborted) {
      await this.close();
      return undefined;
    }
    signal?.addEventListener("abort", () => void this.close(), { once: true });
    this.#loop = this.#run();
    try {
      await this.#started.promise;
    } catch (error) {
      await this.close();
      throw error;
    }
    return undefined;
  }

  async #run(): Promise<void> {
    const { onBatch, onGap } = this.#options;
    const stream = this.#options.stream ?? "journal";
    try {
      for await (const step of this.#reader) {
        for (const gap of step.gaps) await onGap?.(gap);
        if (step.records.length > 0) {
          const cursor = step.cursor ?? step.records.at(-1)!.cursor;
          const batch = new RecordBatch(step.records, cursor, stream);
          await onBatch(batch);
          this.#cursor = cursor;
        }
        if (this.#closed) break;
      }
    } catch (error) {
      // A handler failed: stop reading (the entries of that batch are not counted as kept).
      log("journal").error("{source}: stopped reading: {error}", {
        source: this.description,
        error: errorMessage(error),
      });
      this.#closed = true;
      await this.#reader.close();
    } finally {
      // Wakes a listen() still waiting (closed before journalctl ran).
      this.#started.resolve(undefined);
    }
  }

  /** Stops journalctl and waits for it and for a handler call in progress; safe to call twice. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#reader.close();
    this.#started.resolve(undefined);
    await this.#loop;
  }

  /** Same as {@linkcode SystemdJournalSource.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
