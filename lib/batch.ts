/**
 * What flows through reclog: a batch of messages, and the two contracts
 * every part is written against.
 *
 * - A {@linkcode Source} (UDP, TCP syslog, TCP lines, a followed file, RELP,
 *   the systemd journal) knows its transport and nothing else: it hands each
 *   batch it read to the `onBatch` handler given in its options, and, where
 *   the transport can acknowledge (RELP, TCP back-pressure), it waits for the
 *   handler's promise before acknowledging or reading more.
 * - A {@linkcode Sink} (UDP, TCP, unix, stdout, the mirror directory, the
 *   socat-mode line file, `send`'s connection, RELP) takes a batch; `write`
 *   resolves when the receiver has taken it as far as that transport can tell,
 *   and says per message what it could not take.
 *
 * Framing (RFC 6587, lines, RELP frames, the wire protocol) is separate: a
 * source deframes with `lib/framing/`, a sink encodes with it.
 *
 * @module
 */

/**
 * A batch of messages: views into buffers owned by whoever made the batch,
 * valid only until the call that received it settles (copy to keep).
 *
 * @example Walk a batch
 * ```ts
 * import type { MessageBatch } from "./batch.ts";
 * function total(batch: MessageBatch): number {
 *   let bytes = 0;
 *   for (let i = 0; i < batch.count; i++) bytes += batch.message(i).length;
 *   return bytes;
 * }
 * ```
 */
export interface MessageBatch {
  /** Number of messages. */
  readonly count: number;
  /** The bytes of message `i` (0 ≤ i < count), without framing. */
  message(i: number): Uint8Array;
  /** The stream message `i` belongs to (`syslog`, `file:/var/log/x`, ...), where known. */
  stream?(i: number): string;
  /** The journal sequence number of message `i`, where it has one. */
  seq?(i: number): number;
  /** When message `i` was received, in ms since the epoch, where known. */
  time?(i: number): number;
}

/**
 * A batch over one buffer and a list of `[start, end)` ranges: what sources
 * make without copying.
 *
 * @example A batch of two lines from one buffer
 * ```ts
 * import { RangeBatch } from "./batch.ts";
 * const buf = new TextEncoder().encode("one\ntwo\n");
 * const batch = new RangeBatch(4);
 * batch.reset(buf);
 * batch.push(0, 3);
 * batch.push(4, 7);
 * console.log(batch.count); // 2
 * ```
 */
export class RangeBatch implements MessageBatch {
  #buf: Uint8Array = new Uint8Array();
  #ranges: Uint32Array;
  #count = 0;

  /** Makes an empty batch with room for `capacity` ranges (it grows when needed). */
  constructor(capacity = 64) {
    this.#ranges = new Uint32Array(Math.max(1, capacity) * 2);
  }

  /** Number of messages. */
  get count(): number {
    return this.#count;
  }

  /** Empties the batch and points it at `buf`. */
  reset(buf: Uint8Array): void {
    this.#buf = buf;
    this.#count = 0;
  }

  /** Adds the message `buf[start, end)`. */
  push(start: number, end: number): void {
    if (this.#count * 2 === this.#ranges.length) {
      const grown = new Uint32Array(this.#ranges.length * 2);
      grown.set(this.#ranges);
      this.#ranges = grown;
    }
    this.#ranges[this.#count * 2] = start;
    this.#ranges[this.#count * 2 + 1] = end;
    this.#count++;
  }

  /** The bytes of message `i`. */
  message(i: number): Uint8Array {
    return this.#buf.subarray(this.#ranges[i * 2]!, this.#ranges[i * 2 + 1]!);
  }
}

/** Handler a source hands its batches to; the source waits for a returned promise. */
export type BatchHandler = (batch: MessageBatch) => void | Promise<void>;

/**
 * An input. Options of every source include an `onBatch` {@linkcode BatchHandler}
 * and an optional `signal`; nothing is read before {@linkcode Source.listen}.
 *
 * @example Start and stop a source
 * ```ts
 * import type { Source } from "./batch.ts";
 * async function runFor(source: Source, ms: number): Promise<void> {
 *   await source.listen();
 *   await new Promise((resolve) => setTimeout(resolve, ms));
 *   await source.close();
 * }
 * ```
 */
export interface Source extends AsyncDisposable {
  /** What it reads, for log lines: `udp://127.0.0.1:514`, `file:/var/log/syslog`. */
  readonly description: string;
  /**
   * Binds or opens the input and starts reading; resolves once ready, with
   * the bound address (the real port when 0 was asked) for network inputs.
   */
  listen(): Promise<Deno.NetAddr | undefined>;
  /** Stops reading and releases everything; safe to call twice. */
  close(): Promise<void>;
}

/** A message of a batch that a sink could not take, and why. */
export interface Refusal {
  /** Index of the message in the batch. */
  index: number;
  /** Why, in a few words: `too large for a UDP datagram (70000 bytes)`. */
  reason: string;
}

/** What a sink says of a batch it took. */
export interface WriteReport {
  /** Messages it could not take (empty when all were taken). */
  readonly refused: readonly Refusal[];
}

/**
 * An output. `write` resolves when the receiver has taken the batch as far
 * as the transport can tell (an acknowledgement, a flushed write, a datagram
 * the kernel accepted), with what it could not take; it rejects when the
 * receiver is unreachable, and then nothing of the batch counts as taken
 * unless the error says so (e.g. a {@linkcode SinkError} with `taken`).
 *
 * @example Write one message
 * ```ts
 * import { RangeBatch, type Sink } from "./batch.ts";
 * async function writeOne(sink: Sink, text: string): Promise<void> {
 *   const buf = new TextEncoder().encode(text);
 *   const batch = new RangeBatch(1);
 *   batch.reset(buf);
 *   batch.push(0, buf.length);
 *   const { refused } = await sink.write(batch);
 *   if (refused.length > 0) console.error(refused[0]!.reason);
 * }
 * ```
 */
export interface Sink extends AsyncDisposable {
  /** What it writes to, for log lines: `udp://127.0.0.1:514`. */
  readonly description: string;
  /** Hands on the batch; see the interface for what resolving means. */
  write(batch: MessageBatch): Promise<WriteReport>;
  /** Flushes and closes; safe to call twice. */
  close(): Promise<void>;
}

/**
 * A sink write that failed after the receiver had taken the first `taken`
 * messages of the batch.
 *
 * @example Retry only the rest
 * ```ts
 * import { SinkError } from "./batch.ts";
 * const error = new SinkError("connection reset by peer", 3);
 * console.log(error.taken); // 3
 * ```
 */
export class SinkError extends Error {
  /** Always `"SinkError"`. */
  override name = "SinkError";
  /** How many messages from the start of the batch the receiver took. */
  readonly taken: number;

  /** Makes the error. */
  constructor(message: string, taken = 0, options?: ErrorOptions) {
    super(message, options);
    this.taken = taken;
  }
}

/** The report of a write that took everything. */
export const ALL_TAKEN: WriteReport = Object.freeze({ refused: Object.freeze([]) });
