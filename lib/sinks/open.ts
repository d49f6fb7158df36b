/**
 * Opens the sink `pull --to` names. A new kind of sink is one more case
 * here, next to its module in `lib/sinks/`.
 *
 * @module
 */

import type { Sink } from "../batch.ts";
import type { Endpoint } from "../cli/flags.ts";
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
