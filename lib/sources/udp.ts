/**
 * Syslog over UDP: one datagram, one message, bytes kept as they came.
 * Datagrams are received into one reused buffer and handed on in place.
 *
 * @module
 */

import type { MessageCallback } from "../framing/syslog.ts";
import { log } from "../util/log.ts";
import { enlargeReceiveBuffer } from "../ffi/socket_tuning.ts";
import { findUdpSocket, libc } from "../ffi/libc.ts";
import { DatagramBatch } from "../ffi/udp_batch.ts";

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
  /**
   * Batched receive: after Deno's `receive()` wakes the source, `recvmmsg`
   * takes the rest of the burst (up to 64 datagrams a call). `false` keeps
   * the portable path, one awaited `receive()` a datagram.
   * @default {true}
   */
  batch?: boolean;
  /** Stops the source when aborted. */
  signal?: AbortSignal;
}

const MAX_DATAGRAM = 65_535;

/**
 * A UDP syslog input.
 *
 * @example Receive datagrams
 * ```ts
 * import { UdpSource } from "./udp.ts";
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
  #fd = -1;
  #receiveBuffer = 0;
  /** Datagrams received. */
  received = 0;
  /** Datagrams received one at a time through Deno's `receive()`. */
  singleReceives = 0;

  /** Makes a source; nothing is bound until {@linkcode UdpSource.listen}. */
  constructor(options: UdpSourceOptions) {
    this.#options = options;
  }

  /** Binds and starts receiving; resolves with the bound address. */
  listen(): Promise<Deno.NetAddr> {
    const { host, port, signal } = this.#options;
    this.#conn = Deno.listenDatagram({ transport: "udp", hostname: host, port });
    const addr = this.#conn.addr as Deno.NetAddr;
    const where = addr.hostname.includes(":")
      ? `[${addr.hostname}]:${addr.port}`
      : `${addr.hostname}:${addr.port}`;
    const lib = libc();
    // This socket's own descriptor: matched by family, address and port.
    this.#fd = lib ? findUdpSocket(lib, addr) : -1;
    if (lib && this.#fd >= 0 && this.#options.batch !== false) {
      // Deno wakes us for the first datagram of a burst; recvmmsg takes the rest.
      try {
        this.#batch = new DatagramBatch(lib, this.#fd, { count: 64, slotBytes: 65536 });
      } catch (error) {
        log("input").warn("UDP {where}: no batched receive ({error}); one datagram at a time", {
          where,
          error: String(error),
        });
      }
    }
    const wanted = this.#options.receiveBufferBytes ?? 8 * 1024 * 1024;
    if (wanted > 0) {
      const result = enlargeReceiveBuffer(this.#fd >= 0 ? this.#fd : addr, wanted);
      if ("error" in result) {
        log("input").warn("UDP {where}: cannot enlarge the receive buffer: {error}", {
          where,
          error: result.error,
        });
      } else {
        this.#receiveBuffer = result.granted;
        log("input").debug("UDP {where}: receive buffer {bytes} bytes", {
          where,
          bytes: result.granted,
        });
      }
    }
    signal?.addEventListener("abort", () => this.close(), { once: true });
    this.#loop = this.#receive(this.#conn, where);
    return Promise.resolve(addr);
  }

  /** The bound socket's descriptor (found through glibc), or -1. */
  get fd(): number {
    return this.#fd;
  }

  /** The kernel receive buffer granted (SO_RCVBUF), bytes; 0 if not set. */
  get receiveBufferBytes(): number {
    return this.#receiveBuffer;
  }

  /**
   * Batched receive counters: `recvmmsg` calls that returned datagrams, and
   * the datagrams they returned (both 0 on the portable path).
   */
  get batchStats(): { calls: number; datagrams: number } {
    return { calls: this.#batch?.calls ?? 0, datagrams: this.#batch?.datagrams ?? 0 };
  }

  /**
   * Receives until closed. Never rejects: an error (of the socket, or thrown
   * by `onMessage`) is logged and closes this one input.
   */
  async #receive(conn: Deno.DatagramConn, where: string): Promise<void> {
    const buf = new Uint8Array(MAX_DATAGRAM);
    const onMessage = this.#options.onMessage;
    try {
      while (true) {
        const [data] = await conn.receive(buf);
        this.received++;
        this.singleReceives++;
        onMessage(data, 0, data.length);
        if (this.#batch) this.received += this.#batch.drain(onMessage);
      }
    } catch (error) {
      if (this.#closed) return;
      this.#closed = true;
      log("input").error("UDP {where}: input stopped: {error}", { where, error: String(error) });
      try {
        conn.close();
      } catch {
        // already closed
      }
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
