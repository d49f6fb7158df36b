/**
 * `reclog send`: not written yet.
 *
 * @module
 */

/**
 * Runs `reclog send`.
 *
 * @example Run the role
 * ```ts
 * import { run } from "./role_send.ts";
 * Deno.exit(await run(Deno.args));
 * ```
 */
export function run(_args: string[]): Promise<number> {
  console.error("reclog send: not implemented yet");
  return Promise.resolve(1);
}
