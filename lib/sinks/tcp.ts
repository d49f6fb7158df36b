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
 * closes the connection (the next write connects again) and rejects.
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
  readonly #encoder = new Rfc6587Encoder({ framing: "octet-counting" });
  #conn: Deno.TcpConn | undefined;

  /** Connects to `to` on the first write. */
  constructor(to: { host: string; port: number }) {
    this.#to = { host: to.host, port: to.port };
    this.description = `tcp://${formatHostPort(to)}`;
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
