/**
 * A {@linkcode MessageBatch} over a buffer of whole wire frames: `pull` hands
 * its sink the message frames it received, indexed in place (no copies).
 *
 * @module
 */

import type { MessageBatch } from "../batch.ts";
import { FrameReader, FrameType, MESSAGE_HEADER_BYTES } from "./frame.ts";

/** A rotation (`R` frame) among the messages of a {@linkcode FrameBatch}. */
export interface Rotation {
  /** Index of the first message after it (`count` when none follows). */
  before: number;
  /** The rotated file's stream name. */
  stream: string;
  /** Its journal sequence number. */
  seq: number;
  /** When the server saw the rotation, ms since the epoch. */
  time: number;
}

const decoder = new TextDecoder();

/**
 * Indexes the message frames (`M`) of a buffer of whole, checked frames;
 * rotations (`R`) are listed apart in {@linkcode FrameBatch.rotations}, and
 * control frames are skipped. Valid until the buffer is reused; {@linkcode
 * FrameBatch.reset} points it at the next one.
 *
 * @example Walk the messages of received frames
 * ```ts
 * import { FrameBatch } from "./frame_batch.ts";
 * import { encodeMessage, messageFrameSize } from "./frame.ts";
 * const stream = new TextEncoder().encode("syslog");
 * const data = new TextEncoder().encode("<13>hello");
 * const frames = new Uint8Array(messageFrameSize(stream.length, data.length));
 * encodeMessage(frames, 0, { seq: 7, time: 0, stream, data });
 * const batch = new FrameBatch(frames);
 * console.log(batch.count, batch.seq(0)); // 1 7
 * ```
 */
export class FrameBatch implements MessageBatch {
  #buf: Uint8Array = new Uint8Array(0);
  #view = new DataView(this.#buf.buffer);
  /** Per message: frame start. */
  #starts = new Uint32Array(64);
  #count = 0;
  #rotations: Rotation[] = [];
  /** The last stream name decoded, by frame start (most batches have one stream). */
  #lastStreamBytes: Uint8Array | undefined;
  #lastStream = "";

  /** Indexes every frame of `frames`, when given (else {@linkcode FrameBatch.reset} first). */
  constructor(frames?: Uint8Array) {
    if (!frames) return;
    this.reset(frames);
    const frame = new FrameReader(frames);
    while (frame.next()) this.add(frame);
  }

  /** Number of messages (`M` frames). */
  get count(): number {
    return this.#count;
  }

  /** The `R` frames, in order, each with the index of the message after it. */
  get rotations(): readonly Rotation[] {
    return this.#rotations;
  }

  /** Empties the batch and points it at `frames` (whole frames; add them with {@linkcode FrameBatch.add}). */
  reset(frames: Uint8Array): void {
    this.#buf = frames;
    this.#view = new DataView(frames.buffer, frames.byteOffset, frames.byteLength);
    this.#count = 0;
    if (this.#rotations.length > 0) this.#rotations = [];
  }

  /**
   * Adds the current frame of `frame`, a reader over the same buffer that
   * has checked it: an `M` frame becomes the next message, an `R` frame a
   * rotation; other frames are ignored.
   */
  add(frame: FrameReader): void {
    if (frame.type === FrameType.Message) {
      if (this.#count === this.#starts.length) {
        const grown = new Uint32Array(this.#starts.length * 2);
        grown.set(this.#starts);
        this.#starts = grown;
      }
      this.#starts[this.#count++] = frame.start;
    } else if (frame.type === FrameType.Rotated) {
      this.#rotations.push({
        before: this.#count,
        stream: frame.stream(),
        seq: frame.seq,
        time: frame.time,
      });
    }
  }

  /** The bytes of message `i`: the frame's DATA. */
  message(i: number): Uint8Array {
    const start = this.#starts[i]!;
    const end = start + 4 + this.#view.getUint32(start);
    return this.#buf.subarray(start + MESSAGE_HEADER_BYTES + this.#buf[start + 21]!, end);
  }

  /** The stream of message `i`. */
  stream(i: number): string {
    const start = this.#starts[i]! + MESSAGE_HEADER_BYTES;
    const bytes = this.#buf.subarray(start, start + this.#buf[start - 1]!);
    const last = this.#lastStreamBytes;
    if (last && last.length === bytes.length && last.every((b, j) => b === bytes[j])) {
      return this.#lastStream;
    }
    this.#lastStreamBytes = bytes.slice();
    return this.#lastStream = decoder.decode(bytes);
  }

  /** The journal sequence number of message `i`. */
  seq(i: number): number {
    return this.#u64(this.#starts[i]! + 5);
  }

  /** When the server received message `i`, ms since the epoch. */
  time(i: number): number {
    return this.#u64(this.#starts[i]! + 13);
  }

  #u64(offset: number): number {
    return this.#view.getUint32(offset) * 2 ** 32 + this.#view.getUint32(offset + 4);
  }
}
