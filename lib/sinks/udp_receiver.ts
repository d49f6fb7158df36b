/**
 * What the kernel says of a UDP receiver on this machine: whether a socket
 * is bound to its port, how many bytes wait in its receive queue, and how
 * many datagrams it dropped (the `rx_queue` and `drops` columns of
 * /proc/net/udp and /proc/net/udp6). The UDP sink paces itself with it.
 *
 * @module
 */

import { readFileRaw } from "../ffi/libc.ts";

/** One look at the receiver's sockets. */
export interface ReceiverState {
  /** Whether any socket is bound to the port. */
  present: boolean;
  /** Bytes queued in its receive buffers (kernel accounting, not payload). */
  queued: number;
  /** Datagrams its kernel dropped since the sockets were made. */
  drops: number;
}

/**
 * Whether `host` is this machine's loopback (`127.0.0.0/8`, `::1`,
 * `localhost`), where /proc describes the receiver.
 *
 * @example
 * ```ts
 * import { isLoopback } from "./udp_receiver.ts";
 * isLoopback("127.0.0.1"); // true
 * ```
 */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * The UDP receiver bound to a port of this machine, as /proc shows it.
 *
 * @example Wait while the receiver's queue is full
 * ```ts
 * import { LocalUdpReceiver } from "./udp_receiver.ts";
 * const receiver = new LocalUdpReceiver(514);
 * console.log(receiver.read()?.present);
 * ```
 */
export class LocalUdpReceiver {
  /** The port. */
  readonly port: number;
  readonly #suffix: string;
  readonly #needle: string;
  /** The default receive buffer size of a socket, bytes (`net.core.rmem_default`). */
  readonly defaultBuffer: number;

  /** Looks at the sockets bound to `port`. */
  constructor(port: number) {
    this.port = port;
    this.#suffix = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
    this.#needle = `${this.#suffix} `;
    const text = readFileRaw("/proc/sys/net/core/rmem_default");
    const value = Number(text?.trim());
    this.defaultBuffer = Number.isFinite(value) && value > 0 ? value : 212_992;
  }

  /** The receiver's state now; undefined when /proc cannot be read. */
  read(): ReceiverState | undefined {
    let seen = false;
    const state: ReceiverState = { present: false, queued: 0, drops: 0 };
    for (const file of ["/proc/net/udp", "/proc/net/udp6"]) {
      const text = readFileRaw(file);
      if (text === undefined) continue;
      seen = true;
      // Only the lines that mention the port are split (the table lists every UDP socket).
      for (let at = text.indexOf(this.#needle); at >= 0; at = text.indexOf(this.#needle, at + 1)) {
        const start = text.lastIndexOf("\n", at) + 1;
        const end = text.indexOf("\n", at);
        at = end < 0 ? text.length : end;
        const fields = text.slice(start, at).trim().split(/\s+/);
        // sl local_address rem_address st tx_queue:rx_queue ... drops (13th)
        if (!fields[1]?.endsWith(this.#suffix) || fields[12] === undefined) continue;
        state.present = true;
        state.queued += parseInt(fields[4]!.split(":")[1] ?? "0", 16) || 0;
        state.drops += Number(fields[12]) || 0;
      }
    }
    return seen ? state : undefined;
  }
}
