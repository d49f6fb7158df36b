/**
 * Network addresses as reclog prints them: `HOST:PORT`, IPv6 in brackets.
 *
 * @module
 */

/** A host and a port, as given on the command line. */
export interface HostPort {
  /** Host name or address, without IPv6 brackets. */
  host: string;
  /** Port, 0 to 65535. */
  port: number;
}

/**
 * Formats a host and port back to `HOST:PORT`, bracketing IPv6.
 *
 * @example Format an IPv6 address
 * ```ts
 * import { formatHostPort } from "./address.ts";
 * console.log(formatHostPort({ host: "::1", port: 514 })); // "[::1]:514"
 * ```
 */
export function formatHostPort(address: HostPort): string {
  return address.host.includes(":")
    ? `[${address.host}]:${address.port}`
    : `${address.host}:${address.port}`;
}
