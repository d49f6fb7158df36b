/**
 * `reclog listen`: socat-mode. Accepts any number of concurrent TCP senders
 * (telnet, nc, socat, `reclog send`), optionally UDP datagrams on the same
 * port, or mutual-TLS senders, and appends their lines to one file. Unlike
 * `socat -u TCP4-LISTEN:port,fork OPEN:file,append`, every line is written
 * whole: lines from concurrent senders never interleave inside a line.
 *
 * @module
 */

import net from "node:net";
import tls from "node:tls";
import { ConfigError, parseBytes, parseRoleArgs } from "../cli/flags.ts";
import { describeFsError, errorMessage } from "../util/errors.ts";
import { formatHostPort, type HostPort } from "../util/address.ts";
import { FileSink, type FileSinkError } from "../sinks/line_file.ts";
import { DEFAULT_MAX_LINE, LineSplitter } from "../framing/lines.ts";
import { log } from "../util/log.ts";
import {
  checkPeer,
  loadTlsMaterial,
  peerIdentity,
  serverTlsOptions,
  type TlsMaterial,
} from "../tls/policy.ts";
import { parseTlsFlags } from "../tls/flags.ts";

const encoder = new TextEncoder();
export type { HostPort } from "../cli/flags.ts";
export type { TlsFiles, TlsMaterial } from "../tls/policy.ts";

const logger = log("listen");

/** Options for {@linkcode LineListener}. */
export interface LineListenerOptions {
  /**
   * Address to listen on; `0.0.0.0` or `::` for all addresses.
   * @default {"127.0.0.1"}
   */
  host?: string;
  /**
   * Port to listen on; 0 picks a free one (see {@linkcode LineListener.listen}).
   * @default {0}
   */
  port?: number;
  /**
   * Also accept UDP datagrams on the same port (one datagram, one or more lines).
   * @default {false}
   */
  udp?: boolean;
  /**
   * Listen with mutual TLS using this material instead of plain TCP.
   * @default {undefined}
   */
  tls?: TlsMaterial;
  /**
   * Longest line in bytes; longer lines are split, never dropped.
   * @default {65536}
   */
  maxLine?: number;
  /**
   * Prefix each line with the RFC 3339 time it was received.
   * @default {false}
   */
  timestamp?: boolean;
  /**
   * Prefix each line with the sender's address (`HOST:PORT`).
   * @default {false}
   */
  peer?: boolean;
  /**
   * On close, how long connected senders get to finish: the listener
   * half-closes each connection (a `reclog send` then stops and reconnects
   * later) and keeps reading what was already sent until the sender closes
   * or this time passes.
   * @default {1000}
   */
  closeGraceMs?: number;
  /**
   * Closes the listener when aborted.
   * @default {undefined}
   */
  signal?: AbortSignal;
}

interface Connection {
  socket: net.Socket;
  splitter: LineSplitter;
  peer: string;
  lines: number;
}

/**
 * Accepts line senders and hands their lines, whole, to a {@linkcode FileSink}.
 * Each line gets the optional `TIME PEER ` prefix. The sink is not closed by
 * the listener: its owner closes it after the listener.
 *
 * @example Listen on a free port
 * ```ts
 * import { FileSink } from "../sinks/line_file.ts";
 * import { LineListener } from "./listen.ts";
 * await using sink = await FileSink.open("/tmp/lines.log");
 * await using listener = new LineListener(sink, { port: 0, timestamp: true });
 * const { port } = await listener.listen();
 * console.log(`send lines to 127.0.0.1:${port}`);
 * ```
 */
export class LineListener implements AsyncDisposable {
  readonly #sink: FileSink;
  readonly #options: LineListenerOptions;
  readonly #maxLine: number;
  readonly #connections = new Set<Connection>();
  readonly #paused = new Set<net.Socket>();
  #server: net.Server | undefined;
  #udp: Deno.DatagramConn | undefined;
  #udpLoop: Promise<void> | undefined;
  #address: HostPort | undefined;
  #closing: Promise<void> | undefined;
  #waitingForRoom = false;
  #onIdle: (() => void) | undefined;
  #onAbort = () => void this.close();

  /** Creates a listener writing to `sink`; call {@linkcode LineListener.listen} to start. */
  constructor(sink: FileSink, options: LineListenerOptions = {}) {
    this.#sink = sink;
    this.#options = options;
    this.#maxLine = options.maxLine ?? DEFAULT_MAX_LINE;
  }

  /** The bound address, once listening. */
  get address(): HostPort | undefined {
    return this.#address;
  }

  /** Senders connected now. */
  get connections(): number {
    return this.#connections.size;
  }

  /**
   * Binds the port (and the UDP port, with `udp`) and starts accepting;
   * resolves with the real address once bound.
   */
  async listen(): Promise<HostPort> {
    if (this.#server) throw new Error("LineListener.listen() called twice");
    const host = this.#options.host ?? "127.0.0.1";
    const material = this.#options.tls;
    const server = material
      ? tls.createServer(serverTlsOptions(material), (socket) => this.#acceptTls(socket))
      : net.createServer((socket) => this.#accept(socket, addressOf(socket)));
    this.#server = server;
    if (material) {
      server.on("tlsClientError", (error: Error, socket: tls.TLSSocket) => {
        logger.warn("refused TLS sender {peer}: {reason}", {
          peer: addressOf(socket),
          reason: error.message,
        });
      });
    }
    server.on("error", (error: Error) => {
      logger.error("listener error: {error}", { error: error.message });
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host, port: this.#options.port ?? 0 }, () => {
        server.off("error", reject);
        resolve();
      });
    });
    const bound = server.address() as net.AddressInfo;
    this.#address = { host, port: bound.port };
    if (this.#options.udp) {
      try {
        this.#udp = Deno.listenDatagram({ hostname: host, port: bound.port, transport: "udp" });
      } catch (error) {
        await new Promise<void>((resolve) => server.close(() => resolve()));
        throw error;
      }
      this.#udpLoop = this.#receiveDatagrams(this.#udp);
    }
    const signal = this.#options.signal;
    if (signal?.aborted) void this.close();
    signal?.addEventListener("abort", this.#onAbort, { once: true });
    return this.#address;
  }

  /**
   * Stops accepting, gives connected senders `closeGraceMs` to finish (what
   * they already sent is still written), hands their partial lines to the
   * sink (with a newline) and disconnects them. Safe to call twice.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#options.signal?.removeEventListener("abort", this.#onAbort);
      const server = this.#server;
      const stopped = server?.listening
        ? new Promise<void>((resolve) => server.close(() => resolve()))
        : Promise.resolve();
      try {
        this.#udp?.close();
      } catch {
        // already closed
      }
      if (this.#connections.size > 0) {
        for (const { socket } of this.#connections) socket.end();
        let timer: ReturnType<typeof setTimeout> | undefined;
        let expired = false;
        try {
          await new Promise<void>((resolve) => {
            timer = setTimeout(() => {
              expired = true;
              resolve();
            }, this.#options.closeGraceMs ?? 1_000);
            this.#onIdle = resolve;
          });
        } finally {
          clearTimeout(timer);
          this.#onIdle = undefined;
        }
        if (expired) logger.debug("senders still connected after the grace time");
      }
      for (const connection of [...this.#connections]) this.#finish(connection, "listener closing");
      await stopped;
      await this.#udpLoop;
    })();
    return this.#closing;
  }

  /** Same as `close()`, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #acceptTls(socket: tls.TLSSocket): void {
    const peer = addressOf(socket);
    const reason = checkPeer(
      socket,
      { allowCn: [], allowFingerprint: [] },
      this.#options.tls?.authorities,
    );
    if (reason) {
      logger.warn("refused TLS sender {peer}: {reason}", { peer, reason });
      socket.destroy();
      return;
    }
    const identity = peerIdentity(socket);
    this.#accept(socket, peer, identity?.commonName);
  }

  #accept(socket: net.Socket, peer: string, commonName?: string): void {
    if (this.#closing) {
      socket.destroy();
      return;
    }
    const connection: Connection = {
      socket,
      splitter: new LineSplitter({ maxLine: this.#maxLine }),
      peer,
      lines: 0,
    };
    this.#connections.add(connection);
    if (commonName !== undefined) {
      logger.info("sender {peer} connected (TLS, CN {cn})", { peer, cn: commonName });
    } else {
      logger.info("sender {peer} connected", { peer });
    }
    socket.on("data", (chunk: Uint8Array) => {
      const lines = connection.splitter.push(
        new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength),
      );
      if (lines.length > 0) this.#deliver(connection, lines);
    });
    socket.on("error", (error: Error) => {
      logger.debug("sender {peer}: {error}", { peer, error: error.message });
    });
    socket.on("close", () => this.#finish(connection, "disconnected"));
  }

  /** Writes the sender's partial line, forgets it and destroys its socket. */
  #finish(connection: Connection, why: string): void {
    if (!this.#connections.delete(connection)) return;
    const rest = connection.splitter.flush();
    if (rest.length > 0) this.#deliver(connection, rest);
    this.#paused.delete(connection.socket);
    connection.socket.destroy();
    if (this.#connections.size === 0) this.#onIdle?.();
    logger.info(`sender {peer} ${why} after {lines} lines`, {
      peer: connection.peer,
      lines: connection.lines,
    });
  }

  #deliver(connection: Connection, lines: Uint8Array[]): void {
    connection.lines += lines.length;
    if (this.#sink.write(lines, this.#prefix(connection.peer))) return;
    if (this.#sink.error || connection.socket.destroyed) return;
    connection.socket.pause();
    this.#paused.add(connection.socket);
    this.#waitForRoom();
  }

  #waitForRoom(): void {
    if (this.#waitingForRoom) return;
    this.#waitingForRoom = true;
    void this.#sink.ready.then(() => {
      this.#waitingForRoom = false;
      if (this.#sink.error) return;
      for (const socket of this.#paused) socket.resume();
      this.#paused.clear();
    });
  }

  #prefix(peer: string): Uint8Array | undefined {
    const { timestamp, peer: withPeer } = this.#options;
    if (!timestamp && !withPeer) return undefined;
    return encoder.encode(
      `${timestamp ? `${new Date().toISOString()} ` : ""}${withPeer ? `${peer} ` : ""}`,
    );
  }

  async #receiveDatagrams(udp: Deno.DatagramConn): Promise<void> {
    try {
      while (!this.#closing) {
        const [data, from] = await udp.receive();
        const peer = formatHostPort({
          host: unmapIpv4((from as Deno.NetAddr).hostname),
          port: (from as Deno.NetAddr).port,
        });
        const splitter = new LineSplitter({ maxLine: this.#maxLine });
        const lines = [...splitter.push(data), ...splitter.flush()];
        if (lines.length === 0) continue;
        if (!this.#sink.write(lines, this.#prefix(peer))) await this.#sink.ready;
        if (this.#sink.error) return;
      }
    } catch (error) {
      if (!this.#closing) {
        logger.error("UDP receive failed: {error}", { error: errorMessage(error) });
      }
    }
  }
}

function unmapIpv4(host: string): string {
  return host.startsWith("::ffff:") && host.includes(".") ? host.slice(7) : host;
}

function addressOf(socket: net.Socket): string {
  // A TLS socket that failed its handshake only knows its address through
  // the TCP socket under it.
  const tcp = socket.remoteAddress === undefined
    ? (socket as { _parent?: net.Socket })._parent
    : socket;
  const host = tcp?.remoteAddress;
  if (host === undefined) return "unknown address";
  return formatHostPort({ host: unmapIpv4(host), port: tcp!.remotePort ?? 0 });
}

const USAGE = `Usage: reclog listen --port PORT --file FILE [flags]

Accepts any number of concurrent TCP senders (telnet, nc, socat, reclog send)
and appends their lines to FILE, each line whole (lines of concurrent senders
never interleave). Telnet's CR LF becomes LF and its option negotiation is
dropped. A sender's last line without a newline is written, with one, when it
disconnects. A drop-in for
  socat -u TCP4-LISTEN:PORT,reuseaddr,fork OPEN:FILE,creat,append

Flags:
  --port PORT        TCP port to listen on (0: pick a free one, logged at start)
  --file FILE        file to append to (created with mode 0640 if absent)
  --host ADDR        address to listen on (default 127.0.0.1; 0.0.0.0 for all)
  --udp              also accept UDP datagrams on the same port (one datagram,
                     one or more lines; not with TLS)
  --timestamp        prefix each line with the RFC 3339 time it was received
  --peer             prefix each line with the sender's HOST:PORT
                     (both: "TIME PEER line")
  --cert FILE        with --key and --ca: listen with mutual TLS; senders
  --key FILE           must present a certificate signed by --ca
  --ca FILE
  --max-line BYTES   longest line (default 64KiB); longer ones are split
  -h, --help         print this help

SIGINT or SIGTERM: stop accepting, write the partial lines of connected
senders, flush and exit 0. Exit 1 if the file cannot be written (full disk,
permissions), 2 on usage or configuration errors.`;

function parsePort(value: string): number {
  if (!/^\d{1,5}$/.test(value) || Number(value) > 65535) {
    throw new ConfigError(`--port '${value}': expected a port number from 0 to 65535`);
  }
  return Number(value);
}

/**
 * Runs `reclog listen`.
 *
 * @example Run the role
 * ```ts
 * import { run } from "./listen.ts";
 * Deno.exit(await run(["--port", "5140", "--file", "/tmp/lines.log"]));
 * ```
 */
export async function run(args: string[]): Promise<number> {
  const { values } = parseRoleArgs("listen", args, {
    port: { type: "string" },
    file: { type: "string" },
    host: { type: "string" },
    udp: { type: "boolean" },
    timestamp: { type: "boolean" },
    peer: { type: "boolean" },
    cert: { type: "string" },
    key: { type: "string" },
    ca: { type: "string" },
    "max-line": { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (values.port === undefined) {
    throw new ConfigError("--port is required (see 'reclog listen --help')");
  }
  const port = parsePort(values.port);
  if (values.file === undefined || values.file === "") {
    throw new ConfigError("--file is required: the file lines are appended to");
  }
  const file = values.file;
  const host = values.host ?? "127.0.0.1";
  if (host === "") throw new ConfigError("--host '': expected an address");
  const maxLine = values["max-line"] === undefined
    ? DEFAULT_MAX_LINE
    : parseBytes(values["max-line"], "--max-line");
  const tlsFiles = parseTlsFlags(values);
  if (tlsFiles && values.udp) {
    throw new ConfigError("--udp cannot be used with --cert/--key/--ca (datagrams are not TLS)");
  }
  const material = tlsFiles ? await loadTlsMaterial(tlsFiles) : undefined;

  const stop = new AbortController();
  let failed: FileSinkError | undefined;
  let sink: FileSink;
  try {
    sink = await FileSink.open(file, {
      onError(error) {
        failed = error;
        logger.error("{error}", { error: `${error.message}; stopping` });
        stop.abort();
      },
    });
  } catch (error) {
    throw new ConfigError(`Cannot open --file '${file}': ${describeFsError(error)}`);
  }
  // The first signal stops cleanly (senders finish, the file is flushed); a
  // second one exits at once.
  let signalled = false;
  const onSignal = () => {
    if (signalled) {
      logger.warn("second signal: exiting at once");
      Deno.exit(1);
    }
    signalled = true;
    logger.info("stopping (signal received)");
    stop.abort();
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    await using _sink = sink;
    await using listener = new LineListener(sink, {
      host,
      port,
      udp: values.udp ?? false,
      tls: material,
      maxLine,
      timestamp: values.timestamp ?? false,
      peer: values.peer ?? false,
      signal: stop.signal,
    });
    let address: HostPort;
    try {
      address = await listener.listen();
    } catch (error) {
      throw new ConfigError(
        `Cannot listen on ${formatHostPort({ host, port })}${values.udp ? " (TCP and UDP)" : ""}: ${
          describeNetError(error)
        }`,
      );
    }
    const kind = material ? "mutual TLS" : values.udp ? "TCP and UDP" : "TCP";
    logger.info(`listening on {address} (${kind}), appending to {file}`, {
      address: formatHostPort(address),
      file,
    });
    await new Promise<void>((resolve) => {
      if (stop.signal.aborted) resolve();
      stop.signal.addEventListener("abort", () => resolve(), { once: true });
    });
    await listener.close();
    try {
      await sink.flush();
    } catch {
      // reported by onError
    }
    await sink.close();
    if (failed || sink.error) {
      logger.error("stopped: {lost} lines could not be written to {file}", {
        lost: sink.linesLost,
        file,
      });
      return 1;
    }
    logger.info("stopped; {lines} lines written to {file}", { lines: sink.linesWritten, file });
    return 0;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}

function describeNetError(error: unknown): string {
  const code = (error as { code?: string }).code;
  if (code === "EADDRINUSE" || error instanceof Deno.errors.AddrInUse) return "address in use";
  if (code === "EACCES" || error instanceof Deno.errors.PermissionDenied) {
    return "permission denied";
  }
  if (code === "EADDRNOTAVAIL" || error instanceof Deno.errors.AddrNotAvailable) {
    return "address not available on this machine";
  }
  return errorMessage(error);
}
