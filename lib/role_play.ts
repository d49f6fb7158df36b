/**
 * `reclog play`: not written yet.
 *
 * @module
 */

/**
 * Runs `reclog play`.
 *
 * @example Run the role
 * ```ts
 * import { run } from "./role_play.ts";
 * Deno.exit(await run(Deno.args));
 * ```
 */
export function run(_args: string[]): Promise<number> {
  console.error("reclog play: not implemented yet");
  return Promise.resolve(1);
}
