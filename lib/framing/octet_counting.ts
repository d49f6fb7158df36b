/**
 * The encoders of RFC 6587 for a batch of messages: octet counting
 * (`LEN SP MSG`, section 3.4.1) and non-transparent framing (`MSG LF`,
 * section 3.4.2, also "a message a line"), into one buffer reused between
 * batches so a sink writes a batch with one system call.
 *
 * @module
 */

import type { MessageBatch } from "../batch.ts";

/** Options for {@linkcode Rfc6587Encoder}. */
export interface Rfc6587EncoderOptions {
  /**
   * `"octet-counting"`: `LEN SP MSG`; `"lf"`: `MSG LF`.
   * @default {"octet-counting"}
   */
  framing?: "octet-counting" | "lf";
  /**
   * Initial size of the reused buffer, bytes (it grows when a batch needs more).
   * @default {65536}
   */
  initialBytes?: number;
  /**
   * Longest message written, bytes: a longer one is cut to this length (as
   * rsyslog does with `maxMessageSize`) and counted in
   * {@linkcode Rfc6587Encoder.truncated}.
   * @default {Infinity}
   */
  maxMessage?: number;
}

const SP = 0x20;
const LF = 0x0a;
/** Most bytes framing adds to a message: 10 digits (u32 length) and a space. */
const MAX_OVERHEAD = 11;

/**
 * Frames every message of a batch into one buffer.
 *
 * @example Octet counting
 * ```ts
 * import { RangeBatch } from "../batch.ts";
 * import { Rfc6587Encoder } from "./octet_counting.ts";
 * const buf = new TextEncoder().encode("<13>hi");
 * const batch = new RangeBatch(1);
 * batch.reset(buf);
 * batch.push(0, buf.length);
 * const bytes = new Rfc6587Encoder().encode(batch);
 * console.log(new TextDecoder().decode(bytes)); // "6 <13>hi"
 * ```
 */
export class Rfc6587Encoder {
  #buf: Uint8Array;
  readonly #octetCounting: boolean;
  readonly #max: number;
  #truncated = 0;
  #empty = 0;

  /** Makes an encoder with an empty buffer. */
  constructor(options: Rfc6587EncoderOptions = {}) {
    this.#octetCounting = (options.framing ?? "octet-counting") === "octet-counting";
    this.#buf = new Uint8Array(options.initialBytes ?? 64 * 1024);
    this.#max = Math.max(1, options.maxMessage ?? Infinity);
  }

  /** Messages cut to `maxMessage` so far. */
  get truncated(): number {
    return this.#truncated;
  }

  /**
   * Empty messages left out so far (octet counting only: RFC 6587 has no
   * frame of length 0, and rsyslog drops the rest of the stream after one).
   */
  get empty(): number {
    return this.#empty;
  }

  /**
   * The framed bytes of every message of `batch`: a view of the encoder's
   * buffer, valid until the next call. With octet counting an empty message
   * is left out (and counted); a message over `maxMessage` is cut.
   */
  encode(batch: MessageBatch): Uint8Array {
    let length = 0;
    for (let i = 0; i < batch.count; i++) {
      let message = batch.message(i);
      if (message.length === 0 && this.#octetCounting) {
        this.#empty++;
        continue;
      }
      if (message.length > this.#max) {
        message = message.subarray(0, this.#max);
        this.#truncated++;
      }
      const size = message.length;
      const needed = length + size + MAX_OVERHEAD;
      if (needed > this.#buf.length) {
        const grown = new Uint8Array(Math.max(needed, this.#buf.length * 2));
        grown.set(this.#buf.subarray(0, length));
        this.#buf = grown;
      }
      if (this.#octetCounting) {
        length += writeDecimal(this.#buf, length, size);
        this.#buf[length++] = SP;
        this.#buf.set(message, length);
        length += size;
      } else {
        this.#buf.set(message, length);
        length += size;
        this.#buf[length++] = LF;
      }
    }
    return this.#buf.subarray(0, length);
  }
}

function writeDecimal(buf: Uint8Array, offset: number, value: number): number {
  const digits = String(value);
  for (let i = 0; i < digits.length; i++) buf[offset + i] = digits.charCodeAt(i);
  return digits.length;
}
