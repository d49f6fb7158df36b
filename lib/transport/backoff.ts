/**
 * One reconnect back-off for every client that reconnects (`send`, `pull`):
 * the first delay doubling up to a cap, with jitter, back to the first delay
 * once a connection lasted long enough.
 *
 * @module
 */

import { sleep } from "../util/sleep.ts";

/** Options for {@linkcode Backoff}. */
export interface BackoffOptions {
  /**
   * Delay before the first retry, ms; doubled for each further one.
   * @default {100}
   */
  minMs?: number;
  /**
   * Longest delay, ms.
   * @default {5000}
   */
  maxMs?: number;
  /**
   * A connection that lasted at least this long (from
   * {@linkcode Backoff.connected} to {@linkcode Backoff.disconnected}) resets
   * the back-off: the next retry waits the first delay again, ms. 0 resets
   * after any connection.
   * @default {0}
   */
  resetAfterMs?: number;
  /**
   * Random numbers in [0, 1), for the jitter.
   * @default {Math.random}
   */
  random?: () => number;
  /**
   * The clock, ms.
   * @default {Date.now}
   */
  now?: () => number;
}

/**
 * Reconnect delays: attempt `n` (counted from 1 since the last reset) waits a
 * random time between half and all of `min(maxMs, minMs * 2^(n-1))`.
 *
 * @example A reconnect loop
 * ```ts
 * import { Backoff } from "./backoff.ts";
 * const controller = new AbortController();
 * const backoff = new Backoff({ minMs: 100, maxMs: 5000, resetAfterMs: 10_000 });
 * async function session(): Promise<void> {}
 * while (!controller.signal.aborted) {
 *   backoff.connected();
 *   await session();
 *   backoff.disconnected();
 *   controller.abort();
 *   await backoff.wait(controller.signal);
 * }
 * ```
 */
export class Backoff {
  readonly #min: number;
  readonly #max: number;
  readonly #resetAfter: number;
  readonly #random: () => number;
  readonly #now: () => number;
  #attempt = 0;
  #since: number | undefined;

  /** Creates the back-off, at its first delay. */
  constructor(options: BackoffOptions = {}) {
    this.#min = Math.max(0, options.minMs ?? 100);
    this.#max = Math.max(this.#min, options.maxMs ?? 5_000);
    this.#resetAfter = Math.max(0, options.resetAfterMs ?? 0);
    this.#random = options.random ?? Math.random;
    this.#now = options.now ?? Date.now;
  }

  /** Retries since the last reset: the number of the retry the last {@linkcode Backoff.next} was for. */
  get attempt(): number {
    return this.#attempt;
  }

  /** Counts one more retry and returns how long to wait before it, ms (jittered, whole). */
  next(): number {
    const base = Math.min(this.#max, this.#min * 2 ** Math.min(this.#attempt, 52));
    this.#attempt++;
    return Math.round(base / 2 + this.#random() * base / 2);
  }

  /** Waits {@linkcode Backoff.next} ms, or less if `signal` aborts; resolves with the delay. */
  async wait(signal?: AbortSignal): Promise<number> {
    const delay = this.next();
    await sleep(delay, signal);
    return delay;
  }

  /** A connection is up (from now on it counts towards `resetAfterMs`). */
  connected(): void {
    this.#since = this.#now();
  }

  /** The connection ended: resets the back-off if it lasted `resetAfterMs`. Harmless without a connection. */
  disconnected(): void {
    const since = this.#since;
    this.#since = undefined;
    if (since !== undefined && this.#now() - since >= this.#resetAfter) this.#attempt = 0;
  }

  /** Back to the first delay. */
  reset(): void {
    this.#attempt = 0;
    this.#since = undefined;
  }
}
