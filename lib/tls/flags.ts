/**
 * The `--cert`/`--key`/`--ca` triple of the socat-mode roles: all three or
 * none.
 *
 * @module
 */

import { ConfigError } from "../cli/flags.ts";

/**
 * Checks that `--cert`, `--key` and `--ca` are given all together or not at
 * all; throws a {@linkcode ConfigError} naming the missing flag.
 *
 * @example Check the TLS flags
 * ```ts
 * import { parseTlsFlags } from "./flags.ts";
 * parseTlsFlags({ cert: "c.pem", key: "c.key", ca: "ca.pem" }); // the three paths
 * parseTlsFlags({}); // undefined: plain TCP
 * ```
 */
export function parseTlsFlags(
  values: { cert?: string; key?: string; ca?: string },
): { cert: string; key: string; ca: string } | undefined {
  const given = (["cert", "key", "ca"] as const).filter((flag) => values[flag] !== undefined);
  if (given.length === 0) return undefined;
  const missing = (["cert", "key", "ca"] as const).filter((flag) => values[flag] === undefined);
  if (missing.length > 0) {
    throw new ConfigError(
      `--cert, --key and --ca go together: ${
        missing.map((flag) => `--${flag}`).join(" and ")
      } missing (given: ${given.map((flag) => `--${flag}`).join(", ")})`,
    );
  }
  return { cert: values.cert!, key: values.key!, ca: values.ca! };
}
