/**
 * The journal's segments on disk (`serve --spool DIR`), so a restart of
 * `serve` continues the same journal: same epoch, next sequence number.
 *
 * Layout: `DIR/journal.json` holds `{"epoch": ..., "next": N}`, where `N` says
 * that this epoch had numbered (and spooled) every message below `N`; each
 * segment is `DIR/<first sequence number, 16 digits>.seg` holding wire frames
 * exactly as sent to clients. A segment is written by appending; a record torn
 * by a crash (an incomplete last frame) is found and cut when the spool opens.
 *
 * A journal that cannot continue its numbering (its segments are gone, end
 * below `N`, or were dropped after damage; or `journal.json` is missing) starts
 * a new epoch, so that no client resuming with an old `{epoch, next}` skips
 * new messages that reuse old numbers. While the spool cannot be written (a
 * full disk, `ulimit -f`), `journal.json` is removed for the same reason: the
 * journal then hands out numbers that are not on disk.
 *
 * @module
 */

import { describeFsError } from "../util/errors.ts";
import { isEntry, MESSAGE_HEADER_BYTES } from "../protocol/frame.ts";
import { log } from "../util/log.ts";
import { writeFileAtomic } from "../state/atomic_file.ts";
import { type JournalHole, parseHole } from "./holes.ts";

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
  /** The journal's epoch (new if the spool was empty or could not be continued). */
  epoch: string;
  /** Segments in order, contiguous but for the holes. */
  segments: SpooledSegment[];
  /** Holes in the numbering between segments (see `./holes.ts`), in order. */
  holes: JournalHole[];
  /** Sequence number the journal continues with. */
  next: number;
  /**
   * Whether `journal.json` names this epoch on disk; when false (the disk is
   * full), the journal must not write segments until it did.
   */
  metaWritten: boolean;
  /** Why `journal.json` could not be written, when it could not. */
  metaError?: unknown;
}

const TWO_32 = 2 ** 32;
const META = "journal.json";

/** `journal.json` writes still in flight, by directory (a reopen waits for them). */
const pendingMeta = new Map<string, Promise<void>>();

/**
 * A failed write to a segment file. The file was cut back to what it held
 * before the write, or, when even that failed, removed (`reset`).
 */
export class SpoolWriteError extends Error {
  /** True when the segment file was removed: none of its bytes are on disk. */
  readonly reset: boolean;
  /** The error the file system gave. */
  override readonly cause: unknown;

  /** Wraps `cause`, the error of a write to `path`. */
  constructor(path: string, cause: unknown, reset: boolean) {
    super(`Cannot write '${path}': ${describeSpoolError(cause)}`);
    this.name = "SpoolWriteError";
    this.cause = cause;
    this.reset = reset;
  }
}

/**
 * A short description of a spool write error, naming the usual causes.
 *
 * @example Describe a full disk
 * ```ts
 * import { describeSpoolError } from "./spool.ts";
 * describeSpoolError(new Error("No space left on device (os error 28)")); // "no space left on device"
 * ```
 */
export function describeSpoolError(error: unknown): string {
  if (error instanceof SpoolWriteError) return describeSpoolError(error.cause);
  if (error instanceof Error && /File too large|os error 27/i.test(error.message)) {
    return "file too large (a file size limit, ulimit -f?)";
  }
  return describeFsError(error);
}

interface OpenFile {
  file: Deno.FsFile;
  size: number;
}

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
  readonly #files = new Map<number, OpenFile>();
  #epoch = "";
  /** Bumped by every {@linkcode Spool.invalidate}: a write begun before it must not stand. */
  #generation = 0;
  #invalid = false;
  #chain: Promise<void> = Promise.resolve();
  #xfsz: (() => void) | undefined;

  private constructor(dir: string) {
    this.dir = dir;
  }

  /** Opens (creating if needed) a spool directory and checks every segment. */
  static async open(dir: string): Promise<{ spool: Spool; contents: SpoolContents }> {
    await pendingMeta.get(dir);
    try {
      await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
      const spool = new Spool(dir);
      const contents = await spool.#load();
      spool.#catchXfsz();
      return { spool, contents };
    } catch (error) {
      if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.PermissionDenied) {
        throw new Error(`Cannot use --spool '${dir}': ${describeFsError(error)}`);
      }
      throw error;
    }
  }

  /**
   * A write past `ulimit -f` raises SIGXFSZ, whose default action kills the
   * process; with a listener the write fails with EFBIG instead.
   */
  #catchXfsz(): void {
    const listener = () => {};
    try {
      Deno.addSignalListener("SIGXFSZ", listener);
      this.#xfsz = listener;
    } catch {
      // not on this platform
    }
  }

  async #load(): Promise<SpoolContents> {
    let stored: { epoch: string; next: number } | undefined;
    try {
      const parsed = JSON.parse(await Deno.readTextFile(`${this.dir}/${META}`));
      const next = parsed?.next ?? 1;
      if (
        typeof parsed?.epoch === "string" && parsed.epoch.length > 0 &&
        Number.isSafeInteger(next) && next >= 1
      ) {
        stored = { epoch: parsed.epoch, next };
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound) && !(error instanceof SyntaxError)) throw error;
    }
    const names: string[] = [];
    for await (const entry of Deno.readDir(this.dir)) {
      if (entry.isFile && /^\d{16}\.seg$/.test(entry.name)) names.push(entry.name);
    }
    names.sort();
    const segments: SpooledSegment[] = [];
    const holes: JournalHole[] = [];
    let damaged = false;
    for (let i = 0; i < names.length; i++) {
      const path = `${this.dir}/${names[i]}`;
      const firstSeq = Number(names[i]!.slice(0, 16));
      const expected = segments.length > 0
        ? segments[segments.length - 1]!.firstSeq + segments[segments.length - 1]!.count
        : firstSeq;
      const bytes = await Deno.readFile(path);
      const scan = scanSegment(bytes, firstSeq);
      const hole = firstSeq === expected ? undefined : await this.#readHole(firstSeq);
      const follows = firstSeq === expected || hole?.from === expected;
      if (!follows || (scan.length < bytes.length && i < names.length - 1)) {
        // A hole or damage before the last segment: keep what is contiguous.
        log("spool").error("segment {path} does not follow on; dropping it and later ones", {
          path,
        });
        for (const later of names.slice(i)) await Deno.remove(`${this.dir}/${later}`);
        damaged = true;
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
      if (hole) holes.push(hole);
      segments.push({ firstSeq, ...scan });
    }
    const last = segments[segments.length - 1];
    let next = last ? last.firstSeq + last.count : 1;
    // A hole at the end (nothing appended after it): the numbering continues after it.
    const endHole = stored && next < stored.next ? await this.#readHole(stored.next) : undefined;
    if (endHole?.from === next) {
      holes.push(endHole);
      next = stored!.next;
    }
    let reason: string | undefined;
    if (!stored) {
      if (segments.length > 0) reason = `${META} is missing or unreadable`;
    } else if (damaged) {
      reason = "damaged segments were dropped";
    } else if (next < stored.next) {
      reason = segments.length > 0
        ? `its segments end at seq ${next - 1}, but it had numbered messages up to ${
          stored.next - 1
        }`
        : `its segments are gone (it had numbered messages up to ${stored.next - 1})`;
    }
    const continued = stored !== undefined && reason === undefined;
    this.#epoch = continued ? stored!.epoch : crypto.randomUUID();
    if (reason) {
      log("spool").warn(
        "spool {dir}: the journal {old} cannot continue its numbering: {reason}; starting a new epoch {epoch} (resuming clients are told that an unknown number of messages may be lost)",
        { dir: this.dir, old: stored?.epoch ?? "(unknown)", reason, epoch: this.#epoch },
      );
    }
    let metaWritten = true;
    let metaError: unknown;
    if (!continued) {
      try {
        await this.#writeMeta(next);
      } catch (error) {
        // A full disk: no file may name the old epoch (or none), so remove it.
        metaWritten = false;
        metaError = error;
        this.invalidate();
      }
    }
    return {
      epoch: this.#epoch,
      segments,
      holes: continued ? holes : [],
      next,
      metaWritten,
      ...(metaWritten ? {} : { metaError }),
    };
  }

  async #readHole(firstSeq: number): Promise<JournalHole | undefined> {
    const text = await Deno.readTextFile(this.#holePath(firstSeq)).catch(() => "");
    return parseHole(text, firstSeq);
  }

  #holePath(firstSeq: number): string {
    return this.#path(firstSeq).replace(/seg$/, "gap");
  }

  /**
   * Records a hole in the numbering before the segment that will start at
   * `hole.to + 1` (synchronously, before that segment is written), so a
   * restart continues across it. Throws a {@linkcode SpoolWriteError}.
   */
  markHole(hole: JournalHole): void {
    const path = this.#holePath(hole.to + 1);
    try {
      Deno.writeTextFileSync(path, JSON.stringify(hole) + "\n", { mode: 0o600 });
    } catch (error) {
      throw new SpoolWriteError(path, error, false);
    }
  }

  #writeMeta(next: number): Promise<void> {
    return writeFileAtomic(
      `${this.dir}/${META}`,
      JSON.stringify({ epoch: this.#epoch, next }) + "\n",
      { sync: true },
    );
  }

  /**
   * Records in `journal.json` that this epoch numbered (and spooled) every
   * message below `next`. With `restore`, also ends an
   * {@linkcode Spool.invalidate}; without, does nothing while invalidated.
   * Resolves to whether the file now stands; rejects when it cannot be
   * written. Writes are done one at a time, in order.
   */
  recordNext(next: number, restore = false): Promise<boolean> {
    const generation = this.#generation;
    const run = async (): Promise<boolean> => {
      if (this.#invalid && !restore) return false;
      await this.#writeMeta(next);
      if (this.#generation !== generation) {
        // Invalidated while it was written: it must not stand.
        this.#removeMeta();
        return false;
      }
      this.#invalid = false;
      return true;
    };
    const result = this.#chain.then(run);
    const settled = result.then(() => {}, () => {});
    this.#chain = settled;
    pendingMeta.set(this.dir, settled);
    settled.then(() => {
      if (pendingMeta.get(this.dir) === settled) pendingMeta.delete(this.dir);
    });
    return result;
  }

  /**
   * Removes `journal.json` at once (this works on a full disk): the journal
   * is handing out sequence numbers that are not on disk, so a restart must
   * start a new epoch rather than reuse them.
   */
  invalidate(): void {
    this.#generation++;
    this.#invalid = true;
    this.#removeMeta();
  }

  #removeMeta(): void {
    try {
      Deno.removeSync(`${this.dir}/${META}`);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) {
        log("spool").error("cannot remove {path}: {reason}", {
          path: `${this.dir}/${META}`,
          reason: describeFsError(error),
        });
      }
    }
  }

  /** Resolves when no `journal.json` write is in flight. */
  settled(): Promise<void> {
    return this.#chain;
  }

  #path(firstSeq: number): string {
    return `${this.dir}/${String(firstSeq).padStart(16, "0")}.seg`;
  }

  /**
   * Appends bytes to the segment starting at `firstSeq` (created on first
   * use). On failure the file is cut back to what it held before, and a
   * {@linkcode SpoolWriteError} thrown.
   */
  append(firstSeq: number, bytes: Uint8Array): void {
    const path = this.#path(firstSeq);
    let open = this.#files.get(firstSeq);
    try {
      if (!open) {
        const file = Deno.openSync(path, { append: true, create: true, mode: 0o600 });
        open = { file, size: file.statSync().size };
        this.#files.set(firstSeq, open);
      }
    } catch (error) {
      throw new SpoolWriteError(path, error, false);
    }
    let offset = 0;
    try {
      while (offset < bytes.length) offset += open.file.writeSync(bytes.subarray(offset));
    } catch (error) {
      if (offset === 0) throw new SpoolWriteError(path, error, false);
      try {
        open.file.truncateSync(open.size);
      } catch {
        this.remove(firstSeq);
        throw new SpoolWriteError(path, error, true);
      }
      throw new SpoolWriteError(path, error, false);
    }
    open.size += offset;
  }

  /** Closes the segment's file (it is complete). */
  seal(firstSeq: number): void {
    const open = this.#files.get(firstSeq);
    if (!open) return;
    this.#files.delete(firstSeq);
    try {
      open.file.close();
    } catch {
      // already closed
    }
  }

  /** Reads a whole segment; throws when it cannot be read. */
  read(firstSeq: number): Uint8Array {
    return Deno.readFileSync(this.#path(firstSeq));
  }

  /** Deletes a segment; a failure is logged, not thrown. */
  remove(firstSeq: number): void {
    this.seal(firstSeq);
    try {
      Deno.removeSync(this.#holePath(firstSeq));
    } catch {
      // most segments have none
    }
    try {
      Deno.removeSync(this.#path(firstSeq));
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) {
        log("spool").error("cannot remove {path}: {reason}", {
          path: this.#path(firstSeq),
          reason: describeFsError(error),
        });
      }
    }
  }

  /** Flushes to stable storage (used on a clean stop); a failure is logged. */
  sync(): void {
    for (const [firstSeq, open] of this.#files) {
      try {
        open.file.syncSync();
      } catch (error) {
        log("spool").error("cannot sync {path}: {reason}", {
          path: this.#path(firstSeq),
          reason: describeSpoolError(error),
        });
      }
    }
  }

  /** Closes every open file; safe to call twice. */
  close(): void {
    for (const firstSeq of [...this.#files.keys()]) this.seal(firstSeq);
    if (this.#xfsz) {
      Deno.removeSignalListener("SIGXFSZ", this.#xfsz);
      this.#xfsz = undefined;
    }
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
