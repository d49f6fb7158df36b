/**
 * The mirror sink (`pull --mirror DIR`): each stream is appended, a message
 * a line, to `DIR/<stream>` (`DIR/syslog` for syslog, `DIR/tcp` for
 * `serve --tcp-in`, a file's name for file streams). One write per stream per
 * batch; a write that fails rejects, so `pull` keeps its resume point and
 * retries later instead of losing anything.
 *
 * @module
 */

import { describeFsError } from "./cli.ts";
import { FrameReader, FrameType } from "./frame.ts";
import type { Sink } from "./sink.ts";

/**
 * Appends streams to files in a directory.
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
  readonly #pending = new Map<string, { buf: Uint8Array; length: number }>();

  constructor(dir: string) {
    this.#dir = dir;
    this.description = `mirror ${dir}`;
  }

  async write(frames: Uint8Array): Promise<void> {
    const frame = new FrameReader(frames);
    while (frame.next()) {
      if (frame.type !== FrameType.Message) continue;
      const name = safeName(frame.stream());
      let out = this.#pending.get(name);
      const size = frame.end - frame.dataStart + 1;
      if (!out) this.#pending.set(name, out = { buf: new Uint8Array(64 * 1024), length: 0 });
      if (out.length + size > out.buf.length) {
        const grown = new Uint8Array(Math.max(out.length + size, out.buf.length * 2));
        grown.set(out.buf.subarray(0, out.length));
        out.buf = grown;
      }
      out.buf.set(frame.buf.subarray(frame.dataStart, frame.end), out.length);
      out.buf[out.length + size - 1] = 0x0a;
      out.length += size;
    }
    for (const [name, out] of this.#pending) {
      if (out.length === 0) continue;
      const bytes = out.buf.subarray(0, out.length);
      out.length = 0;
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
      } catch (error) {
        this.#files.get(name)?.close();
        this.#files.delete(name);
        throw new Error(`cannot write mirror file '${path}': ${describeFsError(error)}`);
      }
    }
  }

  close(): Promise<void> {
    for (const file of this.#files.values()) file.close();
    this.#files.clear();
    return Promise.resolve();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** A stream name as a file name: no slashes, no leading dot. */
function safeName(stream: string): string {
  const name = stream.replace(/[^A-Za-z0-9._-]/g, "_").replace(/^\.+/, "_");
  return name === "" ? "_" : name;
}
