/**
 * Wording for what a peer sent: its text made safe for a log line, frame
 * types by name, durations in errors.
 *
 * @module
 */

/** Options for {@linkcode printable}. */
export interface PrintableOptions {
  /**
   * Write control characters as `\xNN` instead of `?`.
   * @default {false}
   */
  escape?: boolean;
  /**
   * What marks a cut text.
   * @default {"…"}
   */
  ellipsis?: string;
}

/**
 * Text from the peer, safe for a log line or a syslog message: control
 * characters replaced (or escaped), cut to `max` characters.
 *
 * @example Clean a peer's close reason
 * ```ts
 * import { printable } from "./peer_text.ts";
 * printable("bye\n", 200); // "bye?"
 * printable("bye\n", 200, { escape: true }); // "bye\\x0a"
 * ```
 */
export function printable(text: string, max: number, options: PrintableOptions = {}): string {
  const clean = text.replace(
    // deno-lint-ignore no-control-regex
    /[\x00-\x1f\x7f]/g,
    options.escape ? (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}` : () => "?",
  );
  return clean.length > max ? `${clean.slice(0, max)}${options.ellipsis ?? "…"}` : clean;
}

/**
 * A frame type for an error: `'M'` for a printable byte (with `withHex`,
 * `'M' (0x4d)`), else `0x00`.
 *
 * @example Name an unknown type
 * ```ts
 * import { frameTypeName } from "./peer_text.ts";
 * frameTypeName(0x5a, true); // "'Z' (0x5a)"
 * frameTypeName(0x00); // "0x00"
 * ```
 */
export function frameTypeName(type: number, withHex = false): string {
  const hex = `0x${type.toString(16).padStart(2, "0")}`;
  if (type < 0x21 || type > 0x7e) return hex;
  const name = `'${String.fromCharCode(type)}'`;
  return withHex ? `${name} (${hex})` : name;
}

/**
 * A duration for an error: whole seconds as `10 s`, else `1500 ms`.
 *
 * @example
 * ```ts
 * import { formatSeconds } from "./peer_text.ts";
 * formatSeconds(10_000); // "10 s"
 * ```
 */
export function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}
