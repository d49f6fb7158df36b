/**
 * UDP inputs: syslog (one datagram, one message, bytes kept as they came;
 * `serve --syslog-in udp://`), or lines (one datagram, one or more lines,
 * each batch from one sender; `listen --udp`). Datagrams are received into
 * reused buffers and handed on in place: a batch per `recvmmsg` burst.
 *
 * @module
 */

import type { BatchHandler, Source } from "../batch.ts";
import { formatPeer, ListBatch, PeerRangeBatch } from "./batches.ts";
import { DEFAULT_MAX_LINE, LineSplitter } from "../framing/lines.ts";
import { formatHostPort } from "../util/address.ts";
import { errorMessage } from "../util/errors.ts";
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
  /**
   * Receives each batch (views valid until the call, or its promise, settles):
   * raw, a batch per burst, one message a datagram; lines, a batch per
   * datagram with its sender in `peer` ({@linkcode PeerBatch}).
   */
  onBatch: BatchHandler;
  /**
   * `raw`: a datagram is a message. `lines`: a datagram holds lines (LF or
   * CR LF; over-long ones split), and each batch carries its sender (no
   * batched receive: `recvmmsg` here does not report senders).
   * @default {"raw"}
   */
  framing?: "raw" | "lines";
  /**
   * Longest line with `lines` framing; longer lines are split.
   * @default {65536}
   */
  maxLength?: number;
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
/** Thrown (not an Error: no stack to capture) to leave `drain()` after a full call. */
const FULL_CALL = Object.freeze({ fullCall: true });

/**
 * A UDP syslog input.
 *
 * @example Receive datagrams
 * ```ts
 * import { UdpSource } from "./udp.ts";
 * await using source = new UdpSource({
 *   host: "127.0.0.1",
 *   port: 0,
 *   onBatch: (batch) => console.log(batch.count, "datagrams"),
 * });
 * const address = await source.listen();
 * ```
 */
export class UdpSource implements Source {
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

  /** What it reads: `udp://HOST:PORT` (the bound port once listening). */
  get description(): string {
    const addr = this.#conn?.addr as Deno.NetAddr | undefined;
    const host = addr?.hostname ?? this.#options.host;
    return `udp://${formatHostPort({ host, port: addr?.port ?? this.#options.port })}`;
  }

  /** Binds and starts receiving; resolves with the bound address. */
  listen(): Promise<Deno.NetAddr> {
    const { host, port, signal } = this.#options;
    this.#conn = Deno.listenDatagram({ transport: "udp", hostname: host, port });
    const addr = this.#conn.addr as Deno.NetAddr;
    const where = addr.hostname.includes(":")
      ? `[${addr.hostname}]:${addr.port}`
      : `${addr.hostname}:${addr.port}`;
    const lines = this.#options.framing === "lines";
    const lib = libc();
    // This socket's own descriptor: matched by family, address and port.
    this.#fd = lib ? findUdpSocket(lib, addr) : -1;
    if (lib && this.#fd >= 0 && this.#options.batch !== false && !lines) {
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
    if (signal?.aborted) queueMicrotask(() => void this.close());
    signal?.addEventListener("abort", () => this.close(), { once: true });
    this.#loop = lines ? this.#receiveLines(this.#conn, where) : this.#receive(this.#conn, where);
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
   * Receives until closed: the datagram Deno's `receive()` woke us with is
   * one batch, the rest of the burst (`recvmmsg`) another. Never rejects: an
   * error (of the socket, or of `onBatch`) is logged and closes this input.
   */
  async #receive(conn: Deno.DatagramConn, where: string): Promise<void> {
    const buf = new Uint8Array(MAX_DATAGRAM);
    const onBatch = this.#options.onBatch;
    const single = new PeerRangeBatch(1);
    const burst = new PeerRangeBatch(64);
    const perCall = this.#batch?.count ?? 64;
    // Hands on a full recvmmsg call before drain() calls again (which would
    // overwrite its buffer): drain is left by throwing, and called again.
    const collect = (b: Uint8Array, start: number, end: number) => {
      if (burst.count === 0) burst.reset(b);
      burst.push(start, end);
      if (burst.count === perCall) throw FULL_CALL;
    };
    try {
      while (true) {
        const [data] = await conn.receive(buf);
        this.received++;
        this.singleReceives++;
        single.reset(data);
        single.push(0, data.length);
        const first = onBatch(single);
        if (first) await first;
        for (let full = this.#batch !== undefined; full;) {
          full = false;
          burst.reset(buf);
          try {
            this.#batch!.drain(collect);
          } catch (error) {
            if (error !== FULL_CALL) throw error;
            full = true;
          }
          if (burst.count === 0) break;
          this.received += burst.count;
          const rest = onBatch(burst);
          if (rest) await rest;
        }
      }
    } catch (error) {
      this.#stopped(conn, where, error);
    }
  }

  /** Receives lines until closed: a batch per datagram, with its sender. */
  async #receiveLines(conn: Deno.DatagramConn, where: string): Promise<void> {
    const buf = new Uint8Array(MAX_DATAGRAM);
    const splitter = new LineSplitter({ maxLine: this.#options.maxLength ?? DEFAULT_MAX_LINE });
    const batch = new ListBatch();
    try {
      while (true) {
        const [data, from] = await conn.receive(buf);
        this.received++;
        this.singleReceives++;
        const lines = [...splitter.push(data), ...splitter.flush()];
        if (lines.length === 0) continue;
        batch.messages = lines;
        batch.peer = formatPeer(from as Deno.NetAddr);
        const done = this.#options.onBatch(batch);
        if (done) await done;
      }
    } catch (error) {
      this.#stopped(conn, where, error);
    }
  }

  #stopped(conn: Deno.DatagramConn, where: string, error: unknown): void {
    if (this.#closed) return;
    this.#closed = true;
    log("input").error("UDP {where}: input stopped: {error}", {
      where,
      error: errorMessage(error),
    });
    try {
      conn.close();
    } catch {
      // already closed
    }
  }

  /** Stops receiving; safe to call twice. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.#conn?.close();
      } catch {
        // already closed
      }
    }
    await this.#loop;
  }

  /** Stops receiving, like {@linkcode UdpSource.close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
