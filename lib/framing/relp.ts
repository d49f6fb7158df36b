/**
 * RELP framing (librelp's doc/relp.md): `TXNR SP COMMAND SP DATALEN [SP DATA] LF`.
 *
 * {@linkcode RelpFrameParser} is an incremental, bounded parser of peer bytes:
 * push whatever a read returned, get whole frames. Anything that is not a
 * well-formed frame throws {@linkcode RelpFrameError} (and only that), which
 * the caller turns into a close with the error's reason. The encoder writes
 * frames into a caller-sized buffer so a batch of frames costs one allocation.
 *
 * @module
 */

/** The largest TXNR RELP allows (it then wraps to 1). */
export const RELP_MAX_TXNR = 999_999_999;

/**
 * The default largest DATALEN accepted: librelp's default maximum data size
 * (128 KiB).
 */
export const RELP_DEFAULT_MAX_DATA = 128 * 1024;

/** The longest command name (doc/relp.md: `COMMAND = 1*32ALPHA`). */
export const RELP_MAX_COMMAND = 32;

/** Why a byte stream is not RELP. */
export type RelpFrameErrorReason =
  | "bad txnr"
  | "bad command"
  | "bad datalen"
  | "frame too large"
  | "bad trailer";

/**
 * A peer sent bytes that are not a RELP frame. `reason` is a short code,
 * `message` says what was seen and where (no message contents).
 *
 * @example Turn a framing error into a close
 * ```ts
 * import { RelpFrameError, RelpFrameParser } from "./relp.ts";
 * const parser = new RelpFrameParser();
 * try {
 *   parser.push(new TextEncoder().encode("x open 0\n"), () => {});
 * } catch (error) {
 *   if (!(error instanceof RelpFrameError)) throw error;
 *   console.log(`closing: ${error.message}`);
 * }
 * ```
 */
export class RelpFrameError extends Error {
  /** The short reason code. */
  readonly reason: RelpFrameErrorReason;

  /** Makes an error with a reason code and a description. */
  constructor(reason: RelpFrameErrorReason, detail: string) {
    super(`RELP framing error: ${reason}: ${detail}`);
    this.name = "RelpFrameError";
    this.reason = reason;
  }
}

/**
 * Called for each whole frame. `data` is a view into the pushed chunk when the
 * frame lay wholly inside it, else a fresh copy: it stays valid as long as the
 * caller does not overwrite the chunk it pushed. `datalen` is the frame's
 * DATALEN: more than `data.length` when the data was cut (`oversize: "truncate"`).
 */
export type RelpFrameHandler = (
  txnr: number,
  command: string,
  data: Uint8Array,
  datalen: number,
) => void;

/** Options for {@linkcode RelpFrameParser}. */
export interface RelpFrameParserOptions {
  /**
   * The largest DATALEN accepted; a larger one is a `frame too large` error
   * before any of its data is buffered.
   * @default {131072}
   */
  maxData?: number;
  /**
   * What a DATALEN over `maxData` is: `"error"`, a `frame too large`
   * {@linkcode RelpFrameError}; `"truncate"`, a frame whose data is its first
   * `maxData` bytes (the rest is read and dropped, never buffered), as
   * librelp's `oversizeMode="truncate"` does.
   * @default {"error"}
   */
  oversize?: "error" | "truncate";
}

const enum State {
  Txnr,
  Command,
  Datalen,
  Space,
  Data,
  Trailer,
  Dead,
}

const SP = 0x20;
const LF = 0x0a;
const EMPTY = new Uint8Array(0);
const KNOWN_COMMANDS = ["syslog", "rsp", "open", "close", "serverclose", "abort", "starttls"];
const KNOWN_BYTES = KNOWN_COMMANDS.map((command) => new TextEncoder().encode(command));
const decoder = new TextDecoder();

/** One byte as text for error messages: printable, or `0xNN`. */
function show(byte: number): string {
  return byte > 0x20 && byte < 0x7f
    ? `'${String.fromCharCode(byte)}'`
    : `0x${byte.toString(16).padStart(2, "0")}`;
}

/**
 * An incremental RELP frame parser. Bounded: a frame never needs more than
 * `maxData` bytes of buffer, and the header fields are checked byte by byte
 * (TXNR 1–9 digits, 0..999999999; command 1–32 lowercase letters; DATALEN
 * 1–9 digits, at most `maxData`; `SP` before data when DATALEN > 0; trailer
 * LF). TXNR 0 is accepted (hints such as `serverclose` use it); whether a
 * TXNR is right for the session is the caller's check. After an error the
 * parser stays failed: every later push throws the same error.
 *
 * @example Parse frames split across reads
 * ```ts
 * import { RelpFrameParser } from "./relp.ts";
 * const parser = new RelpFrameParser();
 * const bytes = new TextEncoder().encode("1 syslog 5 hello\n2 close 0\n");
 * const seen: string[] = [];
 * parser.push(bytes.subarray(0, 7), (txnr, command) => seen.push(`${txnr} ${command}`));
 * parser.push(bytes.subarray(7), (txnr, command) => seen.push(`${txnr} ${command}`));
 * console.log(seen); // ["1 syslog", "2 close"]
 * ```
 */
export class RelpFrameParser {
  readonly #maxData: number;
  #state = State.Txnr;
  #digits = 0;
  #txnr = 0;
  #datalen = 0;
  #command = new Uint8Array(RELP_MAX_COMMAND);
  #commandLength = 0;
  #commandText = "";
  readonly #truncate: boolean;
  /** Data of a frame that spans pushes (its first `#keep` bytes). */
  #partial: Uint8Array = EMPTY;
  /** Bytes of the data kept: DATALEN, or `maxData` when it is cut. */
  #keep = 0;
  /** Bytes of the current frame's data read so far (kept or dropped). */
  #seen = 0;
  #error: RelpFrameError | undefined;
  /** Bytes consumed over the parser's life (for error positions). */
  #offset = 0;

  /** Makes a parser. */
  constructor(options: RelpFrameParserOptions = {}) {
    this.#maxData = options.maxData ?? RELP_DEFAULT_MAX_DATA;
    this.#truncate = options.oversize === "truncate";
  }

  /** True while no frame is partly parsed (a clean point to close at). */
  get idle(): boolean {
    return this.#state === State.Txnr && this.#digits === 0;
  }

  #fail(reason: RelpFrameErrorReason, detail: string, at: number): never {
    this.#state = State.Dead;
    this.#error = new RelpFrameError(reason, `${detail} at byte ${this.#offset + at}`);
    throw this.#error;
  }

  #resolveCommand(): string {
    const length = this.#commandLength;
    const bytes = this.#command;
    outer: for (let k = 0; k < KNOWN_BYTES.length; k++) {
      const known = KNOWN_BYTES[k]!;
      if (known.length !== length) continue;
      for (let i = 0; i < length; i++) if (known[i] !== bytes[i]) continue outer;
      return KNOWN_COMMANDS[k]!;
    }
    return decoder.decode(bytes.subarray(0, length));
  }

  #emit(data: Uint8Array, onFrame: RelpFrameHandler): void {
    const txnr = this.#txnr;
    const command = this.#commandText;
    const datalen = this.#datalen;
    this.#state = State.Txnr;
    this.#digits = 0;
    this.#txnr = 0;
    this.#datalen = 0;
    this.#commandLength = 0;
    onFrame(txnr, command, data, datalen);
  }

  /**
   * Parses `chunk`, calling `onFrame` for each whole frame, in order.
   * Throws {@linkcode RelpFrameError} on malformed input (frames before the
   * error in the same chunk have been delivered).
   */
  push(chunk: Uint8Array, onFrame: RelpFrameHandler): void {
    if (this.#error) throw this.#error;
    const length = chunk.length;
    let i = 0;
    while (i < length) {
      switch (this.#state) {
        case State.Txnr: {
          const c = chunk[i]!;
          if (c >= 0x30 && c <= 0x39) {
            if (this.#digits === 9) this.#fail("bad txnr", "more than 9 digits", i);
            if (this.#digits > 0 && this.#txnr === 0) this.#fail("bad txnr", "a leading zero", i);
            this.#txnr = this.#txnr * 10 + (c - 0x30);
            this.#digits++;
          } else if (c === SP && this.#digits > 0) {
            this.#state = State.Command;
            this.#commandLength = 0;
          } else {
            this.#fail("bad txnr", `${show(c)} where a TXNR digit belongs`, i);
          }
          i++;
          break;
        }
        case State.Command: {
          const c = chunk[i]!;
          if (c >= 0x61 && c <= 0x7a) {
            if (this.#commandLength === RELP_MAX_COMMAND) {
              this.#fail("bad command", `longer than ${RELP_MAX_COMMAND} letters`, i);
            }
            this.#command[this.#commandLength++] = c;
          } else if (c === SP && this.#commandLength > 0) {
            this.#commandText = this.#resolveCommand();
            this.#state = State.Datalen;
            this.#digits = 0;
            this.#datalen = 0;
          } else {
            this.#fail("bad command", `${show(c)} where a lowercase command letter belongs`, i);
          }
          i++;
          break;
        }
        case State.Datalen: {
          const c = chunk[i]!;
          if (c >= 0x30 && c <= 0x39) {
            if (this.#digits === 9) this.#fail("bad datalen", "more than 9 digits", i);
            if (this.#digits > 0 && this.#datalen === 0) {
              this.#fail("bad datalen", "a leading zero", i);
            }
            this.#datalen = this.#datalen * 10 + (c - 0x30);
            this.#digits++;
            if (this.#datalen > this.#maxData && !this.#truncate) {
              this.#fail(
                "frame too large",
                `DATALEN over the limit of ${this.#maxData} bytes`,
                i,
              );
            }
            i++;
          } else if (this.#digits === 0) {
            this.#fail("bad datalen", `${show(c)} where a DATALEN digit belongs`, i);
          } else if (this.#datalen === 0) {
            // DATALEN 0: no SP, no data, the trailer follows at once
            this.#state = State.Trailer;
          } else if (c === SP) {
            this.#state = State.Data;
            this.#keep = Math.min(this.#datalen, this.#maxData);
            this.#seen = 0;
            i++;
          } else {
            this.#fail("bad datalen", `${show(c)} after DATALEN (SP expected)`, i);
          }
          break;
        }
        case State.Data: {
          const need = this.#datalen - this.#seen;
          if (this.#seen === 0 && this.#keep === need && length - i > need) {
            // the whole data and the trailer are in this chunk: no copy
            const data = chunk.subarray(i, i + need);
            i += need;
            if (chunk[i] !== LF) this.#fail("bad trailer", `${show(chunk[i]!)} after data`, i);
            i++;
            this.#emit(data, onFrame);
            break;
          }
          if (this.#seen === 0) this.#partial = new Uint8Array(this.#keep);
          const take = Math.min(need, length - i);
          if (this.#seen < this.#keep) {
            const kept = Math.min(take, this.#keep - this.#seen);
            this.#partial.set(chunk.subarray(i, i + kept), this.#seen);
          }
          this.#seen += take;
          i += take;
          if (this.#seen === this.#datalen) this.#state = State.Trailer;
          break;
        }
        case State.Trailer: {
          const c = chunk[i]!;
          if (c !== LF) this.#fail("bad trailer", `${show(c)} where the LF trailer belongs`, i);
          i++;
          const data = this.#datalen === 0 ? EMPTY : this.#partial;
          this.#partial = EMPTY;
          this.#seen = 0;
          this.#emit(data, onFrame);
          break;
        }
        case State.Dead:
          throw this.#error;
      }
    }
    this.#offset += length;
  }
}

/** Decimal digits of a non-negative integer. */
function digits(value: number): number {
  let count = 1;
  while (value >= 10) {
    value = Math.floor(value / 10);
    count++;
  }
  return count;
}

/**
 * The encoded length of a frame with this TXNR, command and data length.
 *
 * @example Size a buffer for two frames
 * ```ts
 * import { relpFrameLength } from "./relp.ts";
 * const size = relpFrameLength(1, "syslog", 5) + relpFrameLength(2, "close", 0);
 * console.log(size); // 28
 * ```
 */
export function relpFrameLength(txnr: number, command: string, dataLength: number): number {
  return digits(txnr) + 1 + command.length + 1 + digits(dataLength) +
    (dataLength > 0 ? 1 + dataLength : 0) + 1;
}

function writeNumber(target: Uint8Array, offset: number, value: number): number {
  const end = offset + digits(value);
  let at = end;
  do {
    target[--at] = 0x30 + (value % 10);
    value = Math.floor(value / 10);
  } while (value > 0);
  return end;
}

/**
 * Writes one frame at `offset` of `target` (sized with
 * {@linkcode relpFrameLength}); returns the offset after it. `command` must be
 * lowercase ASCII letters, `txnr` 0..999999999.
 *
 * @example Encode a batch into one buffer
 * ```ts
 * import { relpFrameLength, writeRelpFrame } from "./relp.ts";
 * const data = new TextEncoder().encode("hello");
 * const out = new Uint8Array(relpFrameLength(7, "syslog", data.length));
 * writeRelpFrame(out, 0, 7, "syslog", data);
 * console.log(new TextDecoder().decode(out)); // "7 syslog 5 hello\n"
 * ```
 */
export function writeRelpFrame(
  target: Uint8Array,
  offset: number,
  txnr: number,
  command: string,
  data: Uint8Array,
): number {
  let at = writeNumber(target, offset, txnr);
  target[at++] = SP;
  for (let i = 0; i < command.length; i++) target[at++] = command.charCodeAt(i);
  target[at++] = SP;
  at = writeNumber(target, at, data.length);
  if (data.length > 0) {
    target[at++] = SP;
    target.set(data, at);
    at += data.length;
  }
  target[at++] = LF;
  return at;
}

/**
 * Encodes one frame into a new buffer.
 *
 * @example Encode a close
 * ```ts
 * import { encodeRelpFrame } from "./relp.ts";
 * console.log(new TextDecoder().decode(encodeRelpFrame(3, "close"))); // "3 close 0\n"
 * ```
 */
export function encodeRelpFrame(
  txnr: number,
  command: string,
  data: Uint8Array = EMPTY,
): Uint8Array {
  const out = new Uint8Array(relpFrameLength(txnr, command, data.length));
  writeRelpFrame(out, 0, txnr, command, data);
  return out;
}

/**
 * The TXNR after `txnr`: +1, wrapping from 999999999 to 1 (doc/relp.md).
 *
 * @example Wrap
 * ```ts
 * import { nextRelpTxnr } from "./relp.ts";
 * console.log(nextRelpTxnr(999_999_999)); // 1
 * ```
 */
export function nextRelpTxnr(txnr: number): number {
  return txnr >= RELP_MAX_TXNR ? 1 : txnr + 1;
}

/** A parsed `rsp` data part: `CODE [SP TEXT] [LF DATA]`. */
export interface RelpResponse {
  /** The three-digit status (200 is OK), or -1 when the data has none. */
  code: number;
  /** The human-readable text after the code (up to LF). */
  text: string;
  /** What follows the first LF (offers for `open`), possibly empty. */
  rest: Uint8Array;
}

/**
 * Parses the data of an `rsp` frame. Never throws: data without a
 * three-digit code gives `code` -1 (librelp answers `close` with empty data).
 *
 * @example Read a response
 * ```ts
 * import { parseRelpResponse } from "./relp.ts";
 * const rsp = parseRelpResponse(new TextEncoder().encode("200 OK"));
 * console.log(rsp.code, rsp.text); // 200 "OK"
 * ```
 */
export function parseRelpResponse(data: Uint8Array): RelpResponse {
  let code = -1;
  if (data.length >= 3) {
    const a = data[0]! - 0x30, b = data[1]! - 0x30, c = data[2]! - 0x30;
    if (a >= 0 && a <= 9 && b >= 0 && b <= 9 && c >= 0 && c <= 9) code = a * 100 + b * 10 + c;
  }
  if (code < 0) return { code, text: "", rest: EMPTY };
  let lf = data.indexOf(LF, 3);
  if (lf < 0) lf = data.length;
  const textStart = data[3] === SP ? 4 : 3;
  const text = textStart < lf ? decoder.decode(data.subarray(textStart, Math.min(lf, 83))) : "";
  return { code, text, rest: lf < data.length ? data.subarray(lf + 1) : EMPTY };
}

/**
 * Parses RELP offers (`name[=value[,value...]]` lines, as in `open` data):
 * a map of name to its raw value text ("" when it has none).
 *
 * @example Read a client's offers
 * ```ts
 * import { parseRelpOffers } from "./relp.ts";
 * const offers = parseRelpOffers(new TextEncoder().encode("relp_version=0\ncommands=syslog"));
 * console.log(offers.get("commands")); // "syslog"
 * ```
 */
export function parseRelpOffers(data: Uint8Array): Map<string, string> {
  const offers = new Map<string, string>();
  for (const line of decoder.decode(data).split("\n")) {
    if (line === "") continue;
    const eq = line.indexOf("=");
    const name = (eq < 0 ? line : line.slice(0, eq)).slice(0, 32);
    if (offers.size < 64) offers.set(name, eq < 0 ? "" : line.slice(eq + 1, eq + 1 + 1024));
  }
  return offers;
}
