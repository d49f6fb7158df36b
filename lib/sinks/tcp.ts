/**
 * The TCP sink (`pull --to tcp://HOST:PORT`): syslog over TCP with octet
 * counting (RFC 6587).
 *
 * @module
 */

import { ALL_TAKEN, type MessageBatch, type Sink, type WriteReport } from "../batch.ts";
import { formatHostPort } from "../util/address.ts";
import { Rfc6587Encoder } from "../framing/octet_counting.ts";
import { writeAll } from "./write_all.ts";

/**
 * Syslog over TCP with octet counting, one write a batch (no Nagle delay).
 * `write` resolves once the kernel took the batch's bytes; a failed write
 * closes the connection (the next write connects again) and rejects. TCP
 * has no acknowledgement: a receiver that crashes loses what its kernel had
 * taken (`relp://` cannot). An empty message is never written (octet count
 * 0 is not valid RFC 6587) but counted in {@linkcode TcpSink.empty}; one over
 * `maxMessage` is cut and counted in {@linkcode TcpSink.truncated}.
 *
 * @example Hand on to a local rsyslog imtcp
 * ```ts
 * import { TcpSink } from "./tcp.ts";
 * await using sink = new TcpSink({ host: "127.0.0.1", port: 514 });
 * ```
 */
export class TcpSink implements Sink {
  /** `tcp://HOST:PORT`. */
  readonly description: string;
  readonly #to: { host: string; port: number };
  readonly #encoder: Rfc6587Encoder;
  #conn: Deno.TcpConn | undefined;

  /**
   * Connects to `to` on the first write. `to.maxMessage` is the longest
   * message sent, bytes (default 65536, serve's default `--max-message`).
   */
  constructor(to: { host: string; port: number; maxMessage?: number }) {
    this.#to = { host: to.host, port: to.port };
    this.description = `tcp://${formatHostPort(to)}`;
    this.#encoder = new Rfc6587Encoder({
      framing: "octet-counting",
      maxMessage: to.maxMessage ?? 65_536,
    });
  }

  /** Empty messages left out so far. */
  get empty(): number {
    return this.#encoder.empty;
  }

  /** Messages cut to the size limit so far. */
  get truncated(): number {
    return this.#encoder.truncated;
  }

  /** Sends the batch, octet-counted, in one write. */
  async write(batch: MessageBatch): Promise<WriteReport> {
    const bytes = this.#encoder.encode(batch);
    if (bytes.length === 0) return ALL_TAKEN;
    if (!this.#conn) {
      this.#conn = await Deno.connect({ hostname: this.#to.host, port: this.#to.port });
      this.#conn.setNoDelay(true); // one write a batch: never wait for Nagle
    }
    try {
      await writeAll(this.#conn, bytes);
    } catch (error) {
      await this.close();
      throw error;
    }
    return ALL_TAKEN;
  }

  /** Closes the connection; safe to call twice. */
  close(): Promise<void> {
    try {
      this.#conn?.close();
    } catch {
      // already closed
    }
    this.#conn = undefined;
    return Promise.resolve();
  }

  /** Closes, like {@linkcode TcpSink.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
