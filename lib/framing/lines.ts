/**
 * Newline framing, the one place reclog splits bytes into lines:
 * {@linkcode splitLines} finds the complete lines in a buffer without copying
 * (for readers that keep their own buffer and byte offsets, such as a file
 * tail), and {@linkcode LineSplitter} / {@linkcode LineSplitStream}, built on
 * it, split a byte stream for the plain line protocol of `listen`, `send` and
 * `serve --tcp-in`, for `play` and for the demo: in place, with a maximum line
 * length (an over-long line is cut into pieces, never dropped), and optionally
 * cleaning up what telnet sends (CR LF becomes LF, CR NUL becomes CR, IAC
 * option negotiation is removed, IAC IAC becomes one 0xFF byte).
 *
 * @module
 */

/** Bytes the splitter acts on: line ends, and telnet's commands (RFC 854). */
const enum Byte {
  NUL = 0x00,
  LF = 0x0a,
  CR = 0x0d,
  SE = 0xf0,
  SB = 0xfa,
  WILL = 0xfb,
  DONT = 0xfe,
  IAC = 0xff,
}

/** Longest telnet subnegotiation accepted before the bytes count as data again. */
const MAX_SUBNEGOTIATION = 4096;

/** Default for {@linkcode LineSplitterOptions.maxLine}: 64 KiB. */
export const DEFAULT_MAX_LINE = 65_536;

/**
 * Finds the complete lines in `bytes`: calls `onLine(start, end)` for each,
 * where `end` is the index of its LF (`bytes.subarray(start, end)` is the line
 * without its newline), and returns where the unfinished rest starts
 * (`bytes.length` when the bytes end with a newline, 0 when they hold none).
 * Copies nothing and keeps no state; {@linkcode LineSplitter} adds the carry
 * of a partial line between chunks.
 *
 * @example Hand on whole lines of a buffer, keep the rest
 * ```ts
 * import { splitLines } from "./lines.ts";
 * const bytes = new TextEncoder().encode("one\ntwo\nthr");
 * const lines: string[] = [];
 * const rest = splitLines(bytes, (start, end) => {
 *   lines.push(new TextDecoder().decode(bytes.subarray(start, end)));
 * });
 * // lines: ["one", "two"]; rest: 8, where "thr" starts
 * ```
 */
export function splitLines(
  bytes: Uint8Array,
  onLine: (start: number, end: number) => void,
): number {
  let start = 0;
  for (let lf = bytes.indexOf(Byte.LF); lf !== -1; lf = bytes.indexOf(Byte.LF, start)) {
    onLine(start, lf);
    start = lf + 1;
  }
  return start;
}

/** Options for {@linkcode LineSplitter} and {@linkcode LineSplitStream}. */
export interface LineSplitterOptions {
  /**
   * Longest line, in bytes, without its newline. A longer line is emitted as
   * several lines of at most this many bytes each, cut on a UTF-8 character
   * boundary when one is near.
   * @default {65536}
   */
  maxLine?: number;
  /**
   * Telnet clean-up: CR LF becomes LF, CR NUL becomes CR, IAC sequences
   * (option negotiation `IAC WILL/WONT/DO/DONT opt`, subnegotiation
   * `IAC SB ... IAC SE`, two-byte commands) are removed and `IAC IAC` becomes
   * one 0xFF byte. Safe for UTF-8 text, which never contains 0xFF.
   * @default {true}
   */
  telnet?: boolean;
}

/** States of the telnet command parser. */
const Telnet = { Data: 0, Iac: 1, Option: 2, Sub: 3, SubIac: 4 } as const;
type TelnetState = typeof Telnet[keyof typeof Telnet];

/**
 * Splits chunks of a byte stream into whole lines, without their line
 * terminator. Works in place: `push()` may rewrite the chunk it is given
 * (telnet clean-up compacts it) and the lines it returns are views into it,
 * so hand over chunks you no longer use. A partial line is kept (at most
 * `maxLine` + 1 bytes) until its newline arrives or `flush()` is called.
 *
 * @example Split telnet input
 * ```ts
 * import { LineSplitter } from "./lines.ts";
 * const splitter = new LineSplitter({ maxLine: 1024 });
 * const encoder = new TextEncoder();
 * const lines = [
 *   ...splitter.push(encoder.encode("\xffhello\r\nwor")),
 *   ...splitter.push(encoder.encode("ld\r\npartial")),
 *   ...splitter.flush(),
 * ].map((line) => new TextDecoder().decode(line)); // ["hello", "world", "partial"]
 * ```
 */
export class LineSplitter {
  readonly #maxLine: number;
  readonly #telnet: boolean;
  #state: TelnetState = Telnet.Data;
  #lastWasCr = false;
  #subBytes = 0;
  #carry: Uint8Array[] = [];
  #carryBytes = 0;

  /** Creates a splitter; see {@linkcode LineSplitterOptions}. */
  constructor(options: LineSplitterOptions = {}) {
    const maxLine = options.maxLine ?? DEFAULT_MAX_LINE;
    if (!Number.isSafeInteger(maxLine) || maxLine < 1) {
      throw new RangeError(`maxLine must be a positive integer, got ${maxLine}`);
    }
    this.#maxLine = maxLine;
    this.#telnet = options.telnet ?? true;
  }

  /** Bytes of the partial line held until its newline arrives. */
  get pendingBytes(): number {
    return this.#carryBytes;
  }

  /**
   * Takes the next chunk (which it may modify) and returns the lines it
   * completes, possibly none.
   */
  push(chunk: Uint8Array): Uint8Array[] {
    const data = this.#telnet ? this.#clean(chunk) : chunk;
    const lines: Uint8Array[] = [];
    const start = splitLines(data, (from, lf) => {
      let line = data.subarray(from, lf);
      if (this.#carryBytes > 0) {
        this.#carry.push(line);
        line = this.#takeCarry();
      }
      if (this.#telnet && line.length > 0 && line[line.length - 1] === Byte.CR) {
        line = line.subarray(0, line.length - 1);
      }
      this.#emit(line, lines);
    });
    if (start < data.length) {
      // A copy: the caller may reuse its read buffer for the next chunk.
      this.#carry.push(data.slice(start));
      this.#carryBytes += data.length - start;
      // Keep one byte more than maxLine: it may be the CR of a CR LF.
      if (this.#carryBytes > this.#maxLine + 1) {
        const held = this.#takeCarry();
        const cut = this.#cutLong(held, lines, this.#maxLine + 1);
        if (cut < held.length) {
          this.#carry.push(held.subarray(cut));
          this.#carryBytes = held.length - cut;
        }
      }
    }
    return lines;
  }

  /** Returns the partial line, if any, as a last line (end of stream). */
  flush(): Uint8Array[] {
    this.#state = Telnet.Data;
    this.#lastWasCr = false;
    if (this.#carryBytes === 0) return [];
    const lines: Uint8Array[] = [];
    let line = this.#takeCarry();
    if (this.#telnet && line[line.length - 1] === Byte.CR) line = line.subarray(0, line.length - 1);
    if (line.length > 0) this.#emit(line, lines);
    return lines;
  }

  #takeCarry(): Uint8Array {
    const parts = this.#carry;
    let whole: Uint8Array;
    if (parts.length === 1) {
      whole = parts[0]!;
    } else {
      let size = 0;
      for (const part of parts) size += part.length;
      whole = new Uint8Array(size);
      let offset = 0;
      for (const part of parts) {
        whole.set(part, offset);
        offset += part.length;
      }
    }
    this.#carry = [];
    this.#carryBytes = 0;
    return whole;
  }

  #emit(line: Uint8Array, lines: Uint8Array[]): void {
    if (line.length <= this.#maxLine) {
      lines.push(line);
      return;
    }
    const cut = this.#cutLong(line, lines, 0);
    lines.push(line.subarray(cut));
  }

  /**
   * Emits maxLine-sized pieces from the front of `line` while more than
   * `keep` bytes would remain; returns where the rest starts.
   */
  #cutLong(line: Uint8Array, lines: Uint8Array[], keep: number): number {
    const max = this.#maxLine;
    let start = 0;
    while (line.length - start > Math.max(max, keep)) {
      let end = start + max;
      // Back off to the start of a UTF-8 character (at most 3 bytes).
      let back = end;
      while (back > end - 3 && back > start + 1 && (line[back]! & 0xc0) === 0x80) back--;
      if ((line[back]! & 0xc0) !== 0x80) end = back;
      lines.push(line.subarray(start, end));
      start = end;
    }
    return start;
  }

  /** Telnet clean-up, compacting the chunk in place; returns the kept part. */
  #clean(chunk: Uint8Array): Uint8Array {
    if (
      this.#state === Telnet.Data && chunk.indexOf(Byte.IAC) === -1 &&
      (chunk.indexOf(Byte.NUL) === -1 || !this.#hasCrNul(chunk))
    ) {
      if (chunk.length > 0) this.#lastWasCr = chunk[chunk.length - 1] === Byte.CR;
      return chunk;
    }
    let out = 0;
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i]!;
      switch (this.#state) {
        case Telnet.Data:
          if (byte === Byte.IAC) {
            this.#state = Telnet.Iac;
          } else if (byte === Byte.NUL && this.#lastWasCr) {
            this.#lastWasCr = false;
          } else {
            chunk[out++] = byte;
            this.#lastWasCr = byte === Byte.CR;
          }
          break;
        case Telnet.Iac:
          if (byte === Byte.IAC) {
            chunk[out++] = Byte.IAC;
            this.#lastWasCr = false;
            this.#state = Telnet.Data;
          } else if (byte >= Byte.WILL && byte <= Byte.DONT) {
            this.#state = Telnet.Option;
          } else if (byte === Byte.SB) {
            this.#state = Telnet.Sub;
            this.#subBytes = 0;
          } else {
            this.#state = Telnet.Data;
          }
          break;
        case Telnet.Option:
          this.#state = Telnet.Data;
          break;
        case Telnet.Sub:
          if (byte === Byte.IAC) this.#state = Telnet.SubIac;
          else if (++this.#subBytes > MAX_SUBNEGOTIATION) this.#state = Telnet.Data;
          break;
        case Telnet.SubIac:
          this.#state = byte === Byte.SE ? Telnet.Data : Telnet.Sub;
          break;
      }
    }
    return chunk.subarray(0, out);
  }

  #hasCrNul(chunk: Uint8Array): boolean {
    if (this.#lastWasCr && chunk[0] === Byte.NUL) return true;
    for (let i = chunk.indexOf(Byte.NUL, 1); i !== -1; i = chunk.indexOf(Byte.NUL, i + 1)) {
      if (chunk[i - 1] === Byte.CR) return true;
    }
    return false;
  }
}

/**
 * A `TransformStream` that turns a byte stream into batches of whole lines
 * (one batch for each chunk that completes at least one line), with the
 * partial last line emitted when the stream ends. See
 * {@linkcode LineSplitter} for the framing rules.
 *
 * @example Read stdin line by line
 * ```ts
 * import { LineSplitStream } from "./lines.ts";
 * for await (const batch of Deno.stdin.readable.pipeThrough(new LineSplitStream())) {
 *   console.log(`${batch.length} lines`);
 * }
 * ```
 */
export class LineSplitStream extends TransformStream<Uint8Array, Uint8Array[]> {
  /** Creates the stream; see {@linkcode LineSplitterOptions}. */
  constructor(options: LineSplitterOptions = {}) {
    const splitter = new LineSplitter(options);
    super({
      transform(chunk, controller) {
        const lines = splitter.push(chunk);
        if (lines.length > 0) controller.enqueue(lines);
      },
      flush(controller) {
        const lines = splitter.flush();
        if (lines.length > 0) controller.enqueue(lines);
      },
    });
  }
}
