/**
 * `reclog listen`: not written yet.
 *
 * @module
 */

/**
 * Runs `reclog listen`.
 *
 * @example Run the role
 * ```ts
 * import { run } from "./role_listen.ts";
 * Deno.exit(await run(Deno.args));
 * ```
 */
export function run(_args: string[]): Promise<number> {
  console.error("reclog listen: not implemented yet");
  return Promise.resolve(1);
}
