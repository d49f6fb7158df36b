/**
 * A larger kernel receive buffer (SO_RCVBUF) for a bound UDP socket, so that
 * bursts from the local syslog daemon wait in the kernel instead of being
 * dropped. Deno has no API for it and `node:dgram`'s `recvBufferSize` costs
 * an allocation of that size per datagram in Deno 2.9, so this finds the
 * socket's descriptor by its bound address (family, IP and port) and calls
 * setsockopt through glibc.
 * Linux only; elsewhere it reports why not.
 *
 * @module
 */

import { bytesOf, findUdpSocket, getIntOption, libc, libcError } from "./libc.ts";
import type { SocketAddress } from "./libc.ts";

const SOL_SOCKET = 1;
const SO_RCVBUF = 8;
const SO_RCVBUFFORCE = 33;

/**
 * Asks for a receive buffer of `bytes` on the UDP socket bound to `target`
 * (its address, or its descriptor when already known); returns the size the
 * kernel granted (it doubles the request for its own bookkeeping) and the
 * descriptor, or a reason it could not.
 *
 * @example Enlarge a syslog input's buffer
 * ```ts
 * import { enlargeReceiveBuffer } from "./socket_tuning.ts";
 * const conn = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
 * const result = enlargeReceiveBuffer(conn.addr as Deno.NetAddr, 8 << 20);
 * ```
 */
export function enlargeReceiveBuffer(
  target: SocketAddress | number,
  bytes: number,
): { granted: number; fd: number } | { error: string } {
  const lib = libc();
  if (!lib) return { error: `cannot load libc (${libcError()})` };
  const fd = typeof target === "number" ? target : findUdpSocket(lib, target);
  if (fd < 0) {
    const where = typeof target === "number" ? `descriptor ${target}` : describe(target);
    return { error: `no UDP socket bound to ${where} found` };
  }
  const value = new Int32Array([Math.min(bytes, 0x3fffffff)]);
  // SO_RCVBUFFORCE passes net.core.rmem_max when privileged; else fall back.
  if (lib.symbols.setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, bytesOf(value), 4) !== 0) {
    lib.symbols.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, bytesOf(value), 4);
  }
  return { granted: getIntOption(lib, fd, SO_RCVBUF), fd };
}

function describe(address: SocketAddress): string {
  return address.hostname.includes(":")
    ? `[${address.hostname}]:${address.port}`
    : `${address.hostname}:${address.port}`;
}
