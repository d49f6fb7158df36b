/**
 * Opens the sink `pull --to` names. A new kind of sink is one more case
 * here, next to its module in `lib/sinks/`.
 *
 * @module
 */

import { lookup } from "node:dns/promises";
import type { Sink } from "../batch.ts";
import { ConfigError, type Endpoint } from "../cli/flags.ts";
import { describeFsError } from "../util/errors.ts";
import { formatHostPort } from "../util/address.ts";
import { RelpSink } from "./relp.ts";
import { StdoutSink } from "./stdout.ts";
import { TcpSink } from "./tcp.ts";
import { UdpSink } from "./udp.ts";
import { UnixSink } from "./unix.ts";

/**
 * Opens the sink for an endpoint: `udp://`, `tcp://`, `relp://`, `unix://`
 * or stdout.
 * Nothing connects before the first write.
 *
 * @example Re-inject into the local syslog
 * ```ts
 * import { openSink } from "./open.ts";
 * await using sink = openSink({ kind: "udp", host: "127.0.0.1", port: 514 });
 * ```
 */
export function openSink(endpoint: Endpoint): Sink {
  switch (endpoint.kind) {
    case "udp":
      return new UdpSink(endpoint);
    case "tcp":
      return new TcpSink(endpoint);
    case "relp":
      return new RelpSink({ host: endpoint.host, port: endpoint.port, tooLarge: "cut" });
    case "unix":
      return new UnixSink(endpoint.path);
    case "stdout":
      return new StdoutSink();
  }
}

/**
 * Checks an endpoint before pull starts, so a mistake is one line and exit
 * code 2 rather than a retry loop: the host resolves, the unix socket exists
 * and is a socket. Throws a {@linkcode ConfigError} naming `flag`.
 *
 * @example Check `--to`
 * ```ts
 * import { checkEndpoint } from "./open.ts";
 * await checkEndpoint({ kind: "unix", path: "/dev/log" }, "--to");
 * ```
 */
export async function checkEndpoint(endpoint: Endpoint, flag: string): Promise<void> {
  if (endpoint.kind === "stdout") return;
  if (endpoint.kind === "unix") {
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(endpoint.path);
    } catch (error) {
      throw new ConfigError(`${flag} 'unix://${endpoint.path}': ${describeFsError(error)}`);
    }
    if (!info.isSocket) {
      throw new ConfigError(`${flag} 'unix://${endpoint.path}': not a socket`);
    }
    return;
  }
  const text = `${endpoint.kind}://${formatHostPort(endpoint)}`;
  if (endpoint.port === 0) throw new ConfigError(`${flag} '${text}': port 0 is not a destination`);
  try {
    await lookup(endpoint.host);
  } catch {
    throw new ConfigError(`${flag} '${text}': host name '${endpoint.host}' not found`);
  }
}

/**
 * {@linkcode checkEndpoint}, then {@linkcode openSink}.
 *
 * @example Open `--to` after checking it
 * ```ts
 * import { openCheckedSink } from "./open.ts";
 * await using sink = await openCheckedSink({ kind: "tcp", host: "127.0.0.1", port: 514 }, "--to");
 * ```
 */
export async function openCheckedSink(endpoint: Endpoint, flag: string): Promise<Sink> {
  await checkEndpoint(endpoint, flag);
  return openSink(endpoint);
}
