/**
 * TCP inputs: syslog (RFC 6587: octet counting or newline framing) from the
 * local syslog daemon, where one read returns many messages cut in place, or
 * plain lines from nc, telnet or `reclog send` (`serve --tcp-in`).
 *
 * @module
 */

import { SyslogFramer } from "./syslog_framing.ts";
import { LineSplitter } from "./line_framing.ts";
import type { MessageCallback } from "./syslog_framing.ts";
import { log } from "./log.ts";

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
  /** Stops the source when aborted. */
  signal?: AbortSignal;
}

const READ_BUFFER = 256 * 1024;

/**
 * A TCP syslog input accepting any number of senders.
 *
 * @example Receive RFC 6587 syslog
 * ```ts
 * import { TcpSource } from "./source_tcp.ts";
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
  readonly #conns = new Set<Deno.TcpConn>();
  readonly #tasks = new Set<Promise<void>>();
  #accepting: Promise<void> | undefined;
  #closed = false;
  /** Messages received. */
  received = 0;
  /** Messages cut to the maximum length. */
  truncated = 0;

  /** Makes a source; nothing is bound until {@linkcode TcpSource.listen}. */
  constructor(options: TcpSourceOptions) {
    this.#options = options;
  }

  /** Binds and starts accepting; resolves with the bound address. */
  listen(): Promise<Deno.NetAddr> {
    const { host, port, signal } = this.#options;
    this.#listener = Deno.listen({ hostname: host, port, transport: "tcp" });
    signal?.addEventListener("abort", () => this.close(), { once: true });
    this.#accepting = this.#accept(this.#listener);
    return Promise.resolve(this.#listener.addr);
  }

  async #accept(listener: Deno.TcpListener): Promise<void> {
    try {
      for await (const conn of listener) {
        this.#conns.add(conn);
        const task = this.#serve(conn).finally(() => {
          this.#conns.delete(conn);
          this.#tasks.delete(task);
        });
        this.#tasks.add(task);
      }
    } catch (error) {
      if (!this.#closed) throw error;
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
    const buf = new Uint8Array(READ_BUFFER);
    const onMessage: MessageCallback = (b, s, e) => {
      this.received++;
      this.#options.onMessage(b, s, e);
    };
    try {
      while (true) {
        const n = await conn.read(buf);
        if (n === null) break;
        framer.push(buf.subarray(0, n), onMessage);
      }
      framer.flush(onMessage);
    } catch (error) {
      if (!this.#closed) {
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
    this.#listener?.close();
    for (const conn of this.#conns) {
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
