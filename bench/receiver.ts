/**
 * The counting receiver: a UDP socket (read with lib/ffi's `recvmmsg`) and a
 * TCP listener (RFC 6587 octet counting or newline framing, deframed by
 * lib/framing/syslog.ts) on loopback that
 * count the unique sequence numbers of the bench's messages and record each
 * one's latency, receive time minus the send time inside it (both
 * CLOCK_MONOTONIC of this machine).
 *
 * @module
 */

import { libc, libcError } from "../lib/ffi/libc.ts";
import { enlargeReceiveBuffer } from "../lib/ffi/socket_tuning.ts";
import { DatagramBatch } from "../lib/ffi/udp_batch.ts";
import { SyslogFramer } from "../lib/framing/syslog.ts";
import { monotonicMicros } from "./clock.ts";
import { parse } from "./message.ts";

/** Latency figures in milliseconds. */
export interface Latency {
  p50: number;
  p99: number;
  max: number;
}

/** What one run delivered. */
export interface Counted {
  /** Distinct sequence numbers of this run received. */
  unique: number;
  /** Messages of this run received more than once. */
  duplicates: number;
  /** Messages from earlier runs or not the bench's. */
  stray: number;
  latency: Latency;
  /** Monotonic µs of the last arrival of this run (0: none). */
  lastArrival: number;
}

/** Counts sequence numbers in `(base, base + expected]`. */
export class Counter {
  #base = 0;
  #seen = new Uint8Array(0);
  #latencies = new Float64Array(1 << 16);
  unique = 0;
  duplicates = 0;
  stray = 0;
  lastArrival = 0;
  /** Monotonic µs of the last arrival of any message, stray or not. */
  lastAny = 0;

  /** Starts counting a new run. */
  reset(base: number, expected: number): void {
    this.#base = base;
    if (this.#seen.length < expected + 1) this.#seen = new Uint8Array(expected + 1);
    else this.#seen.fill(0, 0, expected + 1);
    this.#expected = expected;
    this.unique = this.duplicates = this.stray = 0;
    this.lastArrival = 0;
  }
  #expected = 0;

  /** Records one received message. */
  record(buf: Uint8Array, start: number, end: number, now: number): void {
    this.lastAny = now;
    const message = parse(buf, start, end);
    const index = message ? message.seq - this.#base : -1;
    if (!message || index < 1 || index > this.#expected) {
      this.stray++;
      return;
    }
    if (this.#seen[index]) {
      this.duplicates++;
      return;
    }
    this.#seen[index] = 1;
    if (this.unique === this.#latencies.length) {
      const grown = new Float64Array(this.#latencies.length * 2);
      grown.set(this.#latencies);
      this.#latencies = grown;
    }
    this.#latencies[this.unique++] = now - message.micros;
    this.lastArrival = now;
  }

  /** The figures so far. */
  result(): Counted {
    const sorted = this.#latencies.slice(0, this.unique).sort();
    const at = (q: number) =>
      sorted.length === 0
        ? NaN
        : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
    return {
      unique: this.unique,
      duplicates: this.duplicates,
      stray: this.stray,
      latency: {
        p50: at(0.5) / 1000,
        p99: at(0.99) / 1000,
        max: sorted.length === 0 ? NaN : sorted[sorted.length - 1]! / 1000,
      },
      lastArrival: this.lastArrival,
    };
  }
}

/**
 * A loopback UDP socket of Deno's: after each `receive()` wake-up, lib/ffi's
 * `recvmmsg` batch takes everything else queued (64 MiB receive buffer).
 */
class UdpReceiver {
  readonly port: number;
  readonly #socket: Deno.DatagramConn;
  readonly #loop: Promise<void>;

  constructor(onDatagram: (buf: Uint8Array, start: number, end: number, now: number) => void) {
    const lib = libc();
    if (!lib) throw new Error(`receiver: UDP needs glibc for recvmmsg (${libcError()})`);
    this.#socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    const address = this.#socket.addr as Deno.NetAddr;
    this.port = address.port;
    const tuned = enlargeReceiveBuffer(address, 64 << 20);
    if ("error" in tuned) {
      this.#socket.close();
      throw new Error(`receiver: ${tuned.error}`);
    }
    const batch = new DatagramBatch(lib, tuned.fd, { count: 1024, slotBytes: 2048 });
    this.#loop = this.#receive(batch, onDatagram);
  }

  async #receive(
    batch: DatagramBatch,
    onDatagram: (buf: Uint8Array, start: number, end: number, now: number) => void,
  ): Promise<void> {
    const first = new Uint8Array(2048);
    try {
      for (;;) {
        const [data] = await this.#socket.receive(first);
        const now = monotonicMicros();
        onDatagram(data, 0, data.length, now);
        batch.drain((buf, start, end) => onDatagram(buf, start, end, now));
      }
    } catch {
      // closed
    }
  }

  async close(): Promise<void> {
    this.#socket.close();
    await this.#loop;
  }
}

/** The UDP and TCP receivers, feeding one {@linkcode Counter}. */
export class Receiver implements AsyncDisposable {
  readonly counter = new Counter();
  readonly #udp: UdpReceiver;
  readonly #tcp: Deno.TcpListener;
  readonly #conns = new Set<Deno.TcpConn>();
  #accepting: Promise<void>;
  readonly udpPort: number;
  readonly tcpPort: number;

  constructor() {
    this.#udp = new UdpReceiver((buf, start, end, now) =>
      this.counter.record(buf, start, end, now)
    );
    this.udpPort = this.#udp.port;
    this.#tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.tcpPort = (this.#tcp.addr as Deno.NetAddr).port;
    this.#accepting = this.#accept();
  }

  async #accept(): Promise<void> {
    try {
      for await (const conn of this.#tcp) {
        this.#conns.add(conn);
        this.#read(conn).finally(() => this.#conns.delete(conn));
      }
    } catch {
      // closed
    }
  }

  async #read(conn: Deno.TcpConn): Promise<void> {
    const buf = new Uint8Array(256 * 1024);
    let now = 0;
    const framer = new SyslogFramer();
    const record = (b: Uint8Array, s: number, e: number) => this.counter.record(b, s, e, now);
    try {
      while (true) {
        const n = await conn.read(buf);
        if (n === null) break;
        now = monotonicMicros();
        framer.push(buf.subarray(0, n), record);
      }
    } catch {
      // reset by the peer or closed
    } finally {
      try {
        conn.close();
      } catch {
        // closed
      }
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#tcp.close();
    for (const conn of this.#conns) {
      try {
        conn.close();
      } catch {
        // closed
      }
    }
    await this.#accepting;
    await this.#udp.close();
  }
}
