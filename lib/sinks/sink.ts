/**
 * Sinks: where `pull` hands messages on. Every sink takes a batch of whole
 * wire frames and walks the message frames in place; `write` resolves once
 * the receiver has taken them, so the caller may then save its resume point.
 *
 * @module
 */

import { type Endpoint } from "../cli/flags.ts";
import { formatHostPort } from "../util/address.ts";
import { FrameReader, FrameType } from "../protocol/frame.ts";
import { findUdpSocket, libc } from "../ffi/libc.ts";
import { DatagramBatch, sockaddrIn } from "../ffi/udp_batch.ts";

/** A destination for messages. */
export interface Sink extends AsyncDisposable {
  /** What it writes to, for log lines. */
  readonly description: string;
  /**
   * Hands on every message frame in `frames` (a buffer of whole frames;
   * control frames are ignored). Rejects if the receiver is unreachable.
   */
  write(frames: Uint8Array): Promise<void>;
  /** Closes the sink; safe to call twice. */
  close(): Promise<void>;
  /** Told the server journal's epoch when a connection starts (optional). */
  begin?(epoch: string): void;
}

/**
 * Opens the sink for an endpoint: `udp://`, `tcp://`, `unix://` or stdout.
 *
 * @example Re-inject into the local syslog
 * ```ts
 * import { openSink } from "./sink.ts";
 * await using sink = openSink({ kind: "udp", host: "127.0.0.1", port: 514 });
 * ```
 */
export function openSink(endpoint: Endpoint): Sink {
  switch (endpoint.kind) {
    case "udp":
      return new UdpSink(endpoint.host, endpoint.port);
    case "tcp":
      return new TcpSink(endpoint.host, endpoint.port);
    case "unix":
      return new UnixSink(endpoint.path);
    case "stdout":
      return new StdoutSink();
  }
}

/**
 * Syslog over UDP: one datagram a message, in order. A batch goes out with
 * `sendmmsg` (up to 128 datagrams per system call) where glibc is at hand
 * and the destination is an IPv4 literal; otherwise, or for what the kernel
 * did not take at once, one awaited send a message.
 */
class UdpSink implements Sink {
  readonly description: string;
  readonly #addr: Deno.NetAddr;
  #conn: Deno.DatagramConn | undefined;
  #batch: DatagramBatch | undefined;
  readonly #lengths = new Uint32Array(BATCH);

  constructor(host: string, port: number) {
    this.#addr = { transport: "udp", hostname: host, port };
    this.description = `udp://${formatHostPort({ host, port })}`;
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

  async write(frames: Uint8Array): Promise<void> {
    const conn = this.#conn ??= this.#open();
    const frame = new FrameReader(frames);
    const batch = this.#batch;
    if (!batch) {
      while (frame.next()) {
        if (frame.type === FrameType.Message) await conn.send(frame.data(), this.#addr);
      }
      return;
    }
    // Fill slots; send when full, before an over-long message, and at the end.
    let n = 0;
    const flush = async () => {
      const sent = batch.send(this.#lengths, n);
      // What the kernel did not take now goes the portable (waiting) way.
      for (let i = sent; i < n; i++) {
        await conn.send(batch.slot(i).subarray(0, this.#lengths[i]!), this.#addr);
      }
      n = 0;
    };
    while (frame.next()) {
      if (frame.type !== FrameType.Message) continue;
      const size = frame.end - frame.dataStart;
      if (size > SLOT) {
        await flush();
        await conn.send(frame.data(), this.#addr);
        continue;
      }
      batch.slot(n).set(frame.buf.subarray(frame.dataStart, frame.end));
      this.#lengths[n++] = size;
      if (n === BATCH) await flush();
    }
    if (n > 0) await flush();
  }

  close(): Promise<void> {
    this.#conn?.close();
    this.#conn = undefined;
    this.#batch = undefined;
    return Promise.resolve();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

const BATCH = 128;
const SLOT = 8192;

/** Syslog over a unix datagram socket such as /dev/log. */
class UnixSink implements Sink {
  readonly description: string;
  readonly #path: string;
  #conn: Deno.DatagramConn | undefined;
  #dir: string | undefined;

  constructor(path: string) {
    this.#path = path;
    this.description = `unix://${path}`;
  }

  async write(frames: Uint8Array): Promise<void> {
    if (!this.#conn) {
      this.#dir = await Deno.makeTempDir({ prefix: "reclog-" });
      this.#conn = Deno.listenDatagram({ transport: "unixpacket", path: `${this.#dir}/sock` });
    }
    const target = { transport: "unixpacket", path: this.#path } as const;
    const frame = new FrameReader(frames);
    while (frame.next()) {
      if (frame.type === FrameType.Message) await this.#conn.send(frame.data(), target);
    }
  }

  async close(): Promise<void> {
    this.#conn?.close();
    this.#conn = undefined;
    if (this.#dir) await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
    this.#dir = undefined;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Builds one output buffer for a batch: each message as `prefix(len) + data
 * + suffix`, in a buffer reused between batches.
 */
class BatchEncoder {
  #buf = new Uint8Array(64 * 1024);
  readonly #octetCounting: boolean;

  constructor(octetCounting: boolean) {
    this.#octetCounting = octetCounting;
  }

  encode(frames: Uint8Array): Uint8Array {
    let length = 0;
    const frame = new FrameReader(frames);
    while (frame.next()) {
      if (frame.type !== FrameType.Message) continue;
      const size = frame.end - frame.dataStart;
      const needed = length + size + 12;
      if (needed > this.#buf.length) {
        const grown = new Uint8Array(Math.max(needed, this.#buf.length * 2));
        grown.set(this.#buf.subarray(0, length));
        this.#buf = grown;
      }
      if (this.#octetCounting) {
        length += writeDecimal(this.#buf, length, size);
        this.#buf[length++] = 0x20;
        this.#buf.set(frame.buf.subarray(frame.dataStart, frame.end), length);
        length += size;
      } else {
        this.#buf.set(frame.buf.subarray(frame.dataStart, frame.end), length);
        length += size;
        this.#buf[length++] = 0x0a;
      }
    }
    return this.#buf.subarray(0, length);
  }
}

function writeDecimal(buf: Uint8Array, offset: number, value: number): number {
  const digits = String(value);
  for (let i = 0; i < digits.length; i++) buf[offset + i] = digits.charCodeAt(i);
  return digits.length;
}

async function writeAll(writer: { write(p: Uint8Array): Promise<number> }, bytes: Uint8Array) {
  let offset = 0;
  while (offset < bytes.length) offset += await writer.write(bytes.subarray(offset));
}

/** Syslog over TCP with octet counting (RFC 6587), one write a batch. */
class TcpSink implements Sink {
  readonly description: string;
  readonly #host: string;
  readonly #port: number;
  readonly #encoder = new BatchEncoder(true);
  #conn: Deno.TcpConn | undefined;

  constructor(host: string, port: number) {
    this.#host = host;
    this.#port = port;
    this.description = `tcp://${formatHostPort({ host, port })}`;
  }

  async write(frames: Uint8Array): Promise<void> {
    const bytes = this.#encoder.encode(frames);
    if (bytes.length === 0) return;
    if (!this.#conn) {
      this.#conn = await Deno.connect({ hostname: this.#host, port: this.#port });
      this.#conn.setNoDelay(true); // one write a batch: never wait for Nagle
    }
    try {
      await writeAll(this.#conn, bytes);
    } catch (error) {
      await this.close();
      throw error;
    }
  }

  close(): Promise<void> {
    try {
      this.#conn?.close();
    } catch {
      // already closed
    }
    this.#conn = undefined;
    return Promise.resolve();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Standard output: one message a line. */
class StdoutSink implements Sink {
  readonly description = "stdout";
  readonly #encoder = new BatchEncoder(false);

  async write(frames: Uint8Array): Promise<void> {
    const bytes = this.#encoder.encode(frames);
    if (bytes.length > 0) await writeAll(Deno.stdout, bytes);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
