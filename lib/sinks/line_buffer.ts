/**
 * The bounded buffer of {@linkcode LineSender}: lines waiting to be sent, and
 * lines written to the connection that the kernel has not accepted yet
 * ("in flight"), which go back to the front if the connection fails.
 *
 * @module
 */

/** Lines written to a connection in one write, not yet accepted by the kernel. */
export interface InFlight {
  /** The lines, without newlines. */
  readonly lines: Uint8Array[];
  /** Their size with one newline each. */
  readonly bytes: number;
}

/**
 * A FIFO of lines with a size (each line counts its length plus a newline),
 * taken off in newline-terminated batches and confirmed or requeued.
 *
 * @example Take a batch and confirm it
 * ```ts
 * import { LineBuffer } from "./line_buffer.ts";
 * const buffer = new LineBuffer(1024);
 * buffer.push([new TextEncoder().encode("one")]);
 * const { entry, bytes } = buffer.take(64 * 1024);
 * // ...write `bytes` ("one\n"), then:
 * buffer.confirm(entry); // 1
 * ```
 */
export class LineBuffer {
  /** Bytes of unsent lines kept at most (see {@linkcode LineBuffer.over}). */
  readonly limit: number;
  #queue: Uint8Array[] = [];
  #head = 0;
  #queuedBytes = 0;
  #inFlight: InFlight[] = [];
  #inFlightBytes = 0;

  /** Makes an empty buffer of `limit` bytes. */
  constructor(limit: number) {
    this.limit = limit;
  }

  /** Whether the unsent lines are over the limit. */
  get over(): boolean {
    return this.#queuedBytes > this.limit;
  }

  /** Whether no line is waiting to be sent (in-flight lines aside). */
  get unsentEmpty(): boolean {
    return this.#head === this.#queue.length;
  }

  /** Whether nothing is buffered at all. */
  get empty(): boolean {
    return this.unsentEmpty && this.#inFlight.length === 0;
  }

  /** Lines in flight, as writes. */
  get inFlightWrites(): number {
    return this.#inFlight.length;
  }

  /** Bytes in flight. */
  get inFlightBytes(): number {
    return this.#inFlightBytes;
  }

  /** Lines buffered (unsent, or in flight). */
  get pending(): number {
    let lines = this.#queue.length - this.#head;
    for (const entry of this.#inFlight) lines += entry.lines.length;
    return lines;
  }

  /** Appends copies of `lines` (one compact copy: the chunks they point into may be much larger). */
  push(lines: Uint8Array[]): void {
    let size = 0;
    for (const line of lines) size += line.length;
    const copy = new Uint8Array(size);
    let offset = 0;
    for (const line of lines) {
      copy.set(line, offset);
      this.#queue.push(copy.subarray(offset, offset + line.length));
      offset += line.length;
    }
    this.#queuedBytes += size + lines.length;
  }

  /** Drops the oldest unsent lines until the buffer is within its limit; returns how many. */
  dropOldest(): number {
    let dropped = 0;
    while (this.#queuedBytes > this.limit && this.#head < this.#queue.length) {
      this.#queuedBytes -= this.#queue[this.#head]!.length + 1;
      this.#head++;
      dropped++;
    }
    this.#compact();
    return dropped;
  }

  /**
   * Takes the oldest unsent lines, up to `maxBytes` (at least one line), as
   * one in-flight write; `bytes` is them with newlines, to write.
   */
  take(maxBytes: number): { entry: InFlight; bytes: Uint8Array } {
    const lines: Uint8Array[] = [];
    let size = 0;
    while (this.#head < this.#queue.length) {
      const line = this.#queue[this.#head]!;
      if (lines.length > 0 && size + line.length + 1 > maxBytes) break;
      lines.push(line);
      size += line.length + 1;
      this.#head++;
    }
    this.#queuedBytes -= size;
    this.#compact();
    const bytes = new Uint8Array(size);
    let offset = 0;
    for (const line of lines) {
      bytes.set(line, offset);
      offset += line.length;
      bytes[offset++] = 0x0a;
    }
    const entry: InFlight = { lines, bytes: size };
    this.#inFlight.push(entry);
    this.#inFlightBytes += size;
    return { entry, bytes };
  }

  /** The kernel accepted `entry`: returns its number of lines (0 if it was requeued meanwhile). */
  confirm(entry: InFlight): number {
    const index = this.#inFlight.indexOf(entry);
    if (index === -1) return 0;
    this.#inFlight.splice(index, 1);
    this.#inFlightBytes -= entry.bytes;
    return entry.lines.length;
  }

  /** Puts the in-flight lines (written to a lost connection, unconfirmed) back at the front. */
  requeue(): void {
    if (this.#inFlight.length === 0) return;
    const lines = this.#inFlight.flatMap((entry) => entry.lines);
    this.#queue = [...lines, ...this.#queue.slice(this.#head)];
    this.#head = 0;
    this.#queuedBytes += this.#inFlightBytes;
    this.#inFlight = [];
    this.#inFlightBytes = 0;
  }

  #compact(): void {
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }
}
