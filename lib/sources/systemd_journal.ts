/**
 * Reads the systemd journal by following `journalctl --output=json`, and
 * hands on batches of entries already formatted as syslog messages (see
 * {@linkcode SyslogFormatter} for the field mapping), each with its cursor
 * and sequence number, and the sequence-number gaps it noticed.
 *
 * How journalctl is run (systemd 252):
 * `journalctl [--directory=DIR] --follow --merge --output=json --all --quiet
 * --no-pager [--cursor=C --no-tail | --no-tail | --lines=0] [--output-fields=F,...]
 * [--priority=P] [MATCH...]` (`--output-fields`: for `rfc5424`, the mapped
 * fields and the structured-data fields only).
 * - `--merge`: without it, `--follow` shows only the newest boot, so entries
 *   of the previous boot after a saved cursor would be lost.
 * - `--no-tail` with `--cursor` as well: `--follow` implies `--lines=10`,
 *   and with a cursor 252 then prints 10 entries from it and skips to the
 *   newest (entries in between would be lost).
 * - `--cursor=C`, not `--after-cursor=C`: when the entry of C is gone
 *   (vacuumed), 252's `--after-cursor` also skips the entry after it. With
 *   `--cursor` the first entry is dropped only if it is C's own.
 * - Losses: 252 prints no `__SEQNUM`, but the cursor carries the sequence
 *   number id and number (`s=`, `i=`). Within one id, an entry whose number is
 *   more than one past the last one seen (or the saved cursor's) means that
 *   many entries were vacuumed or rotated away unseen. Only meaningful
 *   without matches and priority filter (those leave gaps of their own), so
 *   by default checked only then.
 * - journalctl exiting (e.g. no journal files yet) is restarted with
 *   back-off, from the last entry parsed.
 *
 * @module
 */

import { log } from "../util/log.ts";
import { sleep } from "../util/sleep.ts";
import {
  cursorPosition,
  JournalLineError,
  parseEntryLine,
  type SyslogFormatOptions,
  SyslogFormatter,
} from "../framing/journal_entry.ts";

/** One journal entry handed on. */
export interface JournalRecord {
  /** The entry's cursor (`__CURSOR`): save it after the message is kept, resume after it. */
  cursor: string;
  /** The sequence number id (`s=` of the cursor), or "" if the cursor has none. */
  seqnumId: string;
  /** The sequence number (`i=` of the cursor), or -1 if the cursor has none. */
  seqnum: number;
  /** The formatted message (a view into the batch's buffer). */
  message: Uint8Array;
}

/** Entries that were in the journal but are gone: numbers `from` to `to`, inclusive. */
export interface JournalGap {
  /** Their sequence number id. */
  seqnumId: string;
  /** First number missing. */
  from: number;
  /** Last number missing. */
  to: number;
  /** How many: `to - from + 1`. */
  count: number;
}

/** What one step of the reader hands on. */
export interface JournalBatch {
  /** The entries, oldest first (possibly none when only gaps are reported). */
  records: JournalRecord[];
  /** Gaps noticed before or between these entries. */
  gaps: JournalGap[];
  /**
   * The cursor of the last entry read so far, these included (also past
   * entries the formatter dropped, so they are not read again): what to save
   * once the records are kept.
   */
  cursor: string | undefined;
}

/** Counters of a reader. */
export interface JournalReaderStats {
  /** Entries handed on. */
  entries: number;
  /** Entries missing, summed over the gaps. */
  lost: number;
  /** Lines that were not journal entries (skipped). */
  malformed: number;
  /** Lines longer than {@linkcode SystemdJournalReaderOptions.maxLineBytes} (skipped). */
  oversize: number;
  /** Messages cut to the formatter's maxBytes. */
  truncated: number;
  /** JSON lines dropped for their length (format json). */
  dropped: number;
  /** Times journalctl was restarted. */
  restarts: number;
}

/** Options for {@linkcode SystemdJournalReader}. */
export interface SystemdJournalReaderOptions {
  /** A directory of journal files (`--directory`); without it the local journal. */
  directory?: string;
  /**
   * journalctl matches, `FIELD=value` (field: `A-Z`, `0-9`, `_`), or `+` between
   * groups for OR, e.g. `["_SYSTEMD_UNIT=nginx.service"]`.
   * @default {[]}
   */
  matches?: string[];
  /** journalctl `--priority`: `warning`, `0..4`, `err..crit`. */
  priority?: string;
  /** Continue after this entry (a saved {@linkcode JournalRecord.cursor}). */
  afterCursor?: string;
  /**
   * Without a cursor: read from the oldest entry (`start`) or only what comes
   * next (`end`).
   * @default {"start"}
   */
  from?: "start" | "end";
  /** How entries become messages. */
  format?: SyslogFormatOptions;
  /**
   * Report sequence-number gaps.
   * @default {true without matches and priority, false with them}
   */
  detectGaps?: boolean;
  /**
   * Longest JSON line read, bytes; a longer one is skipped and counted.
   * @default {1048576}
   */
  maxLineBytes?: number;
  /**
   * The journalctl program.
   * @default {"journalctl"}
   */
  journalctl?: string;
  /**
   * First wait before restarting journalctl, ms; doubles up to 5 s.
   * @default {200}
   */
  restartDelayMs?: number;
  /** Called each time journalctl was started (its output is read next). */
  onStart?: () => void;
  /** Called when journalctl cannot be run (then retried with back-off). */
  onError?: (error: Error) => void;
  /** Stops the reader. */
  signal?: AbortSignal;
}

const PRIORITY =
  /^(?:[0-7]|emerg|alert|crit|err|warning|notice|info|debug)(?:\.\.(?:[0-7]|emerg|alert|crit|err|warning|notice|info|debug))?$/;
const MATCH = /^(?:\+|[A-Z0-9_]+=.*)$/s;
const LF = 0x0a;
const RFC5424_FIELDS = [
  "MESSAGE",
  "PRIORITY",
  "SYSLOG_FACILITY",
  "_HOSTNAME",
  "SYSLOG_IDENTIFIER",
  "_COMM",
  "_PID",
  "SYSLOG_PID",
];
const READ_SIZE = 256 * 1024;
const MAX_RESTART_DELAY_MS = 5000;

/**
 * Follows the journal through journalctl and hands on {@linkcode JournalBatch}es
 * (iterate it once). A message's bytes stay valid until the step after the
 * next. `close()` (or the signal) stops journalctl; safe to call twice.
 *
 * @example Follow a directory of journal files from a saved cursor
 * ```ts ignore
 * import { SystemdJournalReader } from "./systemd_journal.ts";
 * await using reader = new SystemdJournalReader({
 *   directory: "/var/log/journal/0123456789abcdef0123456789abcdef",
 *   matches: ["_SYSTEMD_UNIT=nginx.service"],
 *   afterCursor: "s=...;i=2a;b=...;m=...;t=...;x=...",
 * });
 * for await (const { records, gaps } of reader) {
 *   for (const gap of gaps) console.log(`lost ${gap.count}`);
 *   for (const record of records) console.log(record.cursor, record.message.length);
 * }
 * ```
 */
export class SystemdJournalReader implements AsyncDisposable, AsyncIterable<JournalBatch> {
  readonly #options: SystemdJournalReaderOptions;
  readonly #formatter: SyslogFormatter;
  readonly #detectGaps: boolean;
  readonly #maxLine: number;
  readonly #controller = new AbortController();
  readonly #lastSeq = new Map<string, number>();
  #cursor: string | undefined;
  #child: Deno.ChildProcess | undefined;
  #exit: Promise<unknown> | undefined;
  #iterated = false;
  #malformed = 0;
  #oversize = 0;
  #entries = 0;
  #lost = 0;
  #restarts = 0;

  /** Checks the options; journalctl starts when iteration does. */
  constructor(options: SystemdJournalReaderOptions = {}) {
    this.#options = options;
    for (const match of options.matches ?? []) {
      if (!MATCH.test(match)) {
        throw new RangeError(
          `Cannot use journal match '${match}': use FIELD=value (FIELD of A-Z 0-9 _) or +`,
        );
      }
    }
    if (options.priority !== undefined && !PRIORITY.test(options.priority)) {
      throw new RangeError(
        `Cannot use journal priority '${options.priority}': use 0-7 or emerg..debug, or a range like err..warning`,
      );
    }
    this.#formatter = new SyslogFormatter(options.format);
    this.#detectGaps = options.detectGaps ??
      ((options.matches ?? []).length === 0 && options.priority === undefined);
    this.#maxLine = options.maxLineBytes ?? 1 << 20;
    this.#cursor = options.afterCursor;
    if (this.#cursor !== undefined) {
      const position = cursorPosition(this.#cursor);
      if (position) this.#lastSeq.set(position.seqnumId, position.seqnum);
    }
    if (options.signal?.aborted) this.#controller.abort();
    options.signal?.addEventListener("abort", () => this.#abort(), { once: true });
  }

  /** The cursor of the last entry handed on (or the starting cursor). */
  get cursor(): string | undefined {
    return this.#cursor;
  }

  /** Counters so far. */
  get stats(): JournalReaderStats {
    return {
      entries: this.#entries,
      lost: this.#lost,
      malformed: this.#malformed,
      oversize: this.#oversize,
      truncated: this.#formatter.truncated,
      dropped: this.#formatter.dropped,
      restarts: this.#restarts,
    };
  }

  /** The journalctl arguments for the next start. */
  args(): string[] {
    const options = this.#options;
    const args = [
      "--follow",
      "--merge",
      "--output=json",
      "--all",
      "--quiet",
      "--no-pager",
    ];
    if (options.directory !== undefined) args.unshift(`--directory=${options.directory}`);
    // --no-tail with --cursor too: 252's --follow implies --lines=10, which
    // with a cursor shows 10 entries from it and then only new ones.
    if (this.#cursor !== undefined) args.push(`--cursor=${this.#cursor}`, "--no-tail");
    else if ((options.from ?? "start") === "start") args.push("--no-tail");
    else args.push("--lines=0");
    if ((options.format?.format ?? "rfc5424") === "rfc5424") {
      // Only the fields the message is made of: journalctl's JSON output is
      // its bottleneck, ~1.4x faster so (the __ fields and _BOOT_ID come anyway).
      args.push(`--output-fields=${[...RFC5424_FIELDS, ...(options.format?.sdFields ?? [])]}`);
    }
    if (options.priority !== undefined) args.push(`--priority=${options.priority}`);
    args.push(...(options.matches ?? []));
    return args;
  }

  /** Hands on batches until closed or aborted. */
  [Symbol.asyncIterator](): AsyncIterator<JournalBatch> {
    if (this.#iterated) throw new Error("A SystemdJournalReader can be iterated only once");
    this.#iterated = true;
    return this.#run();
  }

  async *#run(): AsyncGenerator<JournalBatch> {
    const signal = this.#controller.signal;
    let delay = this.#options.restartDelayMs ?? 200;
    try {
      while (!signal.aborted) {
        const started = Date.now();
        let got = false;
        for await (const batch of this.#once()) {
          got ||= batch.records.length > 0;
          yield batch;
        }
        if (signal.aborted) break;
        if (got || Date.now() - started > 10_000) delay = this.#options.restartDelayMs ?? 200;
        this.#restarts++;
        await sleep(delay, signal);
        delay = Math.min(delay * 2, MAX_RESTART_DELAY_MS);
      }
    } finally {
      this.#kill();
    }
  }

  /** One journalctl run: its batches, until it exits or the reader stops. */
  async *#once(): AsyncGenerator<JournalBatch> {
    const program = this.#options.journalctl ?? "journalctl";
    const startCursor = this.#cursor;
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(program, {
        args: this.args(),
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      log("journal").error("Cannot run '{program}': {error}", { program, error: reason });
      this.#options.onError?.(new Error(`Cannot run '${program}': ${reason}`, { cause: error }));
      return;
    }
    this.#child = child;
    this.#options.onStart?.();
    this.#exit = child.status;
    if (this.#controller.signal.aborted) this.#kill();
    const stderr = collectTail(child.stderr, 4096);
    const reader = child.stdout.getReader({ mode: "byob" });
    let buf = new Uint8Array(READ_SIZE);
    let have = 0; // bytes of an unfinished line at the start of buf
    let skipping = false; // inside an over-long line, until its newline
    let first = true;
    try {
      while (true) {
        if (have === buf.length) {
          // The unfinished line fills the buffer: grow, up to maxLine.
          if (buf.length > this.#maxLine) {
            this.#oversize++;
            skipping = true;
            have = 0;
          } else {
            const bigger = new Uint8Array(Math.min(buf.length * 2, this.#maxLine + 1));
            bigger.set(buf);
            buf = bigger;
          }
        }
        const { value, done } = await reader.read(buf.subarray(have));
        if (done || value === undefined) break;
        buf = new Uint8Array(value.buffer);
        const end = have + value.length;
        const gaps: JournalGap[] = [];
        const records: JournalRecord[] = [];
        const cursors: string[] = [];
        let start = 0;
        const data = buf.subarray(0, end);
        for (let lf = data.indexOf(LF, have); lf !== -1; lf = data.indexOf(LF, start)) {
          const line = data.subarray(start, lf);
          start = lf + 1;
          if (skipping) {
            skipping = false;
            continue;
          }
          if (line.length > this.#maxLine) {
            this.#oversize++;
            continue;
          }
          if (line.length === 0) continue;
          let entry;
          try {
            entry = parseEntryLine(line);
          } catch (error) {
            if (!(error instanceof JournalLineError)) throw error;
            if (this.#malformed++ === 0) {
              log("journal").warning("journalctl printed a line that is not an entry: {reason}", {
                reason: error.message,
              });
            }
            continue;
          }
          const cursor = entry.__CURSOR as string;
          if (first) {
            first = false;
            if (cursor === startCursor) continue; // --cursor shows the saved entry again
          }
          const position = cursorPosition(cursor);
          if (position && this.#detectGaps) {
            const last = this.#lastSeq.get(position.seqnumId);
            if (last !== undefined && position.seqnum > last + 1) {
              const gap = {
                seqnumId: position.seqnumId,
                from: last + 1,
                to: position.seqnum - 1,
                count: position.seqnum - last - 1,
              };
              gaps.push(gap);
              this.#lost += gap.count;
            }
          }
          if (position) {
            const last = this.#lastSeq.get(position.seqnumId);
            if (last === undefined || position.seqnum > last) {
              this.#lastSeq.set(position.seqnumId, position.seqnum);
            }
          }
          this.#cursor = cursor;
          if (!this.#formatter.append(entry, line)) continue;
          cursors.push(cursor);
          records.push({
            cursor,
            seqnumId: position?.seqnumId ?? "",
            seqnum: position?.seqnum ?? -1,
            message: EMPTY,
          });
        }
        if (skipping) {
          have = 0;
        } else {
          // Keep the unfinished line at the start of the next read.
          buf.copyWithin(0, start, end);
          have = end - start;
        }
        const messages = this.#formatter.take();
        for (let i = 0; i < records.length; i++) records[i]!.message = messages[i]!;
        this.#entries += records.length;
        if (records.length > 0 || gaps.length > 0) yield { records, gaps, cursor: this.#cursor };
      }
    } finally {
      this.#kill();
      await reader.cancel().catch(() => {});
      const status = await child.status;
      const tail = await stderr;
      this.#child = undefined;
      if (!this.#controller.signal.aborted) {
        log("journal").warning("journalctl exited ({code}): {stderr}", {
          code: status.code,
          stderr: tail.trim() || "no error output",
        });
      }
    }
  }

  #kill(): void {
    try {
      this.#child?.kill("SIGTERM");
    } catch {
      // already exited
    }
  }

  #abort(): void {
    this.#controller.abort();
    this.#kill();
  }

  /**
   * Stops journalctl and waits for it to exit; safe to call twice. The
   * iteration then ends (at its next step).
   */
  async close(): Promise<void> {
    this.#abort();
    await this.#exit;
  }

  /** Same as {@linkcode SystemdJournalReader.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

const EMPTY = new Uint8Array(0);

/** Reads a stream to its end, keeping only its last `max` bytes, as text. */
async function collectTail(stream: ReadableStream<Uint8Array>, max: number): Promise<string> {
  let tail = new Uint8Array(0);
  try {
    for await (const chunk of stream) {
      const joined = new Uint8Array(Math.min(max, tail.length + chunk.length));
      const all = new Uint8Array(tail.length + chunk.length);
      all.set(tail);
      all.set(chunk, tail.length);
      joined.set(all.subarray(all.length - joined.length));
      tail = joined;
    }
  } catch {
    // the stream failed: keep what came
  }
  return new TextDecoder().decode(tail);
}
