/**
 * The mirror sink (`pull --mirror DIR`): each stream is appended to
 * `DIR/<stream>`. File streams (`serve --file`) carry their bytes exactly,
 * newlines included, so the copy is byte for byte the remote file; the
 * message streams `syslog` and `tcp` get one line a message. When a remote
 * file rotates, the local copy is renamed to `NAME.YYYYmmddHHMMSS` (UTC, the
 * time of the rotation; `-N` added if taken), so a rotated remote file and its
 * local copy hold the same bytes.
 *
 * One write per stream per batch; a write that fails rejects, so `pull`
 * keeps its resume point and retries later instead of losing anything.
 * Each message's stream, sequence number and time come from the batch
 * (`stream()`, `seq()`, `time()`; a message without a stream goes to
 * `syslog`, one without a sequence number, such as `pull`'s loss notice, is
 * never skipped); rotations come from a batch that lists them (a
 * {@linkcode RotatingBatch}, as `pull`'s `FrameBatch`).
 *
 * Exactly once: `DIR/.reclog-mirror.json` records, after every batch and
 * before `write` resolves, each stream's last sequence number written and
 * the file's size then (the file holds exactly the messages up to it).
 * Messages delivered again after a reconnect or a crash (the client's unsaved
 * tail) are skipped, and bytes a crash left beyond the recorded size are cut
 * before writing resumes. A short write (a full disk) records the messages
 * that went in whole and cuts a torn one off, so the retry writes only the
 * rest, for that stream alone.
 *
 * @module
 */

import { describeFsError, errorMessage } from "../util/errors.ts";
import { ALL_TAKEN, type MessageBatch, type Sink, type WriteReport } from "../batch.ts";
import type { Rotation } from "../protocol/frame_batch.ts";
import { writeFileAtomic } from "../state/atomic_file.ts";

/** A batch that also lists rotations of file streams, between its messages. */
export interface RotatingBatch extends MessageBatch {
  /** In order; each before the message at index `before`. */
  readonly rotations?: readonly Rotation[];
}

/** Streams that carry messages (a line each) rather than raw file bytes. */
const MESSAGE_STREAMS = new Set(["syslog", "tcp"]);

/** One stream's bytes gathered from a batch, with where each message ends. */
interface Pending {
  buf: Uint8Array;
  length: number;
  /** Messages added. */
  count: number;
  /** End offset in `buf` of each message added. */
  ends: Float64Array;
  /** Sequence number of each message added (0: a notice from pull itself). */
  seqs: Float64Array;
}

/** An open mirror file and its size as far as this process knows it. */
interface Open {
  file: Deno.FsFile;
  size: number;
}

/** What the sidecar file records per stream. */
interface Written {
  /** Last sequence number written (messages or rotation). */
  seq: number;
  /** Size of DIR/<stream> after it: the file holds exactly the messages up to `seq`. */
  size: number;
  /** The server journal's epoch the numbers belong to. */
  epoch?: string;
  /**
   * A rotation recorded and maybe not done yet: DIR/<stream> is to become
   * DIR/<rotating> (done on the next load if a crash came first).
   */
  rotating?: string;
}

const SIDECAR = ".reclog-mirror.json";

/**
 * Appends streams to files in a directory, rotating file copies as their
 * originals rotate.
 *
 * Exactly once, also on a full disk: per stream, the sink knows which
 * messages are whole in the file (after a short write it asks the file's
 * real size), cuts a torn tail back to the last whole message and records
 * only what is really there, so a retry writes just the rest and never
 * writes again what another stream of the same batch already took. The
 * sidecar is saved before `write` resolves, so the caller's resume point
 * never runs ahead of it; on a restart every file is cut back to the size
 * the sidecar records, and the messages after it come again from the resume
 * point.
 *
 * @example Mirror into a directory
 * ```ts
 * import { MirrorSink } from "./mirror.ts";
 * await using sink = new MirrorSink("/var/log/remote/vps");
 * ```
 */
export class MirrorSink implements Sink {
  readonly description: string;
  readonly #dir: string;
  readonly #files = new Map<string, Open>();
  readonly #pending = new Map<string, Pending>();
  #written: Record<string, Written> | undefined;
  #dirty = false;
  /** Streams new since the sidecar was last saved: their file waits for it. */
  readonly #unrecorded = new Set<string>();
  #epoch: string | undefined;

  /** Mirrors into `dir`; nothing is read or created until the first write. */
  constructor(dir: string) {
    this.#dir = dir;
    this.description = `mirror ${dir}`;
  }

  /** Loads the sidecar once and cuts what a crash wrote beyond it. */
  async #load(): Promise<Record<string, Written>> {
    if (this.#written) return this.#written;
    // No prototype: a stream may be called "__proto__".
    let written: Record<string, Written> = Object.create(null);
    try {
      const parsed = JSON.parse(await Deno.readTextFile(`${this.#dir}/${SIDECAR}`));
      if (parsed && typeof parsed === "object") {
        for (const [name, record] of Object.entries(parsed as Record<string, Written>)) {
          if (
            safeName(name) === name && Number.isSafeInteger(record?.seq) && record.seq >= 0 &&
            Number.isSafeInteger(record?.size) && record.size >= 0 &&
            (record.epoch === undefined || typeof record.epoch === "string") &&
            (record.rotating === undefined ||
              (typeof record.rotating === "string" &&
                safeName(record.rotating) === record.rotating))
          ) {
            written[name] = {
              seq: record.seq,
              size: record.size,
              epoch: record.epoch,
              ...(record.rotating ? { rotating: record.rotating } : {}),
            };
          }
        }
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound) && !(error instanceof SyntaxError)) {
        throw new Error(
          `cannot read mirror state '${this.#dir}/${SIDECAR}': ${describeFsError(error)}`,
        );
      }
      written = Object.create(null);
    }
    for (const [name, record] of Object.entries(written)) {
      const path = `${this.#dir}/${name}`;
      await this.#completeRotation(written, name);
      try {
        const { size } = await Deno.stat(path);
        if (size > record.size) await Deno.truncate(path, record.size);
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) {
          throw new Error(`cannot cut mirror file '${path}' back: ${describeFsError(error)}`);
        }
      }
    }
    return this.#written = written;
  }

  /** The server journal the next frames come from (sequence numbers restart with it). */
  begin(epoch: string): void {
    this.#epoch = epoch;
  }

  /** Whether a journal entry for `name` was already written. */
  #done(written: Record<string, Written>, name: string, seq: number): boolean {
    const record = written[name];
    return record !== undefined && record.epoch === this.#epoch && seq <= record.seq;
  }

  /** Appends each message to its stream's file; resolves once the sidecar records them. */
  async write(batch: RotatingBatch): Promise<WriteReport> {
    const written = await this.#load();
    try {
      const rotations = batch.rotations ?? [];
      let r = 0;
      for (let i = 0; i <= batch.count; i++) {
        for (; r < rotations.length && rotations[r]!.before <= i; r++) {
          const { stream, seq, time } = rotations[r]!;
          const name = safeName(stream);
          if (this.#done(written, name, seq)) continue;
          await this.#flush(name);
          await this.#rotate(written, name, seq, time);
        }
        if (i === batch.count) break;
        const stream = batch.stream?.(i) ?? "syslog";
        const newline = MESSAGE_STREAMS.has(stream) ? 1 : 0;
        const name = safeName(stream);
        const seq = batch.seq?.(i) ?? 0;
        if (seq > 0 && this.#done(written, name, seq)) continue;
        this.#add(name, batch.message(i), newline, seq);
      }
      // Every stream gets its chance: one that fails does not hold back the others.
      let failure: unknown;
      for (const name of this.#pending.keys()) {
        try {
          await this.#flush(name);
        } catch (error) {
          failure ??= error;
        }
      }
      if (this.#dirty) {
        try {
          await this.#saveSidecar();
        } catch (error) {
          failure ??= error;
        }
      }
      if (failure !== undefined) throw failure;
      return ALL_TAKEN;
    } finally {
      // Nothing gathered survives a batch: a retry gathers again what is not written.
      for (const out of this.#pending.values()) out.length = out.count = 0;
    }
  }

  /** Adds one message to the stream's pending bytes. */
  #add(name: string, message: Uint8Array, newline: number, seq: number): void {
    let out = this.#pending.get(name);
    if (!out) {
      out = {
        buf: new Uint8Array(64 * 1024),
        length: 0,
        count: 0,
        ends: new Float64Array(256),
        seqs: new Float64Array(256),
      };
      this.#pending.set(name, out);
    }
    const size = message.length;
    if (out.length + size + newline > out.buf.length) {
      const grown = new Uint8Array(Math.max(out.length + size + newline, out.buf.length * 2));
      grown.set(out.buf.subarray(0, out.length));
      out.buf = grown;
    }
    if (out.count === out.ends.length) {
      const ends = new Float64Array(out.count * 2);
      ends.set(out.ends);
      out.ends = ends;
      const seqs = new Float64Array(out.count * 2);
      seqs.set(out.seqs);
      out.seqs = seqs;
    }
    out.buf.set(message, out.length);
    out.length += size;
    if (newline) out.buf[out.length++] = 0x0a;
    out.ends[out.count] = out.length;
    out.seqs[out.count++] = seq;
  }

  /** Records what was written (temp file and rename: atomic for a crash). */
  async #saveSidecar(): Promise<void> {
    const path = `${this.#dir}/${SIDECAR}`;
    try {
      await writeFileAtomic(path, JSON.stringify(this.#written), { mode: 0o640 });
    } catch (error) {
      throw new Error(`cannot save mirror state '${path}': ${describeFsError(error)}`);
    }
    this.#dirty = false;
    this.#unrecorded.clear();
  }

  /**
   * Opens DIR/<name> for appending; a file longer than what is recorded for
   * it (a torn tail that could not be cut before) is cut back first. A new
   * stream's file gets no byte before the sidecar on disk has a record of it:
   * else a restart would not cut what a crash left in it.
   */
  async #open(name: string): Promise<Open> {
    const known = this.#files.get(name);
    if (known) return known;
    await this.#completeRotation(this.#written!, name);
    await Deno.mkdir(this.#dir, { recursive: true, mode: 0o750 });
    const file = await Deno.open(`${this.#dir}/${name}`, {
      append: true,
      create: true,
      mode: 0o640,
    });
    try {
      let { size } = await file.stat();
      const written = this.#written!;
      const record = written[name];
      if (record && size > record.size) {
        await file.truncate(record.size);
        size = record.size;
      }
      if (!record) {
        written[name] = { seq: 0, size, epoch: this.#epoch };
        this.#dirty = true;
        this.#unrecorded.add(name);
      }
      if (this.#unrecorded.has(name)) await this.#saveSidecar();
      const open = { file, size };
      this.#files.set(name, open);
      return open;
    } catch (error) {
      file.close();
      throw error;
    }
  }

  /** Forgets the open file (it is opened, checked and cut again on the next write). */
  #drop(name: string): void {
    const open = this.#files.get(name);
    this.#files.delete(name);
    try {
      open?.file.close();
    } catch {
      // already closed
    }
  }

  /** Moves the record of `name` past the first `count` pending messages, the file being `size`. */
  #commit(name: string, out: Pending, count: number, size: number): void {
    const written = this.#written!;
    const record = written[name];
    let seq = record && record.epoch === this.#epoch ? record.seq : 0;
    for (let i = count - 1; i >= 0; i--) {
      if (out.seqs[i]! > 0) {
        seq = out.seqs[i]!;
        break;
      }
    }
    written[name] = { seq, size, epoch: this.#epoch };
    this.#dirty = true;
  }

  async #flush(name: string): Promise<void> {
    const out = this.#pending.get(name);
    if (!out || out.count === 0) return;
    const bytes = out.buf.subarray(0, out.length);
    const path = `${this.#dir}/${name}`;
    let open: Open | undefined;
    let done = 0;
    try {
      open = await this.#open(name);
      while (done < bytes.length) {
        const n = await open.file.write(bytes.subarray(done));
        if (n <= 0) throw new Error("the file took no bytes");
        done += n;
      }
      open.size += bytes.length;
      this.#commit(name, out, out.count, open.size);
    } catch (error) {
      if (open) await this.#salvage(name, open, out, done);
      else this.#drop(name);
      throw new Error(`cannot write mirror file '${path}': ${describeFsError(error)}`);
    } finally {
      out.length = out.count = 0;
    }
  }

  /**
   * After a failed write: records the messages that are whole in the file
   * (its real size says how far the write got) and cuts a torn one off, so
   * the retry writes exactly the rest.
   */
  async #salvage(name: string, open: Open, out: Pending, done: number): Promise<void> {
    let real = open.size + done;
    try {
      real = (await open.file.stat()).size;
    } catch {
      // the count the writes returned
    }
    const inFile = real - open.size;
    let whole = 0;
    while (whole < out.count && out.ends[whole]! <= inFile) whole++;
    const end = whole > 0 ? out.ends[whole - 1]! : 0;
    if (whole > 0) this.#commit(name, out, whole, open.size + end);
    const keep = open.size + end;
    if (real > keep) {
      try {
        await open.file.truncate(keep);
      } catch {
        // Cut when the file is opened again (#open checks it against the record).
        this.#drop(name);
        return;
      }
    }
    open.size = Math.min(real, keep);
  }

  /**
   * Rotates DIR/<name> to `NAME.STAMP` in two steps a crash cannot split
   * badly: the sidecar records the rotation and its target first (so a
   * restart neither cuts the new file to the old one's size nor, the
   * rotation being delivered again, renames the new file away), then the
   * rename is done.
   */
  async #rotate(
    written: Record<string, Written>,
    name: string,
    seq: number,
    time: number,
  ): Promise<void> {
    this.#drop(name);
    const path = `${this.#dir}/${name}`;
    const stamp = new Date(time).toISOString().replace(/[-:T]/g, "").slice(0, 14);
    let target = `${name}.${stamp}`;
    for (let n = 1; await exists(`${this.#dir}/${target}`); n++) target = `${name}.${stamp}-${n}`;
    const before = written[name];
    written[name] = { seq, size: 0, epoch: this.#epoch, rotating: target };
    this.#dirty = true;
    try {
      await this.#saveSidecar();
    } catch (error) {
      // Not recorded: the rotation is not done, and comes again with the retry.
      if (before) written[name] = before;
      else delete written[name];
      throw new Error(`cannot rotate mirror file '${path}': ${errorMessage(error)}`);
    }
    await this.#completeRotation(written, name);
  }

  /** Does the rename a record says is due (once; a no-op when done). */
  async #completeRotation(written: Record<string, Written>, name: string): Promise<void> {
    const record = written[name];
    if (!record?.rotating) return;
    const path = `${this.#dir}/${name}`;
    const target = `${this.#dir}/${record.rotating}`;
    try {
      // Target there: renamed before a crash; DIR/<name> is the new file.
      if (!(await exists(target))) {
        try {
          await Deno.rename(path, target);
        } catch (error) {
          if (!(error instanceof Deno.errors.NotFound)) throw error;
          // Nothing was mirrored since the last rotation: an empty rotated file.
          await Deno.mkdir(this.#dir, { recursive: true, mode: 0o750 });
          await Deno.writeFile(target, new Uint8Array(0), { mode: 0o640 });
        }
      }
    } catch (error) {
      throw new Error(`cannot rotate mirror file '${path}': ${describeFsError(error)}`);
    }
    written[name] = { seq: record.seq, size: record.size, epoch: record.epoch };
    this.#dirty = true;
  }

  close(): Promise<void> {
    for (const name of [...this.#files.keys()]) this.#drop(name);
    return Promise.resolve();
  }

  /** Closes the open files, like {@linkcode MirrorSink.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** A stream name as a file name: no slashes, no leading dot. */
function safeName(stream: string): string {
  const name = stream.replace(/[^A-Za-z0-9._-]/g, "_").replace(/^\.+/, "_");
  return name === "" ? "_" : name;
}
