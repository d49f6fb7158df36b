/**
 * A journal segment: a run of encoded frames with consecutive sequence
 * numbers, in one buffer while in memory (and, with a spool, in one file).
 *
 * @module
 */

import type { SpooledSegment } from "./spool.ts";

/**
 * A run of frames with consecutive sequence numbers. The journal makes and
 * fills segments; readers see them in {@linkcode CursorRead} results.
 *
 * @example Look at the segment a cursor read from
 * ```ts
 * import { Journal } from "./journal.ts";
 * const journal = new Journal();
 * journal.append(new TextEncoder().encode("syslog"), new TextEncoder().encode("<13>hi"));
 * const read = journal.cursor(journal.firstSeq).read();
 * if (read?.kind === "frames") console.log(read.segment.firstSeq, read.segment.endSeq);
 * ```
 */
export class Segment {
  /** Sequence number of the first frame. */
  readonly firstSeq: number;
  /** Frames written so far. */
  count = 0;
  /** Bytes written so far. */
  length = 0;
  /** Bytes already appended to the spool. */
  spooled = 0;
  /** Set once the journal dropped this segment. */
  evicted = false;
  /** Time of the first message, ms since the epoch. */
  firstTime = 0;
  /** Time of the last message, ms since the epoch. */
  lastTime = 0;
  /** The frames while held in memory (a spooled segment may be on disk only). */
  buf: Uint8Array | undefined;
  /** Socket writes of this segment's bytes still in flight. */
  pins = 0;
  /** Its buffer, out of the journal but still pinned: recycled on the last unpin. */
  retired: Uint8Array | undefined;

  /**
   * Makes an empty segment starting at `firstSeq`, with a `capacity`-byte
   * buffer (none when `capacity` is 0, for a segment whose bytes are on disk).
   */
  constructor(firstSeq: number, capacity: number) {
    this.firstSeq = firstSeq;
    this.buf = capacity > 0 ? new Uint8Array(capacity) : undefined;
  }

  /** A segment found in the spool: its bytes are on disk only. */
  static fromSpooled(spooled: SpooledSegment): Segment {
    const segment = new Segment(spooled.firstSeq, 0);
    segment.count = spooled.count;
    segment.length = segment.spooled = spooled.length;
    segment.firstTime = spooled.firstTime;
    segment.lastTime = spooled.lastTime;
    return segment;
  }

  /** Sequence number after the last frame. */
  get endSeq(): number {
    return this.firstSeq + this.count;
  }
}

/**
 * The segment holding `seq` in `segments` (ordered by `firstSeq`): the last
 * one starting at or before it, so the newest if `seq` is at the end.
 *
 * @example Find a segment
 * ```ts
 * import { findSegment, Segment } from "./segment.ts";
 * const segments = [new Segment(1, 0), new Segment(10, 0)];
 * findSegment(segments, 12)?.firstSeq; // 10
 * ```
 */
export function findSegment(segments: readonly Segment[], seq: number): Segment | undefined {
  let lo = 0;
  let hi = segments.length - 1;
  let found: Segment | undefined;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (segments[mid]!.firstSeq <= seq) {
      found = segments[mid];
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return found;
}

/**
 * Buffers of dropped segments, reused for new ones: without it, evicted
 * buffers pile up as garbage until V8 collects external memory (tens of MiB
 * above the journal bound under load). A buffer still pinned by a socket
 * write is recycled on its last unpin.
 *
 * @example Take, release, reuse
 * ```ts
 * import { Segment, SegmentPool } from "./segment.ts";
 * const pool = new SegmentPool(65536);
 * const segment = new Segment(1, 0);
 * segment.buf = pool.take(100);
 * pool.release(segment); // 65536, back in the pool
 * ```
 */
export class SegmentPool {
  readonly #size: number;
  readonly #free: Uint8Array[] = [];

  /** A pool of `segmentBytes`-byte buffers (at most four kept). */
  constructor(segmentBytes: number) {
    this.#size = segmentBytes;
  }

  /** A buffer for a new segment whose first frame is `size` bytes. */
  take(size: number): Uint8Array {
    return size <= this.#size && this.#free.pop() || new Uint8Array(Math.max(this.#size, size));
  }

  /** Takes a segment's buffer out of it; returns the buffer's length. */
  release(segment: Segment): number {
    const buf = segment.buf!;
    segment.buf = undefined;
    if (segment.pins > 0) segment.retired = buf;
    else this.#recycle(buf);
    return buf.length;
  }

  /** Marks bytes of `segment` as handed to a socket write. */
  pin(segment: Segment): void {
    segment.pins++;
  }

  /** Ends a {@linkcode SegmentPool.pin}; recycles a released buffer on the last. */
  unpin(segment: Segment): void {
    if (--segment.pins > 0 || !segment.retired) return;
    this.#recycle(segment.retired);
    segment.retired = undefined;
  }

  #recycle(buf: Uint8Array): void {
    if (buf.length === this.#size && this.#free.length < 4) this.#free.push(buf);
  }
}
