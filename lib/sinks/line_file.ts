/**
 * Appends whole lines to a file in batches (many lines per `write`), from any
 * number of producers, with back-pressure: `write()` says when the queue is
 * full and `ready` resolves when there is room again. Lines are never
 * interleaved: each line, with its prefix and newline, is written whole.
 *
 * @module
 */

import { describeFsError } from "../util/errors.ts";

const NEWLINE = 0x0a;

/** Options for {@linkcode FileSink.open}. */
export interface FileSinkOptions {
  /**
   * Permissions of the file when it is created (before the umask).
   * @default {0o640}
   */
  mode?: number;
  /**
   * Queued bytes above which `write()` returns false; producers should then
   * wait for `ready` (which resolves once half of it is written).
   * @default {4194304}
   */
  highWaterMark?: number;
  /**
   * Bytes gathered into one `write` system call, at most (a single longer
   * line still goes in one call).
   * @default {262144}
   */
  batchBytes?: number;
  /** Called once when a write fails; nothing more is written after that. */
  onError?: (error: FileSinkError) => void;
}

/**
 * A failed write to the sink's file; the message names the file.
 *
 * @example Report a write failure
 * ```ts
 * import { FileSinkError } from "./line_file.ts";
 * const error = new FileSinkError("/var/log/x", "no space left on device", 12);
 * console.error(error.message);
 * ```
 */
export class FileSinkError extends Error {
  /** Always `"FileSinkError"`. */
  override name = "FileSinkError";
  /** The file that could not be written. */
  readonly path: string;
  /** Lines that were queued when the write failed (and are lost). */
  readonly linesLost: number;

  /** Creates the error for `path` with a short reason. */
  constructor(path: string, reason: string, linesLost: number) {
    super(`cannot write to '${path}': ${reason} (${linesLost} lines not written)`);
    this.path = path;
    this.linesLost = linesLost;
  }
}

interface Entry {
  prefix: Uint8Array | undefined;
  lines: Uint8Array[];
  bytes: number;
}

/**
 * An append-only line sink on one file.
 *
 * @example Append two lines
 * ```ts
 * import { FileSink } from "./line_file.ts";
 * await using sink = await FileSink.open("/tmp/out.log");
 * const encoder = new TextEncoder();
 * if (!sink.write([encoder.encode("one"), encoder.encode("two")])) await sink.ready;
 * await sink.flush();
 * ```
 */
export class FileSink implements AsyncDisposable {
  /** The file's path. */
  readonly path: string;
  readonly #file: Deno.FsFile;
  readonly #highWaterMark: number;
  readonly #batchBytes: number;
  readonly #onError: ((error: FileSinkError) => void) | undefined;
  #queue: Entry[] = [];
  #queuedBytes = 0;
  #queuedLines = 0;
  #pumping: Promise<void> | undefined;
  #readyWaiters: Array<() => void> = [];
  #error: FileSinkError | undefined;
  #closing: Promise<void> | undefined;
  #linesWritten = 0;
  #bytesWritten = 0;
  #linesLostAfterError = 0;

  private constructor(path: string, file: Deno.FsFile, options: FileSinkOptions) {
    this.path = path;
    this.#file = file;
    this.#highWaterMark = options.highWaterMark ?? 4 * 1024 * 1024;
    this.#batchBytes = options.batchBytes ?? 256 * 1024;
    this.#onError = options.onError;
  }

  /**
   * Opens (creating if absent, mode 0640) `path` for appending. Throws the
   * file-system error if it cannot be opened.
   *
   * @example Open a sink
   * ```ts
   * import { FileSink } from "./line_file.ts";
   * const sink = await FileSink.open("/tmp/out.log", { highWaterMark: 1 << 20 });
   * await sink.close();
   * ```
   */
  static async open(path: string, options: FileSinkOptions = {}): Promise<FileSink> {
    const file = await Deno.open(path, {
      append: true,
      create: true,
      mode: options.mode ?? 0o640,
    });
    try {
      if ((await file.stat()).isDirectory) throw new Deno.errors.IsADirectory(path);
    } catch (error) {
      file.close();
      throw error;
    }
    return new FileSink(path, file, options);
  }

  /** The write error, once one happened. */
  get error(): FileSinkError | undefined {
    return this.#error;
  }

  /** Lines written to the file so far. */
  get linesWritten(): number {
    return this.#linesWritten;
  }

  /** Bytes written to the file so far. */
  get bytesWritten(): number {
    return this.#bytesWritten;
  }

  /** Lines not written because of a write error, or given after close. */
  get linesLost(): number {
    return (this.#error?.linesLost ?? 0) + this.#linesLostAfterError;
  }

  /** Bytes queued and not yet written. */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /**
   * Resolves when the queue is below half the high-water mark (or the sink
   * failed or closed: check `error`).
   */
  get ready(): Promise<void> {
    if (this.#queuedBytes <= this.#highWaterMark / 2 || this.#error || this.#closing) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#readyWaiters.push(resolve));
  }

  /**
   * Queues lines (without their newline), each written as `prefix + line +
   * "\n"`. The arrays are kept until written: do not change them. Returns
   * false when the queue is above the high-water mark, or the sink failed or
   * closed (then the lines are counted as lost).
   */
  write(lines: Uint8Array[], prefix?: Uint8Array): boolean {
    if (this.#error || this.#closing) {
      this.#linesLostAfterError += lines.length;
      return false;
    }
    if (lines.length === 0) return this.#queuedBytes <= this.#highWaterMark;
    let bytes = 0;
    for (const line of lines) bytes += line.length + 1;
    if (prefix) bytes += prefix.length * lines.length;
    this.#queue.push({ prefix, lines, bytes });
    this.#queuedBytes += bytes;
    this.#queuedLines += lines.length;
    this.#startPump();
    return this.#queuedBytes <= this.#highWaterMark;
  }

  /** Resolves once everything queued is written; rejects with the write error. */
  async flush(): Promise<void> {
    while (this.#pumping) await this.#pumping;
    if (this.#error) throw this.#error;
  }

  /** Writes what is queued and closes the file. Safe to call twice. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      try {
        while (this.#pumping) await this.#pumping;
      } finally {
        this.#wakeReady();
        try {
          this.#file.close();
        } catch {
          // already closed
        }
      }
    })();
    return this.#closing;
  }

  /** Same as `close()`, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #startPump(): void {
    this.#pumping ??= this.#pump().finally(() => {
      this.#pumping = undefined;
      // A write that came after the loop's last look but before this ran
      // found #pumping still set: start again for it.
      if (this.#queue.length > 0 && !this.#error) this.#startPump();
    });
  }

  async #pump(): Promise<void> {
    while (this.#queue.length > 0 && !this.#error) {
      let size = 0;
      let count = 0;
      while (
        count < this.#queue.length &&
        (count === 0 || size + this.#queue[count]!.bytes <= this.#batchBytes)
      ) {
        size += this.#queue[count]!.bytes;
        count++;
      }
      const entries = this.#queue.splice(0, count);
      const batch = new Uint8Array(size);
      let offset = 0;
      let lines = 0;
      for (const { prefix, lines: group } of entries) {
        for (const line of group) {
          if (prefix) {
            batch.set(prefix, offset);
            offset += prefix.length;
          }
          batch.set(line, offset);
          offset += line.length;
          batch[offset++] = NEWLINE;
        }
        lines += group.length;
      }
      try {
        for (let done = 0; done < batch.length;) {
          done += await this.#file.write(batch.subarray(done));
        }
      } catch (error) {
        this.#fail(error);
        return;
      }
      this.#linesWritten += lines;
      this.#bytesWritten += size;
      this.#queuedBytes -= size;
      this.#queuedLines -= lines;
      if (this.#queuedBytes <= this.#highWaterMark / 2) this.#wakeReady();
    }
  }

  #fail(error: unknown): void {
    // The failed batch may be partly written; all of it counts as lost.
    this.#error = new FileSinkError(this.path, describeFsError(error), this.#queuedLines);
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#queuedLines = 0;
    this.#wakeReady();
    this.#onError?.(this.#error);
  }

  #wakeReady(): void {
    const waiters = this.#readyWaiters;
    this.#readyWaiters = [];
    for (const wake of waiters) wake();
  }
}
