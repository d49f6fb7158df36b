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

import { encodeMessage, FrameType, messageFrameSize } from "../protocol/frame.ts";
import { log } from "../util/log.ts";
import { describeSpoolError, Spool, SpoolWriteError } from "./spool.ts";

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
  /**
   * While the spool cannot be written (a full disk, a file size limit), how
   * often to try again, ms. Also how often `journal.json` records how far
   * the numbering went.
   * @default {2000}
   */
  spoolRetryMs?: number;
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
export class Journal implements Disposable, AsyncDisposable {
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
  /** "ok"; "paused" while writes fail; "restoring" while journal.json is rewritten. */
  #spoolState: "ok" | "paused" | "restoring" = "ok";
  #spoolWriteErrors = 0;
  #spoolReason = "";
  #spoolTimer: ReturnType<typeof setInterval> | undefined;
  #spoolRetryMs = 2000;
  /** The `next` journal.json holds (or is being written with). */
  #recordedNext = 0;
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
    const journal = new Journal({ ...options, epoch: contents.epoch, firstSeq: contents.next });
    journal.#spool = spool;
    journal.#spoolBytes = options.spoolBytes ?? 1024 ** 3;
    journal.#spoolRetryMs = options.spoolRetryMs ?? 2000;
    journal.#recordedNext = contents.next;
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
    if (!contents.metaWritten) journal.#pause(contents.metaError);
    const timer = setInterval(() => journal.#tick(), journal.#spoolRetryMs);
    Deno.unrefTimer(timer);
    journal.#spoolTimer = timer;
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

  /**
   * False while spooling is paused because the spool cannot be written (a
   * full disk, a file size limit): new messages are then held in memory
   * only, up to {@linkcode JournalOptions.maxBytes}. Always true without a
   * spool.
   */
  get spoolHealthy(): boolean {
    return this.#spoolState === "ok";
  }

  /** Writes to the spool that failed so far. */
  get spoolWriteErrors(): number {
    return this.#spoolWriteErrors;
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

  /**
   * Appends to the spool what the newest segment has not written yet; while
   * spooling is paused, does nothing (a timer tries again).
   */
  flush(): void {
    if (!this.#spool || this.#spoolState === "paused") return;
    const segment = this.#segments[this.#segments.length - 1];
    if (segment?.buf && segment.flushed < segment.length) this.#write(segment);
  }

  /** Writes what `segment` has not written yet; false (and paused) on failure. */
  #write(segment: Segment): boolean {
    const spool = this.#spool!;
    try {
      spool.append(segment.firstSeq, segment.buf!.subarray(segment.flushed, segment.length));
    } catch (error) {
      if (error instanceof SpoolWriteError && error.reset) {
        this.#diskBytes -= segment.flushed;
        segment.flushed = 0;
      }
      this.#pause(error);
      return false;
    }
    this.#diskBytes += segment.length - segment.flushed;
    segment.flushed = segment.length;
    return true;
  }

  /** Stops spooling after a failed write: one log line, journal.json removed. */
  #pause(error: unknown): void {
    this.#spoolWriteErrors++;
    const wasPaused = this.#spoolState === "paused";
    this.#spoolState = "paused";
    // Numbers handed out from now on are not on disk: a restart must not reuse them.
    this.#spool?.invalidate();
    this.#recordedNext = 0;
    if (wasPaused || this.#spoolReason) return;
    this.#spoolReason = describeSpoolError(error);
    log("spool").error(
      "spool {dir} cannot be written ({reason}): spooling paused, new messages are kept in memory only (up to {bytes} bytes, the oldest dropped and reported lost beyond that); retrying every {seconds} s",
      {
        dir: this.#spool?.dir,
        reason: this.#spoolReason,
        bytes: this.maxBytes,
        seconds: this.#spoolRetryMs / 1000,
      },
    );
  }

  /**
   * Tries to write every segment still only in memory, in order, then
   * journal.json; resumes spooling once both worked.
   */
  #restore(): Promise<void> {
    const spool = this.#spool;
    if (!spool || this.#spoolState !== "paused") return Promise.resolve();
    const segments = this.#segments;
    const last = segments[segments.length - 1];
    for (const segment of segments) {
      if (segment.buf && segment.flushed < segment.length && !this.#write(segment)) {
        return Promise.resolve();
      }
      if (segment !== last) spool.seal(segment.firstSeq);
    }
    this.#spoolState = "restoring";
    const next = this.#nextSeq;
    return spool.recordNext(next, true).then((standing) => {
      if (this.#spool !== spool || this.#spoolState !== "restoring") return;
      if (!standing) {
        this.#pause(new Error("journal.json was invalidated while it was written"));
        return;
      }
      this.#spoolState = "ok";
      this.#recordedNext = next;
      log("spool").info(
        "spool {dir} is written again (it failed with: {reason}); messages held in memory are on disk now",
        { dir: spool.dir, reason: this.#spoolReason },
      );
      this.#spoolReason = "";
    }, (error) => {
      if (this.#spool === spool && this.#spoolState === "restoring") this.#pause(error);
    });
  }

  /** The spool timer: retries a paused spool, or records how far the numbering went. */
  #tick(): void {
    const spool = this.#spool;
    if (!spool) return;
    if (this.#spoolState === "paused") {
      this.#restore();
      return;
    }
    if (this.#spoolState !== "ok") return;
    this.flush();
    const next = this.#nextSeq;
    if (this.#spoolState !== "ok" || next <= this.#recordedNext) return;
    this.#recordedNext = next;
    spool.recordNext(next).catch((error) => {
      log("spool").debug("cannot update journal.json: {reason}", {
        reason: describeSpoolError(error),
      });
      if (this.#recordedNext === next) this.#recordedNext = 0;
    });
  }

  #seal(segment: Segment): void {
    if (!this.#spool) return;
    this.flush();
    // While paused, its file stays open: the retry writes the rest.
    if (this.#spoolState !== "paused") this.#spool.seal(segment.firstSeq);
  }

  #evict(): void {
    const segments = this.#segments;
    if (this.#spool) {
      // Memory: let go of the oldest buffers whose bytes are all on disk.
      for (let i = 0; this.#bytes > this.maxBytes && i < segments.length - 1; i++) {
        const segment = segments[i]!;
        if (segment.buf && segment.flushed === segment.length) this.#release(segment);
      }
      // Still over (spooling paused): drop the oldest, on disk or not, and report it lost.
      while (this.#bytes > this.maxBytes && segments.length > 1) this.#dropSpooled();
      while (this.#diskBytes > this.#spoolBytes && segments.length > 1) this.#dropSpooled();
      return;
    }
    while (this.#bytes > this.maxBytes && segments.length > 1) this.#drop(segments.shift()!);
  }

  #dropSpooled(): void {
    const old = this.#segments.shift()!;
    this.#spool!.remove(old.firstSeq);
    this.#diskBytes -= old.flushed;
    this.#drop(old);
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

  /**
   * @internal The frames of a segment, from memory or read from the spool. A
   * segment file that cannot be read (deleted, cut short) is dropped with
   * every older segment, so that cursors report those messages lost.
   */
  frames(segment: Segment): Uint8Array | undefined {
    if (segment.buf) return segment.buf;
    if (segment.evicted || !this.#spool) return undefined;
    let bytes: Uint8Array;
    try {
      bytes = this.#spool.read(segment.firstSeq);
      if (bytes.length < segment.length) {
        throw new Error(`${bytes.length} bytes, expected ${segment.length}`);
      }
    } catch (error) {
      log("spool").error(
        "cannot read segment {seq} from spool {dir} ({reason}): dropping it and older segments, messages {first}..{last} are reported lost",
        {
          seq: segment.firstSeq,
          dir: this.#spool.dir,
          reason: describeSpoolError(error),
          first: this.firstSeq,
          last: segment.endSeq - 1,
        },
      );
      while (this.#segments.length > 1 && this.#segments[0]!.firstSeq <= segment.firstSeq) {
        this.#dropSpooled();
      }
      return undefined;
    }
    return bytes.subarray(0, segment.length);
  }

  /**
   * Writes the spool through to stable storage and closes it; safe to call
   * twice. Messages a paused spool could not write are lost with the process
   * (and logged). {@linkcode Journal[Symbol.asyncDispose]} also records the
   * last sequence number in journal.json and tries a paused spool once more.
   */
  close(): void {
    if (this.#spoolTimer !== undefined) clearInterval(this.#spoolTimer);
    this.#spoolTimer = undefined;
    const spool = this.#spool;
    if (!spool) return;
    this.flush();
    if (this.#spoolState === "paused") {
      let bytes = 0;
      for (const segment of this.#segments) {
        if (segment.buf) bytes += segment.length - segment.flushed;
      }
      if (bytes > 0) {
        log("spool").error(
          "stopping with {bytes} bytes of messages that spool {dir} could not write ({reason}): they are lost",
          { bytes, dir: spool.dir, reason: this.#spoolReason },
        );
      }
    }
    spool.sync();
    spool.close();
    this.#spool = undefined;
  }

  /** Closes the spool, like {@linkcode Journal.close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * Closes the spool after trying once more to write what a paused spool
   * holds and recording the last sequence number in journal.json.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    const spool = this.#spool;
    if (!spool) return;
    if (this.#spoolTimer !== undefined) clearInterval(this.#spoolTimer);
    this.#spoolTimer = undefined;
    await this.#restore();
    this.flush();
    if (this.#spoolState === "ok" && this.#nextSeq > this.#recordedNext) {
      await spool.recordNext(this.#nextSeq).catch(() => false);
    }
    await spool.settled();
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
