/**
 * One accepted connection of a {@linkcode TcpSource}, plain (a `Deno.TcpConn`
 * read into a reused buffer) or mutual TLS (a `node:tls` socket read chunk
 * by chunk, paused while a chunk is being handled), behind one small
 * interface.
 *
 * @module
 */

import type tls from "node:tls";
import { peerIdentity } from "../tls/policy.ts";

/**
 * A connection's byte stream.
 *
 * @example Read a connection to its end
 * ```ts
 * import { openPlain } from "./tcp_stream.ts";
 * declare const conn: Deno.TcpConn;
 * const stream = openPlain(conn, "127.0.0.1:40000");
 * for (let n = await stream.read(4096); n !== null; n = await stream.read(4096)) {
 *   console.log(stream.buffer.subarray(0, n));
 * }
 * stream.close();
 * ```
 */
export interface Stream {
  /** The sender, `HOST:PORT`. */
  readonly peer: string;
  /** The TLS sender's certificate common name. */
  readonly commonName?: string;
  /** Holds what the last {@linkcode Stream.read} returned, from index 0. */
  readonly buffer: Uint8Array;
  /**
   * Reads the next bytes (at most `size` on plain TCP) into `buffer`,
   * valid until the next call; resolves with how many, null at the end of
   * the stream.
   */
  read(size: number): Promise<number | null>;
  /** Half-closes: the sender sees the end, what it still sends is read. */
  closeWrite(): void;
  /** Closes; a pending read ends. Safe to call twice. */
  close(): void;
}

/**
 * A plain TCP connection as a {@linkcode Stream}: reads go into one buffer,
 * replaced only when a larger read size is asked for.
 *
 * @example Wrap an accepted connection
 * ```ts
 * import { openPlain } from "./tcp_stream.ts";
 * declare const conn: Deno.TcpConn;
 * const stream = openPlain(conn, "127.0.0.1:40000");
 * ```
 */
export function openPlain(conn: Deno.TcpConn, peer: string): Stream {
  let buf: Uint8Array = new Uint8Array(0);
  let closed = false;
  return {
    peer,
    get buffer() {
      return buf;
    },
    read(size: number): Promise<number | null> {
      if (buf.length !== size) buf = new Uint8Array(size);
      return conn.read(buf);
    },
    closeWrite() {
      conn.closeWrite().catch(() => {});
    },
    close() {
      if (closed) return;
      closed = true;
      try {
        conn.close();
      } catch {
        // already closed
      }
    },
  };
}

/**
 * An accepted, verified TLS socket as a {@linkcode Stream}; the socket is
 * read as an async iterator, so it is paused while nobody asks for more.
 *
 * @example Wrap a verified socket
 * ```ts
 * import { openTls } from "./tcp_stream.ts";
 * import type tls from "node:tls";
 * declare const socket: tls.TLSSocket;
 * const stream = openTls(socket, "127.0.0.1:40000");
 * ```
 */
export function openTls(socket: tls.TLSSocket, peer: string): Stream {
  // The iterator rejects with the socket's errors; this keeps them from
  // also being reported as unhandled.
  socket.on("error", () => {});
  let buf: Uint8Array = new Uint8Array(0);
  const chunks = socket[Symbol.asyncIterator]() as AsyncIterator<Uint8Array>;
  return {
    peer,
    commonName: peerIdentity(socket)?.commonName,
    get buffer() {
      return buf;
    },
    async read(): Promise<number | null> {
      const next = await chunks.next();
      if (next.done) return null;
      const chunk = next.value;
      buf = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      return chunk.byteLength;
    },
    closeWrite() {
      socket.end();
    },
    close() {
      socket.destroy();
    },
  };
}
