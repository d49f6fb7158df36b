/**
 * The bench's own measuring tools must be much faster than what they
 * measure, and Deno's UDP API (one async op a datagram) is not: on this
 * machine it receives ~40k datagrams/s. So the load generator and the
 * counting receiver talk to the kernel through glibc with `Deno.dlopen`:
 * `sendmmsg`/`recvmmsg` move up to 1024 datagrams per system call, and
 * `clock_gettime(CLOCK_MONOTONIC)` gives both processes the same clock for
 * latencies. Linux (x86_64 / aarch64, LP64 struct layouts) only.
 *
 * @module
 */

import { LIBC_PATHS } from "../lib/ffi/libc.ts";

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  sendmmsg: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  recvmmsg: {
    parameters: ["i32", "buffer", "u32", "i32", "pointer"],
    result: "i32",
    nonblocking: true,
  },
  clock_gettime: { parameters: ["i32", "buffer"], result: "i32" },
} as const;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>;
let libc: Libc | undefined;

function lib(): Libc {
  if (libc) return libc;
  let lastError = "";
  for (const path of LIBC_PATHS) {
    try {
      libc = Deno.dlopen(path, SYMBOLS);
      return libc;
    } catch (error) {
      lastError = error instanceof Error ? error.message : String(error);
    }
  }
  throw new Error(`bench: cannot load glibc (${lastError}); the bench runs on Linux only`);
}

const AF_INET = 2;
const SOCK_DGRAM = 2;
const SOL_SOCKET = 1;
const SO_RCVBUF = 8;
const SO_SNDBUF = 7;
const SO_RCVBUFFORCE = 33;
const SO_SNDBUFFORCE = 32;
const SO_RCVTIMEO = 20;
const MSG_WAITFORONE = 0x10000;
const CLOCK_MONOTONIC = 1;
/** sizeof(struct mmsghdr) on LP64 Linux. */
const MMSGHDR = 64;
/** sizeof(struct iovec). */
const IOVEC = 16;

const timespec = new BigInt64Array(2);
const timespecBytes = new Uint8Array(timespec.buffer);

/** CLOCK_MONOTONIC in microseconds: the same clock in every process of this machine. */
export function monotonicMicros(): number {
  lib().symbols.clock_gettime(CLOCK_MONOTONIC, timespecBytes);
  return Number(timespec[0]!) * 1_000_000 + Math.floor(Number(timespec[1]!) / 1000);
}

/** Loopback addresses the bench may send to. */
export function isLoopback(host: string): boolean {
  return /^127\.\d+\.\d+\.\d+$/.test(host) || host === "localhost";
}

function sockaddrIn(host: string, port: number): Uint8Array<ArrayBuffer> {
  const ip = host === "localhost" ? "127.0.0.1" : host;
  const parts = ip.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !(p >= 0 && p <= 255))) {
    throw new Error(`bench: '${host}' is not an IPv4 address`);
  }
  const addr = new Uint8Array(16);
  addr[0] = AF_INET; // sa_family, little-endian u16
  addr[2] = port >> 8;
  addr[3] = port & 0xff;
  addr.set(parts, 4);
  return addr;
}

function pointerValue(buf: Uint8Array<ArrayBuffer>, offset = 0): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf))) + BigInt(offset);
}

function setIntOption(fd: number, option: number, fallback: number, value: number): void {
  const v = new Uint8Array(new Int32Array([value]).buffer);
  if (lib().symbols.setsockopt(fd, SOL_SOCKET, option, v, 4) !== 0) {
    lib().symbols.setsockopt(fd, SOL_SOCKET, fallback, v, 4);
  }
}

/** A block of `count` datagram slots of `slotBytes` each, with the mmsghdr vector for them. */
class Slots {
  readonly data: Uint8Array<ArrayBuffer>;
  readonly vec: Uint8Array<ArrayBuffer>;
  readonly #iov: Uint8Array<ArrayBuffer>;
  readonly #vecView: DataView;
  readonly #iovView: DataView;

  constructor(readonly count: number, readonly slotBytes: number, name?: Uint8Array<ArrayBuffer>) {
    this.data = new Uint8Array(count * slotBytes);
    this.vec = new Uint8Array(count * MMSGHDR);
    this.#iov = new Uint8Array(count * IOVEC);
    this.#vecView = new DataView(this.vec.buffer);
    this.#iovView = new DataView(this.#iov.buffer);
    const dataPtr = pointerValue(this.data);
    const iovPtr = pointerValue(this.#iov);
    const namePtr = name ? pointerValue(name) : 0n;
    for (let i = 0; i < count; i++) {
      this.#iovView.setBigUint64(i * IOVEC, dataPtr + BigInt(i * slotBytes), true);
      this.#iovView.setBigUint64(i * IOVEC + 8, BigInt(slotBytes), true);
      const h = i * MMSGHDR;
      this.#vecView.setBigUint64(h, namePtr, true); // msg_name
      this.#vecView.setUint32(h + 8, name ? name.length : 0, true); // msg_namelen
      this.#vecView.setBigUint64(h + 16, iovPtr + BigInt(i * IOVEC), true); // msg_iov
      this.#vecView.setBigUint64(h + 24, 1n, true); // msg_iovlen
    }
  }

  /** Sets the length of datagram `i` (sending). */
  setLength(i: number, length: number): void {
    this.#iovView.setBigUint64(i * IOVEC + 8, BigInt(length), true);
  }

  /** Length received into slot `i` (msg_len). */
  received(i: number): number {
    return this.#vecView.getUint32(i * MMSGHDR + 56, true);
  }
}

/** A UDP sender that sends batches with one `sendmmsg` call. */
export class UdpBatchSender {
  readonly #fd: number;
  readonly #slots: Slots;
  readonly #name: Uint8Array<ArrayBuffer>;
  /** Datagrams the kernel refused (send buffer full and similar). */
  failed = 0;

  constructor(host: string, port: number, readonly batch = 1024, readonly slotBytes = 2048) {
    if (!isLoopback(host)) throw new Error(`bench: refusing to send to non-loopback ${host}`);
    this.#name = sockaddrIn(host, port);
    this.#fd = lib().symbols.socket(AF_INET, SOCK_DGRAM, 0);
    if (this.#fd < 0) throw new Error("bench: socket() failed");
    setIntOption(this.#fd, SO_SNDBUFFORCE, SO_SNDBUF, 4 << 20);
    this.#slots = new Slots(batch, slotBytes, this.#name);
  }

  /** Slot `i`'s bytes, to fill before {@linkcode send}. */
  slot(i: number): Uint8Array {
    return this.#slots.data.subarray(i * this.slotBytes, (i + 1) * this.slotBytes);
  }

  /** Sets the length of slot `i`'s datagram. */
  setLength(i: number, length: number): void {
    this.#slots.setLength(i, length);
  }

  /** Sends slots 0..count-1; returns how many the kernel took. */
  send(count: number): number {
    let done = 0;
    let attempts = 0;
    while (done < count) {
      const vec = this.#slots.vec.subarray(done * MMSGHDR, count * MMSGHDR);
      const n = lib().symbols.sendmmsg(this.#fd, vec, count - done, 0);
      if (n <= 0) {
        if (++attempts > 3) {
          this.failed += count - done;
          break;
        }
        continue;
      }
      done += n;
    }
    return done;
  }

  close(): void {
    lib().symbols.close(this.#fd);
  }
}

/** One received datagram: bytes valid only during the callback. */
export type DatagramCallback = (buf: Uint8Array, start: number, end: number, now: number) => void;

/** A UDP receiver on loopback that reads up to 1024 datagrams per `recvmmsg`. */
export class UdpBatchReceiver {
  readonly #fd: number;
  readonly #slots: Slots;
  readonly port: number;
  #stopping = false;
  #loop: Promise<void> | undefined;
  /** System calls that returned datagrams, and datagrams in all. */
  calls = 0;
  datagrams = 0;

  constructor(port = 0, readonly batch = 1024, readonly slotBytes = 2048) {
    this.#fd = lib().symbols.socket(AF_INET, SOCK_DGRAM, 0);
    if (this.#fd < 0) throw new Error("bench: socket() failed");
    setIntOption(this.#fd, SO_RCVBUFFORCE, SO_RCVBUF, 64 << 20);
    const timeout = new BigInt64Array([0n, 100_000n]); // 100 ms, to notice stop()
    lib().symbols.setsockopt(this.#fd, SOL_SOCKET, SO_RCVTIMEO, new Uint8Array(timeout.buffer), 16);
    const addr = sockaddrIn("127.0.0.1", port);
    if (lib().symbols.bind(this.#fd, addr, 16) !== 0) {
      lib().symbols.close(this.#fd);
      throw new Error(`bench: cannot bind UDP 127.0.0.1:${port}`);
    }
    const bound = new Uint8Array(16);
    const length = new Uint32Array([16]);
    lib().symbols.getsockname(this.#fd, bound, new Uint8Array(length.buffer));
    this.port = bound[2]! << 8 | bound[3]!;
    this.#slots = new Slots(batch, slotBytes);
  }

  /** Starts receiving; `onDatagram` gets every datagram. */
  start(onDatagram: DatagramCallback): void {
    this.#loop = this.#receive(onDatagram);
  }

  async #receive(onDatagram: DatagramCallback): Promise<void> {
    const slots = this.#slots;
    while (!this.#stopping) {
      // Reset every slot's buffer length (recvmmsg leaves iov_len alone, but be explicit).
      const n = await lib().symbols.recvmmsg(this.#fd, slots.vec, this.batch, MSG_WAITFORONE, null);
      if (n <= 0) continue; // timeout (EAGAIN) or EINTR
      const now = monotonicMicros();
      this.calls++;
      this.datagrams += n;
      for (let i = 0; i < n; i++) {
        const start = i * this.slotBytes;
        onDatagram(slots.data, start, start + slots.received(i), now);
      }
    }
  }

  /** Stops (within 100 ms) and closes the socket. */
  async close(): Promise<void> {
    this.#stopping = true;
    await this.#loop;
    lib().symbols.close(this.#fd);
  }
}
