/**
 * Syslog over a byte stream (RFC 6587): octet counting (`LEN SP MSG`) and
 * non-transparent framing (`MSG LF`), detected per message as rsyslog does.
 * Messages are cut in place from the incoming chunks; only a partial message
 * at a chunk's end is copied, and never more than the maximum length.
 *
 * @module
 */

/** Options for {@linkcode SyslogFramer}. */
export interface SyslogFramerOptions {
  /**
   * Longest message kept; longer ones are cut to this length (counted in
   * {@linkcode SyslogFramer.truncated}).
   * @default {65536}
   */
  maxLength?: number;
}

/** Receives one message: `buf[start..end)`, valid only during the call. */
export type MessageCallback = (buf: Uint8Array, start: number, end: number) => void;

const LF = 0x0a;
const SP = 0x20;

/**
 * An RFC 6587 deframer.
 *
 * @example Deframe octet-counted and newline-framed messages
 * ```ts
 * import { SyslogFramer } from "./syslog.ts";
 * const framer = new SyslogFramer({ maxLength: 8192 });
 * const text = new TextEncoder().encode("5 <13>a<13>b\n");
 * framer.push(text, (buf, start, end) => console.log(buf.subarray(start, end)));
 * ```
 */
export class SyslogFramer {
  /** Longest message kept, bytes ({@linkcode SyslogFramerOptions.maxLength}). */
  readonly maxLength: number;
  /** Messages cut to maxLength so far. */
  truncated = 0;
  #carry = new Uint8Array(0);
  #carryLength = 0;
  #joined = new Uint8Array(0);
  /** Octet-counting: bytes of the current message still to skip (over-long). */
  #skip = 0;
  /** Newline framing: dropping the rest of an over-long line. */
  #skipLine = false;

  /** Makes a deframer with nothing carried over. */
  constructor(options: SyslogFramerOptions = {}) {
    this.maxLength = options.maxLength ?? 65536;
  }

  /** Feeds a chunk; calls `onMessage` for every whole message in it. */
  push(chunk: Uint8Array, onMessage: MessageCallback): void {
    let buf = chunk;
    let pos = 0;
    if (this.#skip > 0) {
      pos = Math.min(this.#skip, chunk.length);
      this.#skip -= pos;
    } else if (this.#skipLine) {
      const lf = chunk.indexOf(LF);
      if (lf < 0) return;
      this.#skipLine = false;
      pos = lf + 1;
    } else if (this.#carryLength > 0) {
      // A message straddles the chunks: join them once (bounded by maxLength).
      const total = this.#carryLength + chunk.length;
      if (this.#joined.length < total) this.#joined = new Uint8Array(total * 2);
      this.#joined.set(this.#carry.subarray(0, this.#carryLength));
      this.#joined.set(chunk, this.#carryLength);
      buf = this.#joined.subarray(0, total);
      this.#carryLength = 0;
    }
    pos = this.#scan(buf, pos, buf.length, onMessage);
    if (pos < buf.length) this.#keep(buf, pos);
  }

  /** Delivers a final message that lacked its newline (end of stream). */
  flush(onMessage: MessageCallback): void {
    if (this.#carryLength > 0) {
      const carry = this.#carry.subarray(0, this.#carryLength);
      const sp = carry.indexOf(SP);
      const counted = isDigit(carry[0]!) && sp > 0 && carry.subarray(0, sp).every(isDigit);
      // A partial octet-counted message: deliver what arrived after the count.
      const start = counted ? sp + 1 : 0;
      if (start < this.#carryLength) {
        // Never more than maxLength (a carried run of digits may be longer).
        const end = Math.min(this.#carryLength, start + this.maxLength);
        if (end < this.#carryLength) this.truncated++;
        onMessage(this.#carry, start, end);
      }
    }
    this.#carryLength = 0;
  }

  /**
   * Scans buf[pos..end) for whole messages; returns where the incomplete
   * remainder starts.
   */
  #scan(buf: Uint8Array, pos: number, end: number, onMessage: MessageCallback): number {
    while (pos < end) {
      const first = buf[pos]!;
      if (first === LF) {
        pos++;
        continue;
      }
      if (isDigit(first)) {
        let length = 0;
        let i = pos;
        while (i < end && isDigit(buf[i]!) && i - pos < 9) length = length * 10 + buf[i++]! - 48;
        if (i === end) return pos;
        if (buf[i] === SP) {
          const start = i + 1;
          if (length > this.maxLength) {
            if (start + this.maxLength > end) return pos;
            onMessage(buf, start, start + this.maxLength);
            this.truncated++;
            const rest = start + length;
            if (rest > end) {
              this.#skip = rest - end;
              return end;
            }
            pos = rest;
            continue;
          }
          if (start + length > end) return pos;
          onMessage(buf, start, start + length);
          pos = start + length;
          continue;
        }
        // Digits not followed by a space: a newline-framed message after all.
      }
      const lf = buf.indexOf(LF, pos);
      if (lf < 0 || lf >= end) {
        if (end - pos > this.maxLength) {
          onMessage(buf, pos, pos + this.maxLength);
          this.truncated++;
          this.#skipLine = true;
          return end;
        }
        return pos;
      }
      const stop = lf - pos > this.maxLength ? pos + this.maxLength : lf;
      if (stop !== lf) this.truncated++;
      onMessage(buf, pos, stop);
      pos = lf + 1;
    }
    return pos;
  }

  #keep(buf: Uint8Array, pos: number): void {
    const rest = buf.length - pos;
    if (this.#carry.length < rest) this.#carry = new Uint8Array(Math.max(rest * 2, 1024));
    this.#carry.set(buf.subarray(pos));
    this.#carryLength = rest;
  }
}

function isDigit(byte: number): boolean {
  return byte >= 48 && byte <= 57;
}

/**
 * RFC 6587 deframing as a `TransformStream`: byte chunks in, batches of
 * messages (copies) out, one batch per chunk.
 *
 * @example Deframe a TCP connection
 * ```ts
 * import { syslogFramingStream } from "./syslog.ts";
 * declare const conn: Deno.Conn;
 * for await (const batch of conn.readable.pipeThrough(syslogFramingStream())) {
 *   console.log(batch.length, "messages");
 * }
 * ```
 */
export function syslogFramingStream(
  options: SyslogFramerOptions = {},
): TransformStream<Uint8Array, Uint8Array[]> {
  const framer = new SyslogFramer(options);
  return new TransformStream({
    transform(chunk, controller) {
      const batch: Uint8Array[] = [];
      framer.push(chunk, (buf, start, end) => batch.push(buf.slice(start, end)));
      if (batch.length > 0) controller.enqueue(batch);
    },
    flush(controller) {
      const batch: Uint8Array[] = [];
      framer.flush((buf, start, end) => batch.push(buf.slice(start, end)));
      if (batch.length > 0) controller.enqueue(batch);
    },
  });
}
