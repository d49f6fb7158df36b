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
 *
 * Exactly once: `DIR/.reclog-mirror.json` records, after every batch, each
 * stream's last sequence number written and the file's size then. Messages
 * delivered again after a reconnect or a crash (the client's unsaved tail)
 * are skipped, and bytes a crash left beyond the recorded size are cut
 * before writing resumes.
 *
 * @module
 */

import { describeFsError } from "./cli.ts";
import { FrameReader, FrameType } from "./frame.ts";
import type { Sink } from "./sink.ts";
import { writeFileAtomic } from "./atomic_file.ts";

/** Streams that carry messages (a line each) rather than raw file bytes. */
const MESSAGE_STREAMS = new Set(["syslog", "tcp"]);

interface Pending {
  buf: Uint8Array;
  length: number;
  /** Sequence number of the last message added. */
  seq: number;
}

/** What the sidecar file records per stream. */
interface Written {
  /** Last sequence number written (messages or rotation). */
  seq: number;
  /** Size of DIR/<stream> after it. */
  size: number;
  /** The server journal's epoch the numbers belong to. */
  epoch?: string;
}

const SIDECAR = ".reclog-mirror.json";

/**
 * Appends streams to files in a directory, rotating file copies as their
 * originals rotate.
 *
 * @example Mirror into a directory
 * ```ts
 * import { MirrorSink } from "./sink_mirror.ts";
 * await using sink = new MirrorSink("/var/log/remote/vps");
 * ```
 */
export class MirrorSink implements Sink {
  readonly description: string;
  readonly #dir: string;
  readonly #files = new Map<string, Deno.FsFile>();
  readonly #pending = new Map<string, Pending>();
  #written: Record<string, Written> | undefined;
  #dirty = false;
  #epoch: string | undefined;

  /** Mirrors into `dir`; nothing is read or created until the first write. */
  constructor(dir: string) {
    this.#dir = dir;
    this.description = `mirror ${dir}`;
  }

  /** Loads the sidecar once and cuts what a crash wrote beyond it. */
  async #load(): Promise<Record<string, Written>> {
    if (this.#written) return this.#written;
    let written: Record<string, Written> = {};
    try {
      written = JSON.parse(await Deno.readTextFile(`${this.#dir}/${SIDECAR}`));
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound) && !(error instanceof SyntaxError)) {
        throw new Error(
          `cannot read mirror state '${this.#dir}/${SIDECAR}': ${describeFsError(error)}`,
        );
      }
    }
    for (const [name, record] of Object.entries(written)) {
      const path = `${this.#dir}/${name}`;
      try {
        const { size } = await Deno.stat(path);
        if (size > record.size) await Deno.truncate(path, record.size);
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
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

  async write(frames: Uint8Array): Promise<void> {
    const written = await this.#load();
    const frame = new FrameReader(frames);
    while (frame.next()) {
      if (frame.type === FrameType.Rotated) {
        const name = safeName(frame.stream());
        if (this.#done(written, name, frame.seq)) continue;
        await this.#flush(name);
        await this.#rotate(name, frame.time);
        written[name] = { seq: frame.seq, size: 0, epoch: this.#epoch };
        this.#dirty = true;
        continue;
      }
      if (frame.type !== FrameType.Message) continue;
      const stream = frame.stream();
      const newline = MESSAGE_STREAMS.has(stream) ? 1 : 0;
      const name = safeName(stream);
      if (frame.seq > 0 && this.#done(written, name, frame.seq)) continue;
      const size = frame.end - frame.dataStart;
      let out = this.#pending.get(name);
      if (!out) {
        this.#pending.set(name, out = { buf: new Uint8Array(64 * 1024), length: 0, seq: 0 });
      }
      out.seq = frame.seq;
      if (out.length + size + newline > out.buf.length) {
        const grown = new Uint8Array(Math.max(out.length + size + newline, out.buf.length * 2));
        grown.set(out.buf.subarray(0, out.length));
        out.buf = grown;
      }
      out.buf.set(frame.buf.subarray(frame.dataStart, frame.end), out.length);
      out.length += size;
      if (newline) out.buf[out.length++] = 0x0a;
    }
    for (const name of this.#pending.keys()) await this.#flush(name);
    if (this.#dirty) await this.#saveSidecar();
  }

  /** Records what was written (temp file and rename: atomic for a crash). */
  async #saveSidecar(): Promise<void> {
    const path = `${this.#dir}/${SIDECAR}`;
    await writeFileAtomic(path, JSON.stringify(this.#written), { mode: 0o640 });
    this.#dirty = false;
  }

  async #flush(name: string): Promise<void> {
    const out = this.#pending.get(name);
    if (!out || out.length === 0) return;
    const bytes = out.buf.subarray(0, out.length);
    const path = `${this.#dir}/${name}`;
    try {
      let file = this.#files.get(name);
      if (!file) {
        await Deno.mkdir(this.#dir, { recursive: true, mode: 0o750 });
        file = await Deno.open(path, { append: true, create: true, mode: 0o640 });
        this.#files.set(name, file);
      }
      let offset = 0;
      while (offset < bytes.length) offset += await file.write(bytes.subarray(offset));
      out.length = 0;
      const written = this.#written!;
      const size = (written[name]?.size ?? (await file.stat()).size - bytes.length) + bytes.length;
      if (out.seq > 0) written[name] = { seq: out.seq, size, epoch: this.#epoch };
      this.#dirty = true;
    } catch (error) {
      out.length = 0; // the batch is retried as a whole after reconnecting
      this.#files.get(name)?.close();
      this.#files.delete(name);
      throw new Error(`cannot write mirror file '${path}': ${describeFsError(error)}`);
    }
  }

  async #rotate(name: string, time: number): Promise<void> {
    this.#files.get(name)?.close();
    this.#files.delete(name);
    const path = `${this.#dir}/${name}`;
    const stamp = new Date(time).toISOString().replace(/[-:T]/g, "").slice(0, 14);
    let target = `${path}.${stamp}`;
    for (let n = 1; await exists(target); n++) target = `${path}.${stamp}-${n}`;
    try {
      await Deno.rename(path, target);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        // Nothing was mirrored since the last rotation: an empty rotated file.
        await Deno.mkdir(this.#dir, { recursive: true, mode: 0o750 });
        await Deno.writeFile(target, new Uint8Array(0), { mode: 0o640 });
        return;
      }
      throw new Error(`cannot rotate mirror file '${path}': ${describeFsError(error)}`);
    }
  }

  close(): Promise<void> {
    for (const file of this.#files.values()) file.close();
    this.#files.clear();
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
