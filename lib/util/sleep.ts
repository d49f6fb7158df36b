/**
 * Waiting that an AbortSignal cuts short, with its timer always cleared.
 *
 * @module
 */

/**
 * Waits `ms` (at least 0), or less if `signal` aborts; never rejects.
 *
 * @example Back off, unless stopping
 * ```ts
 * import { sleep } from "./sleep.ts";
 * const controller = new AbortController();
 * await sleep(1000, controller.signal);
 * ```
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    signal?.addEventListener("abort", done, { once: true });
  });
}
