/**
 * The socat-mode line file (`reclog listen --file`): a {@linkcode Sink} that
 * appends each message of a batch as a line, with an optional `TIME PEER `
 * prefix, gathering the batches of any number of producers into few `write`
 * system calls. Lines are never interleaved: each line, with its prefix and
 * newline, is written whole. `write` resolves once its lines are in the file
 * (written, not fsynced), so a producer that awaits it is held back while
 * the disk is slower than the senders.
 *
 * @module
 */

import type { MessageBatch, Sink, WriteReport } from "../batch.ts";
import { ALL_TAKEN } from "../batch.ts";
import type { PeerBatch } from "../sources/batches.ts";
import { describeFsError } from "../util/errors.ts";

const NEWLINE = 0x0a;
const encoder = new TextEncoder();

/** Options for {@linkcode FileSink.open}. */
export interface FileSinkOptions {
  /**
   * Permissions of the file when it is created (before the umask).
   * @default {0o640}
   */
  mode?: number;
  /**
   * Prefix each line with the RFC 3339 time it was handed to the sink.
   * @default {false}
   */
  timestamp?: boolean;
  /**
   * Prefix each line with the batch's sender (`HOST:PORT`, the `peer` of a
   * {@linkcode PeerBatch}; `unknown` if it has none).
   * @default {false}
   */
  peer?: boolean;
  /**
   * Bytes gathered into one `write` system call, at most (a single longer
   * line still goes in one call).
   * @default {262144}
   */
  batchBytes?: number;
  /** Called once when a write fails; nothing more is written after that (writes reject). */
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
  batch: MessageBatch;
  bytes: number;
  resolve: (report: WriteReport) => void;
  reject: (error: FileSinkError) => void;
}

/**
 * An append-only line sink on one file.
 *
 * @example Append two lines
 * ```ts
 * import { FileSink } from "./line_file.ts";
 * import { ListBatch } from "../sources/batches.ts";
 * await using sink = await FileSink.open("/tmp/out.log");
 * const encoder = new TextEncoder();
 * await sink.write(new ListBatch([encoder.encode("one"), encoder.encode("two")]));
 * ```
 */
export class FileSink implements Sink {
  /** The file's path. */
  readonly path: string;
  readonly #file: Deno.FsFile;
  readonly #batchBytes: number;
  readonly #timestamp: boolean;
  readonly #peer: boolean;
  readonly #onError: ((error: FileSinkError) => void) | undefined;
  #queue: Entry[] = [];
  #queuedBytes = 0;
  #queuedLines = 0;
  #pumping: Promise<void> | undefined;
  #error: FileSinkError | undefined;
  #closing: Promise<void> | undefined;
  #linesWritten = 0;
  #bytesWritten = 0;
  #linesLostAfterError = 0;

  private constructor(path: string, file: Deno.FsFile, options: FileSinkOptions) {
    this.path = path;
    this.#file = file;
    this.#timestamp = options.timestamp ?? false;
    this.#peer = options.peer ?? false;
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
   * const sink = await FileSink.open("/tmp/out.log", { timestamp: true });
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

  /** What it writes to: `file:PATH`. */
  get description(): string {
    return `file:${this.path}`;
  }

  /** The write error, once one happened. */
  get error(): FileSinkError | undefined {
    return this.#error;
  }

  /** Lines written to the file so far. */
  get linesWritten(): number {
    return this.#linesWritten;
  }

  /** Lines not written because of a write error, or given after close. */
  get linesLost(): number {
    return (this.#error?.linesLost ?? 0) + this.#linesLostAfterError;
  }

  /** Bytes written to the file so far. */
  get bytesWritten(): number {
    return this.#bytesWritten;
  }

  /** Bytes queued and not yet written. */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /**
   * Queues the batch's messages as lines (`prefix + message + "\n"`);
   * resolves once they are written, taking all of them. The batch is read
   * until then. Rejects with the {@linkcode FileSinkError} once a write
   * failed, or after close (the lines are counted as lost).
   */
  write(batch: MessageBatch): Promise<WriteReport> {
    if (this.#error || this.#closing) {
      this.#linesLostAfterError += batch.count;
      return Promise.reject(
        this.#error ?? new FileSinkError(this.path, "the sink is closed", batch.count),
      );
    }
    if (batch.count === 0) return Promise.resolve(ALL_TAKEN);
    const prefix = this.#prefix(batch as PeerBatch);
    let bytes = 0;
    for (let i = 0; i < batch.count; i++) bytes += batch.message(i).length + 1;
    if (prefix) bytes += prefix.length * batch.count;
    return new Promise((resolve, reject) => {
      this.#queue.push({ prefix, batch, bytes, resolve, reject });
      this.#queuedBytes += bytes;
      this.#queuedLines += batch.count;
      this.#startPump();
    });
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
      for (const { prefix, batch: group } of entries) {
        for (let i = 0; i < group.count; i++) {
          const line = group.message(i);
          if (prefix) {
            batch.set(prefix, offset);
            offset += prefix.length;
          }
          batch.set(line, offset);
          offset += line.length;
          batch[offset++] = NEWLINE;
        }
        lines += group.count;
      }
      try {
        for (let done = 0; done < batch.length;) {
          done += await this.#file.write(batch.subarray(done));
        }
      } catch (error) {
        this.#fail(error, entries);
        return;
      }
      this.#linesWritten += lines;
      this.#bytesWritten += size;
      this.#queuedBytes -= size;
      this.#queuedLines -= lines;
      for (const entry of entries) entry.resolve(ALL_TAKEN);
    }
  }

  #prefix(batch: PeerBatch): Uint8Array | undefined {
    if (!this.#timestamp && !this.#peer) return undefined;
    const time = this.#timestamp ? `${new Date().toISOString()} ` : "";
    return encoder.encode(`${time}${this.#peer ? `${batch.peer ?? "unknown"} ` : ""}`);
  }

  #fail(error: unknown, failed: Entry[]): void {
    // The failed batch may be partly written; all of it counts as lost.
    const lost = new FileSinkError(this.path, describeFsError(error), this.#queuedLines);
    this.#error = lost;
    const entries = [...failed, ...this.#queue];
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#queuedLines = 0;
    this.#onError?.(lost);
    for (const entry of entries) entry.reject(lost);
  }
}
