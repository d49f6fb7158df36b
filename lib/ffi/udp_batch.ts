/**
 * Batched datagram I/O on a socket Deno owns: `recvmmsg` and `sendmmsg`
 * through glibc, with MSG_DONTWAIT, on the descriptor of a
 * `Deno.listenDatagram` socket. Deno still owns the socket (binding,
 * closing, waiting for readiness); these calls only move many datagrams per
 * system call where Deno would spend one async op on each.
 *
 * - Receiving: after Deno's `receive()` returns the first datagram of a burst,
 *   {@linkcode DatagramBatch.drain} takes everything else that is queued in
 *   batches of 256, synchronously, until the queue is empty.
 * - Sending: {@linkcode DatagramBatch.send} hands up to 256 datagrams to the
 *   kernel per call; whatever it does not take (a full send buffer) is left
 *   to the caller's portable path.
 *
 * @module
 */

import type { Libc } from "./libc.ts";

/** sizeof(struct mmsghdr) on LP64 Linux. */
const MMSGHDR = 64;
/** sizeof(struct iovec). */
const IOVEC = 16;
const MSG_DONTWAIT = 0x40;
const AF_INET = 2;

/** Options for {@linkcode DatagramBatch}. */
export interface DatagramBatchOptions {
  /**
   * Datagrams per system call.
   * @default {256}
   */
  count?: number;
  /**
   * Bytes per datagram slot (larger datagrams are cut when received, or sent
   * the portable way).
   * @default {65536}
   */
  slotBytes?: number;
  /**
   * IPv4 destination for sending (`sendmmsg`): an IPv4 literal or `localhost`;
   * without it (or with another host) datagrams carry no address.
   */
  to?: { host: string; port: number };
}

/**
 * Slots for up to `count` datagrams and the `mmsghdr` vector describing them.
 *
 * @example Drain a UDP socket after Deno woke us for its first datagram
 * ```ts
 * import { DatagramBatch } from "./udp_batch.ts";
 * import { findUdpSocket, libc } from "./libc.ts";
 * const lib = libc()!;
 * const conn = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
 * const batch = new DatagramBatch(lib, findUdpSocket(lib, conn.addr as Deno.NetAddr));
 * batch.drain((buf, start, end) => console.log(end - start));
 * ```
 */
export class DatagramBatch {
  /** Datagrams per system call ({@linkcode DatagramBatchOptions.count}). */
  readonly count: number;
  /** Bytes per datagram slot ({@linkcode DatagramBatchOptions.slotBytes}). */
  readonly slotBytes: number;
  /**
   * System calls (`recvmmsg` or `sendmmsg`) that moved at least one datagram;
   * `datagrams / calls` is the batch size achieved.
   */
  calls = 0;
  /** Datagrams moved by those calls. */
  datagrams = 0;
  readonly #lib: Libc;
  readonly #fd: number;
  readonly #data: Uint8Array<ArrayBuffer>;
  readonly #vec: Uint8Array<ArrayBuffer>;
  readonly #vecView: DataView;
  readonly #iov: Uint8Array<ArrayBuffer>;
  readonly #iovView: DataView;
  readonly #name: Uint8Array<ArrayBuffer> | undefined;

  /**
   * Allocates `count` slots of `slotBytes` each (`count * slotBytes` bytes in
   * all) for socket descriptor `fd`, and the vectors `lib`'s calls need.
   */
  constructor(lib: Libc, fd: number, options: DatagramBatchOptions = {}) {
    this.#lib = lib;
    this.#fd = fd;
    this.count = options.count ?? 256;
    this.slotBytes = options.slotBytes ?? 65536;
    this.#data = new Uint8Array(this.count * this.slotBytes);
    this.#vec = new Uint8Array(this.count * MMSGHDR);
    this.#iov = new Uint8Array(this.count * IOVEC);
    this.#vecView = new DataView(this.#vec.buffer);
    this.#iovView = new DataView(this.#iov.buffer);
    this.#name = options.to ? sockaddrIn(options.to.host, options.to.port) : undefined;
    const dataPtr = address(this.#data);
    const iovPtr = address(this.#iov);
    const namePtr = this.#name ? address(this.#name) : 0n;
    for (let i = 0; i < this.count; i++) {
      this.#iovView.setBigUint64(i * IOVEC, dataPtr + BigInt(i * this.slotBytes), true);
      this.#iovView.setBigUint64(i * IOVEC + 8, BigInt(this.slotBytes), true);
      const h = i * MMSGHDR;
      this.#vecView.setBigUint64(h, namePtr, true); // msg_name
      this.#vecView.setUint32(h + 8, this.#name?.length ?? 0, true); // msg_namelen
      this.#vecView.setBigUint64(h + 16, iovPtr + BigInt(i * IOVEC), true); // msg_iov
      this.#vecView.setBigUint64(h + 24, 1n, true); // msg_iovlen
    }
  }

  /**
   * Receives every datagram queued on the socket, without waiting, calling
   * `onDatagram` for each (bytes valid only during the call); returns how
   * many there were.
   */
  drain(onDatagram: (buf: Uint8Array, start: number, end: number) => void): number {
    let total = 0;
    for (;;) {
      const n = this.#lib.symbols.recvmmsg(this.#fd, this.#vec, this.count, MSG_DONTWAIT, null);
      if (n <= 0) return total; // EAGAIN: the queue is empty
      this.calls++;
      this.datagrams += n;
      for (let i = 0; i < n; i++) {
        const start = i * this.slotBytes;
        onDatagram(this.#data, start, start + this.#vecView.getUint32(i * MMSGHDR + 56, true));
      }
      total += n;
      if (n < this.count) return total;
    }
  }

  /** The bytes of slot `i`, to fill before {@linkcode send}. */
  slot(i: number): Uint8Array {
    return this.#data.subarray(i * this.slotBytes, (i + 1) * this.slotBytes);
  }

  /**
   * Sends slots `0..count-1` (slot `i` holding `lengths[i]` bytes) to the
   * destination; returns how many the kernel took (fewer when its buffer
   * is full).
   */
  send(lengths: Uint32Array, count: number): number {
    for (let i = 0; i < count; i++) {
      this.#iovView.setBigUint64(i * IOVEC + 8, BigInt(lengths[i]!), true);
    }
    let done = 0;
    while (done < count) {
      const n = this.#lib.symbols.sendmmsg(
        this.#fd,
        this.#vec.subarray(done * MMSGHDR),
        count - done,
        MSG_DONTWAIT,
      );
      if (n <= 0) break;
      this.calls++;
      this.datagrams += n;
      done += n;
    }
    return done;
  }
}

function address(buf: Uint8Array<ArrayBuffer>): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
}

/**
 * A `struct sockaddr_in` for an IPv4 literal (or `localhost`); undefined
 * for anything else.
 *
 * @example Address loopback
 * ```ts
 * import { sockaddrIn } from "./udp_batch.ts";
 * sockaddrIn("127.0.0.1", 514)?.length; // 16
 * ```
 */
export function sockaddrIn(host: string, port: number): Uint8Array<ArrayBuffer> | undefined {
  const ip = host === "localhost" ? "127.0.0.1" : host;
  const parts = ip.split(".");
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) {
    return undefined;
  }
  const addr = new Uint8Array(16);
  addr[0] = AF_INET; // sa_family, little-endian u16
  addr[2] = port >> 8;
  addr[3] = port & 0xff;
  addr.set(parts.map(Number), 4);
  return addr;
}
