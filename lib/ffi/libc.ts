/**
 * The few glibc calls reclog makes through `Deno.dlopen`, where Deno has no
 * API: socket options (SO_RCVBUF), batched datagram I/O (`recvmmsg`,
 * `sendmmsg`: hundreds of datagrams per system call instead of one async op
 * each), and reading /proc files that Deno's permissions keep out of reach.
 * Linux on x86_64/aarch64 (LP64 struct layouts) only; everything here returns
 * undefined elsewhere, and callers fall back to the portable path.
 *
 * @module
 */

/** Where glibc lives on the Debian-family systems reclog targets. */
export const LIBC_PATHS = [
  "/lib/x86_64-linux-gnu/libc.so.6",
  "/lib/aarch64-linux-gnu/libc.so.6",
  "/usr/lib64/libc.so.6",
  "/usr/lib/libc.so.6",
];

/** The glibc functions reclog binds, as `Deno.dlopen` symbol definitions. */
export type LibcSymbols = {
  /** `setsockopt(fd, level, name, value, length)`: 0 or -1. */
  readonly setsockopt: {
    readonly parameters: readonly ["i32", "i32", "i32", "buffer", "u32"];
    readonly result: "i32";
  };
  /** `getsockopt(fd, level, name, value, length)`: 0 or -1. */
  readonly getsockopt: {
    readonly parameters: readonly ["i32", "i32", "i32", "buffer", "buffer"];
    readonly result: "i32";
  };
  /** `getsockname(fd, address, length)`: 0 or -1. */
  readonly getsockname: {
    readonly parameters: readonly ["i32", "buffer", "buffer"];
    readonly result: "i32";
  };
  /** `recvmmsg(fd, messages, count, flags, timeout)`: datagrams received or -1. */
  readonly recvmmsg: {
    readonly parameters: readonly ["i32", "buffer", "u32", "i32", "pointer"];
    readonly result: "i32";
  };
  /** `sendmmsg(fd, messages, count, flags)`: datagrams sent or -1. */
  readonly sendmmsg: {
    readonly parameters: readonly ["i32", "buffer", "u32", "i32"];
    readonly result: "i32";
  };
  /** `open(path, flags)`: a descriptor or -1. */
  readonly open: { readonly parameters: readonly ["buffer", "i32"]; readonly result: "i32" };
  /** `read(fd, buffer, count)`: bytes read, 0 at the end, or -1. */
  readonly read: {
    readonly parameters: readonly ["i32", "buffer", "usize"];
    readonly result: "isize";
  };
  /** `close(fd)`: 0 or -1. */
  readonly close: { readonly parameters: readonly ["i32"]; readonly result: "i32" };
};

const SYMBOLS: LibcSymbols = {
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  recvmmsg: { parameters: ["i32", "buffer", "u32", "i32", "pointer"], result: "i32" },
  sendmmsg: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  open: { parameters: ["buffer", "i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
} as const;

/** The loaded library. */
export type Libc = Deno.DynamicLibrary<LibcSymbols>;

let loaded: Libc | null | undefined;
let loadError = "";

/**
 * glibc, loaded once; undefined where it cannot be (not Linux, no FFI
 * permission, another libc).
 *
 * @example Check for batched I/O
 * ```ts
 * import { libc } from "./libc.ts";
 * if (libc()) console.log("recvmmsg available");
 * ```
 */
export function libc(): Libc | undefined {
  if (loaded !== undefined) return loaded ?? undefined;
  loaded = null;
  if (
    Deno.build.os !== "linux" || (Deno.build.arch !== "x86_64" && Deno.build.arch !== "aarch64")
  ) {
    loadError = `not supported on ${Deno.build.os}/${Deno.build.arch}`;
    return undefined;
  }
  for (const path of LIBC_PATHS) {
    try {
      loaded = Deno.dlopen(path, SYMBOLS);
      return loaded;
    } catch (error) {
      loadError = error instanceof Error ? error.message : String(error);
    }
  }
  return undefined;
}

/**
 * Why {@linkcode libc} is unavailable; empty before the first call to it or
 * when it loaded.
 *
 * @example Explain a fallback
 * ```ts
 * import { libc, libcError } from "./libc.ts";
 * if (!libc()) console.log(`no batched UDP: ${libcError()}`);
 * ```
 */
export function libcError(): string {
  return loadError;
}

/**
 * `Uint8Array` view of a typed array (same memory, no copy), for FFI buffers.
 *
 * @example Pass an int to getsockopt
 * ```ts
 * import { bytesOf } from "./libc.ts";
 * const value = new Int32Array(1);
 * console.log(bytesOf(value).length); // 4
 * ```
 */
export function bytesOf(array: Int32Array | Uint32Array | BigInt64Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(array.buffer as ArrayBuffer, array.byteOffset, array.byteLength);
}

const SOL_SOCKET = 1;
const SO_TYPE = 3;
const SOCK_DGRAM = 2;
const AF_INET = 2;
const AF_INET6 = 10;

/**
 * Reads an int `SOL_SOCKET` option of descriptor `fd`; -1 on failure.
 *
 * @example Read SO_RCVBUF
 * ```ts
 * import { findUdpSocket, getIntOption, libc } from "./libc.ts";
 * const lib = libc()!;
 * const conn = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
 * const fd = findUdpSocket(lib, conn.addr as Deno.NetAddr);
 * console.log(getIntOption(lib, fd, 8)); // SO_RCVBUF, bytes
 * ```
 */
export function getIntOption(lib: Libc, fd: number, option: number): number {
  const value = new Int32Array(1);
  const length = new Uint32Array([4]);
  if (lib.symbols.getsockopt(fd, SOL_SOCKET, option, bytesOf(value), bytesOf(length)) !== 0) {
    return -1;
  }
  return value[0]!;
}

/** A bound socket address, as `Deno.NetAddr` gives it (an IP literal and a port). */
export interface SocketAddress {
  /** IPv4 or IPv6 literal (`127.0.0.1`, `::1`, `0.0.0.0`, `::`). */
  hostname: string;
  /** Port. */
  port: number;
}

/**
 * The descriptor of this process's UDP socket bound to exactly `address`
 * (family, IP and port: `127.0.0.1:P` and `[::1]:P` are two sockets); Deno
 * does not expose descriptors, so getsockname on each one finds it. -1 if
 * none, or if `address.hostname` is not an IP literal.
 *
 * @example Find a datagram socket's descriptor
 * ```ts
 * import { findUdpSocket, libc } from "./libc.ts";
 * const conn = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
 * const fd = findUdpSocket(libc()!, conn.addr as Deno.NetAddr);
 * ```
 */
export function findUdpSocket(lib: Libc, address: SocketAddress): number {
  const wanted = parseIp(address.hostname);
  if (!wanted) return -1;
  const family = wanted.length === 4 ? AF_INET : AF_INET6;
  const offset = wanted.length === 4 ? 4 : 8; // sin_addr / sin6_addr
  const buf = new Uint8Array(128);
  const length = new Uint32Array(1);
  for (let fd = 3; fd < 4096; fd++) {
    length[0] = buf.length;
    if (lib.symbols.getsockname(fd, buf, bytesOf(length)) !== 0) continue;
    if ((buf[0]! | buf[1]! << 8) !== family) continue;
    if ((buf[2]! << 8 | buf[3]!) !== address.port) continue;
    let same = true;
    for (let i = 0; i < wanted.length && same; i++) same = buf[offset + i] === wanted[i];
    if (same && getIntOption(lib, fd, SO_TYPE) === SOCK_DGRAM) return fd;
  }
  return -1;
}

/**
 * The bytes of an IPv4 (4) or IPv6 (16) literal, network order; undefined
 * for anything else. IPv6 may use `::` and a trailing dotted quad, and a
 * `%zone` suffix is ignored.
 *
 * @example Parse loopback addresses
 * ```ts
 * import { parseIp } from "./libc.ts";
 * parseIp("127.0.0.1"); // Uint8Array [127, 0, 0, 1]
 * parseIp("::1")?.length; // 16
 * ```
 */
export function parseIp(text: string): Uint8Array | undefined {
  const v4 = parseIpv4(text);
  if (v4) return v4;
  let host = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  const zone = host.indexOf("%");
  if (zone >= 0) host = host.slice(0, zone);
  if (!host.includes(":")) return undefined;
  const halves = host.split("::");
  if (halves.length > 2) return undefined;
  const groups = (part: string): number[] | undefined => {
    if (part === "") return [];
    const out: number[] = [];
    const pieces = part.split(":");
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i]!;
      if (i === pieces.length - 1 && piece.includes(".")) {
        const quad = parseIpv4(piece);
        if (!quad) return undefined;
        out.push(quad[0]! << 8 | quad[1]!, quad[2]! << 8 | quad[3]!);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(piece)) {
        out.push(parseInt(piece, 16));
      } else {
        return undefined;
      }
    }
    return out;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !tail) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const all = [...head, ...new Array<number>(missing).fill(0), ...tail];
  const bytes = new Uint8Array(16);
  all.forEach((group, i) => {
    bytes[2 * i] = group >> 8;
    bytes[2 * i + 1] = group & 0xff;
  });
  return bytes;
}

function parseIpv4(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) {
    return undefined;
  }
  return new Uint8Array(parts.map(Number));
}

/**
 * Reads a whole file with open/read, bypassing Deno's permission on /proc
 * (reclog's FFI permission already implies that trust); undefined on error.
 *
 * @example Read /proc/net/udp
 * ```ts
 * import { readFileRaw } from "./libc.ts";
 * console.log(readFileRaw("/proc/net/udp")?.split("\n").length);
 * ```
 */
export function readFileRaw(path: string): string | undefined {
  const lib = libc();
  if (!lib) return undefined;
  const fd = lib.symbols.open(new TextEncoder().encode(path + "\0"), 0);
  if (fd < 0) return undefined;
  try {
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(64 * 1024);
    let size = 0;
    for (;;) {
      const n = Number(lib.symbols.read(fd, buf, BigInt(buf.length)));
      if (n <= 0) break;
      chunks.push(buf.slice(0, n));
      size += n;
    }
    const out = new Uint8Array(size);
    let offset = 0;
    for (const chunk of chunks) {
      out.set(chunk, offset);
      offset += chunk.length;
    }
    return new TextDecoder().decode(out);
  } finally {
    lib.symbols.close(fd);
  }
}
