/**
 * The lines of a file or stdin for `reclog play`, numbered, and with
 * `follow` the lines appended to a file that is still growing (like
 * `tail -f`, starting over when the file is truncated). The splitting is
 * {@linkcode LineSplitter}'s.
 *
 * @module
 */

import { LineSplitter } from "../framing/lines.ts";
import { describeFsError } from "../util/errors.ts";
import { log } from "../util/log.ts";
import { sleep } from "../util/sleep.ts";

const logger = log("play");

const CR = 0x0d;

/** Default for {@linkcode LineReaderOptions.maxLineBytes}: 16 MiB. */
export const DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024;

/**
 * Something lines can be read from: a `Deno.FsFile`, `Deno.stdin` or alike.
 *
 * @example Read from stdin
 * ```ts
 * import type { ByteReader } from "./line_reader.ts";
 * const reader: ByteReader = Deno.stdin;
 * ```
 */
export interface ByteReader {
  /** Reads into `buffer`, resolving to how many bytes, or null at the end. */
  read(buffer: Uint8Array): Promise<number | null>;
}

/**
 * One line of the input, decoded, without its line end (LF or CR LF), and
 * its number, from 1.
 *
 * @example Print a line with its number
 * ```ts
 * import type { Line } from "./line_reader.ts";
 * const line: Line = { text: "hello", number: 1 };
 * console.log(`${line.number}: ${line.text}`);
 * ```
 */
export interface Line {
  /** The line's text. */
  text: string;
  /** Its number in the input, from 1. */
  number: number;
}

/**
 * Options for {@linkcode readLines}.
 *
 * @example Follow a file until aborted
 * ```ts
 * import type { LineReaderOptions } from "./line_reader.ts";
 * const options: LineReaderOptions = {
 *   name: "'live.log'",
 *   follow: { signal: AbortSignal.timeout(10_000) },
 * };
 * ```
 */
export interface LineReaderOptions {
  /** How errors and warnings name the input, e.g. `'x.log'` or `stdin`. */
  name: string;
  /**
   * Longest line; a longer one is an error naming the input and line.
   * @default {16777216}
   */
  maxLineBytes?: number;
  /**
   * Wait for more at the end of the data, until `signal` aborts, instead of
   * stopping (the input must then be a `Deno.FsFile`). A last line without a
   * line end is held back until it is complete.
   * @default {undefined}
   */
  follow?: FollowOptions;
}

/**
 * How {@linkcode readLines} follows a growing file.
 *
 * @example Flush output while the file is idle
 * ```ts
 * import type { FollowOptions } from "./line_reader.ts";
 * const follow: FollowOptions = {
 *   signal: new AbortController().signal,
 *   onIdle: () => Promise.resolve(),
 *   pollMs: 250,
 * };
 * ```
 */
export interface FollowOptions {
  /** Stops following (the reader then ends). */
  signal: AbortSignal;
  /**
   * Called before each wait for more data.
   * @default {undefined}
   */
  onIdle?(): Promise<void>;
  /**
   * How often the file is checked for growth, in ms.
   * @default {100}
   */
  pollMs?: number;
}

/**
 * The lines of `input`, decoded, numbered from 1, without their line ends.
 * At the end of the data it stops (yielding a last line that has no line
 * end), or with `follow` waits for more. Errors reading the input name it.
 *
 * @example Count the lines of a file
 * ```ts
 * import { readLines } from "./line_reader.ts";
 * using file = await Deno.open("session.log");
 * let count = 0;
 * for await (const _line of readLines(file, { name: "'session.log'" })) count++;
 * ```
 */
export async function* readLines(
  input: ByteReader | Deno.FsFile,
  options: LineReaderOptions,
): AsyncGenerator<Line> {
  const { name, follow } = options;
  const maxLineBytes = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  if (follow && !(input instanceof Deno.FsFile)) {
    throw new TypeError(`${name}: only a file can be followed`);
  }
  const decoder = new TextDecoder();
  const buffer = new Uint8Array(64 * 1024);
  // No cutting: a line longer than maxLineBytes is refused below instead.
  const newSplitter = () => new LineSplitter({ telnet: false, maxLine: Number.MAX_SAFE_INTEGER });
  let splitter = newSplitter();
  let number = 0;
  let offset = 0;
  const line = (bytes: Uint8Array): Line => {
    const end = bytes.length > 0 && bytes[bytes.length - 1] === CR ? bytes.length - 1 : undefined;
    return { text: decoder.decode(bytes.subarray(0, end)), number: ++number };
  };
  const attempt = async <T>(what: string, action: () => Promise<T>): Promise<T> => {
    try {
      return await action();
    } catch (error) {
      throw new Error(`Cannot ${what} ${name}: ${describeFsError(error)}`);
    }
  };
  while (true) {
    if (follow?.signal.aborted) return;
    const count = await attempt("read", () => input.read(buffer));
    if (count === null) {
      if (!follow) break;
      const file = input as Deno.FsFile;
      await follow.onIdle?.();
      await sleep(follow.pollMs ?? 100, follow.signal);
      if (follow.signal.aborted) return;
      const size = (await attempt("stat", () => file.stat())).size;
      if (size < offset) {
        logger.warn("{file} was truncated: playing on from its start", { file: name });
        await attempt("read", () => file.seek(0, Deno.SeekMode.Start));
        offset = 0;
        splitter = newSplitter();
      }
      continue;
    }
    offset += count;
    for (const bytes of splitter.push(buffer.subarray(0, count))) yield line(bytes);
    if (splitter.pendingBytes > maxLineBytes) {
      throw new Error(
        `${name} line ${number + 1}: longer than ${maxLineBytes} bytes, not a tlog log`,
      );
    }
  }
  for (const bytes of splitter.flush()) yield line(bytes);
}
