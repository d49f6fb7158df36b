/**
 * `reclog play`: plays back a tlog terminal recording on stdout with its
 * recorded timing. Reads tlog's JSON messages, bare (`tlog-rec
 * --writer=file`) or after a syslog header, from a file, stdin, or a file that
 * is still growing (`--follow`). Only the recorded output is written, byte
 * for byte; input and window sizes are not (size changes are reported on
 * stderr). The file is streamed twice (a scan that lists the recordings and
 * checks their messages are all there, then the playback), so memory stays
 * bounded whatever its size; stdin is spooled to a temporary file for that,
 * unless `--session` names the recording up front.
 *
 * @module
 */

import { ConfigError, parseRoleArgs } from "../cli/flags.ts";
import { describeFsError } from "../util/errors.ts";
import { log } from "../util/log.ts";
import { sleep } from "../util/sleep.ts";
import {
  decodeTlogMessage,
  describeSequenceCheck,
  findTlogMessage,
  matchesRecording,
  MessageSequence,
  type RecordingFilter,
  recordingId,
  recordingKey,
  TlogFormatError,
  type TlogMessage,
} from "../tlog/tlog.ts";

const logger = log("play");

const USAGE = `Usage: reclog play [FILE|-] [flags]

Plays back a tlog terminal recording on stdout with its recorded timing.
FILE holds tlog's JSON messages, one a line, bare (tlog-rec --writer=file) or
after a syslog header; - or no FILE reads stdin. Only the recorded output is
written, byte for byte; terminal size changes are reported on stderr.

Flags:
  --session ID         play the recording with this rec id (or audit session
                       number); needed when FILE holds several
  --host HOST          only recordings made on HOST
  --speed X            play X times as fast (default 1; 0.5 is half speed)
  --skip-idle SECONDS  shorten every pause longer than SECONDS to SECONDS
  --follow             keep playing what is appended to FILE, like tail -f;
                       SIGINT or SIGTERM stops (exit 0)
  --lax                play on across missing or out-of-order messages
                       (marked on stdout) and skip malformed lines (warned)
  -h, --help           this help

Exit codes: 0 played, 1 a bad or incomplete recording, 2 usage error or no
single recording chosen (the recordings are listed).`;

/** Bytes gathered before one write to stdout. */
const FLUSH_BYTES = 64 * 1024;
/** Longest line read; longer ones are not tlog messages. */
const MAX_LINE_BYTES = 16 * 1024 * 1024;
/** How often a followed file is checked for growth. */
const FOLLOW_POLL_MS = 100;

/**
 * Where {@linkcode TimedOutput} writes: `Deno.stdout` or alike.
 *
 * @example Collect the output in memory
 * ```ts
 * import type { ByteWriter } from "./play.ts";
 * const chunks: Uint8Array[] = [];
 * const writer: ByteWriter = {
 *   write: (bytes) => Promise.resolve(chunks.push(bytes.slice()) && bytes.length),
 * };
 * ```
 */
export interface ByteWriter {
  /** Writes some of `bytes`, resolving to how many. */
  write(bytes: Uint8Array): Promise<number>;
}

/**
 * Options for {@linkcode TimedOutput}.
 *
 * @example Four times as fast, pauses of at most two seconds
 * ```ts
 * import { TimedOutput, type TimedOutputOptions } from "./play.ts";
 * const options: TimedOutputOptions = { speed: 4, maxPauseMs: 2000 };
 * const output = new TimedOutput(options);
 * ```
 */
export interface TimedOutputOptions {
  /**
   * Playback speed: 2 plays twice as fast.
   * @default {1}
   */
  speed?: number;
  /**
   * Longest pause between two outputs, in recorded milliseconds; longer ones
   * are shortened to it (before `speed` applies).
   * @default {Infinity}
   */
  maxPauseMs?: number;
  /**
   * Where the bytes go.
   * @default {Deno.stdout}
   */
  writer?: ByteWriter;
  /**
   * Ends any wait at once when aborted.
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/**
 * Writes output at the moments a recording gives, on a clock in recorded
 * milliseconds: {@linkcode TimedOutput.start} sets it, `advance` moves it on
 * by a delay, `write` sends bytes when the (scaled) moment comes. Bytes due
 * together go out in one write; every write is awaited (backpressure).
 *
 * @example Write two chunks a second apart
 * ```ts
 * import { TimedOutput } from "./play.ts";
 * const output = new TimedOutput({ speed: 2 });
 * output.start(0);
 * await output.write(new TextEncoder().encode("a\n"));
 * output.advance(1000);
 * await output.write(new TextEncoder().encode("b\n")); // half a second later
 * await output.flush();
 * ```
 */
export class TimedOutput {
  readonly #speed: number;
  readonly #maxPauseMs: number;
  readonly #writer: ByteWriter;
  readonly #signal: AbortSignal | undefined;
  #origin = 0;
  #now = 0;
  #lastOutput = 0;
  #lastPlayed = 0;
  #stalled = false;
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;

  /** Makes an output whose clock starts with {@linkcode TimedOutput.start}. */
  constructor(options: TimedOutputOptions = {}) {
    this.#speed = options.speed ?? 1;
    this.#maxPauseMs = options.maxPauseMs ?? Infinity;
    this.#writer = options.writer ?? Deno.stdout;
    this.#signal = options.signal;
  }

  /** Starts the clock: recorded moment `position` (ms) is now. */
  start(position: number): void {
    this.#origin = performance.now();
    this.#now = position;
    this.#lastOutput = position;
    this.#lastPlayed = 0;
  }

  /** The clock, in recorded milliseconds. */
  get position(): number {
    return this.#now;
  }

  /** Moves the clock on by a recorded delay. */
  advance(ms: number): void {
    this.#now += ms;
  }

  /** Moves the clock to a recorded moment, if that is ahead. */
  seek(position: number): void {
    if (position > this.#now) this.#now = position;
  }

  /**
   * Tells that the input ran dry (a followed file): the next output, if
   * already late, is played at once and the timing goes on from there.
   */
  stall(): void {
    this.#stalled = true;
  }

  /** Writes `bytes` at the clock's current moment. */
  async write(bytes: Uint8Array): Promise<void> {
    const pause = Math.max(0, this.#now - this.#lastOutput);
    const played = this.#lastPlayed + Math.min(pause, this.#maxPauseMs);
    this.#lastOutput = this.#now;
    this.#lastPlayed = played;
    let due = this.#origin + played / this.#speed;
    const now = performance.now();
    if (this.#stalled) {
      this.#stalled = false;
      if (due < now) {
        this.#origin += now - due;
        due = now;
      }
    }
    if (due > now + 1) {
      await this.flush();
      await sleepUntil(due, this.#signal);
      // Stopped during the pause: what was due after it is not played.
      if (this.#signal?.aborted) return;
    }
    this.#pending.push(bytes);
    this.#pendingBytes += bytes.length;
    if (this.#pendingBytes >= FLUSH_BYTES) await this.flush();
  }

  /** Writes out what is gathered. */
  async flush(): Promise<void> {
    const chunks = this.#pending;
    if (chunks.length === 0) return;
    const data = chunks.length === 1 ? chunks[0]! : concat(chunks, this.#pendingBytes);
    this.#pending = [];
    this.#pendingBytes = 0;
    for (let offset = 0; offset < data.length;) {
      offset += await this.#writer.write(data.subarray(offset));
    }
  }
}

function concat(chunks: Uint8Array[], length: number): Uint8Array {
  const data = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    data.set(chunk, offset);
    offset += chunk.length;
  }
  return data;
}

async function sleepUntil(due: number, signal?: AbortSignal): Promise<void> {
  for (let left = due - performance.now(); left > 0.5; left = due - performance.now()) {
    if (signal?.aborted) return;
    await sleep(left, signal);
  }
}

/** Something lines can be read from: a file or stdin. */
interface ByteReader {
  read(buffer: Uint8Array): Promise<number | null>;
}

/** How {@linkcode readLines} follows a growing file. */
interface FollowOptions {
  file: Deno.FsFile;
  signal: AbortSignal;
  /** Called before each wait for more data. */
  onIdle(): Promise<void>;
}

/** One line of the input and its number, from 1. */
interface Line {
  text: string;
  number: number;
}

/**
 * The lines of `reader`, decoded, without their line ends. At the end of the
 * data it stops, or with `follow` waits for more (a last line without a line
 * end is held back until it is complete).
 */
async function* readLines(
  reader: ByteReader,
  display: string,
  follow?: FollowOptions,
): AsyncGenerator<Line> {
  const decoder = new TextDecoder();
  const buffer = new Uint8Array(64 * 1024);
  let partial: Uint8Array[] = [];
  let partialBytes = 0;
  let number = 0;
  let offset = 0;
  const line = (tail: Uint8Array): Line => {
    const bytes = partial.length === 0
      ? tail
      : concat([...partial, tail], partialBytes + tail.length);
    partial = [];
    partialBytes = 0;
    number++;
    const text = decoder.decode(bytes);
    return { text: text.endsWith("\r") ? text.slice(0, -1) : text, number };
  };
  while (true) {
    if (follow?.signal.aborted) return;
    const count = await reader.read(buffer);
    if (count === null) {
      if (!follow) break;
      await follow.onIdle();
      await sleep(FOLLOW_POLL_MS, follow.signal);
      if (follow.signal.aborted) return;
      const size = (await follow.file.stat()).size;
      if (size < offset) {
        logger.warn("{file} was truncated: playing on from its start", { file: display });
        await follow.file.seek(0, Deno.SeekMode.Start);
        offset = 0;
        partial = [];
        partialBytes = 0;
      }
      continue;
    }
    offset += count;
    const chunk = buffer.subarray(0, count);
    let start = 0;
    for (let end = chunk.indexOf(10); end >= 0; end = chunk.indexOf(10, start)) {
      yield line(chunk.subarray(start, end));
      start = end + 1;
    }
    if (start < chunk.length) {
      partial.push(chunk.slice(start));
      partialBytes += chunk.length - start;
      if (partialBytes > MAX_LINE_BYTES) {
        throw new Error(
          `${display} line ${number + 1}: longer than ${MAX_LINE_BYTES} bytes, not a tlog log`,
        );
      }
    }
  }
  if (partialBytes > 0) yield line(new Uint8Array());
}

/** What the scan learned about one recording in the input. */
interface RecordingSummary {
  key: string;
  host: string;
  rec?: string;
  session: number | string;
  id: string;
  user: string;
  /** Start of the recording, seconds since the epoch, if the format says. */
  start?: number;
  lowestId: number;
  messages: number;
  sequence: MessageSequence;
  /** The first ordering problem found, with its line. */
  problem?: string;
}

/**
 * Options for {@linkcode play}.
 *
 * @example Follow one recording of a syslog file
 * ```ts
 * import { play, type PlayOptions } from "./play.ts";
 * const controller = new AbortController();
 * const options: PlayOptions = {
 *   file: "/var/log/tlog.log", session: "424a-c8f-3c4b", follow: true,
 *   signal: controller.signal,
 * };
 * await play(options);
 * ```
 */
export interface PlayOptions {
  /** The file to play, or `-` for stdin. */
  file: string;
  /**
   * Play the recording with this `rec` id or audit session number.
   * @default {undefined}
   */
  session?: string;
  /**
   * Only recordings made on this host.
   * @default {undefined}
   */
  host?: string;
  /**
   * Playback speed multiplier.
   * @default {1}
   */
  speed?: number;
  /**
   * Longest pause, in recorded milliseconds.
   * @default {Infinity}
   */
  maxPauseMs?: number;
  /**
   * Keep reading the file as it grows until `signal` aborts.
   * @default {false}
   */
  follow?: boolean;
  /**
   * Play on across gaps (marked on stdout) and skip malformed lines (warned).
   * @default {false}
   */
  lax?: boolean;
  /**
   * Stops playback (and following) when aborted.
   * @default {undefined}
   */
  signal?: AbortSignal;
  /**
   * Where the recorded output goes.
   * @default {Deno.stdout}
   */
  writer?: ByteWriter;
}

/**
 * Plays one recording of a tlog log and resolves to the exit code: 0 played
 * (or stopped by `signal`), 2 when the log holds several recordings and none
 * was chosen (they are listed on stderr). Throws a {@linkcode ConfigError}
 * for a file that cannot be read and an `Error` naming the file and line for
 * a malformed or incomplete recording.
 *
 * @example Play a recording at ten times the speed
 * ```ts
 * import { play } from "./play.ts";
 * const code = await play({ file: "session.log", speed: 10 });
 * ```
 */
export async function play(options: PlayOptions): Promise<number> {
  const filter: RecordingFilter = { session: options.session, host: options.host };
  const display = options.file === "-" ? "stdin" : `'${options.file}'`;
  let path = options.file;
  let spooled: string | undefined;
  try {
    if (path === "-" && options.session === undefined) {
      spooled = await Deno.makeTempFile({ prefix: "reclog-play-" });
      const file = await Deno.open(spooled, { write: true, truncate: true });
      try {
        await Deno.stdin.readable.pipeTo(file.writable, { signal: options.signal });
      } catch (error) {
        // Stopped (SIGINT/SIGTERM) while reading stdin: the finally removes the copy.
        if (options.signal?.aborted) return 0;
        throw error;
      }
      path = spooled;
    }
    let chosen: RecordingSummary | undefined;
    let scanned = false;
    if (path !== "-") {
      const summaries = await scan(path, display, options.lax ?? false);
      scanned = true;
      const matching = [...summaries.values()].filter((summary) =>
        matchesRecording(summary, filter)
      );
      if (matching.length > 1 || (matching.length === 0 && summaries.size > 0 && !options.follow)) {
        listRecordings(display, [...summaries.values()], matching.length, filter);
        return 2;
      }
      if (matching.length === 0 && !options.follow) {
        throw new Error(`${display} holds no tlog messages`);
      }
      chosen = matching[0];
      if (chosen?.problem && !options.lax) throw new Error(chosen.problem);
    }
    return await playback(path, display, options, filter, chosen?.key, scanned);
  } finally {
    if (spooled) await Deno.remove(spooled).catch(() => {});
  }
}

async function openInput(path: string, display: string): Promise<Deno.FsFile> {
  try {
    const file = await Deno.open(path);
    if ((await file.stat()).isDirectory) {
      file.close();
      throw new Deno.errors.IsADirectory(path);
    }
    return file;
  } catch (error) {
    throw new ConfigError(`Cannot read ${display}: ${describeFsError(error)}`);
  }
}

/** Reads a line's message; a malformed one throws, or with `lax` is warned about and skipped. */
function lineMessage(line: Line, display: string, lax: boolean, warn: boolean) {
  try {
    return findTlogMessage(line.text);
  } catch (error) {
    if (!(error instanceof TlogFormatError)) throw error;
    const what = `${display} line ${line.number}: ${error.message}`;
    if (!lax) throw new Error(what);
    if (warn) logger.warn("{what}; line skipped (--lax)", { what });
    return undefined;
  }
}

/** First pass: which recordings the file holds, and whether their messages are in order. */
async function scan(
  path: string,
  display: string,
  lax: boolean,
): Promise<Map<string, RecordingSummary>> {
  const summaries = new Map<string, RecordingSummary>();
  using file = await openInput(path, display);
  for await (const line of readLines(file, display)) {
    const message = lineMessage(line, display, lax, true);
    if (!message) continue;
    const key = recordingKey(message);
    let summary = summaries.get(key);
    if (!summary) {
      summary = {
        key,
        host: message.host,
        rec: message.rec,
        session: message.session,
        id: recordingId(message),
        user: message.user,
        lowestId: Infinity,
        messages: 0,
        sequence: new MessageSequence(),
      };
      summaries.set(key, summary);
    }
    summary.messages++;
    if (message.id < summary.lowestId) {
      summary.lowestId = message.id;
      if (message.time !== undefined) summary.start = message.time - message.pos / 1000;
    }
    const check = summary.sequence.check(message);
    if (check.kind !== "next" && summary.problem === undefined) {
      summary.problem = `${display} line ${line.number}: recording ${summary.id}: ${
        describeSequenceCheck(check, message.id)
      }`;
    }
  }
  return summaries;
}

function listRecordings(
  display: string,
  all: RecordingSummary[],
  matching: number,
  filter: RecordingFilter,
): void {
  const chosen = [
    filter.session === undefined ? "" : ` --session ${filter.session}`,
    filter.host === undefined ? "" : ` --host ${filter.host}`,
  ].join("");
  const headline = matching === 0
    ? `reclog play: no recording in ${display} matches${chosen}; it holds:`
    : `reclog play: ${display} holds ${matching} recordings${
      chosen ? ` matching${chosen}` : ""
    }; choose one with --session ID (and --host HOST):`;
  const rows = [
    ["HOST", "SESSION (rec id)", "USER", "START (UTC)", "MESSAGES"],
    ...all.map((summary) => [
      summary.host,
      summary.id,
      summary.user,
      summary.start === undefined
        ? "-"
        : new Date(summary.start * 1000).toISOString().replace("T", " ").slice(0, 19),
      String(summary.messages),
    ]),
  ];
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  console.error(
    [
      headline,
      ...rows.map((row) =>
        "  " + row.map((cell, column) => cell.padEnd(widths[column]!)).join("  ").trimEnd()
      ),
    ].join("\n"),
  );
}

const encoder = new TextEncoder();

/** Second pass: plays the chosen recording (or, unscanned, the first one that matches). */
async function playback(
  path: string,
  display: string,
  options: PlayOptions,
  filter: RecordingFilter,
  chosenKey: string | undefined,
  scanned: boolean,
): Promise<number> {
  const lax = options.lax ?? false;
  const signal = options.signal ?? new AbortController().signal;
  const output = new TimedOutput({
    speed: options.speed,
    maxPauseMs: options.maxPauseMs,
    writer: options.writer,
    signal,
  });
  const sequence = new MessageSequence();
  const ignored = new Set<string>();
  let key = chosenKey;
  let started = false;
  let window = "";
  using file = path === "-" ? undefined : await openInput(path, display);
  const follow: FollowOptions | undefined = options.follow && file
    ? { file, signal, onIdle: () => (output.stall(), output.flush()) }
    : undefined;
  try {
    lines: for await (const line of readLines(file ?? Deno.stdin, display, follow)) {
      const message = lineMessage(line, display, lax, !scanned);
      if (!message || !matchesRecording(message, filter)) continue;
      const messageKey = recordingKey(message);
      key ??= messageKey;
      if (messageKey !== key) {
        if (chosenKey === undefined && !ignored.has(messageKey)) {
          ignored.add(messageKey);
          logger.warn("{file} line {line} starts another recording ({id}); only one is played", {
            file: display,
            line: line.number,
            id: recordingId(message),
          });
        }
        continue;
      }
      const check = sequence.check(message);
      if (check.kind !== "next") {
        const what = `${display} line ${line.number}: recording ${recordingId(message)}: ${
          describeSequenceCheck(check, message.id)
        }`;
        if (!lax) throw new Error(what);
        logger.warn("{what} (--lax: marked and played on)", { what });
        if (started) {
          await output.write(encoder.encode(
            `\r\n[reclog play: ${describeSequenceCheck(check, message.id)}]\r\n`,
          ));
        } else {
          output.start(message.pos);
          started = true;
          await output.write(encoder.encode(
            `[reclog play: ${describeSequenceCheck(check, message.id)}]\r\n`,
          ));
        }
        if (check.kind !== "gap") continue;
      }
      const records = decode(message, line, display, lax);
      if (!records) continue;
      if (started) output.seek(message.pos);
      else {
        output.start(message.pos);
        started = true;
      }
      for (const record of records) {
        if (signal.aborted) break lines;
        if (record.kind === "delay") output.advance(record.ms);
        else if (record.kind === "output") await output.write(record.bytes);
        else if (record.kind === "window") {
          const size = `${record.columns}x${record.rows}`;
          if (size === window) continue;
          window = size;
          await output.flush();
          logger.info(
            "the recorded terminal is {size} (columns x rows) from {at} on; reclog cannot resize this one",
            { size, at: formatPosition(output.position) },
          );
        }
      }
    }
    await output.flush();
  } catch (error) {
    if (error instanceof Deno.errors.BrokenPipe) return 0;
    throw error;
  }
  if (!started && !signal.aborted) {
    if (options.session !== undefined || options.host !== undefined) {
      throw new Error(`no recording in ${display} matches the --session/--host given`);
    }
    throw new Error(`${display} holds no tlog messages`);
  }
  return 0;
}

function decode(message: TlogMessage, line: Line, display: string, lax: boolean) {
  try {
    return decodeTlogMessage(message);
  } catch (error) {
    if (!(error instanceof TlogFormatError)) throw error;
    const what = `${display} line ${line.number}: message ${message.id}: ${error.message}`;
    if (!lax) throw new Error(what);
    logger.warn("{what}; message skipped (--lax)", { what });
    return undefined;
  }
}

function formatPosition(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${pad(Math.floor(seconds / 3600))}:${pad(Math.floor(seconds / 60) % 60)}:${
    pad(seconds % 60)
  }.${String(Math.floor(ms % 1000)).padStart(3, "0")}`;
}

function parseNumber(value: string, flag: string, min: number, minExclusive: boolean): number {
  const number = /^(\d+(\.\d*)?|\.\d+)$/.test(value) ? Number(value) : NaN;
  if (!Number.isFinite(number) || (minExclusive ? number <= min : number < min)) {
    throw new ConfigError(
      `${flag} '${value}': expected a ${minExclusive ? "positive" : "non-negative"} number`,
    );
  }
  return number;
}

/**
 * Runs `reclog play` with its command-line arguments; resolves to the exit
 * code. Usage mistakes throw a {@linkcode ConfigError}.
 *
 * @example Play a recording twice as fast
 * ```ts
 * import { run } from "./play.ts";
 * Deno.exit(await run(["--speed", "2", "session.log"]));
 * ```
 */
export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parseRoleArgs("play", args, {
    session: { type: "string" },
    host: { type: "string" },
    speed: { type: "string" },
    "skip-idle": { type: "string" },
    follow: { type: "boolean" },
    lax: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  }, true);
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (positionals.length > 1) {
    throw new ConfigError(
      `expected one FILE, got ${positionals.length}: ${
        positionals.join(" ")
      } (see 'reclog play --help')`,
    );
  }
  const file = positionals[0] ?? "-";
  if (file === "-" && Deno.stdin.isTerminal()) {
    throw new ConfigError("no FILE given and stdin is a terminal (see 'reclog play --help')");
  }
  if (file === "-" && values.follow) {
    throw new ConfigError("--follow needs a FILE (stdin is read to its end anyway)");
  }
  const speed = values.speed === undefined ? 1 : parseNumber(values.speed, "--speed", 0, true);
  const skipIdle = values["skip-idle"];
  const maxPauseMs = skipIdle === undefined
    ? Infinity
    : parseNumber(skipIdle, "--skip-idle", 0, false) * 1000;
  for (const flag of ["session", "host"] as const) {
    if (values[flag] === "") throw new ConfigError(`--${flag} '': expected a value`);
  }
  const controller = new AbortController();
  const stop = () => controller.abort();
  // --follow stops on a signal; so does stdin, whose temporary copy must be
  // removed (without a handler a signal would kill reclog and leave it).
  const signals: Deno.Signal[] = values.follow || file === "-" ? ["SIGINT", "SIGTERM"] : [];
  for (const name of signals) Deno.addSignalListener(name, stop);
  try {
    const code = await play({
      file,
      session: values.session,
      host: values.host,
      speed,
      maxPauseMs,
      follow: values.follow ?? false,
      lax: values.lax ?? false,
      signal: controller.signal,
    });
    // Interrupted playback of stdin: 130, as a shell reports SIGINT.
    return controller.signal.aborted && !values.follow ? 130 : code;
  } finally {
    for (const name of signals) Deno.removeSignalListener(name, stop);
  }
}
