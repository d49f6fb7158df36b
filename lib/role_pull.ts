/**
 * `reclog pull`: not written yet.
 *
 * @module
 */

/**
 * Runs `reclog pull`.
 *
 * @example Run the role
 * ```ts
 * import { run } from "./role_pull.ts";
 * Deno.exit(await run(Deno.args));
 * ```
 */
export function run(_args: string[]): Promise<number> {
  console.error("reclog pull: not implemented yet");
  return Promise.resolve(1);
}
