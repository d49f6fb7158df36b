/**
 * TCP inputs: syslog (RFC 6587: octet counting or newline framing) from the
 * local syslog daemon, where one read returns many messages cut in place, or
 * plain lines from nc, telnet or `reclog send` (`serve --tcp-in`).
 *
 * @module
 */

import { SyslogFramer } from "../framing/syslog.ts";
import { LineSplitter } from "../framing/lines.ts";
import type { MessageCallback } from "../framing/syslog.ts";
import { log } from "../util/log.ts";

/** Options for {@linkcode TcpSource}. */
export interface TcpSourceOptions {
  /** Address to bind. */
  host: string;
  /** Port to bind; 0 picks a free one. */
  port: number;
  /** Receives each message (valid only during the call). */
  onMessage: MessageCallback;
  /**
   * Longest message; longer ones are cut and counted.
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
  /** Stops the source when aborted. */
  signal?: AbortSignal;
}

/** First read buffer of a connection; it doubles while reads fill it. */
const FIRST_READ = 4 * 1024;
/** Largest read buffer (a busy syslog daemon's connection). */
const MAX_READ = 256 * 1024;

/**
 * A TCP syslog input accepting any number of senders.
 *
 * @example Receive RFC 6587 syslog
 * ```ts
 * import { TcpSource } from "./tcp.ts";
 * await using source = new TcpSource({
 *   host: "127.0.0.1",
 *   port: 0,
 *   onMessage: (buf, start, end) => console.log(end - start, "bytes"),
 * });
 * await source.listen();
 * ```
 */
export class TcpSource implements AsyncDisposable {
  readonly #options: TcpSourceOptions;
  #listener: Deno.TcpListener | undefined;
  /** Open connections and when each last sent something (ms, monotonic). */
  readonly #conns = new Map<Deno.TcpConn, { last: number }>();
  readonly #tasks = new Set<Promise<void>>();
  #accepting: Promise<void> | undefined;
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #closed = false;
  #refusedLogged = 0;
  #refusedSinceLog = 0;
  /** Messages received. */
  received = 0;
  /** Messages cut to the maximum length. */
  truncated = 0;
  /** Connections refused because {@linkcode TcpSourceOptions.maxConnections} were open. */
  refused = 0;
  /** Connections closed for sending nothing for {@linkcode TcpSourceOptions.idleTimeoutMs}. */
  idleClosed = 0;

  /** Makes a source; nothing is bound until {@linkcode TcpSource.listen}. */
  constructor(options: TcpSourceOptions) {
    this.#options = options;
  }

  /** Binds and starts accepting; resolves with the bound address. */
  listen(): Promise<Deno.NetAddr> {
    const { host, port, signal } = this.#options;
    this.#listener = Deno.listen({ hostname: host, port, transport: "tcp" });
    signal?.addEventListener("abort", () => this.close(), { once: true });
    const idle = this.#options.idleTimeoutMs ?? 600_000;
    if (idle > 0) {
      this.#sweeper = setInterval(() => this.#sweep(idle), Math.max(10, Math.min(idle / 4, 5_000)));
    }
    this.#accepting = this.#accept(this.#listener);
    return Promise.resolve(this.#listener.addr);
  }

  /** Connections open now. */
  get connections(): number {
    return this.#conns.size;
  }

  /** Accepts until closed; never rejects (errors are logged, then retried after a pause). */
  async #accept(listener: Deno.TcpListener): Promise<void> {
    const label = this.#options.label ?? "syslog-in";
    const max = this.#options.maxConnections ?? 1024;
    let pause = 10;
    while (!this.#closed) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
        pause = 10;
      } catch (error) {
        if (this.#closed || error instanceof Deno.errors.BadResource) return;
        // EMFILE and the like: keep the input, try again a little later.
        log("input").error("{label}: cannot accept a connection: {error}; retrying in {ms} ms", {
          label,
          error: String(error),
          ms: pause,
        });
        await new Promise((resolve) => setTimeout(resolve, pause));
        pause = Math.min(pause * 2, 1_000);
        continue;
      }
      if (this.#conns.size >= max) {
        this.#refuse(conn, label, max);
        continue;
      }
      this.#conns.set(conn, { last: performance.now() });
      const task = this.#serve(conn).finally(() => {
        this.#conns.delete(conn);
        this.#tasks.delete(task);
      });
      this.#tasks.add(task);
    }
  }

  #refuse(conn: Deno.TcpConn, label: string, max: number): void {
    this.refused++;
    this.#refusedSinceLog++;
    const peer = `${conn.remoteAddr.hostname}:${conn.remoteAddr.port}`;
    try {
      conn.close();
    } catch {
      // already closed
    }
    const now = performance.now();
    if (now - this.#refusedLogged >= 1_000 || this.#refusedLogged === 0) {
      log("input").warn(
        "{label}: refused sender {peer}: {max} connections open already; {count} refused since the last report",
        { label, peer, max, count: this.#refusedSinceLog },
      );
      this.#refusedLogged = now;
      this.#refusedSinceLog = 0;
    }
  }

  /** Closes connections that sent nothing for `idleMs`. */
  #sweep(idleMs: number): void {
    const now = performance.now();
    for (const [conn, state] of this.#conns) {
      if (now - state.last < idleMs) continue;
      this.idleClosed++;
      log("input").info("{label}: sender {peer} sent nothing for {seconds} s; disconnecting", {
        label: this.#options.label ?? "syslog-in",
        peer: `${conn.remoteAddr.hostname}:${conn.remoteAddr.port}`,
        seconds: Math.round(idleMs / 100) / 10,
      });
      state.last = Infinity; // logged once
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
  }

  async #serve(conn: Deno.TcpConn): Promise<void> {
    const label = this.#options.label ?? "syslog-in";
    const peer = `${conn.remoteAddr.hostname}:${conn.remoteAddr.port}`;
    log("input").debug("{label}: sender {peer} connected", { label, peer });
    const maxLength = this.#options.maxLength ?? 65536;
    const framer = this.#options.framing === "lines"
      ? new LineFramer(maxLength)
      : new SyslogFramer({ maxLength });
    // Small at first (an idle sender costs little); doubled while reads fill it.
    let buf = new Uint8Array(FIRST_READ);
    const state = this.#conns.get(conn);
    const onMessage: MessageCallback = (b, s, e) => {
      this.received++;
      this.#options.onMessage(b, s, e);
    };
    try {
      while (true) {
        const n = await conn.read(buf);
        if (n === null) break;
        if (state && state.last !== Infinity) state.last = performance.now();
        framer.push(buf.subarray(0, n), onMessage);
        if (n === buf.length && buf.length < MAX_READ) buf = new Uint8Array(buf.length * 2);
      }
      framer.flush(onMessage);
    } catch (error) {
      if (!this.#closed && state?.last !== Infinity) {
        log("input").warn("{label}: sender {peer} failed: {error}", {
          label,
          peer,
          error: String(error),
        });
      }
    } finally {
      if (framer.truncated > 0) {
        this.truncated += framer.truncated;
        log("input").warn("{label}: {count} over-long messages from {peer} were cut", {
          label,
          count: framer.truncated,
          peer,
        });
      }
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
  }

  /** Stops accepting and closes every connection; safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    try {
      this.#listener?.close();
    } catch {
      // already closed
    }
    for (const conn of this.#conns.keys()) {
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
    await this.#accepting;
    await Promise.all(this.#tasks);
  }

  /** Closes like {@linkcode TcpSource.close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** {@linkcode LineSplitter} behind the framer interface the input uses. */
class LineFramer {
  readonly truncated = 0;
  readonly #splitter: LineSplitter;

  constructor(maxLength: number) {
    this.#splitter = new LineSplitter({ maxLine: maxLength });
  }

  push(chunk: Uint8Array, onMessage: MessageCallback): void {
    for (const line of this.#splitter.push(chunk)) onMessage(line, 0, line.length);
  }

  flush(onMessage: MessageCallback): void {
    for (const line of this.#splitter.flush()) onMessage(line, 0, line.length);
  }
}
