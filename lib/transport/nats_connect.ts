/**
 * Connecting to NATS for the JetStream sink and source: server URLs of one
 * cluster (`nats://HOST:PORT`, `tls://HOST:PORT`), TLS material given as PEM
 * text or as a path, and a client that reconnects forever (the sink's and the
 * source's callers decide when to give up, through their `signal`).
 *
 * Also the reclog header names every published message carries, shared by
 * {@linkcode ../sinks/nats.ts} and {@linkcode ../sources/nats.ts}.
 *
 * @module
 */

import type { NatsConnection, TlsOptions } from "@nats-io/transport-node";
import { describeFsError, errorMessage } from "../util/errors.ts";

export type { MsgHdrs, NatsConnection, TlsOptions } from "@nats-io/transport-node";

/** The headers of a message reclog published to JetStream. */
export const NATS_HEADERS: Readonly<{
  msgId: "Nats-Msg-Id";
  stream: "Reclog-Stream";
  seq: "Reclog-Seq";
  epoch: "Reclog-Epoch";
  time: "Reclog-Time";
  host: "Reclog-Host";
}> = Object.freeze({
  /** JetStream's own de-duplication id: `EPOCH:SEQ`. */
  msgId: "Nats-Msg-Id",
  /** The reclog stream of the message (`syslog`, `file:/var/log/x`). */
  stream: "Reclog-Stream",
  /** The journal sequence number. */
  seq: "Reclog-Seq",
  /** The journal epoch (changes when the journal starts anew). */
  epoch: "Reclog-Epoch",
  /** Receive time, ms since the epoch. */
  time: "Reclog-Time",
  /** The host that received the message (serve's host name). */
  host: "Reclog-Host",
});

/** TLS material for NATS: each field PEM text, or a path to a PEM file. */
export interface NatsTls {
  /** Client certificate chain (PEM text or path). */
  cert?: string;
  /** Client private key (PEM text or path). */
  key?: string;
  /** CA certificates the server's certificate must chain to (PEM text or path). */
  ca?: string;
}

/** Options for {@linkcode connectNats}. */
export interface NatsConnectOptions {
  /** Server URLs of one cluster: `nats://HOST:PORT` or `tls://HOST:PORT`. */
  servers: string[];
  /** TLS to the servers; with it, every connection is TLS. */
  tls?: NatsTls;
  /** Connection name shown by the server (`nats server report connections`). */
  name?: string;
  /**
   * Bound on the first connection attempt to each server, ms.
   * @default {5000}
   */
  timeoutMs?: number;
}

/**
 * Checks server URLs and returns them as the client wants them.
 *
 * @example Check flag values
 * ```ts
 * import { natsServers } from "./nats_connect.ts";
 * console.log(natsServers(["nats://127.0.0.1:4222"])); // ["nats://127.0.0.1:4222"]
 * ```
 */
export function natsServers(urls: string[]): string[] {
  if (urls.length === 0) throw new Error("no NATS server given (nats://HOST:PORT)");
  return urls.map((url) => {
    const match = /^(nats|tls):\/\/([^/\s]+):(\d+)\/?$/.exec(url);
    if (!match || Number(match[3]) < 1 || Number(match[3]) > 65535) {
      throw new Error(`not a NATS server URL: ${url} (nats://HOST:PORT)`);
    }
    return `${match[1]}://${match[2]}:${match[3]}`;
  });
}

async function pem(what: string, value: string | undefined): Promise<string | undefined> {
  if (value === undefined) return undefined;
  if (value.includes("-----BEGIN")) return value;
  try {
    return await Deno.readTextFile(value);
  } catch (error) {
    throw new Error(`NATS TLS ${what} ${value}: ${describeFsError(error)}`);
  }
}

/**
 * Reads the TLS material (PEM text stays as it is, a path is read).
 *
 * @example Material from files
 * ```ts
 * import { natsTlsOptions } from "./nats_connect.ts";
 * const tls = await natsTlsOptions({ ca: "-----BEGIN CERTIFICATE-----\n..." });
 * console.log(tls.ca !== undefined); // true
 * ```
 */
export async function natsTlsOptions(tls: NatsTls): Promise<TlsOptions> {
  const options: TlsOptions = {};
  const cert = await pem("certificate", tls.cert);
  const key = await pem("key", tls.key);
  const ca = await pem("CA", tls.ca);
  if (cert !== undefined) options.cert = cert;
  if (key !== undefined) options.key = key;
  if (ca !== undefined) options.ca = ca;
  return options;
}

/**
 * Connects to one of the servers (one attempt each); the connection then
 * reconnects on its own, forever, until closed. Rejects with a one-line
 * error naming the servers.
 *
 * @example Connect and close
 * ```ts ignore
 * import { connectNats } from "./nats_connect.ts";
 * const nc = await connectNats({ servers: ["nats://127.0.0.1:4222"] });
 * await nc.close();
 * ```
 */
export async function connectNats(options: NatsConnectOptions): Promise<NatsConnection> {
  const servers = natsServers(options.servers);
  try {
    // Loaded here, not at the top: serve and pull load the NATS client only when asked to.
    const { connect } = await import("@nats-io/transport-node");
    return await connect({
      servers,
      name: options.name ?? "reclog",
      timeout: options.timeoutMs ?? 5000,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      reconnectJitter: 100,
      pingInterval: 10_000,
      maxPingOut: 2,
      ...(options.tls ? { tls: await natsTlsOptions(options.tls) } : {}),
    });
  } catch (error) {
    throw new Error(`NATS ${servers.join(",")}: ${errorMessage(error)}`);
  }
}

/**
 * Follows a connection's status: `connected()` is false from a `disconnect`
 * event until the next `reconnect` (for status files and `/healthz`). Ends
 * with the connection.
 *
 * @example Report the connection state
 * ```ts ignore
 * import { connectNats, followConnected } from "./nats_connect.ts";
 * const nc = await connectNats({ servers: ["nats://127.0.0.1:4222"] });
 * const connected = followConnected(nc);
 * console.log(connected()); // true
 * ```
 */
export function followConnected(nc: NatsConnection): () => boolean {
  let connected = true;
  (async () => {
    for await (const status of nc.status()) {
      if (status.type === "disconnect") connected = false;
      else if (status.type === "reconnect") connected = true;
    }
  })().catch(() => {});
  nc.closed().then(() => connected = false, () => connected = false);
  return () => connected;
}
