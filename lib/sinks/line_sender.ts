/**
 * A reconnecting line connection to `reclog listen` or `reclog serve --tcp-in`
 * (plain TCP or mutual TLS), with a bounded buffer: what `reclog send` writes
 * to. While the endpoint is away it keeps the lines and reconnects with
 * back-off, dropping the oldest when the buffer is full; lines leave the
 * buffer only once the kernel has accepted them, so nothing is lost while the
 * endpoint is simply down.
 *
 * @module
 */

import type net from "node:net";
import { ALL_TAKEN, SinkError } from "../batch.ts";
import type { MessageBatch, Refusal, Sink, WriteReport } from "../batch.ts";
import { describeNetError } from "../util/errors.ts";
import { formatHostPort, type HostPort } from "../util/address.ts";
import { log } from "../util/log.ts";
import type { TlsMaterial } from "../tls/policy.ts";
import { connect } from "../transport/connect.ts";
import { Backoff } from "../transport/backoff.ts";
import { LineBuffer } from "./line_buffer.ts";

const logger = log("send");

/** Bytes gathered into one socket write. */
const BATCH_BYTES = 64 * 1024;
/** Bytes written to the socket and not yet accepted by the kernel, at most. */
const MAX_IN_FLIGHT = 256 * 1024;
/** Time allowed for a TCP connect (and TLS handshake). */
const CONNECT_TIMEOUT_MS = 10_000;
/** After a TLS handshake, time to wait for the server to refuse our certificate (see connect.ts). */
const TLS_PROBATION_MS = 500;
/** Time the endpoint gets to close its side after our last line. */
const CLOSE_WAIT_MS = 2_000;

/** Options for {@linkcode LineSender}. */
export interface LineSenderOptions {
  /** Endpoint to send to. */
  endpoint: HostPort;
  /**
   * Connect with mutual TLS using this material instead of plain TCP.
   * @default {undefined}
   */
  tls?: TlsMaterial;
  /**
   * Name the server certificate must match, with `tls`.
   * @default {endpoint.host}
   */
  serverName?: string;
  /**
   * Bytes of unsent lines kept while the endpoint is away; beyond it the
   * oldest lines are dropped (and counted). While connected, `send()` asks
   * the producer to wait instead.
   * @default {8388608}
   */
  bufferBytes?: number;
  /**
   * First reconnect delay, doubled after each failure.
   * @default {100}
   */
  backoffMinMs?: number;
  /**
   * Longest reconnect delay.
   * @default {5000}
   */
  backoffMaxMs?: number;
  /**
   * Closes the sender (without waiting for the buffer) when aborted.
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/** A `write()` waiting for lines `[start, end)` (positions in the order lines were sent) to leave the buffer. */
interface PendingWrite {
  start: number;
  end: number;
  refused: Refusal[];
  resolve(report: WriteReport): void;
  reject(error: SinkError): void;
}

/**
 * A reconnecting line connection to one endpoint, with a bounded buffer.
 * Lines are removed from the buffer only when the kernel accepted them; the
 * ones written to a connection that then fails are sent again.
 *
 * Two ways to feed it: {@linkcode LineSender.send} (buffer and go on; what
 * `reclog send` uses), or the {@linkcode Sink} method
 * {@linkcode LineSender.write}, which resolves once the batch's lines were
 * accepted by the kernel or dropped (those are reported as refused).
 *
 * @example Send two lines and wait up to 10 s for them to go out
 * ```ts
 * import { LineSender } from "./line_sender.ts";
 * await using sender = new LineSender({ endpoint: { host: "127.0.0.1", port: 5140 } });
 * sender.start();
 * const encoder = new TextEncoder();
 * if (!sender.send([encoder.encode("one"), encoder.encode("two")])) await sender.waitForRoom();
 * const undelivered = await sender.finish(10_000);
 * ```
 */
export class LineSender implements Sink {
  /** The endpoint, `HOST:PORT`. */
  readonly description: string;
  readonly #endpoint: HostPort;
  readonly #tls: TlsMaterial | undefined;
  readonly #serverName: string;
  readonly #backoff: Backoff;
  readonly #signal: AbortSignal | undefined;
  readonly #stop = new AbortController();
  readonly #buffer: LineBuffer;
  #connected = false;
  #finishing = false;
  #done = false;
  #dropped = 0;
  #droppedUnreported = 0;
  #delivered = 0;
  /** Lines ever handed to `send()`: the position after the newest line. */
  #sent = 0;
  #writes: PendingWrite[] = [];
  #loop: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  #wakers: Array<() => void> = [];
  #onAbort = () => void this.close();

  /** Creates the sender; {@linkcode LineSender.start} starts connecting. */
  constructor(options: LineSenderOptions) {
    this.#endpoint = options.endpoint;
    this.description = formatHostPort(options.endpoint);
    this.#tls = options.tls;
    this.#serverName = options.serverName ?? options.endpoint.host;
    this.#buffer = new LineBuffer(options.bufferBytes ?? 8 * 1024 * 1024);
    // Any connection resets the back-off: the first retry after it waits the first delay.
    this.#backoff = new Backoff({
      minMs: options.backoffMinMs ?? 100,
      maxMs: options.backoffMaxMs ?? 5_000,
      resetAfterMs: 0,
    });
    this.#signal = options.signal;
  }

  /** Lines dropped because the buffer was full while the endpoint was away. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Lines the kernel accepted for the endpoint so far. */
  get delivered(): number {
    return this.#delivered;
  }

  /** Lines buffered (unsent, or sent on a connection not yet confirmed). */
  get pending(): number {
    return this.#buffer.pending;
  }

  /** Whether a connection is up now. */
  get connected(): boolean {
    return this.#connected;
  }

  /** Starts connecting (and reconnecting) in the background. */
  start(): void {
    if (this.#loop || this.#closing) return;
    if (this.#signal?.aborted) {
      void this.close();
      return;
    }
    this.#signal?.addEventListener("abort", this.#onAbort, { once: true });
    this.#loop = this.#run();
  }

  /**
   * Buffers lines (without their newline; they are copied). Returns false
   * when the buffer is over its size while connected: await
   * {@linkcode LineSender.waitForRoom} before sending more. While the
   * endpoint is away, the oldest lines are dropped instead.
   */
  send(lines: Uint8Array[]): boolean {
    if (lines.length === 0) return true;
    this.#buffer.push(lines);
    this.#sent += lines.length;
    this.#wake();
    if (!this.#buffer.over) return true;
    if (this.#connected) return false;
    this.#dropOldest();
    return true;
  }

  /** Resolves when the buffer has room, or the endpoint is away (then drops the oldest). */
  async waitForRoom(): Promise<void> {
    while (this.#buffer.over && this.#connected && !this.#closing) await this.#changed();
    if (this.#buffer.over) this.#dropOldest();
  }

  /**
   * The {@linkcode Sink} face: sends the batch's messages as lines (starting
   * the connection if needed) and resolves once the kernel accepted every
   * one of them for the endpoint, or the full buffer dropped it while the
   * endpoint was away (reported as refused). Rejects with a
   * {@linkcode SinkError} when the sender closes first.
   */
  async write(batch: MessageBatch): Promise<WriteReport> {
    if (this.#closing) throw new SinkError(`${this.description}: the sender is closed`);
    if (batch.count === 0) return ALL_TAKEN;
    this.start();
    const lines: Uint8Array[] = [];
    for (let i = 0; i < batch.count; i++) lines.push(batch.message(i));
    const start = this.#sent;
    const done = new Promise<WriteReport>((resolve, reject) => {
      this.#writes.push({ start, end: start + lines.length, refused: [], resolve, reject });
    });
    if (!this.send(lines)) await this.waitForRoom();
    this.#settleWrites();
    return await done;
  }

  /**
   * No more lines will come: sends what is buffered, waiting up to
   * `timeoutMs` for the endpoint, closes the connection and resolves with the
   * number of lines that could not be delivered.
   */
  async finish(timeoutMs: number): Promise<number> {
    this.#finishing = true;
    this.#wake();
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        this.#loop,
        new Promise<void>((resolve) => timer = setTimeout(resolve, timeoutMs)),
      ]);
    } finally {
      clearTimeout(timer);
    }
    const undelivered = this.#done ? 0 : this.pending;
    await this.close();
    return undelivered;
  }

  /** Stops at once, closing the connection; buffered lines stay unsent. Safe to call twice. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#signal?.removeEventListener("abort", this.#onAbort);
      this.#stop.abort();
      this.#wake();
      await this.#loop;
      const departed = this.#delivered + this.#dropped;
      for (const write of this.#writes.splice(0)) {
        write.reject(
          new SinkError(
            `${this.description}: closed before the endpoint took the lines`,
            Math.max(0, departed - write.start),
          ),
        );
      }
    })();
    return this.#closing;
  }

  /** Same as `close()`, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #changed(): Promise<void> {
    return new Promise((resolve) => this.#wakers.push(resolve));
  }

  #wake(): void {
    const wakers = this.#wakers;
    this.#wakers = [];
    for (const wake of wakers) wake();
  }

  /**
   * Lines leave the buffer in the order they came (delivered, or dropped
   * while away), so a write is settled once `delivered + dropped` passes its
   * last line.
   */
  #settleWrites(dropFrom = 0, dropTo = 0): void {
    if (this.#writes.length === 0) return;
    const departed = this.#delivered + this.#dropped;
    for (const write of this.#writes) {
      for (let p = Math.max(dropFrom, write.start); p < Math.min(dropTo, write.end); p++) {
        write.refused.push({
          index: p - write.start,
          reason: `dropped: buffer full while ${this.description} was away`,
        });
      }
    }
    while (this.#writes.length > 0 && this.#writes[0]!.end <= departed) {
      const write = this.#writes.shift()!;
      write.resolve(write.refused.length === 0 ? ALL_TAKEN : { refused: write.refused });
    }
  }

  #dropOldest(): void {
    const dropped = this.#buffer.dropOldest();
    if (dropped === 0) return;
    if (this.#droppedUnreported === 0) {
      logger.warn(
        "buffer full ({bytes} bytes) while {endpoint} is away: dropping the oldest lines",
        { bytes: this.#buffer.limit, endpoint: this.description },
      );
    }
    const from = this.#delivered + this.#dropped;
    this.#dropped += dropped;
    this.#droppedUnreported += dropped;
    this.#settleWrites(from, from + dropped);
  }

  async #run(): Promise<void> {
    let lastError = "";
    const stop = this.#stop.signal;
    while (!stop.aborted) {
      if (this.#finishing && this.#buffer.empty) {
        this.#done = true;
        return;
      }
      let socket: net.Socket;
      try {
        socket = await this.#connect();
      } catch (error) {
        if (stop.aborted) return;
        const message = describeNetError(error);
        const fields = { endpoint: this.description, error: message };
        if (message !== lastError) {
          logger.warn("cannot reach {endpoint}: {error}; retrying", fields);
          lastError = message;
        } else {
          logger.debug("cannot reach {endpoint}: {error}", fields);
        }
        await this.#backoff.wait(stop);
        continue;
      }
      this.#backoff.connected();
      lastError = "";
      logger.info("connected to {endpoint}{tls}", {
        endpoint: this.description,
        tls: this.#tls ? " (mutual TLS)" : "",
      });
      if (this.#droppedUnreported > 0) {
        logger.warn("{lines} lines were dropped while {endpoint} was away", {
          lines: this.#droppedUnreported,
          endpoint: this.description,
        });
        this.#droppedUnreported = 0;
      }
      const outcome = await this.#pump(socket);
      this.#backoff.disconnected();
      if (outcome === "done") {
        this.#done = true;
        return;
      }
      if (stop.aborted) return;
      logger.warn("connection to {endpoint} lost ({why}); reconnecting", {
        endpoint: this.description,
        why: outcome,
      });
      await this.#backoff.wait(stop);
    }
  }

  async #connect(): Promise<net.Socket> {
    const socket = await connect(this.#endpoint, {
      tls: this.#tls,
      serverName: this.#serverName,
      timeoutMs: CONNECT_TIMEOUT_MS,
      signal: this.#stop.signal,
      probationMs: TLS_PROBATION_MS,
    });
    return socket;
  }

  /** Writes buffered lines until the connection ends; "done" once all is sent and closed. */
  async #pump(socket: net.Socket): Promise<string> {
    let closed = false;
    let remoteEnded = false;
    let failure: string | undefined;
    socket.setKeepAlive(true, 30_000);
    socket.on("data", () => {}); // the protocol is one-way: discard
    socket.on("end", () => {
      remoteEnded = true;
      this.#wake();
    });
    socket.on("error", (error: Error) => {
      failure ??= describeNetError(error);
      this.#wake();
    });
    socket.on("close", () => {
      closed = true;
      this.#wake();
    });
    // Events that came before these handlers were attached.
    if (socket.destroyed) closed = true;
    if (socket.readableEnded || !socket.writable) remoteEnded = true;
    this.#connected = true;
    this.#wake();
    const stop = this.#stop.signal;
    try {
      while (!closed && !remoteEnded && !failure && !stop.aborted) {
        if (this.#buffer.unsentEmpty) {
          if (this.#finishing && this.#buffer.inFlightWrites === 0) {
            socket.end();
            await this.#settle(() => closed || remoteEnded, CLOSE_WAIT_MS);
            return "done";
          }
          await this.#changed();
          continue;
        }
        if (this.#buffer.inFlightBytes >= MAX_IN_FLIGHT) {
          await this.#changed();
          continue;
        }
        this.#writeBatch(socket, (error) => {
          failure ??= describeNetError(error);
        });
      }
      // Let the writes already handed over settle before deciding what to resend.
      await this.#settle(() => closed || this.#buffer.inFlightWrites === 0, 1_000);
      return failure ?? (remoteEnded ? "closed by the endpoint" : "closed");
    } finally {
      this.#connected = false;
      socket.destroy();
      this.#buffer.requeue();
      this.#wake();
    }
  }

  #writeBatch(socket: net.Socket, onError: (error: Error) => void): void {
    const { entry, bytes } = this.#buffer.take(BATCH_BYTES);
    socket.write(bytes, (error) => {
      if (error) {
        onError(error); // the lines are sent again on the next connection
        this.#wake();
        return;
      }
      const lines = this.#buffer.confirm(entry);
      if (lines === 0) return;
      this.#delivered += lines;
      this.#settleWrites();
      this.#wake();
    });
  }

  /** Waits until `condition()` holds, something closes us, or `timeoutMs` passes. */
  async #settle(condition: () => boolean, timeoutMs: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let expired = false;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        expired = true;
        resolve();
      }, timeoutMs);
    });
    try {
      while (!condition() && !expired && !this.#stop.signal.aborted) {
        await Promise.race([this.#changed(), deadline]);
      }
    } finally {
      clearTimeout(timer);
    }
  }
}
