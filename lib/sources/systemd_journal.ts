/**
 * Reads the systemd journal by following `journalctl --output=export` (format
 * `rfc5424`; `--output=json` for format `json`, or with `output: "json"`), and
 * hands on batches of entries already formatted as syslog messages (see
 * {@linkcode SyslogFormatter} for the field mapping), each with its cursor
 * and sequence number, and the sequence-number gaps it noticed.
 *
 * How journalctl is run (systemd 252):
 * `journalctl [--directory=DIR] --follow --merge --output=export|json --all --quiet
 * --no-pager [--cursor=C --no-tail | --no-tail | --lines=0] [--output-fields=F,...]
 * [--priority=P] [MATCH...]` (`--output-fields`: for `rfc5424`, the mapped
 * fields and the structured-data fields only).
 * - `--output=export`: 252 prints it about 3x faster than JSON (journalctl is
 *   the bottleneck), binary fields come as raw bytes, and an over-long value
 *   is cut instead of the whole entry skipped; parsed by `ExportParser` into
 *   the same entries as the JSON (the real-file tests compare both).
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
import { ExportParser, JournalExportError } from "../framing/journal_export.ts";
import {
  cursorPosition,
  type JournalEntry,
  JournalLineError,
  parseEntryLine,
  SyslogFormatter,
} from "../framing/journal_entry.ts";

import type {
  JournalBatch,
  JournalGap,
  JournalReaderStats,
  JournalRecord,
  SystemdJournalReaderOptions,
} from "./systemd_journal_types.ts";

export type * from "./systemd_journal_types.ts";

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
  readonly #export: boolean;
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
    const json = options.format?.format === "json";
    if (json && options.output === "export") {
      throw new RangeError("Cannot read the journal's export output for the json format");
    }
    this.#export = !json && (options.output ?? "export") === "export";
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
      this.#export ? "--output=export" : "--output=json",
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
    const step: Step = { records: [], gaps: [], first: true, startCursor };
    try {
      const batches = this.#export ? this.#readExport(reader, step) : this.#readLines(reader, step);
      for await (const _ of batches) {
        const { records, gaps } = step;
        const messages = this.#formatter.take();
        for (let i = 0; i < records.length; i++) records[i]!.message = messages[i]!;
        this.#entries += records.length;
        step.records = [];
        step.gaps = [];
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

  /** Reads JSON lines into `step`, yielding after each read. */
  async *#readLines(reader: ByobReader, step: Step): AsyncGenerator<void> {
    let buf = new Uint8Array(READ_SIZE);
    let have = 0; // bytes of an unfinished line at the start of buf
    let skipping = false; // inside an over-long line, until its newline
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
      if (done || value === undefined) return;
      buf = new Uint8Array(value.buffer);
      const end = have + value.length;
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
          this.#badOutput(error.message);
          continue;
        }
        this.#accept(entry, line, step);
      }
      if (skipping) {
        have = 0;
      } else {
        // Keep the unfinished line at the start of the next read.
        buf.copyWithin(0, start, end);
        have = end - start;
      }
      yield;
    }
  }

  /**
   * Reads the export format into `step`, yielding after each read; bad
   * framing ends the run (journalctl is restarted after the last entry).
   */
  async *#readExport(reader: ByobReader, step: Step): AsyncGenerator<void> {
    const parser = new ExportParser({ maxFieldBytes: this.#maxLine });
    let buf = new Uint8Array(READ_SIZE);
    while (true) {
      const { value, done } = await reader.read(buf);
      if (done || value === undefined) return;
      buf = new Uint8Array(value.buffer);
      const truncated = parser.truncated;
      try {
        parser.push(value, (entry) => this.#accept(entry, undefined, step));
      } catch (error) {
        if (!(error instanceof JournalExportError)) throw error;
        this.#badOutput(error.message);
        yield;
        return;
      }
      this.#oversize += parser.truncated - truncated;
      yield;
    }
  }

  #badOutput(reason: string): void {
    if (this.#malformed++ === 0) {
      log("journal").warning("journalctl printed something that is not an entry: {reason}", {
        reason,
      });
    }
  }

  /** One entry read: gap check, cursor, formatted into the pending batch. */
  #accept(entry: JournalEntry, line: Uint8Array | undefined, step: Step): void {
    const cursor = entry.__CURSOR as string;
    if (step.first) {
      step.first = false;
      if (cursor === step.startCursor) return; // --cursor shows the saved entry again
    }
    const position = cursorPosition(cursor);
    if (position) {
      const last = this.#lastSeq.get(position.seqnumId);
      if (this.#detectGaps && last !== undefined && position.seqnum > last + 1) {
        const count = position.seqnum - last - 1;
        step.gaps.push({
          seqnumId: position.seqnumId,
          from: last + 1,
          to: position.seqnum - 1,
          count,
        });
        this.#lost += count;
      }
      if (last === undefined || position.seqnum > last) {
        this.#lastSeq.set(position.seqnumId, position.seqnum);
      }
    }
    this.#cursor = cursor;
    if (!this.#formatter.append(entry, line)) return;
    step.records.push({
      cursor,
      seqnumId: position?.seqnumId ?? "",
      seqnum: position?.seqnum ?? -1,
      message: EMPTY,
    });
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

type ByobReader = ReadableStreamBYOBReader;

/** What one read of journalctl's output adds up to. */
interface Step {
  records: JournalRecord[];
  gaps: JournalGap[];
  /** Whether the next entry is the run's first (`--cursor` repeats the saved one). */
  first: boolean;
  startCursor: string | undefined;
}

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
