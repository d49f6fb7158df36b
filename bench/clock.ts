/**
 * The bench's clock: CLOCK_MONOTONIC in microseconds, the same clock in the
 * load generator and the receiver (two processes), so receive time minus
 * the send time stamped in a message is its latency. Deno's clocks are
 * per process (`performance.now()`) or wall time (`Date.now()`, ms), so this
 * one call goes through glibc; lib/ffi/libc.ts binds no clock.
 *
 * @module
 */

import { LIBC_PATHS } from "../lib/ffi/libc.ts";

const SYMBOLS = { clock_gettime: { parameters: ["i32", "buffer"], result: "i32" } } as const;
const CLOCK_MONOTONIC = 1;

let clock: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;
const timespec = new BigInt64Array(2);
const timespecBytes = new Uint8Array(timespec.buffer);

function load(): Deno.DynamicLibrary<typeof SYMBOLS> {
  let lastError = "";
  for (const path of LIBC_PATHS) {
    try {
      return Deno.dlopen(path, SYMBOLS);
    } catch (error) {
      lastError = error instanceof Error ? error.message : String(error);
    }
  }
  throw new Error(`bench: cannot load glibc (${lastError}); the bench runs on Linux only`);
}

/**
 * CLOCK_MONOTONIC in microseconds.
 *
 * @example Time something
 * ```ts
 * import { monotonicMicros } from "./clock.ts";
 * const start = monotonicMicros();
 * console.log(monotonicMicros() - start, "µs");
 * ```
 */
export function monotonicMicros(): number {
  clock ??= load();
  clock.symbols.clock_gettime(CLOCK_MONOTONIC, timespecBytes);
  return Number(timespec[0]!) * 1_000_000 + Math.floor(Number(timespec[1]!) / 1000);
}
