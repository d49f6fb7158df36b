/**
 * File-name globs for `serve --rotated`: where rotated siblings of a
 * followed file are looked for.
 *
 * @module
 */

/**
 * A file-name glob (`*`, `?`, `[...]`) as a RegExp.
 *
 * @example Match rotated siblings
 * ```ts
 * import { globToRegExp } from "./glob.ts";
 * globToRegExp("messages.*[0-9]").test("messages.1"); // true
 * ```
 */
export function globToRegExp(glob: string): RegExp {
  let source = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === "*") source += "[^/]*";
    else if (c === "?") source += "[^/]";
    else if (c === "[") {
      const end = glob.indexOf("]", i + 1);
      if (end < 0) source += "\\[";
      else {
        source += `[${glob.slice(i + 1, end).replace(/^!/, "^").replace(/\\/g, "\\\\")}]`;
        i = end;
      }
    } else source += c.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${source}$`);
}
