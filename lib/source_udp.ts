/**
 * Syslog over UDP: one datagram, one message, bytes kept as they came.
 * Datagrams are received into one reused buffer and handed on in place.
 *
 * @module
 */

import type { MessageCallback } from "./syslog_framing.ts";
import { log } from "./log.ts";
import { enlargeReceiveBuffer } from "./socket_tuning.ts";
import { findUdpSocket, libc } from "./libc.ts";
import { DatagramBatch } from "./udp_batch.ts";

/** Options for {@linkcode UdpSource}. */
export interface UdpSourceOptions {
  /** Address to bind. */
  host: string;
  /** Port to bind; 0 picks a free one. */
  port: number;
  /** Receives each datagram (valid only during the call). */
  onMessage: MessageCallback;
  /**
   * Kernel receive buffer to ask for (SO_RCVBUF), so bursts are not dropped;
   * 0 leaves the system default.
   * @default {8 MiB}
   */
  receiveBufferBytes?: number;
  /** Stops the source when aborted. */
  signal?: AbortSignal;
}

const MAX_DATAGRAM = 65_535;

/**
 * A UDP syslog input.
 *
 * @example Receive datagrams
 * ```ts
 * import { UdpSource } from "./source_udp.ts";
 * await using source = new UdpSource({
 *   host: "127.0.0.1",
 *   port: 0,
 *   onMessage: (buf, start, end) => console.log(end - start, "bytes"),
 * });
 * const address = await source.listen();
 * ```
 */
export class UdpSource implements AsyncDisposable {
  readonly #options: UdpSourceOptions;
  #conn: Deno.DatagramConn | undefined;
  #loop: Promise<void> | undefined;
  #closed = false;
  #batch: DatagramBatch | undefined;
  /** Datagrams received. */
  received = 0;

  /** Makes a source; nothing is bound until {@linkcode UdpSource.listen}. */
  constructor(options: UdpSourceOptions) {
    this.#options = options;
  }

  /** Binds and starts receiving; resolves with the bound address. */
  listen(): Promise<Deno.NetAddr> {
    const { host, port, signal } = this.#options;
    this.#conn = Deno.listenDatagram({ transport: "udp", hostname: host, port });
    const addr = this.#conn.addr as Deno.NetAddr;
    const lib = libc();
    const fd = lib ? findUdpSocket(lib, addr.port) : -1;
    if (lib && fd >= 0) {
      // Deno wakes us for the first datagram of a burst; recvmmsg takes the rest.
      try {
        this.#batch = new DatagramBatch(lib, fd, { count: 64, slotBytes: 65536 });
      } catch (error) {
        log("input").warn("UDP {port}: no batched receive ({error}); one datagram at a time", {
          port: addr.port,
          error: String(error),
        });
      }
    }
    const wanted = this.#options.receiveBufferBytes ?? 8 * 1024 * 1024;
    if (wanted > 0) {
      const result = enlargeReceiveBuffer(addr.port, wanted);
      if ("error" in result) {
        log("input").warn("UDP {port}: cannot enlarge the receive buffer: {error}", {
          port: addr.port,
          error: result.error,
        });
      } else {
        log("input").debug("UDP {port}: receive buffer {bytes} bytes", {
          port: addr.port,
          bytes: result.granted,
        });
      }
    }
    signal?.addEventListener("abort", () => this.close(), { once: true });
    this.#loop = this.#receive(this.#conn);
    return Promise.resolve(addr);
  }

  async #receive(conn: Deno.DatagramConn): Promise<void> {
    const buf = new Uint8Array(MAX_DATAGRAM);
    const onMessage = this.#options.onMessage;
    try {
      while (true) {
        const [data] = await conn.receive(buf);
        this.received++;
        onMessage(data, 0, data.length);
        if (this.#batch) this.received += this.#batch.drain(onMessage);
      }
    } catch (error) {
      if (!this.#closed) throw error;
    }
  }

  /** Stops receiving; safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#conn?.close();
    await this.#loop;
  }

  /** Stops receiving, like {@linkcode UdpSource.close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
