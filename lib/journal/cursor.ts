/**
 * A client's read position in the {@linkcode Journal}: runs of whole frames
 * (views into segments), or a gap report when the journal dropped messages
 * the cursor had not read yet.
 *
 * @module
 */

import type { Journal } from "./journal.ts";
import type { Segment } from "./segment.ts";

/** What a cursor read: frames to send, or news of a gap first. */
export type CursorRead =
  | { kind: "frames"; bytes: Uint8Array; firstSeq: number; endSeq: number; segment: Segment }
  | {
    kind: "lost";
    from: number;
    to: number;
    count: number;
    toTime: number;
    /** Set for messages lost before they reached the journal (a hole, see `Journal.appendLost`). */
    reason?: string;
  };

/**
 * One client's position in the journal. `read()` returns the next run of
 * whole frames (a view into a segment), or a gap report when the journal
 * dropped messages the cursor had not read yet.
 *
 * @example Drain a cursor
 * ```ts
 * import { Journal } from "./journal.ts";
 * const journal = new Journal();
 * const cursor = journal.cursor(journal.nextSeq);
 * for (let r = cursor.read(); r; r = cursor.read()) console.log(r.kind);
 * ```
 */
export class Cursor {
  readonly #journal: Journal;
  /** Next sequence number to read. */
  seq: number;
  #segment: Segment | undefined;
  #offset = 0;

  /**
   * Starts at `seq`, clamped to between 1 and the journal's next sequence
   * number; a `seq` already dropped is reported as lost by the first read.
   */
  constructor(journal: Journal, seq: number) {
    this.#journal = journal;
    this.seq = Math.min(Math.max(seq, 1), journal.nextSeq);
  }

  /** The next run of frames or a gap; undefined when caught up. */
  read(): CursorRead | undefined {
    const journal = this.#journal;
    if (this.seq >= journal.nextSeq) return undefined;
    if (this.seq < journal.firstSeq) {
      const from = this.seq;
      const to = journal.firstSeq - 1;
      this.seq = journal.firstSeq;
      this.#segment = undefined;
      return { kind: "lost", from, to, count: to - from + 1, toTime: journal.lastEvictedTime };
    }
    const hole = journal.holeAt(this.seq);
    if (hole) {
      const from = this.seq;
      this.seq = hole.to + 1;
      this.#segment = undefined;
      const { to, time: toTime, reason } = hole;
      return { kind: "lost", from, to, count: to - from + 1, toTime, reason };
    }
    let segment = this.#segment;
    if (
      !segment || segment.evicted || this.#offset >= segment.length && this.seq >= segment.endSeq
    ) {
      segment = journal.segmentFor(this.seq);
      if (!segment) return undefined;
      this.#segment = segment;
      this.#offset = -1;
    }
    if (this.seq >= segment.endSeq) return undefined;
    const buf = journal.frames(segment);
    // A segment that could not be read was dropped: the next read reports the gap.
    if (!buf) return segment.evicted ? this.read() : undefined;
    if (this.#offset < 0) this.#offset = offsetOf(buf, segment, this.seq);
    const bytes = buf.subarray(this.#offset, segment.length);
    const firstSeq = this.seq;
    this.#offset = segment.length;
    this.seq = segment.endSeq;
    return { kind: "frames", bytes, firstSeq, endSeq: this.seq, segment };
  }
}

function offsetOf(buf: Uint8Array, segment: Segment, seq: number): number {
  const view = new DataView(buf.buffer, buf.byteOffset, segment.length);
  let offset = 0;
  for (let n = seq - segment.firstSeq; n > 0; n--) offset += 4 + view.getUint32(offset);
  return offset;
}
