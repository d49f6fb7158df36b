/**
 * File streams (`serve --file PATH[=NAME]`): follows a log file like
 * `tail -F`, handing on raw byte runs that end at a newline, so that the
 * concatenation of a stream's messages is the file, byte for byte.
 *
 * - Rotation by rename (logrotate's default) or deletion and re-creation:
 *   the old file is read to its end, a rotation is reported, and the new file
 *   is followed from 0.
 * - Rotation by copytruncate (the size shrinks): reported, then from 0.
 * - A file that does not exist yet is waited for.
 * - Where it was read to (device, inode, offset) is available as
 *   {@linkcode FileTail.position}; started from such a checkpoint it
 *   continues exactly there, even if the file rotated meanwhile (the old
 *   inode is looked for among the rotated siblings, fetchlogs' `--rotated`).
 *
 * @module
 */

import type { BatchHandler, Source } from "../batch.ts";
import { RangeBatch } from "../batch.ts";
import { describeFsError, errorMessage } from "../util/errors.ts";
import { splitLines } from "../framing/lines.ts";
import { globToRegExp } from "./glob.ts";
import { log } from "../util/log.ts";

/** Where a file was read to. */
export interface FilePosition {
  /** Device of the file. */
  dev: number;
  /** Inode of the file. */
  ino: number;
  /** Bytes handed on. */
  offset: number;
}

/** Options for {@linkcode FileTail}. */
export interface FileTailOptions {
  /** The file to follow. */
  path: string;
  /** The stream's name, for log lines. */
  name: string;
  /**
   * Receives the whole lines of each read (and a partial last line before a
   * rotation, or a piece of a line longer than `maxChunk`) as one batch, in
   * place (valid until the call, or its promise, settles; reading waits).
   */
  onBatch: BatchHandler;
  /**
   * Called when the file was rotated, after its last bytes.
   * @default {undefined}
   */
  onRotated?: () => void;
  /** Stops following when aborted. */
  signal?: AbortSignal;
  /** Continue from here (a checkpoint from an earlier run). */
  from?: FilePosition;
  /**
   * Start a file never seen before at its beginning instead of its end.
   * @default {false}
   */
  fromStart?: boolean;
  /**
   * Globs of rotated siblings to look for a checkpointed inode in, e.g.
   * `/var/log/messages.*[0-9]` (the name part may hold `*`, `?`, `[...]`).
   * @default {["<path>.*"]}
   */
  rotatedGlobs?: string[];
  /**
   * Longest run handed on; a longer line is split (never dropped).
   * @default {262144}
   */
  maxChunk?: number;
  /**
   * How often the file is looked at, ms.
   * @default {100}
   */
  intervalMs?: number;
}

interface Open {
  file: Deno.FsFile;
  dev: number;
  ino: number;
  /** Bytes read from the file (handed on plus pending). */
  read: number;
  /** Its first bytes, to notice a copytruncate that the size hides. */
  head?: Uint8Array;
}

const HEAD_BYTES = 256;

/** Reads `length` bytes at `offset`, then puts the file position back at `resume`. */
async function readAt(
  file: Deno.FsFile,
  offset: number,
  length: number,
  resume: number,
): Promise<Uint8Array> {
  const buf = new Uint8Array(length);
  await file.seek(offset, Deno.SeekMode.Start);
  let filled = 0;
  while (filled < length) {
    const n = await file.read(buf.subarray(filled));
    if (n === null || n === 0) break;
    filled += n;
  }
  await file.seek(resume, Deno.SeekMode.Start);
  return buf.subarray(0, filled);
}

/**
 * Follows one file.
 *
 * @example Follow /var/log/syslog
 * ```ts
 * import { FileTail } from "./file.ts";
 * await using tail = new FileTail({
 *   path: "/var/log/syslog",
 *   name: "syslog-file",
 *   onBatch: (batch) => console.log(batch.count, "lines"),
 *   onRotated: () => console.log("rotated"),
 * });
 * await tail.listen();
 * ```
 */
export class FileTail implements Source {
  readonly #options: FileTailOptions;
  readonly #buf: Uint8Array;
  readonly #batch = new RangeBatch(256);
  readonly #pushLine = (start: number, lf: number) => this.#batch.push(start, lf + 1);
  #pending = 0;
  #open: Open | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running: Promise<void> = Promise.resolve();
  #closed = false;
  #switchSeen = false;
  #missingLogged = false;
  /**
   * Files (dev:ino) already read or older than us: never read again as
   * rotated. Pruned to the files that still exist whenever siblings are
   * listed, so it stays as small as the rotated set on disk.
   */
  readonly #seen = new Set<string>();

  /**
   * Makes a tail with a `maxChunk`-byte buffer; nothing is opened until
   * {@linkcode FileTail.listen}.
   */
  constructor(options: FileTailOptions) {
    this.#options = options;
    this.#buf = new Uint8Array(options.maxChunk ?? 256 * 1024);
  }

  /**
   * Files remembered as already read (the rotated siblings still on disk and
   * the file followed); bounded by what is on disk, not by rotations.
   */
  get seenFiles(): number {
    return this.#seen.size;
  }

  /** Where the file was read to (what was handed on), once open. */
  get position(): FilePosition | undefined {
    const open = this.#open;
    return open && { dev: open.dev, ino: open.ino, offset: open.read - this.#pending };
  }

  /** What it reads: `file:PATH`. */
  get description(): string {
    return `file:${this.#options.path}`;
  }

  /**
   * Opens the file (or, if it does not exist yet, starts waiting for it) and
   * starts following it; resolves once open (with undefined: no address).
   */
  async listen(): Promise<undefined> {
    await this.#resume();
    if (this.#open) this.#seen.add(key(this.#open));
    const signal = this.#options.signal;
    if (signal?.aborted) queueMicrotask(() => void this.close());
    signal?.addEventListener("abort", () => this.close(), { once: true });
    this.#schedule();
    return undefined;
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#running = this.#poll().catch((error) => {
        log("file").error("{name}: {error}", {
          name: this.#options.name,
          error: errorMessage(error),
        });
      }).finally(() => this.#schedule());
    }, this.#options.intervalMs ?? 100);
  }

  /** Opens the file at its start position (checkpoint, end, or beginning). */
  async #resume(): Promise<void> {
    const { path, name, from } = this.#options;
    // Rotated siblings are history, except, after a checkpoint, the file we
    // were reading and any rotated after it (those are read below).
    const siblings = await this.#siblings();
    const previous = from &&
      siblings.find((s) => s.stat.ino === from.ino && s.stat.dev === from.dev);
    for (const sibling of siblings) {
      if (
        !previous || (sibling.stat.mtime?.getTime() ?? 0) < (previous.stat.mtime?.getTime() ?? 0)
      ) {
        this.#seen.add(key(sibling.stat));
      }
    }
    const stat = await statOrUndefined(path);
    if (!stat) {
      log("file").info("{name}: waiting for {path} to appear", { name, path });
      this.#missingLogged = true;
      return;
    }
    if (from && stat.ino === from.ino && stat.dev === from.dev) {
      if (stat.size < from.offset) {
        log("file").warn("{name}: {path} shrank while we were away; reading it from 0", {
          name,
          path,
        });
        this.#open = await openAt(path, 0);
      } else {
        this.#open = await openAt(path, from.offset);
      }
      return;
    }
    if (from) {
      const rotated = await this.#findRotated(from);
      if (rotated) {
        log("file").info("{name}: {path} rotated while we were away; finishing {rotated}", {
          name,
          path,
          rotated,
        });
        await this.#finishRotated(await openAt(rotated, from.offset), stat);
      } else {
        log("file").warn(
          "{name}: the file read before ({ino}) is gone and no rotated sibling has it; reading {path} from 0",
          { name, ino: from.ino, path },
        );
      }
      this.#open = await openAt(path, 0);
      return;
    }
    this.#open = await openAt(path, this.#options.fromStart ? 0 : stat.size);
  }

  /** Rotated siblings (by --rotated globs), oldest modification first. */
  async #siblings(): Promise<Array<{ path: string; stat: Deno.FileInfo }>> {
    const found = new Map<string, { path: string; stat: Deno.FileInfo }>();
    for (const glob of this.#options.rotatedGlobs ?? [`${this.#options.path}.*`]) {
      const slash = glob.lastIndexOf("/");
      const dir = slash >= 0 ? glob.slice(0, slash) || "/" : ".";
      const pattern = globToRegExp(glob.slice(slash + 1));
      try {
        for await (const entry of Deno.readDir(dir)) {
          const path = `${dir}/${entry.name}`;
          if (
            !entry.isFile || path === this.#options.path || !pattern.test(entry.name) ||
            /\.(gz|xz|bz2|zst)$/.test(entry.name)
          ) continue;
          const stat = await statOrUndefined(path);
          if (stat) found.set(key(stat), { path, stat });
        }
      } catch (error) {
        log("file").warn("cannot list {dir}: {error}", { dir, error: describeFsError(error) });
      }
    }
    return [...found.values()].sort((a, b) =>
      (a.stat.mtime?.getTime() ?? 0) - (b.stat.mtime?.getTime() ?? 0)
    );
  }

  async #findRotated(from: FilePosition): Promise<string | undefined> {
    const sibling = (await this.#siblings()).find((s) =>
      s.stat.ino === from.ino && s.stat.dev === from.dev
    );
    return sibling?.path;
  }

  /** Rotated siblings not read yet, other than the held and the current file. */
  async #unseen(
    held: Open | undefined,
    current: { dev: number | null; ino: number | null } | undefined,
  ): Promise<Array<{ path: string; stat: Deno.FileInfo }>> {
    const siblings = await this.#siblings();
    // Forget files that are gone (deleted, compressed): they cannot come back
    // as they were, and a new file may reuse the inode.
    const present = new Set(siblings.map((sibling) => key(sibling.stat)));
    for (const file of [held, current, this.#open]) if (file) present.add(key(file));
    for (const id of this.#seen) if (!present.has(id)) this.#seen.delete(id);
    return siblings.filter((sibling) => {
      const id = key(sibling.stat);
      return !this.#seen.has(id) && id !== (held && key(held)) &&
        id !== (current && key(current));
    });
  }

  /**
   * Finishes the file we held, and any file that was created and rotated
   * away between two looks (rotations faster than the poll), in the order
   * they were last written, each followed by a rotation.
   */
  async #finishRotated(
    held: Open | undefined,
    current: { dev: number | null; ino: number | null } | undefined,
  ): Promise<void> {
    const files: Array<{ path?: string; mtime: number }> = (await this.#unseen(held, current))
      .map((sibling) => ({ path: sibling.path, mtime: sibling.stat.mtime?.getTime() ?? 0 }));
    if (held) files.push({ mtime: (await held.file.stat()).mtime?.getTime() ?? 0 });
    files.sort((a, b) => a.mtime - b.mtime);
    // The held file's partial last line waits while older files are read.
    const stash = this.#buf.slice(0, this.#pending);
    this.#pending = 0;
    for (const file of files) {
      if (file.path) {
        log("file").info("{name}: reading {path}, rotated before it was looked at", {
          name: this.#options.name,
          path: file.path,
        });
        this.#open = await openAt(file.path, 0);
      } else {
        this.#open = held!;
        this.#buf.set(stash);
        this.#pending = stash.length;
      }
      this.#seen.add(key(this.#open));
      await this.#drain(true);
      this.#open.file.close();
      this.#options.onRotated?.();
    }
  }

  async #poll(): Promise<void> {
    const { path, name } = this.#options;
    if (!this.#open) {
      if (!await statOrUndefined(path)) return;
      if (this.#missingLogged) log("file").info("{name}: {path} appeared", { name, path });
      this.#missingLogged = false;
      this.#open = await openAt(path, 0);
      this.#seen.add(key(this.#open));
    }
    const open = this.#open;
    const stat = await statOrUndefined(path);
    const same = stat && stat.ino === open.ino && stat.dev === open.dev;
    if (same && (stat.size < open.read || !await this.#sameHead(open))) {
      // copytruncate: what was read stays as it was (the copy holds it);
      // the file starts again at 0. Checked before reading, so that new
      // bytes are not taken for the old file's continuation.
      await this.#flushPending();
      this.#options.onRotated?.();
      log("file").info("{name}: {path} was truncated (copytruncate); reading it from 0", {
        name,
        path,
      });
      await open.file.seek(0, Deno.SeekMode.Start);
      open.read = 0;
      open.head = undefined;
      await this.#drain(false);
      return;
    }
    if (!stat || same) {
      await this.#drain(false);
      return;
    }
    // Renamed away or re-created. Give writers still holding the old file one
    // more interval, unless the new file already has data or other files were
    // rotated meanwhile (those must be read in order, before anything newer).
    if (!this.#switchSeen && stat.size === 0 && (await this.#unseen(open, stat)).length === 0) {
      this.#switchSeen = true;
      await this.#drain(false);
      return;
    }
    this.#switchSeen = false;
    await this.#finishRotated(open, stat);
    log("file").info("{name}: {path} was rotated; following the new file", { name, path });
    let current: Open;
    try {
      current = await openAt(path, 0);
    } catch (error) {
      // Gone again between the look and the open (a rename, then a create):
      // the old file is finished and closed; wait for the path to reappear.
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      this.#open = undefined;
      return;
    }
    // The path may have moved on again since it was looked at: whatever was
    // rotated meanwhile is older than what we just opened, so it goes first.
    await this.#finishRotated(undefined, current);
    this.#open = current;
    this.#seen.add(key(current));
    await this.#drain(false);
  }

  /**
   * Whether the file still starts with the bytes it started with when read
   * (a copytruncate followed by more writes than were read before leaves the
   * size larger but the head different).
   */
  async #sameHead(open: Open): Promise<boolean> {
    if (!open.head || open.head.length === 0) return true;
    const now = await readAt(open.file, 0, open.head.length, open.read);
    return now.length === open.head.length && now.every((byte, i) => byte === open.head![i]);
  }

  /** Reads to the end; hands on whole lines (and, if `final`, the partial one). */
  async #drain(final: boolean): Promise<void> {
    const open = this.#open!;
    const buf = this.#buf;
    while (true) {
      const n = await open.file.read(buf.subarray(this.#pending));
      if (n === null || n === 0) break;
      open.read += n;
      if (open.read - n < HEAD_BYTES && (open.head?.length ?? 0) < HEAD_BYTES) {
        // Remember how the file starts, as read (see #sameHead).
        open.head = await readAt(open.file, 0, Math.min(open.read, HEAD_BYTES), open.read);
      }
      const total = this.#pending + n;
      const batch = this.#batch;
      batch.reset(buf);
      // Whole lines with their LF: the stream's messages concatenate to the file.
      const start = splitLines(buf.subarray(0, total), this.#pushLine);
      if (start === 0) {
        this.#pending = total;
        if (total === buf.length) {
          // A line longer than a message: hand on a piece, never drop it.
          await this.#hand(0, total);
          this.#pending = 0;
        }
        continue;
      }
      const done = this.#options.onBatch(batch);
      if (done) await done;
      buf.copyWithin(0, start, total);
      this.#pending = total - start;
    }
    if (final) await this.#flushPending();
  }

  async #flushPending(): Promise<void> {
    if (this.#pending > 0) await this.#hand(0, this.#pending);
    this.#pending = 0;
  }

  /** Hands on `buf[start, end)` alone. */
  async #hand(start: number, end: number): Promise<void> {
    this.#batch.reset(this.#buf);
    this.#batch.push(start, end);
    const done = this.#options.onBatch(this.#batch);
    if (done) await done;
  }

  /** Stops following; safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#running;
    try {
      this.#open?.file.close(); // #open stays: position() still tells where it stopped
    } catch {
      // closed already (a rotation in progress closed it)
    }
  }

  /** Stops following, like {@linkcode FileTail.close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function key(file: { dev: number | null; ino: number | null }): string {
  return `${file.dev}:${file.ino}`;
}

async function statOrUndefined(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

async function openAt(path: string, offset: number): Promise<Open> {
  const file = await Deno.open(path, { read: true });
  const stat = await file.stat();
  if (offset > 0) await file.seek(offset, Deno.SeekMode.Start);
  return { file, dev: stat.dev ?? 0, ino: stat.ino ?? 0, read: offset };
}
