/**
 * The engine of `reclog play`: streams a tlog log twice, a scan that lists
 * the recordings it holds and checks that their messages are all there, then
 * the playback of the chosen one through a {@linkcode TimedOutput}, so memory
 * stays bounded whatever the size. Stdin is spooled to a temporary file for
 * the two passes, unless `session` names the recording up front; a file can
 * be followed while it grows.
 *
 * @module
 */

import { ConfigError } from "../cli/flags.ts";
import { describeFsError } from "../util/errors.ts";
import { log } from "../util/log.ts";
import { type ByteWriter, TimedOutput } from "./clock.ts";
import { type FollowOptions, type Line, readLines } from "./line_reader.ts";
import {
  describeSequenceCheck,
  matchesRecording,
  MessageSequence,
  type RecordingFilter,
  recordingId,
  recordingKey,
} from "./recording.ts";
import { decodeTlogMessage, findTlogMessage, TlogFormatError, type TlogMessage } from "./tlog.ts";

const logger = log("play");

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
 * import { play, type PlayOptions } from "./player.ts";
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
 * import { play } from "./player.ts";
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
      try {
        spooled = await Deno.makeTempFile({ prefix: "reclog-play-" });
      } catch (error) {
        throw new Error(`Cannot make a temporary file for stdin: ${describeFsError(error)}`);
      }
      try {
        const file = await Deno.open(spooled, { write: true, truncate: true });
        await Deno.stdin.readable.pipeTo(file.writable, { signal: options.signal });
      } catch (error) {
        // Stopped (SIGINT/SIGTERM) while reading stdin: the finally removes the copy.
        if (options.signal?.aborted) return 0;
        throw new Error(`Cannot copy stdin to '${spooled}': ${describeFsError(error)}`);
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
  for await (const line of readLines(file, { name: display })) {
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
    ? { signal, onIdle: () => (output.stall(), output.flush()) }
    : undefined;
  try {
    lines: for await (const line of readLines(file ?? Deno.stdin, { name: display, follow })) {
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
