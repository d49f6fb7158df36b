/**
 * `reclog serve`: not written yet.
 *
 * @module
 */

/**
 * Runs `reclog serve`.
 *
 * @example Run the role
 * ```ts
 * import { run } from "./role_serve.ts";
 * Deno.exit(await run(Deno.args));
 * ```
 */
export function run(_args: string[]): Promise<number> {
  console.error("reclog serve: not implemented yet");
  return Promise.resolve(1);
}
