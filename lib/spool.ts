/**
 * The journal's segments on disk (`serve --spool DIR`), so a restart of
 * `serve` continues the same journal: same epoch, next sequence number.
 *
 * Layout: `DIR/journal.json` holds `{"epoch": ...}`; each segment is
 * `DIR/<first sequence number, 16 digits>.seg` holding wire frames exactly as
 * sent to clients. A segment is written by appending; a record torn by a
 * crash (an incomplete last frame) is found and cut when the spool opens.
 *
 * @module
 */

import { describeFsError } from "./cli.ts";
import { isEntry, MESSAGE_HEADER_BYTES } from "./frame.ts";
import { log } from "./log.ts";
import { writeFileAtomic } from "./atomic_file.ts";

/** A segment file found when the spool opened. */
export interface SpooledSegment {
  /** Sequence number of its first frame. */
  firstSeq: number;
  /** Frames in it. */
  count: number;
  /** Bytes of whole frames. */
  length: number;
  /** Receive time of its first message, ms since the epoch. */
  firstTime: number;
  /** Receive time of its last message, ms since the epoch. */
  lastTime: number;
}

/** What {@linkcode Spool.open} found. */
export interface SpoolContents {
  /** The journal's epoch (new if the spool was empty). */
  epoch: string;
  /** Segments in order, contiguous. */
  segments: SpooledSegment[];
}

const TWO_32 = 2 ** 32;

/**
 * Segment files in a directory.
 *
 * @example Open a spool and list what it holds
 * ```ts
 * import { Spool } from "./spool.ts";
 * const { spool, contents } = await Spool.open("/var/spool/reclog");
 * console.log(contents.epoch, contents.segments.length);
 * spool.close();
 * ```
 */
export class Spool implements Disposable {
  /** The spool directory, as given to {@linkcode Spool.open}. */
  readonly dir: string;
  readonly #files = new Map<number, Deno.FsFile>();

  private constructor(dir: string) {
    this.dir = dir;
  }

  /** Opens (creating if needed) a spool directory and checks every segment. */
  static async open(dir: string): Promise<{ spool: Spool; contents: SpoolContents }> {
    try {
      await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
      const spool = new Spool(dir);
      const contents = await spool.#load();
      return { spool, contents };
    } catch (error) {
      if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.PermissionDenied) {
        throw new Error(`Cannot use --spool '${dir}': ${describeFsError(error)}`);
      }
      throw error;
    }
  }

  async #load(): Promise<SpoolContents> {
    let epoch: string | undefined;
    try {
      epoch = JSON.parse(await Deno.readTextFile(`${this.dir}/journal.json`)).epoch;
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound) && !(error instanceof SyntaxError)) throw error;
    }
    const names: string[] = [];
    for await (const entry of Deno.readDir(this.dir)) {
      if (entry.isFile && /^\d{16}\.seg$/.test(entry.name)) names.push(entry.name);
    }
    names.sort();
    const segments: SpooledSegment[] = [];
    for (let i = 0; i < names.length; i++) {
      const path = `${this.dir}/${names[i]}`;
      const firstSeq = Number(names[i]!.slice(0, 16));
      const expected = segments.length > 0
        ? segments[segments.length - 1]!.firstSeq + segments[segments.length - 1]!.count
        : firstSeq;
      const bytes = await Deno.readFile(path);
      const scan = scanSegment(bytes, firstSeq);
      if (firstSeq !== expected || (scan.length < bytes.length && i < names.length - 1)) {
        // A hole or damage before the last segment: keep what is contiguous.
        log("spool").error("segment {path} does not follow on; dropping it and later ones", {
          path,
        });
        for (const later of names.slice(i)) await Deno.remove(`${this.dir}/${later}`);
        break;
      }
      if (scan.length < bytes.length) {
        log("spool").warn(
          "cut a torn record at the end of {path}: {bytes} bytes after {count} whole messages",
          { path, bytes: bytes.length - scan.length, count: scan.count },
        );
        await Deno.truncate(path, scan.length);
      }
      if (scan.count === 0) {
        await Deno.remove(path);
        continue;
      }
      segments.push({ firstSeq, ...scan });
    }
    if (!epoch || segments.length === 0) {
      epoch ??= crypto.randomUUID();
    }
    await writeFileAtomic(`${this.dir}/journal.json`, JSON.stringify({ epoch }) + "\n", {
      sync: true,
    });
    return { epoch, segments };
  }

  #path(firstSeq: number): string {
    return `${this.dir}/${String(firstSeq).padStart(16, "0")}.seg`;
  }

  /** Appends bytes to the segment starting at `firstSeq` (created on first use). */
  append(firstSeq: number, bytes: Uint8Array): void {
    let file = this.#files.get(firstSeq);
    if (!file) {
      file = Deno.openSync(this.#path(firstSeq), { append: true, create: true, mode: 0o600 });
      this.#files.set(firstSeq, file);
    }
    let offset = 0;
    while (offset < bytes.length) offset += file.writeSync(bytes.subarray(offset));
  }

  /** Closes the segment's file (it is complete). */
  seal(firstSeq: number): void {
    this.#files.get(firstSeq)?.close();
    this.#files.delete(firstSeq);
  }

  /** Reads a whole segment. */
  read(firstSeq: number): Uint8Array {
    return Deno.readFileSync(this.#path(firstSeq));
  }

  /** Deletes a segment. */
  remove(firstSeq: number): void {
    this.seal(firstSeq);
    try {
      Deno.removeSync(this.#path(firstSeq));
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }

  /** Flushes to stable storage (used on a clean stop). */
  sync(): void {
    for (const file of this.#files.values()) file.syncSync();
  }

  /** Closes every open file; safe to call twice. */
  close(): void {
    for (const file of this.#files.values()) file.close();
    this.#files.clear();
  }

  /** Closes every open file, like {@linkcode Spool.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** Walks frames while they are whole, valid message frames with consecutive numbers. */
function scanSegment(
  bytes: Uint8Array,
  firstSeq: number,
): { count: number; length: number; firstTime: number; lastTime: number } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  let count = 0;
  let firstTime = 0;
  let lastTime = 0;
  while (pos + MESSAGE_HEADER_BYTES <= bytes.length) {
    const length = view.getUint32(pos);
    const end = pos + 4 + length;
    if (length < MESSAGE_HEADER_BYTES - 4 || end > bytes.length) break;
    if (!isEntry(bytes[pos + 4]!)) break;
    const seq = view.getUint32(pos + 5) * TWO_32 + view.getUint32(pos + 9);
    if (seq !== firstSeq + count) break;
    if (pos + MESSAGE_HEADER_BYTES + bytes[pos + 21]! > end) break;
    const time = view.getUint32(pos + 13) * TWO_32 + view.getUint32(pos + 17);
    if (count === 0) firstTime = time;
    lastTime = time;
    count++;
    pos = end;
  }
  return { count, length: pos, firstTime, lastTime };
}
