/**
 * Helpers for tests of `serve` and `pull`: start them on free loopback ports
 * and wait until they are ready.
 *
 * @module
 */

import { type CertPaths, type Running, startReclog } from "./helpers.ts";

/** A running `serve` with its real ports. */
export interface Served {
  process: Running;
  /** mTLS port. */
  port: number;
  /** UDP syslog input port. */
  udpPort: number;
  /** TCP syslog input port, when asked for. */
  tcpPort?: number;
}

/** Options for {@linkcode startServe}. */
export interface StartServeOptions {
  /** Extra flags. */
  args?: string[];
  /** Also open a TCP syslog input. */
  tcp?: boolean;
  /** mTLS port to bind (default 0). */
  port?: number;
  /** Environment. */
  env?: Record<string, string>;
}

/** Starts `reclog serve` on loopback with the test certificates. */
export async function startServe(
  certs: CertPaths,
  options: StartServeOptions = {},
): Promise<Served> {
  const process = startReclog([
    "serve",
    "--cert",
    certs.serverCert,
    "--key",
    certs.serverKey,
    "--ca",
    certs.ca,
    "--listen",
    `127.0.0.1:${options.port ?? 0}`,
    "--syslog-in",
    "127.0.0.1:0",
    ...(options.tcp ? ["--syslog-in", "tcp://127.0.0.1:0"] : []),
    ...(options.args ?? []),
  ], { env: options.env });
  const udpPort = await process.waitForListening("syslog-in udp");
  const tcpPort = options.tcp ? await process.waitForListening("syslog-in tcp") : undefined;
  const port = await process.waitForListening("mTLS");
  return { process, port, udpPort, tcpPort };
}

/** Options for {@linkcode startPull}. */
export interface StartPullOptions {
  /** `--to` value (default `-`, stdout); null leaves it out (for --mirror). */
  to?: string | null;
  /** Extra flags (default `--live`). */
  args?: string[];
  /** Client certificate, key and CA bundle (default the test client's). */
  cert?: string;
  key?: string;
  ca?: string;
  /** Wait for the connection (default true). */
  waitConnected?: boolean;
}

/** Starts `reclog pull` against a local server. */
export async function startPull(
  certs: CertPaths,
  port: number,
  options: StartPullOptions = {},
): Promise<Running> {
  const process = startReclog([
    "pull",
    "--server",
    `127.0.0.1:${port}`,
    "--server-name",
    "localhost",
    "--cert",
    options.cert ?? certs.clientCert,
    "--key",
    options.key ?? certs.clientKey,
    "--ca",
    options.ca ?? certs.ca,
    ...(options.to === null ? [] : ["--to", options.to ?? "-"]),
    ...(options.args ?? ["--live"]),
  ]);
  if (options.waitConnected ?? true) await process.waitForStderr(/connected to /);
  return process;
}

/** Sends syslog datagrams to a UDP port from one socket, in order. */
export async function sendUdp(port: number, messages: Array<string | Uint8Array>): Promise<void> {
  const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const encoder = new TextEncoder();
  try {
    for (const message of messages) {
      await socket.send(
        typeof message === "string" ? encoder.encode(message) : message,
        { transport: "udp", hostname: "127.0.0.1", port },
      );
    }
  } finally {
    socket.close();
  }
}

/**
 * Sends syslog messages over one TCP connection with octet counting, as
 * rsyslog's omfwd does; resolves once all bytes are written.
 */
export async function sendTcp(port: number, messages: string[]): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const encoder = new TextEncoder();
    const batch = 1000;
    for (let i = 0; i < messages.length; i += batch) {
      const text = messages.slice(i, i + batch).map((m) => `${encoder.encode(m).length} ${m}`)
        .join("");
      const bytes = encoder.encode(text);
      let offset = 0;
      while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
    }
  } finally {
    conn.close();
  }
}

/** Numbered test messages `<14>test m<i> ...`, with `tag` and padding. */
export function numbered(tag: string, from: number, count: number, pad = 0): string[] {
  return Array.from(
    { length: count },
    (_, i) => `<14>${tag} m${from + i}${pad ? " " + "x".repeat(pad) : ""}`,
  );
}

/** Indices of numbered messages found in a text, in order of appearance. */
export function indices(text: string, tag: string): number[] {
  const found: number[] = [];
  const pattern = new RegExp(`^<14>${tag} m(\\d+)`, "gm");
  for (const match of text.matchAll(pattern)) found.push(Number(match[1]));
  return found;
}
