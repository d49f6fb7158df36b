/**
 * The bench's syslog messages: RFC 3164 style, a fixed size (200 bytes by
 * default), with a unique sequence number and the send time inside, written
 * in place at fixed offsets so the generator builds them without allocating:
 *
 * ```
 * <14>Nov 21 10:00:00 benchhost bench: seq=0000000042 t=0001234567890123 pad xxxx...
 * ```
 *
 * `t` is CLOCK_MONOTONIC in microseconds (`monotonicMicros` of clock.ts), the
 * same clock the receiver reads, so receive time minus `t` is the latency.
 *
 * @module
 */

const encoder = new TextEncoder();

const PREFIX = "<14>Nov 21 10:00:00 benchhost bench: seq=";
const SEQ_DIGITS = 10;
const TIME_PREFIX = " t=";
const TIME_DIGITS = 16;
const PAD_PREFIX = " pad ";

/** Offset of the sequence number's digits. */
export const SEQ_OFFSET = PREFIX.length;
/** Offset of the send time's digits. */
export const TIME_OFFSET = SEQ_OFFSET + SEQ_DIGITS + TIME_PREFIX.length;
/** The smallest message size this format allows. */
export const MIN_SIZE = TIME_OFFSET + TIME_DIGITS + PAD_PREFIX.length;
/** Largest sequence number (10 digits). */
export const MAX_SEQ = 9_999_999_999;

/** A message template of `size` bytes; fill it with {@linkcode stamp}. */
export function template(size = 200): Uint8Array {
  if (size < MIN_SIZE) throw new Error(`bench: messages must be at least ${MIN_SIZE} bytes`);
  const head = PREFIX + "0".repeat(SEQ_DIGITS) + TIME_PREFIX + "0".repeat(TIME_DIGITS) +
    PAD_PREFIX;
  return encoder.encode(head + "x".repeat(size - head.length));
}

function writeDigits(buf: Uint8Array, offset: number, width: number, value: number): void {
  for (let i = offset + width - 1; i >= offset; i--) {
    const q = Math.floor(value / 10);
    buf[i] = 0x30 + (value - q * 10);
    value = q;
  }
}

/** Writes sequence number and send time into a message copied from the template at `offset`. */
export function stamp(buf: Uint8Array, offset: number, seq: number, micros: number): void {
  writeDigits(buf, offset + SEQ_OFFSET, SEQ_DIGITS, seq);
  writeDigits(buf, offset + TIME_OFFSET, TIME_DIGITS, micros);
}

function readDigits(buf: Uint8Array, offset: number, width: number): number {
  let value = 0;
  for (let i = offset; i < offset + width; i++) {
    const d = buf[i]! - 0x30;
    if (d < 0 || d > 9) return -1;
    value = value * 10 + d;
  }
  return value;
}

const S = 0x73, E = 0x65, Q = 0x71, EQ = 0x3d;

/**
 * Finds `seq=` in `buf[start, end)` and returns the sequence number and
 * send time, or undefined for anything else (a message of another kind).
 * The result object is reused between calls.
 */
export function parse(
  buf: Uint8Array,
  start: number,
  end: number,
): { seq: number; micros: number } | undefined {
  // The fast path: the message arrived unchanged.
  let at = start + SEQ_OFFSET - 4;
  if (!(buf[at] === S && buf[at + 1] === E && buf[at + 2] === Q && buf[at + 3] === EQ)) {
    at = -1;
    for (let i = start; i + 4 <= end; i++) {
      if (buf[i] === S && buf[i + 1] === E && buf[i + 2] === Q && buf[i + 3] === EQ) {
        at = i;
        break;
      }
    }
    if (at < 0) return undefined;
  }
  const seqAt = at + 4;
  const timeAt = seqAt + SEQ_DIGITS + TIME_PREFIX.length;
  if (timeAt + TIME_DIGITS > end) return undefined;
  const seq = readDigits(buf, seqAt, SEQ_DIGITS);
  const micros = readDigits(buf, timeAt, TIME_DIGITS);
  if (seq < 0 || micros < 0) return undefined;
  parsed.seq = seq;
  parsed.micros = micros;
  return parsed;
}

const parsed = { seq: 0, micros: 0 };
