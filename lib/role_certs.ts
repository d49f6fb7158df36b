/**
 * `reclog certs`: not written yet.
 *
 * @module
 */

/**
 * Runs `reclog certs`.
 *
 * @example Run the role
 * ```ts
 * import { run } from "./role_certs.ts";
 * Deno.exit(await run(Deno.args));
 * ```
 */
export function run(_args: string[]): Promise<number> {
  console.error("reclog certs: not implemented yet");
  return Promise.resolve(1);
}
