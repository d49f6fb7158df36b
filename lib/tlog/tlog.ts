/**
 * tlog's JSON message format: finding a message in a log line (a bare JSON
 * line as `tlog-rec --writer=file` writes it, or the JSON after a syslog
 * header), checking its fields, and reassembling the terminal I/O it holds
 * from its `timing` string, text and binary parts. Pure: no I/O.
 *
 * The format, in short: `out_txt`/`in_txt` hold the text with every byte that
 * is not valid UTF-8 replaced by U+FFFD, and those bytes are kept in
 * `out_bin`/`in_bin`. `timing` says in which order to take them: `>N` takes
 * N characters (code points) of `out_txt`, `]T/B` skips T replacement
 * characters of `out_txt` and takes B bytes of `out_bin` (`<N` and `[T/B` do
 * the same for input), `+N` waits N milliseconds, `=WxH` sets the window to
 * W columns by H rows. `pos` is the message's first moment, in milliseconds
 * since the recording started; `id` counts messages from 1.
 *
 * @module
 */

/**
 * A line that looks like tlog but cannot be used: not JSON, or a field
 * missing or of the wrong type, or a `timing` that does not match the data.
 *
 * @example Tell a bad line from a foreign one
 * ```ts
 * import { findTlogMessage, TlogFormatError } from "./tlog.ts";
 * try {
 *   findTlogMessage('{"timing": ');
 * } catch (error) {
 *   if (error instanceof TlogFormatError) console.error(error.message);
 * }
 * ```
 */
export class TlogFormatError extends Error {
  /** Always `"TlogFormatError"`. */
  override name = "TlogFormatError";
}

/**
 * One tlog message, as `tlog-rec` writes it (format 2.x; older ones lack some fields).
 *
 * @example A message as tlog-rec 12 writes it
 * ```ts
 * import type { TlogMessage } from "./tlog.ts";
 * const message: TlogMessage = {
 *   ver: "2.3", host: "vm", rec: "424a-c8f-3c4b", user: "root", term: "xterm",
 *   session: 4294967295, id: 1, pos: 0, time: 1795277508.203, timing: ">3]1/1",
 *   in_txt: "", in_bin: [], out_txt: "hi\n\uFFFD", out_bin: [255],
 * };
 * ```
 */
export interface TlogMessage {
  /** Format version, e.g. `"2.3"`; absent before 2.0. */
  ver?: string;
  /** Host the recording was made on. */
  host: string;
  /** Recording id, unique per recording (format 2.2 and later). */
  rec?: string;
  /** Recorded user. */
  user: string;
  /** Terminal type, e.g. `"xterm"` (format 2.1 and later). */
  term?: string;
  /** Audit session id (4294967295 when there is none). */
  session: number | string;
  /** Message number within the recording, from 1. */
  id: number;
  /** Milliseconds since the recording started, at the message's first record. */
  pos: number;
  /** Wall-clock time of the message, seconds since the epoch (format 2.3). */
  time?: number;
  /** The records: delays, text and binary parts, window sizes. */
  timing: string;
  /** Input text, invalid bytes replaced by U+FFFD. */
  in_txt: string;
  /** Input bytes that were not valid UTF-8. */
  in_bin: number[];
  /** Output text, invalid bytes replaced by U+FFFD. */
  out_txt: string;
  /** Output bytes that were not valid UTF-8. */
  out_bin: number[];
}

/**
 * One event of a recording, in order.
 *
 * @example Keep only the output
 * ```ts
 * import type { TlogRecord } from "./tlog.ts";
 * declare const records: TlogRecord[];
 * const output = records.flatMap((r) => r.kind === "output" ? [r.bytes] : []);
 * ```
 */
export type TlogRecord =
  | { kind: "delay"; ms: number }
  | { kind: "output"; bytes: Uint8Array }
  | { kind: "input"; bytes: Uint8Array }
  | { kind: "window"; columns: number; rows: number };

/** How many `{` of one line are tried as the start of the JSON object. */
const MAX_JSON_STARTS = 16;

/**
 * Finds the tlog message in one log line: a bare JSON object, or the JSON
 * after a syslog header (`<14>Nov 21 10:00:00 host tlog-rec-session[1]: {...}`).
 * Returns `undefined` for a blank line or one that is not tlog's (another
 * program's syslog line). Throws {@linkcode TlogFormatError} for a line that
 * is meant to be tlog but is not usable (it starts with `{` or mentions
 * `"timing"`).
 *
 * @example Find the message in a syslog line
 * ```ts
 * import { findTlogMessage } from "./tlog.ts";
 * const message = findTlogMessage(
 *   '<14>Nov 21 10:00:00 vm tlog[1]: {"host":"vm","user":"u","session":1,"id":1,' +
 *     '"pos":0,"timing":">2","in_txt":"","in_bin":[],"out_txt":"hi","out_bin":[]}',
 * );
 * message?.out_txt; // "hi"
 * ```
 */
export function findTlogMessage(line: string): TlogMessage | undefined {
  const text = line.trim();
  if (text === "") return undefined;
  let firstError: string | undefined;
  let start = text.indexOf("{");
  for (let tries = 0; start >= 0 && tries < MAX_JSON_STARTS; tries++) {
    let value: unknown;
    try {
      value = JSON.parse(text.slice(start));
    } catch (error) {
      firstError ??= error instanceof Error ? error.message : String(error);
      start = text.indexOf("{", start + 1);
      continue;
    }
    if (isObject(value) && ("timing" in value || start === 0)) {
      return validateTlogMessage(value);
    }
    start = text.indexOf("{", start + 1);
  }
  if (text.startsWith("{") || text.includes('"timing"')) {
    throw new TlogFormatError(
      firstError === undefined
        ? 'not a tlog message (no JSON object with a "timing" field)'
        : `not valid JSON (${firstError})`,
    );
  }
  return undefined;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Checks that a parsed JSON value has tlog's fields with the right types and
 * returns it as a {@linkcode TlogMessage} (missing `in_*`/`out_*` fields read
 * as empty). Throws {@linkcode TlogFormatError} naming the first bad field.
 *
 * @example Validate a parsed object
 * ```ts
 * import { validateTlogMessage } from "./tlog.ts";
 * const message = validateTlogMessage({
 *   host: "vm", user: "u", session: 1, id: 1, pos: 0, timing: "",
 * });
 * message.out_bin; // []
 * ```
 */
export function validateTlogMessage(value: unknown): TlogMessage {
  if (!isObject(value)) throw new TlogFormatError("not a JSON object");
  const field = (name: string, what: string, ok: (v: unknown) => boolean, fallback?: unknown) => {
    const v = value[name];
    if (v === undefined && fallback !== undefined) return fallback;
    if (v === undefined) throw new TlogFormatError(`not a tlog message: no "${name}" field`);
    if (!ok(v)) throw new TlogFormatError(`"${name}" is not ${what}`);
    return v;
  };
  const isString = (v: unknown) => typeof v === "string";
  const isCount = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;
  const isBytes = (v: unknown) =>
    Array.isArray(v) && v.every((b) => Number.isInteger(b) && b >= 0 && b <= 255);
  const optional = (name: string, what: string, ok: (v: unknown) => boolean) =>
    value[name] === undefined ? undefined : field(name, what, ok);
  const message: TlogMessage = {
    host: field("host", "a string", isString) as string,
    user: field("user", "a string", isString) as string,
    session: field(
      "session",
      "a number or string",
      (v) => isCount(v) || typeof v === "string",
    ) as number | string,
    id: field("id", "a positive whole number", (v) => isCount(v) && (v as number) >= 1) as number,
    pos: field("pos", "a whole number of milliseconds", isCount) as number,
    timing: field("timing", "a string", isString) as string,
    in_txt: field("in_txt", "a string", isString, "") as string,
    in_bin: field("in_bin", "an array of bytes", isBytes, []) as number[],
    out_txt: field("out_txt", "a string", isString, "") as string,
    out_bin: field("out_bin", "an array of bytes", isBytes, []) as number[],
  };
  const ver = optional("ver", "a string", isString);
  if (ver !== undefined) message.ver = ver as string;
  const rec = optional("rec", "a string", isString);
  if (rec !== undefined) message.rec = rec as string;
  const term = optional("term", "a string", isString);
  if (term !== undefined) message.term = term as string;
  const time = optional("time", "a number", (v) => typeof v === "number" && Number.isFinite(v));
  if (time !== undefined) message.time = time as number;
  return message;
}

const TIMING_RECORD = /([+<>[\]=])(\d+)(?:([/x])(\d+))?/y;
const encoder = new TextEncoder();

/** A read position in one of a message's text strings, counted in code points. */
class TextCursor {
  readonly #text: string;
  readonly #field: string;
  #index = 0;

  constructor(text: string, field: string) {
    this.#text = text;
    this.#field = field;
  }

  /** Takes `count` characters and returns their UTF-8 bytes. */
  take(count: number): Uint8Array {
    const start = this.#index;
    this.skip(count);
    return encoder.encode(this.#text.slice(start, this.#index));
  }

  /** Moves past `count` characters. */
  skip(count: number): void {
    const text = this.#text;
    let index = this.#index;
    for (let n = 0; n < count; n++) {
      if (index >= text.length) {
        throw new TlogFormatError(
          `"timing" asks for more characters of "${this.#field}" than it holds`,
        );
      }
      const code = text.charCodeAt(index);
      index += code >= 0xd800 && code <= 0xdbff && index + 1 < text.length ? 2 : 1;
    }
    this.#index = index;
  }

  /** Throws unless every character was used. */
  end(): void {
    if (this.#index < this.#text.length) {
      throw new TlogFormatError(`"timing" leaves characters of "${this.#field}" unused`);
    }
  }
}

/** A read position in one of a message's byte arrays. */
class ByteCursor {
  readonly #bytes: number[];
  readonly #field: string;
  #index = 0;

  constructor(bytes: number[], field: string) {
    this.#bytes = bytes;
    this.#field = field;
  }

  take(count: number): Uint8Array {
    if (this.#index + count > this.#bytes.length) {
      throw new TlogFormatError(`"timing" asks for more bytes of "${this.#field}" than it holds`);
    }
    const bytes = Uint8Array.from(this.#bytes.slice(this.#index, this.#index + count));
    this.#index += count;
    return bytes;
  }

  end(): void {
    if (this.#index < this.#bytes.length) {
      throw new TlogFormatError(`"timing" leaves bytes of "${this.#field}" unused`);
    }
  }
}

/**
 * Reassembles one message's records from its `timing` string: delays, output
 * and input bytes (text and binary parts put back together exactly, invalid
 * UTF-8 included) and window sizes, in recorded order. Throws
 * {@linkcode TlogFormatError} when `timing` is malformed or does not account
 * for the text and bytes exactly.
 *
 * @example Get the output bytes of a message
 * ```ts
 * import { decodeTlogMessage } from "./tlog.ts";
 * const records = decodeTlogMessage({
 *   host: "vm", user: "u", session: 1, id: 1, pos: 0,
 *   timing: ">3]1/1+20>1", in_txt: "", in_bin: [],
 *   out_txt: "ab\n\uFFFDc", out_bin: [255],
 * });
 * // output "ab\n", output [255], delay 20, output "c"
 * ```
 */
export function decodeTlogMessage(message: TlogMessage): TlogRecord[] {
  const records: TlogRecord[] = [];
  const outText = new TextCursor(message.out_txt, "out_txt");
  const outBin = new ByteCursor(message.out_bin, "out_bin");
  const inText = new TextCursor(message.in_txt, "in_txt");
  const inBin = new ByteCursor(message.in_bin, "in_bin");
  const timing = message.timing;
  const pattern = new RegExp(TIMING_RECORD);
  while (pattern.lastIndex < timing.length) {
    const at = pattern.lastIndex;
    const match = pattern.exec(timing);
    const [, sign, first, separator, second] = match ?? [];
    const wantsPair = sign === "[" || sign === "]" || sign === "=";
    const expected = sign === "=" ? "x" : "/";
    if (!match || (wantsPair ? separator !== expected : separator !== undefined)) {
      throw new TlogFormatError(
        `"timing" is malformed at character ${at + 1}: '${timing.slice(at, at + 12)}'`,
      );
    }
    const a = Number(first);
    const b = Number(second);
    if (sign === "+") records.push({ kind: "delay", ms: a });
    else if (sign === "=") records.push({ kind: "window", columns: a, rows: b });
    else {
      // ">" / "<": `a` characters of text; "]" / "[": `a` characters of text
      // (the U+FFFD stand-ins) skipped for `b` bytes of the binary part.
      const output = sign === ">" || sign === "]";
      const text = output ? outText : inText;
      let bytes: Uint8Array;
      if (sign === ">" || sign === "<") bytes = text.take(a);
      else {
        text.skip(a);
        bytes = (output ? outBin : inBin).take(b);
      }
      records.push({ kind: output ? "output" : "input", bytes });
    }
  }
  outText.end();
  outBin.end();
  inText.end();
  inBin.end();
  return records;
}
