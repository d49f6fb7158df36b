/**
 * The journal: every message gets the next sequence number and is kept, as
 * an encoded wire frame, in append-only segments up to a byte bound. Clients
 * read it through their own {@linkcode Cursor}, so a slow client falls behind
 * (and is told what it lost) but never slows ingest or other clients.
 *
 * Because segments hold finished frames, sending to a client is a slice of a
 * segment handed to the socket: no per-client copy, no per-message work.
 * With a spool, segments are also appended to files (once per event-loop
 * turn) and older ones are read back from disk when a client needs them.
 *
 * @module
 */

import { encodeMessage, FrameType, messageFrameSize } from "./frame.ts";
import { log } from "./log.ts";
import { Spool } from "./spool.ts";

const EMPTY = new Uint8Array(0);

/** Options for {@linkcode Journal}. */
export interface JournalOptions {
  /**
   * Bytes of messages kept in memory; beyond it the oldest segments are
   * dropped (or, with a spool, kept on disk only).
   * @default {64 MiB}
   */
  maxBytes?: number;
  /**
   * Size of one segment (the unit of eviction and of a client write).
   * @default {min(1 MiB, maxBytes / 4), at least 64 KiB}
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

/** Options for {@linkcode Journal.open}. */
export interface JournalOpenOptions extends JournalOptions {
  /**
   * Keep segments in this directory, so a restart continues the journal.
   * @default {none: memory only}
   */
  spoolDir?: string;
  /**
   * Bytes of segments kept on disk with a spool.
   * @default {1 GiB}
   */
  spoolBytes?: number;
}

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
  flushed = 0;
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

  /** Sequence number after the last frame. */
  get endSeq(): number {
    return this.firstSeq + this.count;
  }
}

/** What a cursor read: frames to send, or news of a gap first. */
export type CursorRead =
  | { kind: "frames"; bytes: Uint8Array; firstSeq: number; endSeq: number; segment: Segment }
  | { kind: "lost"; from: number; to: number; count: number; toTime: number };

/**
 * A journal of encoded message frames, in memory and optionally spooled.
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
export class Journal implements Disposable {
  /** The journal's epoch id: {@linkcode JournalOptions.epoch} or a random UUID. */
  readonly epoch: string;
  /** Bytes of messages kept in memory ({@linkcode JournalOptions.maxBytes}). */
  readonly maxBytes: number;
  /** Size of one segment, bytes ({@linkcode JournalOptions.segmentBytes}). */
  readonly segmentBytes: number;
  readonly #segments: Segment[] = [];
  /** Bytes of segment buffers in memory. */
  #bytes = 0;
  #spool: Spool | undefined;
  #spoolBytes = Infinity;
  #diskBytes = 0;
  #nextSeq: number;
  #evictedCount = 0;
  #lastEvictedTime = 0;
  readonly #listeners = new Set<() => void>();
  #notifyScheduled = false;
  /**
   * Buffers of dropped segments, reused for new ones: without it, evicted
   * buffers pile up as garbage until V8 collects external memory (tens of
   * MiB above the journal bound under load).
   */
  readonly #pool: Uint8Array[] = [];

  /** Makes an empty in-memory journal; use {@linkcode Journal.open} for a spooled one. */
  constructor(options: JournalOptions = {}) {
    this.maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    this.segmentBytes = options.segmentBytes ??
      Math.max(64 * 1024, Math.min(1024 * 1024, Math.floor(this.maxBytes / 4)));
    this.epoch = options.epoch ?? crypto.randomUUID();
    this.#nextSeq = options.firstSeq ?? 1;
  }

  /**
   * Makes a journal; with `spoolDir`, continues the one kept there (same
   * epoch, next sequence number), after cutting a torn last record.
   */
  static async open(options: JournalOpenOptions = {}): Promise<Journal> {
    if (!options.spoolDir) return new Journal(options);
    const { spool, contents } = await Spool.open(options.spoolDir);
    const last = contents.segments[contents.segments.length - 1];
    const journal = new Journal({
      ...options,
      epoch: contents.epoch,
      firstSeq: last ? last.firstSeq + last.count : 1,
    });
    journal.#spool = spool;
    journal.#spoolBytes = options.spoolBytes ?? 1024 ** 3;
    for (const spooled of contents.segments) {
      const segment = new Segment(spooled.firstSeq, 0);
      segment.count = spooled.count;
      segment.length = segment.flushed = spooled.length;
      segment.firstTime = spooled.firstTime;
      segment.lastTime = spooled.lastTime;
      journal.#segments.push(segment);
      journal.#diskBytes += spooled.length;
    }
    log("spool").info("journal {epoch}: next seq {next}, {count} messages held in {dir}", {
      epoch: contents.epoch,
      next: journal.nextSeq,
      count: journal.nextSeq - journal.firstSeq,
      dir: options.spoolDir,
    });
    return journal;
  }

  /** Sequence number of the oldest message held (equals nextSeq when empty). */
  get firstSeq(): number {
    return this.#segments[0]?.firstSeq ?? this.#nextSeq;
  }

  /** Sequence number the next message will get. */
  get nextSeq(): number {
    return this.#nextSeq;
  }

  /** Bytes of segment buffers held in memory. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Bytes of segments on disk (0 without a spool). */
  get diskBytes(): number {
    return this.#diskBytes;
  }

  /** Messages dropped from the front so far. */
  get evictedCount(): number {
    return this.#evictedCount;
  }

  /** Time of the newest dropped message, ms (for loss reports). */
  get lastEvictedTime(): number {
    return this.#lastEvictedTime;
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
    type: number = FrameType.Message,
  ): number {
    const size = messageFrameSize(stream.length, end - start);
    let segment = this.#segments[this.#segments.length - 1];
    if (!segment?.buf || segment.length + size > segment.buf.length) {
      if (segment) this.#seal(segment);
      segment = new Segment(this.#nextSeq, 0);
      segment.buf = size <= this.segmentBytes && this.#pool.pop() ||
        new Uint8Array(Math.max(this.segmentBytes, size));
      this.#segments.push(segment);
      this.#bytes += segment.buf!.length;
      this.#evict();
    }
    const seq = this.#nextSeq++;
    segment.length += encodeMessage(segment.buf!, segment.length, {
      seq,
      time,
      stream,
      data,
      dataStart: start,
      dataEnd: end,
      type,
    });
    if (segment.count++ === 0) segment.firstTime = time;
    segment.lastTime = time;
    this.#schedule();
    return seq;
  }

  /** Appends to the spool what the newest segment has not written yet. */
  flush(): void {
    const segment = this.#segments[this.#segments.length - 1];
    if (this.#spool && segment?.buf && segment.flushed < segment.length) {
      this.#spool.append(segment.firstSeq, segment.buf.subarray(segment.flushed, segment.length));
      this.#diskBytes += segment.length - segment.flushed;
      segment.flushed = segment.length;
    }
  }

  #seal(segment: Segment): void {
    if (!this.#spool) return;
    this.flush();
    this.#spool.seal(segment.firstSeq);
  }

  #evict(): void {
    const segments = this.#segments;
    if (this.#spool) {
      // Memory: let go of the oldest buffers; those segments stay on disk.
      for (let i = 0; this.#bytes > this.maxBytes && i < segments.length - 1; i++) {
        const segment = segments[i]!;
        if (segment.buf) this.#release(segment);
      }
      while (this.#diskBytes > this.#spoolBytes && segments.length > 1) {
        const old = segments.shift()!;
        this.#spool.remove(old.firstSeq);
        this.#diskBytes -= old.length;
        this.#drop(old);
      }
      return;
    }
    while (this.#bytes > this.maxBytes && segments.length > 1) this.#drop(segments.shift()!);
  }

  #drop(old: Segment): void {
    if (old.buf) this.#release(old);
    old.evicted = true;
    this.#evictedCount += old.count;
    this.#lastEvictedTime = old.lastTime;
  }

  /** Takes a segment's buffer out of the journal, recycling it when no write holds it. */
  #release(segment: Segment): void {
    const buf = segment.buf!;
    this.#bytes -= buf.length;
    segment.buf = undefined;
    if (segment.pins > 0) segment.retired = buf;
    else this.#recycle(buf);
  }

  #recycle(buf: Uint8Array): void {
    if (buf.length === this.segmentBytes && this.#pool.length < 4) this.#pool.push(buf);
  }

  /**
   * Marks bytes of `segment` as handed to a socket write; call
   * {@linkcode Journal.unpin} when the write completed.
   */
  pin(segment: Segment): void {
    segment.pins++;
  }

  /** Ends a {@linkcode Journal.pin}. */
  unpin(segment: Segment): void {
    if (--segment.pins > 0 || !segment.retired) return;
    this.#recycle(segment.retired);
    segment.retired = undefined;
  }

  #schedule(): void {
    if (this.#notifyScheduled) return;
    this.#notifyScheduled = true;
    queueMicrotask(() => {
      this.#notifyScheduled = false;
      this.flush();
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

  /** Appends a rotation marker for a file stream; returns its sequence number. */
  appendRotated(stream: Uint8Array, time = Date.now()): number {
    return this.append(stream, EMPTY, 0, 0, time, FrameType.Rotated);
  }

  /** A cursor that reads from `seq` on (clamped to what exists). */
  cursor(seq: number): Cursor {
    return new Cursor(this, seq);
  }

  /** @internal The segment holding `seq` (the newest if `seq` is at the end). */
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

  /** @internal The frames of a segment, from memory or read from the spool. */
  frames(segment: Segment): Uint8Array | undefined {
    if (segment.buf) return segment.buf;
    if (segment.evicted || !this.#spool) return undefined;
    return this.#spool.read(segment.firstSeq).subarray(0, segment.length);
  }

  /** Writes the spool through to stable storage and closes it; safe to call twice. */
  close(): void {
    if (!this.#spool) return;
    this.flush();
    this.#spool.sync();
    this.#spool.close();
    this.#spool = undefined;
  }

  /** Closes the spool, like {@linkcode Journal.close}. */
  [Symbol.dispose](): void {
    this.close();
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

  /**
   * Starts at `seq`, clamped to between 1 and the journal's next sequence
   * number; a `seq` already dropped is reported as lost by the first read.
   */
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
      return { kind: "lost", from, to, count: to - from + 1, toTime: journal.lastEvictedTime };
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
    if (!buf) return undefined;
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
