/**
 * Building parseArgs option configs without a line per plain flag: most of
 * a role's flags are a bare `{ type: "string" }`.
 *
 * @module
 */

/** The parseArgs option config of plain string flags, one per name. */
export type StringFlags<N extends string> = { readonly [K in N]: { readonly type: "string" } };

/**
 * The parseArgs option config `{ [name]: { type: "string" } }` for each of
 * `names` (no default, no short form, not `multiple`); spread it into a
 * role's options next to the flags that need more.
 *
 * @example A role's options
 * ```ts
 * import { parseArgs } from "node:util";
 * import { stringFlags } from "./flag_options.ts";
 * const options = { ...stringFlags("host", "port"), help: { type: "boolean" } } as const;
 * const { values } = parseArgs({ args: ["--host", "h"], options });
 * console.log(values.host); // "h"
 * ```
 */
export function stringFlags<const N extends string>(...names: N[]): StringFlags<N> {
  return Object.fromEntries(names.map((name) => [name, { type: "string" }])) as StringFlags<N>;
}
