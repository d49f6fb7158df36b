/**
 * The UDP sink (`pull --to udp://HOST:PORT`): syslog over UDP, one datagram
 * a message, in order.
 *
 * @module
 */

import { ALL_TAKEN, type MessageBatch, type Refusal, type Sink, SinkError } from "../batch.ts";
import type { WriteReport } from "../batch.ts";
import { formatHostPort } from "../util/address.ts";
import { errorMessage } from "../util/errors.ts";
import { findUdpSocket, libc } from "../ffi/libc.ts";
import { DatagramBatch, sockaddrIn } from "../ffi/udp_batch.ts";

/** Datagrams per `sendmmsg` call. */
const BATCH = 128;
/** Bytes of a `sendmmsg` slot; a longer message goes out on its own. */
const SLOT = 8192;
/** Largest UDP payload over IPv4 (65535 - 20 - 8) and IPv6 (65535 - 8). */
const MAX_DATAGRAM_V4 = 65_507;
const MAX_DATAGRAM_V6 = 65_527;

/**
 * Syslog over UDP. A batch goes out with `sendmmsg` (up to 128 datagrams
 * per system call) where glibc is at hand and the destination is an IPv4
 * literal; otherwise, or for what the kernel did not take at once, one
 * awaited send a message. `write` resolves once the kernel took every
 * datagram; a message too large for a datagram is refused, not sent.
 *
 * @example Re-inject into the local syslog
 * ```ts
 * import { UdpSink } from "./udp.ts";
 * await using sink = new UdpSink({ host: "127.0.0.1", port: 514 });
 * ```
 */
export class UdpSink implements Sink {
  /** `udp://HOST:PORT`. */
  readonly description: string;
  readonly #addr: Deno.NetAddr;
  readonly #maxDatagram: number;
  #conn: Deno.DatagramConn | undefined;
  #batch: DatagramBatch | undefined;
  readonly #lengths = new Uint32Array(BATCH);

  /** Sends to `to`; the socket is opened on the first write. */
  constructor(to: { host: string; port: number }) {
    this.#addr = { transport: "udp", hostname: to.host, port: to.port };
    this.#maxDatagram = to.host.includes(":") ? MAX_DATAGRAM_V6 : MAX_DATAGRAM_V4;
    this.description = `udp://${formatHostPort(to)}`;
  }

  #open(): Deno.DatagramConn {
    const conn = Deno.listenDatagram({
      transport: "udp",
      hostname: this.#addr.hostname.includes(":") ? "::" : "0.0.0.0",
      port: 0,
    });
    const lib = libc();
    const to = sockaddrIn(this.#addr.hostname, this.#addr.port);
    const fd = lib && to ? findUdpSocket(lib, conn.addr as Deno.NetAddr) : -1;
    if (lib && fd >= 0) {
      try {
        this.#batch = new DatagramBatch(lib, fd, {
          count: BATCH,
          slotBytes: SLOT,
          to: { host: this.#addr.hostname, port: this.#addr.port },
        });
      } catch {
        this.#batch = undefined; // no pointer access: the portable path
      }
    }
    return conn;
  }

  /** Sends every message of `batch`; rejects with a {@linkcode SinkError} saying how many went. */
  async write(batch: MessageBatch): Promise<WriteReport> {
    const conn = this.#conn ??= this.#open();
    const slots = this.#batch;
    let refused: Refusal[] | undefined;
    /** Messages before this index are sent (or refused). */
    let taken = 0;
    // Filled slots: sent when full, before a message that does not fit one, and at the end.
    let n = 0;
    const flush = async () => {
      const sent = slots!.send(this.#lengths, n);
      // What the kernel did not take now goes the portable (waiting) way.
      for (let i = sent; i < n; i++) {
        await conn.send(slots!.slot(i).subarray(0, this.#lengths[i]!), this.#addr);
      }
      n = 0;
    };
    try {
      for (let i = 0; i < batch.count; i++) {
        const message = batch.message(i);
        if (message.length > this.#maxDatagram) {
          (refused ??= []).push({
            index: i,
            reason: `too large for a UDP datagram (${message.length} bytes)`,
          });
        } else if (slots && message.length <= SLOT) {
          slots.slot(n).set(message);
          this.#lengths[n++] = message.length;
          if (n === BATCH) await flush();
        } else {
          if (n > 0) await flush();
          await conn.send(message, this.#addr);
        }
        if (n === 0) taken = i + 1;
      }
      if (n > 0) await flush();
    } catch (error) {
      throw new SinkError(`${this.description}: ${errorMessage(error)}`, taken, { cause: error });
    }
    return refused ? { refused } : ALL_TAKEN;
  }

  /** Closes the socket; safe to call twice. */
  close(): Promise<void> {
    this.#conn?.close();
    this.#conn = undefined;
    this.#batch = undefined;
    return Promise.resolve();
  }

  /** Closes, like {@linkcode UdpSink.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
