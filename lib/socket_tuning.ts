/**
 * A larger kernel receive buffer (SO_RCVBUF) for a bound UDP socket, so that
 * bursts from the local syslog daemon wait in the kernel instead of being
 * dropped. Deno has no API for it and `node:dgram`'s `recvBufferSize` costs
 * an allocation of that size per datagram in Deno 2.9, so this finds the
 * socket's descriptor by its bound port (getsockname) and calls setsockopt
 * through `Deno.dlopen` on glibc. Linux only; elsewhere it reports why not.
 *
 * @module
 */

const LIBC_PATHS = [
  "/lib/x86_64-linux-gnu/libc.so.6",
  "/lib/aarch64-linux-gnu/libc.so.6",
  "/usr/lib64/libc.so.6",
  "/usr/lib/libc.so.6",
];

const SOL_SOCKET = 1;
const SO_TYPE = 3;
const SO_RCVBUF = 8;
const SO_RCVBUFFORCE = 33;
const SOCK_DGRAM = 2;
const AF_INET = 2;
const AF_INET6 = 10;

const SYMBOLS = {
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
} as const;

/**
 * Asks for a receive buffer of `bytes` on the UDP socket bound to `port`;
 * resolves to the size the kernel granted (it doubles the request for its
 * own bookkeeping), or a reason it could not.
 *
 * @example Enlarge a syslog input's buffer
 * ```ts
 * import { enlargeReceiveBuffer } from "./socket_tuning.ts";
 * const conn = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
 * const result = enlargeReceiveBuffer((conn.addr as Deno.NetAddr).port, 8 << 20);
 * ```
 */
export function enlargeReceiveBuffer(
  port: number,
  bytes: number,
): { granted: number } | { error: string } {
  if (Deno.build.os !== "linux") return { error: `not supported on ${Deno.build.os}` };
  let libc: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;
  let lastError = "";
  for (const path of LIBC_PATHS) {
    try {
      libc = Deno.dlopen(path, SYMBOLS);
      break;
    } catch (error) {
      lastError = error instanceof Error ? error.message : String(error);
    }
  }
  if (!libc) return { error: `cannot load libc (${lastError})` };
  try {
    const fd = findUdpSocket(libc, port);
    if (fd < 0) return { error: `no UDP socket bound to port ${port} found` };
    const value = new Int32Array([Math.min(bytes, 0x3fffffff)]);
    // SO_RCVBUFFORCE passes net.core.rmem_max when privileged; else fall back.
    if (libc.symbols.setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, bytesOf(value), 4) !== 0) {
      libc.symbols.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, bytesOf(value), 4);
    }
    return { granted: getIntOption(libc, fd, SO_RCVBUF) };
  } finally {
    libc.close();
  }
}

function bytesOf(array: Int32Array | Uint32Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(array.buffer as ArrayBuffer);
}

function getIntOption(libc: Deno.DynamicLibrary<typeof SYMBOLS>, fd: number, option: number) {
  const value = new Int32Array(1);
  const length = new Uint32Array([4]);
  if (libc.symbols.getsockopt(fd, SOL_SOCKET, option, bytesOf(value), bytesOf(length)) !== 0) {
    return -1;
  }
  return value[0]!;
}

function findUdpSocket(libc: Deno.DynamicLibrary<typeof SYMBOLS>, port: number): number {
  const address = new Uint8Array(128);
  const length = new Uint32Array(1);
  for (let fd = 3; fd < 65536; fd++) {
    length[0] = address.length;
    if (libc.symbols.getsockname(fd, address, bytesOf(length)) !== 0) {
      // EBADF past the last descriptor is cheap; keep looking a little.
      if (fd > 4096) break;
      continue;
    }
    const family = address[0]! | address[1]! << 8;
    const boundPort = address[2]! << 8 | address[3]!;
    if (
      (family === AF_INET || family === AF_INET6) && boundPort === port &&
      getIntOption(libc, fd, SO_TYPE) === SOCK_DGRAM
    ) {
      return fd;
    }
  }
  return -1;
}
