/**
 * The journal: every message gets the next sequence number and is kept, as
 * an encoded wire frame, in append-only segments up to a byte bound. Clients
 * read it through their own {@linkcode Cursor}, so a slow client falls behind
 * (and is told what it lost) but never slows ingest or other clients.
 *
 * Because segments hold finished frames, sending to a client is a slice of a
 * segment handed to the socket: no per-client copy, no per-message work.
 *
 * @module
 */

import { encodeMessage, messageFrameSize } from "./frame.ts";

/** Options for {@linkcode Journal}. */
export interface JournalOptions {
  /**
   * Bytes of messages kept; the oldest segments are dropped beyond it.
   * @default {64 MiB}
   */
  maxBytes?: number;
  /**
   * Size of one segment (the unit of eviction and of a client write).
   * @default {min(1 MiB, maxBytes / 4)}
   */
  segmentBytes?: number;
  /**
   * The journal's epoch id (names one journal's life).
   * @default {a random id}
   */
  epoch?: string;
  /**
   * First sequence number (a restarted spool continues its own).
   * @default {1}
   */
  firstSeq?: number;
}

/** A run of frames in one buffer. */
export class Segment {
  /** Sequence number of the first frame. */
  readonly firstSeq: number;
  /** Frames written so far. */
  count = 0;
  /** Bytes written so far. */
  length = 0;
  /** Set once the journal dropped this segment. */
  evicted = false;
  /** Time of the first and last message, ms. */
  firstTime = 0;
  lastTime = 0;
  readonly buf: Uint8Array;

  constructor(firstSeq: number, capacity: number) {
    this.firstSeq = firstSeq;
    this.buf = new Uint8Array(capacity);
  }

  /** Sequence number after the last frame. */
  get endSeq(): number {
    return this.firstSeq + this.count;
  }
}

/** What a cursor read: frames to send, or news of a gap first. */
export type CursorRead =
  | { kind: "frames"; bytes: Uint8Array; firstSeq: number; endSeq: number }
  | { kind: "lost"; from: number; to: number; count: number; fromTime: number; toTime: number };

/**
 * An in-memory journal of encoded message frames.
 *
 * @example Append and read back
 * ```ts
 * import { Journal } from "./journal.ts";
 * const journal = new Journal({ maxBytes: 1 << 20 });
 * const stream = new TextEncoder().encode("syslog");
 * journal.append(stream, new TextEncoder().encode("<13>hi"));
 * const cursor = journal.cursor(journal.firstSeq);
 * console.log(cursor.read());
 * ```
 */
export class Journal {
  readonly epoch: string;
  readonly maxBytes: number;
  readonly segmentBytes: number;
  readonly #segments: Segment[] = [];
  #bytes = 0;
  #nextSeq: number;
  #evictedCount = 0;
  #lastEvictedTime = 0;
  readonly #listeners = new Set<() => void>();
  #notifyScheduled = false;

  constructor(options: JournalOptions = {}) {
    this.maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    this.segmentBytes = options.segmentBytes ??
      Math.max(64 * 1024, Math.min(1024 * 1024, Math.floor(this.maxBytes / 4)));
    this.epoch = options.epoch ?? crypto.randomUUID();
    this.#nextSeq = options.firstSeq ?? 1;
  }

  /** Sequence number of the oldest message held (equals nextSeq when empty). */
  get firstSeq(): number {
    return this.#segments[0]?.firstSeq ?? this.#nextSeq;
  }

  /** Sequence number the next message will get. */
  get nextSeq(): number {
    return this.#nextSeq;
  }

  /** Bytes of segment buffers held. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Messages dropped from the front so far. */
  get evictedCount(): number {
    return this.#evictedCount;
  }

  /**
   * Appends one message (`data[start..end)`) of `stream` (its encoded name,
   * at most 255 bytes); returns its sequence number.
   */
  append(
    stream: Uint8Array,
    data: Uint8Array,
    start = 0,
    end = data.length,
    time = Date.now(),
  ): number {
    const size = messageFrameSize(stream.length, end - start);
    let segment = this.#segments[this.#segments.length - 1];
    if (!segment || segment.length + size > segment.buf.length) {
      segment = new Segment(this.#nextSeq, Math.max(this.segmentBytes, size));
      this.#segments.push(segment);
      this.#bytes += segment.buf.length;
      this.#evict();
    }
    const seq = this.#nextSeq++;
    segment.length += encodeMessage(segment.buf, segment.length, {
      seq,
      time,
      stream,
      data,
      dataStart: start,
      dataEnd: end,
    });
    if (segment.count++ === 0) segment.firstTime = time;
    segment.lastTime = time;
    this.#schedule();
    return seq;
  }

  #evict(): void {
    while (this.#bytes > this.maxBytes && this.#segments.length > 1) {
      const old = this.#segments.shift()!;
      old.evicted = true;
      this.#bytes -= old.buf.length;
      this.#evictedCount += old.count;
      this.#lastEvictedTime = old.lastTime;
    }
  }

  #schedule(): void {
    if (this.#notifyScheduled || this.#listeners.size === 0) return;
    this.#notifyScheduled = true;
    queueMicrotask(() => {
      this.#notifyScheduled = false;
      for (const listener of this.#listeners) listener();
    });
  }

  /**
   * Calls `listener` (at most once a microtask turn) after messages were
   * appended; returns a function that unsubscribes.
   */
  onAppend(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** A cursor that reads from `seq` on (clamped to what exists). */
  cursor(seq: number): Cursor {
    return new Cursor(this, seq);
  }

  /** @internal The segment holding `seq`, or undefined if it is not held. */
  segmentFor(seq: number): Segment | undefined {
    const segments = this.#segments;
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

  /** @internal Time of the newest dropped message (for loss reports). */
  get lastEvictedTime(): number {
    return this.#lastEvictedTime;
  }
}

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

  constructor(journal: Journal, seq: number) {
    this.#journal = journal;
    this.seq = Math.min(Math.max(seq, 1), journal.nextSeq);
  }

  /** Messages between this cursor and the journal's end. */
  get behind(): number {
    return this.#journal.nextSeq - this.seq;
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
      return {
        kind: "lost",
        from,
        to,
        count: to - from + 1,
        fromTime: 0,
        toTime: journal.lastEvictedTime,
      };
    }
    let segment = this.#segment;
    if (
      !segment || segment.evicted || this.seq >= segment.endSeq && segment.length === this.#offset
    ) {
      segment = journal.segmentFor(this.seq);
      if (!segment) return undefined;
      this.#segment = segment;
      this.#offset = offsetOf(segment, this.seq);
    }
    if (this.#offset >= segment.length) return undefined;
    const bytes = segment.buf.subarray(this.#offset, segment.length);
    const firstSeq = this.seq;
    this.#offset = segment.length;
    this.seq = segment.endSeq;
    return { kind: "frames", bytes, firstSeq, endSeq: this.seq };
  }
}

function offsetOf(segment: Segment, seq: number): number {
  if (seq === segment.firstSeq) return 0;
  if (seq >= segment.endSeq) return segment.length;
  const view = new DataView(segment.buf.buffer, segment.buf.byteOffset, segment.length);
  let offset = 0;
  for (let n = seq - segment.firstSeq; n > 0; n--) offset += 4 + view.getUint32(offset);
  return offset;
}
