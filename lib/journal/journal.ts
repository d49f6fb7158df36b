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
import { Cursor } from "./cursor.ts";
import { findHole, type JournalHole } from "./holes.ts";
import { findSegment, Segment, SegmentPool } from "./segment.ts";
import { describeSpoolError, Spool, SpoolWriteError } from "./spool.ts";

import type { JournalOpenOptions, JournalOptions } from "./journal_options.ts";

export { Cursor } from "./cursor.ts";
export type { JournalOpenOptions, JournalOptions } from "./journal_options.ts";

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
  #lastEvictedTime = 0;
  readonly #listeners = new Set<() => void>();
  #notifyScheduled = false;
  readonly #pool: SegmentPool;
  /** Numbers that stand for messages lost at the source ({@linkcode Journal.appendLost}). */
  #holes: JournalHole[] = [];

  /** Makes an empty in-memory journal; use {@linkcode Journal.open} for a spooled one. */
  constructor(options: JournalOptions = {}) {
    this.maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    this.segmentBytes = options.segmentBytes ??
      Math.max(64 * 1024, Math.min(1024 * 1024, Math.floor(this.maxBytes / 4)));
    this.#pool = new SegmentPool(this.segmentBytes);
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
    journal.#holes = contents.holes;
    for (const spooled of contents.segments) {
      journal.#segments.push(Segment.fromSpooled(spooled));
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
    if (
      !segment?.buf || segment.length + size > segment.buf.length ||
      segment.endSeq !== this.#nextSeq
    ) {
      if (segment) this.#seal(segment);
      segment = new Segment(this.#nextSeq, 0);
      segment.buf = this.#pool.take(size);
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
   * Appends to the spool what the newest segment has not written yet (a
   * write to the page cache, no fsync: {@linkcode Journal.close} syncs);
   * while spooling is paused, does nothing (a timer tries again).
   */
  #appendToSpool(): void {
    if (!this.#spool || this.#spoolState === "paused") return;
    const segment = this.#segments[this.#segments.length - 1];
    if (segment?.buf && segment.spooled < segment.length) this.#write(segment);
  }

  /** Writes what `segment` has not written yet; false (and paused) on failure. */
  #write(segment: Segment): boolean {
    const spool = this.#spool!;
    try {
      spool.append(segment.firstSeq, segment.buf!.subarray(segment.spooled, segment.length));
    } catch (error) {
      if (error instanceof SpoolWriteError && error.reset) {
        this.#diskBytes -= segment.spooled;
        segment.spooled = 0;
      }
      this.#pause(error);
      return false;
    }
    this.#diskBytes += segment.length - segment.spooled;
    segment.spooled = segment.length;
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
      if (segment.buf && segment.spooled < segment.length && !this.#write(segment)) {
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
    this.#appendToSpool();
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
    this.#appendToSpool();
    // While paused, its file stays open: the retry writes the rest.
    if (this.#spoolState !== "paused") this.#spool.seal(segment.firstSeq);
  }

  #evict(): void {
    const segments = this.#segments;
    if (this.#spool) {
      // Memory: let go of the oldest buffers whose bytes are all on disk.
      for (let i = 0; this.#bytes > this.maxBytes && i < segments.length - 1; i++) {
        const seg = segments[i]!;
        if (seg.buf && seg.spooled === seg.length) this.#bytes -= this.#pool.release(seg);
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
    this.#diskBytes -= old.spooled;
    this.#drop(old);
  }

  #drop(old: Segment): void {
    if (old.buf) this.#bytes -= this.#pool.release(old);
    old.evicted = true;
    this.#lastEvictedTime = old.lastTime;
  }

  /**
   * Marks bytes of `segment` as handed to a socket write; call
   * {@linkcode Journal.unpin} when the write completed.
   */
  pin(segment: Segment): void {
    this.#pool.pin(segment);
  }

  /** Ends a {@linkcode Journal.pin}. */
  unpin(segment: Segment): void {
    this.#pool.unpin(segment);
  }

  #schedule(): void {
    if (this.#notifyScheduled) return;
    this.#notifyScheduled = true;
    queueMicrotask(() => {
      this.#notifyScheduled = false;
      this.#appendToSpool();
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

  /**
   * Records `count` messages lost before they reached the journal (e.g.
   * systemd journal entries vacuumed away unread): the next `count` numbers
   * become a hole that every client's cursor reports as an `L` frame with
   * `reason`; with a spool, the hole is written now, so a restart keeps it.
   * Returns the numbers.
   */
  appendLost(count: number, reason: string, time = Date.now()): { from: number; to: number } {
    const hole = { from: this.#nextSeq, to: this.#nextSeq + count - 1, time, reason };
    if (count < 1) return { from: hole.from, to: hole.from - 1 };
    try {
      this.#spool?.markHole(hole);
    } catch (error) {
      this.#pause(error);
    }
    this.#nextSeq = hole.to + 1;
    this.#holes.push(hole);
    this.#schedule();
    return { from: hole.from, to: hole.to };
  }

  /** @internal The hole holding `seq`, if any (see {@linkcode Journal.appendLost}). */
  holeAt(seq: number): JournalHole | undefined {
    if (this.#holes.length === 0) return undefined;
    while (this.#holes.length > 0 && this.#holes[0]!.to < this.firstSeq) this.#holes.shift();
    return findHole(this.#holes, seq);
  }

  /** Writes what was appended to the spool now (else done after the current task's microtasks). */
  flush(): void {
    this.#appendToSpool();
  }

  /** Appends a rotation marker for a file stream; returns its sequence number. */
  appendRotated(stream: Uint8Array, time = Date.now()): number {
    return this.append(stream, new Uint8Array(0), 0, 0, time, FrameType.Rotated);
  }

  /** A cursor that reads from `seq` on (clamped to what exists). */
  cursor(seq: number): Cursor {
    return new Cursor(this, seq);
  }

  /** @internal The segment holding `seq` (the newest if `seq` is at the end). */
  segmentFor(seq: number): Segment | undefined {
    return findSegment(this.#segments, seq);
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
    this.#appendToSpool();
    if (this.#spoolState === "paused") {
      let bytes = 0;
      for (const segment of this.#segments) {
        if (segment.buf) bytes += segment.length - segment.spooled;
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
    this.#appendToSpool();
    if (this.#spoolState === "ok" && this.#nextSeq > this.#recordedNext) {
      await spool.recordNext(this.#nextSeq).catch(() => false);
    }
    await spool.settled();
    this.close();
  }
}
