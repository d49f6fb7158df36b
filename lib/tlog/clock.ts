/**
 * The playback clock of `reclog play`: writes a recording's output at the
 * moments its timing gives, scaled by a speed and with long pauses shortened.
 *
 * @module
 */

import { sleep } from "../util/sleep.ts";

/** Bytes gathered before one write. */
const FLUSH_BYTES = 64 * 1024;

/**
 * Where {@linkcode TimedOutput} writes: `Deno.stdout` or alike.
 *
 * @example Collect the output in memory
 * ```ts
 * import type { ByteWriter } from "./clock.ts";
 * const chunks: Uint8Array[] = [];
 * const writer: ByteWriter = {
 *   write: (bytes) => Promise.resolve(chunks.push(bytes.slice()) && bytes.length),
 * };
 * ```
 */
export interface ByteWriter {
  /** Writes some of `bytes`, resolving to how many. */
  write(bytes: Uint8Array): Promise<number>;
}

/**
 * Options for {@linkcode TimedOutput}.
 *
 * @example Four times as fast, pauses of at most two seconds
 * ```ts
 * import { TimedOutput, type TimedOutputOptions } from "./clock.ts";
 * const options: TimedOutputOptions = { speed: 4, maxPauseMs: 2000 };
 * const output = new TimedOutput(options);
 * ```
 */
export interface TimedOutputOptions {
  /**
   * Playback speed: 2 plays twice as fast.
   * @default {1}
   */
  speed?: number;
  /**
   * Longest pause between two outputs, in recorded milliseconds; longer ones
   * are shortened to it (before `speed` applies).
   * @default {Infinity}
   */
  maxPauseMs?: number;
  /**
   * Where the bytes go.
   * @default {Deno.stdout}
   */
  writer?: ByteWriter;
  /**
   * Ends any wait at once when aborted.
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/**
 * Writes output at the moments a recording gives, on a clock in recorded
 * milliseconds: {@linkcode TimedOutput.start} sets it, `advance` moves it on
 * by a delay, `write` sends bytes when the (scaled) moment comes. Bytes due
 * together go out in one write; every write is awaited (backpressure).
 *
 * @example Write two chunks a second apart
 * ```ts
 * import { TimedOutput } from "./clock.ts";
 * const output = new TimedOutput({ speed: 2 });
 * output.start(0);
 * await output.write(new TextEncoder().encode("a\n"));
 * output.advance(1000);
 * await output.write(new TextEncoder().encode("b\n")); // half a second later
 * await output.flush();
 * ```
 */
export class TimedOutput {
  readonly #speed: number;
  readonly #maxPauseMs: number;
  readonly #writer: ByteWriter;
  readonly #signal: AbortSignal | undefined;
  #origin = 0;
  #now = 0;
  #lastOutput = 0;
  #lastPlayed = 0;
  #stalled = false;
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;

  /** Makes an output whose clock starts with {@linkcode TimedOutput.start}. */
  constructor(options: TimedOutputOptions = {}) {
    this.#speed = options.speed ?? 1;
    this.#maxPauseMs = options.maxPauseMs ?? Infinity;
    this.#writer = options.writer ?? Deno.stdout;
    this.#signal = options.signal;
  }

  /** Starts the clock: recorded moment `position` (ms) is now. */
  start(position: number): void {
    this.#origin = performance.now();
    this.#now = position;
    this.#lastOutput = position;
    this.#lastPlayed = 0;
  }

  /** The clock, in recorded milliseconds. */
  get position(): number {
    return this.#now;
  }

  /** Moves the clock on by a recorded delay. */
  advance(ms: number): void {
    this.#now += ms;
  }

  /** Moves the clock to a recorded moment, if that is ahead. */
  seek(position: number): void {
    if (position > this.#now) this.#now = position;
  }

  /**
   * Tells that the input ran dry (a followed file): the next output, if
   * already late, is played at once and the timing goes on from there.
   */
  stall(): void {
    this.#stalled = true;
  }

  /** Writes `bytes` at the clock's current moment. */
  async write(bytes: Uint8Array): Promise<void> {
    const pause = Math.max(0, this.#now - this.#lastOutput);
    const played = this.#lastPlayed + Math.min(pause, this.#maxPauseMs);
    this.#lastOutput = this.#now;
    this.#lastPlayed = played;
    let due = this.#origin + played / this.#speed;
    const now = performance.now();
    if (this.#stalled) {
      this.#stalled = false;
      if (due < now) {
        this.#origin += now - due;
        due = now;
      }
    }
    if (due > now + 1) {
      await this.flush();
      await sleepUntil(due, this.#signal);
      // Stopped during the pause: what was due after it is not played.
      if (this.#signal?.aborted) return;
    }
    this.#pending.push(bytes);
    this.#pendingBytes += bytes.length;
    if (this.#pendingBytes >= FLUSH_BYTES) await this.flush();
  }

  /** Writes out what is gathered. */
  async flush(): Promise<void> {
    const chunks = this.#pending;
    if (chunks.length === 0) return;
    const data = chunks.length === 1 ? chunks[0]! : concat(chunks, this.#pendingBytes);
    this.#pending = [];
    this.#pendingBytes = 0;
    for (let offset = 0; offset < data.length;) {
      offset += await this.#writer.write(data.subarray(offset));
    }
  }
}

function concat(chunks: Uint8Array[], length: number): Uint8Array {
  const data = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    data.set(chunk, offset);
    offset += chunk.length;
  }
  return data;
}

async function sleepUntil(due: number, signal?: AbortSignal): Promise<void> {
  for (let left = due - performance.now(); left > 0.5; left = due - performance.now()) {
    if (signal?.aborted) return;
    await sleep(left, signal);
  }
}
