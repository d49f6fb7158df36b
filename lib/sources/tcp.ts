/**
 * TCP inputs: syslog (RFC 6587: octet counting or newline framing) from the
 * local syslog daemon, where one read returns many messages cut in place, or
 * plain lines from nc, telnet or `reclog send` (`serve --tcp-in`, `listen`),
 * over plain TCP or mutual TLS (`listen --cert`: the sender's certificate
 * must chain to the CA and pass the peer policy, as for `serve --listen`).
 *
 * Each read becomes one batch carrying the sender's address (`peer`); while
 * the `onBatch` handler's promise is pending, that connection is not read
 * (back-pressure reaches the sender through TCP).
 *
 * @module
 */

import tls from "node:tls";
import type { BatchHandler, Source } from "../batch.ts";
import { formatPeer, ListBatch, type PeerBatch, PeerRangeBatch } from "./batches.ts";
import { SyslogFramer } from "../framing/syslog.ts";
import { LineSplitter } from "../framing/lines.ts";
import { formatHostPort } from "../util/address.ts";
import { errorMessage } from "../util/errors.ts";
import { log } from "../util/log.ts";
import { checkPeer, type PeerPolicy, serverTlsOptions, type TlsMaterial } from "../tls/policy.ts";
import { openPlain, openTls, type Stream } from "./tcp_stream.ts";

/** Options for {@linkcode TcpSource}. */
export interface TcpSourceOptions {
  /** Address to bind. */
  host: string;
  /** Port to bind; 0 picks a free one. */
  port: number;
  /**
   * Receives each read's messages as a {@linkcode PeerBatch} (views valid
   * until the call, or its promise, settles; the connection waits for it).
   */
  onBatch: BatchHandler;
  /**
   * Longest message; longer ones are cut (syslog) or split (lines) and
   * counted in {@linkcode TcpSource.truncated}.
   * @default {65536}
   */
  maxLength?: number;
  /**
   * How the byte stream is cut into messages: RFC 6587 syslog framing, or
   * lines (LF, telnet's CR LF; over-long lines split, never dropped).
   * @default {"syslog"}
   */
  framing?: "syslog" | "lines";
  /**
   * Name used in log lines.
   * @default {"syslog-in"}
   */
  label?: string;
  /**
   * Accept mutual TLS with this material instead of plain TCP: a sender must
   * present a certificate that chains to its CA and passes `policy`.
   * @default {undefined}
   */
  tls?: TlsMaterial;
  /**
   * Which TLS senders are accepted beyond chaining to the CA.
   * @default {{ allowCn: [], allowFingerprint: [] }}
   */
  policy?: PeerPolicy;
  /**
   * Most senders connected at once; a connection beyond it is closed at
   * once, with a log line (at most one a second, with a count).
   * @default {1024}
   */
  maxConnections?: number;
  /**
   * A sender that sends nothing for this long is disconnected, ms; 0 never.
   * @default {600000}
   */
  idleTimeoutMs?: number;
  /**
   * On close, how long senders get to finish: each connection is
   * half-closed and read until the sender closes or this time passes; 0
   * closes at once. A partial last message is handed on either way.
   * @default {0}
   */
  closeGraceMs?: number;
  /**
   * Log level of a sender's connect and disconnect lines.
   * @default {"debug"}
   */
  connectionLog?: "debug" | "info";
  /** Stops the source when aborted. */
  signal?: AbortSignal;
}

/** First read buffer of a connection; it doubles while reads fill it. */
const FIRST_READ = 4 * 1024;
/** Largest read buffer (a busy syslog daemon's connection). */
const MAX_READ = 256 * 1024;
const ANY_PEER: PeerPolicy = { allowCn: [], allowFingerprint: [] };

/**
 * A TCP (or mutual-TLS) input accepting any number of senders.
 *
 * @example Receive RFC 6587 syslog
 * ```ts
 * import { TcpSource } from "./tcp.ts";
 * await using source = new TcpSource({
 *   host: "127.0.0.1",
 *   port: 0,
 *   onBatch: (batch) => console.log(batch.count, "messages"),
 * });
 * await source.listen();
 * ```
 */
export class TcpSource implements Source {
  readonly #options: TcpSourceOptions;
  readonly #label: string;
  #listener: Deno.TcpListener | undefined;
  #server: tls.Server | undefined;
  #address: Deno.NetAddr | undefined;
  /** Open connections and when each last sent something (ms, monotonic). */
  readonly #conns = new Map<Stream, { last: number }>();
  readonly #tasks = new Set<Promise<void>>();
  #accepting: Promise<void> | undefined;
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #closing: Promise<void> | undefined;
  #refusedLogged = 0;
  #refusedSinceLog = 0;
  /** Messages received. */
  received = 0;
  /** Messages cut (syslog) or split (lines) to the maximum length. */
  truncated = 0;
  /** Connections refused because {@linkcode TcpSourceOptions.maxConnections} were open. */
  refused = 0;
  /** Connections closed for sending nothing for {@linkcode TcpSourceOptions.idleTimeoutMs}. */
  idleClosed = 0;

  /** Makes a source; nothing is bound until {@linkcode TcpSource.listen}. */
  constructor(options: TcpSourceOptions) {
    this.#options = options;
    this.#label = options.label ?? "syslog-in";
  }

  /** What it reads: `tcp://HOST:PORT` or `tls://HOST:PORT` (the bound port once listening). */
  get description(): string {
    const scheme = this.#options.tls ? "tls" : "tcp";
    const port = this.#address?.port ?? this.#options.port;
    return `${scheme}://${formatHostPort({ host: this.#options.host, port })}`;
  }

  /** Binds and starts accepting; resolves with the bound address. */
  async listen(): Promise<Deno.NetAddr> {
    const { host, port, signal } = this.#options;
    if (this.#options.tls) {
      this.#address = await this.#listenTls(this.#options.tls);
    } else {
      this.#listener = Deno.listen({ hostname: host, port, transport: "tcp" });
      this.#address = this.#listener.addr;
      this.#accepting = this.#accept(this.#listener);
    }
    if (signal?.aborted) queueMicrotask(() => void this.close());
    signal?.addEventListener("abort", () => this.close(), { once: true });
    const idle = this.#options.idleTimeoutMs ?? 600_000;
    if (idle > 0) {
      this.#sweeper = setInterval(() => this.#sweep(idle), Math.max(10, Math.min(idle / 4, 5_000)));
    }
    return this.#address;
  }

  /** Connections open now. */
  get connections(): number {
    return this.#conns.size;
  }

  async #listenTls(material: TlsMaterial): Promise<Deno.NetAddr> {
    const logger = log("input");
    const server = tls.createServer(serverTlsOptions(material));
    this.#server = server;
    server.on("tlsClientError", (error: Error, socket: tls.TLSSocket) => {
      logger.warn("refused TLS sender {peer}: {reason}", {
        peer: socketPeer(socket),
        reason: error.message,
      });
    });
    server.on("secureConnection", (socket: tls.TLSSocket) => {
      const reason = checkPeer(socket, this.#options.policy ?? ANY_PEER, material.authorities);
      if (reason) {
        logger.warn("refused TLS sender {peer}: {reason}", { peer: socketPeer(socket), reason });
        socket.destroy();
        return;
      }
      if (this.#closing) socket.destroy();
      else this.#admit(openTls(socket, socketPeer(socket)));
    });
    server.on("error", (error: Error) => {
      if (server.listening) logger.error("{label}: {error}", { label: this.#label, error });
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: this.#options.host, port: this.#options.port }, () => {
        server.off("error", reject);
        resolve();
      });
    });
    const bound = server.address() as { port: number };
    return { transport: "tcp", hostname: this.#options.host, port: bound.port };
  }

  /** Accepts until closed; never rejects (errors are logged, then retried after a pause). */
  async #accept(listener: Deno.TcpListener): Promise<void> {
    let pause = 10;
    while (!this.#closing) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
        pause = 10;
      } catch (error) {
        if (this.#closing || error instanceof Deno.errors.BadResource) return;
        // EMFILE and the like: keep the input, try again a little later.
        log("input").error("{label}: cannot accept a connection: {error}; retrying in {ms} ms", {
          label: this.#label,
          error: errorMessage(error),
          ms: pause,
        });
        await new Promise((resolve) => setTimeout(resolve, pause));
        pause = Math.min(pause * 2, 1_000);
        continue;
      }
      this.#admit(openPlain(conn, formatPeer(conn.remoteAddr)));
    }
  }

  #admit(stream: Stream): void {
    const max = this.#options.maxConnections ?? 1024;
    if (this.#conns.size >= max) {
      this.#refuse(stream, max);
      return;
    }
    this.#conns.set(stream, { last: performance.now() });
    const task = this.#serve(stream).finally(() => {
      this.#conns.delete(stream);
      this.#tasks.delete(task);
    });
    this.#tasks.add(task);
  }

  #refuse(stream: Stream, max: number): void {
    this.refused++;
    this.#refusedSinceLog++;
    stream.close();
    const now = performance.now();
    if (now - this.#refusedLogged >= 1_000 || this.#refusedLogged === 0) {
      log("input").warn(
        "{label}: refused sender {peer}: {max} connections open already; {count} refused since the last report",
        { label: this.#label, peer: stream.peer, max, count: this.#refusedSinceLog },
      );
      this.#refusedLogged = now;
      this.#refusedSinceLog = 0;
    }
  }

  /** Closes connections that sent nothing for `idleMs`. */
  #sweep(idleMs: number): void {
    const now = performance.now();
    for (const [stream, state] of this.#conns) {
      if (now - state.last < idleMs) continue;
      this.idleClosed++;
      log("input").info("{label}: sender {peer} sent nothing for {seconds} s; disconnecting", {
        label: this.#label,
        peer: stream.peer,
        seconds: Math.round(idleMs / 100) / 10,
      });
      state.last = Infinity; // logged once
      stream.close();
    }
  }

  async #serve(stream: Stream): Promise<void> {
    const label = this.#label;
    const peer = stream.peer;
    const logger = log("input");
    const level = this.#options.connectionLog ?? "debug";
    if (stream.commonName !== undefined) {
      logger[level]("{label}: sender {peer} connected (TLS, CN {cn})", {
        label,
        peer,
        cn: stream.commonName,
      });
    } else logger[level]("{label}: sender {peer} connected", { label, peer });
    const framer = this.#options.framing === "lines"
      ? new LineFramer(this.#options.maxLength ?? 65536, peer)
      : new SyslogBatcher(this.#options.maxLength ?? 65536, peer);
    const state = this.#conns.get(stream);
    const onBatch = this.#options.onBatch;
    let messages = 0;
    let why = "disconnected";
    // Returns the handler's promise, if any: awaited only then, so that a
    // synchronous handler costs no turn of the event loop per read.
    const deliver = (batch: PeerBatch | undefined): void | Promise<void> => {
      this.truncated += framer.takeTruncated();
      if (!batch) return;
      this.received += batch.count;
      messages += batch.count;
      return onBatch(batch);
    };
    let failed: unknown;
    try {
      // Small at first (an idle sender costs little); doubled while reads fill it.
      let size = FIRST_READ;
      while (true) {
        const n = await stream.read(size);
        if (n === null) break;
        if (state && state.last !== Infinity) state.last = performance.now();
        const done = deliver(framer.push(stream.buffer.subarray(0, n)));
        if (done) await done;
        if (n === size && size < MAX_READ) size *= 2;
      }
    } catch (error) {
      failed = error;
    }
    try {
      if (failed === undefined || this.#closing || this.#options.framing === "lines") {
        // End of stream, or we are closing: the partial last message too.
        await deliver(framer.flush());
      }
    } catch (error) {
      failed ??= error;
    } finally {
      stream.close();
    }
    if (this.#closing) why = "disconnected (input closing)";
    if (failed !== undefined && !this.#closing && state?.last !== Infinity) {
      why = `failed: ${errorMessage(failed)}`;
      logger.warn("{label}: sender {peer} failed: {error}", {
        label,
        peer,
        error: errorMessage(failed),
      });
    }
    if (framer.truncatedTotal > 0) {
      logger.warn("{label}: {count} over-long messages from {peer} were cut", {
        label,
        count: framer.truncatedTotal,
        peer,
      });
    }
    logger[level](`{label}: sender {peer} ${why} after {count} messages`, {
      label,
      peer,
      count: messages,
    });
  }

  /**
   * Stops accepting, gives senders `closeGraceMs` to finish, hands on their
   * partial messages and closes every connection; safe to call twice.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
      try {
        this.#listener?.close();
      } catch {
        // already closed
      }
      const server = this.#server;
      const stopped = server?.listening
        ? new Promise<void>((resolve) => server.close(() => resolve()))
        : Promise.resolve();
      const grace = this.#options.closeGraceMs ?? 0;
      if (grace > 0 && this.#tasks.size > 0) {
        for (const stream of this.#conns.keys()) stream.closeWrite();
        let timer: ReturnType<typeof setTimeout> | undefined;
        try {
          await Promise.race([
            Promise.all(this.#tasks),
            new Promise((resolve) => timer = setTimeout(resolve, grace)),
          ]);
        } finally {
          clearTimeout(timer);
        }
      }
      for (const stream of this.#conns.keys()) stream.close();
      await this.#accepting;
      await Promise.all(this.#tasks);
      await stopped;
    })();
    return this.#closing;
  }

  /** Closes like {@linkcode TcpSource.close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** RFC 6587 deframing of a connection's reads into one {@linkcode PeerRangeBatch} each. */
class SyslogBatcher {
  readonly #framer: SyslogFramer;
  readonly #batch: PeerRangeBatch;
  readonly #collect = (buf: Uint8Array, start: number, end: number) => {
    // One push cuts all its messages from one buffer (the chunk, or the
    // chunk joined to what was carried over).
    if (this.#batch.count === 0) this.#batch.reset(buf);
    this.#batch.push(start, end);
  };
  #counted = 0;

  constructor(maxLength: number, peer: string) {
    this.#framer = new SyslogFramer({ maxLength });
    this.#batch = new PeerRangeBatch(64, peer);
  }

  get truncatedTotal(): number {
    return this.#framer.truncated;
  }

  takeTruncated(): number {
    const fresh = this.#framer.truncated - this.#counted;
    this.#counted = this.#framer.truncated;
    return fresh;
  }

  push(chunk: Uint8Array): PeerRangeBatch | undefined {
    this.#batch.reset(chunk);
    this.#framer.push(chunk, this.#collect);
    return this.#batch.count > 0 ? this.#batch : undefined;
  }

  flush(): PeerRangeBatch | undefined {
    this.#batch.reset(new Uint8Array());
    this.#framer.flush(this.#collect);
    return this.#batch.count > 0 ? this.#batch : undefined;
  }
}

/** {@linkcode LineSplitter} behind the same interface: a {@linkcode ListBatch} per read. */
class LineFramer {
  readonly truncatedTotal = 0;
  readonly #splitter: LineSplitter;
  readonly #batch: ListBatch;

  constructor(maxLength: number, peer: string) {
    this.#splitter = new LineSplitter({ maxLine: maxLength });
    this.#batch = new ListBatch([], peer);
  }

  takeTruncated(): number {
    return 0;
  }

  push(chunk: Uint8Array): ListBatch | undefined {
    return this.#wrap(this.#splitter.push(chunk));
  }

  flush(): ListBatch | undefined {
    return this.#wrap(this.#splitter.flush());
  }

  #wrap(lines: Uint8Array[]): ListBatch | undefined {
    if (lines.length === 0) return undefined;
    this.#batch.messages = lines;
    return this.#batch;
  }
}

/** A TLS socket's sender; one that failed its handshake only knows it through the TCP socket under it. */
function socketPeer(socket: tls.TLSSocket): string {
  const tcp = socket.remoteAddress === undefined
    ? (socket as { _parent?: tls.TLSSocket })._parent
    : socket;
  return formatPeer({ hostname: tcp?.remoteAddress, port: tcp?.remotePort });
}
