/**
 * One client of the fan-out server (`serve`): its greeting, then the journal
 * through its own cursor, a slice of a segment per write, fed only while its
 * socket is not backed up.
 *
 * @module
 */

import type { TLSSocket } from "node:tls";
import {
  DEFAULT_MAX_FRAME,
  encodeControl,
  FrameSplitter,
  FrameType,
  PROTOCOL_VERSION,
  ProtocolError,
} from "../protocol/frame.ts";
import {
  type ClientHello,
  type LostReport,
  parseClientHello,
  type ServerHello,
} from "../protocol/messages.ts";
import { BEHIND_REASON, resumeRule } from "../protocol/stream_rules.ts";
import { formatSeconds, frameTypeName, printable } from "../protocol/peer_text.ts";
import type { Cursor, Journal } from "../journal/journal.ts";
import { log } from "../util/log.ts";
import { HANDSHAKE_TIMEOUT_MS } from "../tls/policy.ts";
import { errorMessage } from "../util/errors.ts";
import type { Counter } from "../ops/metrics.ts";
import type { FanoutServerOptions } from "./fanout_server.ts";

/** How long a closing connection may take to flush its `C` frame, ms. */
export const CLOSE_GRACE_MS = 2000;

/** The longest text of a client's `C` frame that is logged, and how. */
const MAX_LOGGED_REASON = 200;
const PEER_LOG = { escape: true, ellipsis: "..." };

/** Who a session serves, for log lines and metric labels. */
export interface SessionPeer {
  /** The client's address, `HOST:PORT`. */
  address: string;
  /** The subject CN of its certificate. */
  name: string;
}

/** What a {@linkcode ClientSession} needs besides its socket. */
export interface ClientSessionOptions {
  /** The journal it streams. */
  journal: Journal;
  /** The server's options (keep-alive, timeouts, limits, metrics). */
  server: FanoutServerOptions;
  /** Who the client is. */
  peer: SessionPeer;
}

/**
 * One verified client: greeting, then the journal through a cursor. It runs
 * from construction until `done` resolves (the socket closed).
 *
 * @example Serve an accepted socket
 * ```ts
 * import { ClientSession } from "./fanout_session.ts";
 * import { Journal } from "../journal/journal.ts";
 * import type { TLSSocket } from "node:tls";
 * import type { FanoutServerOptions } from "./fanout_server.ts";
 * declare const socket: TLSSocket;
 * declare const server: FanoutServerOptions;
 * const session = new ClientSession(socket, {
 *   journal: new Journal(),
 *   server,
 *   peer: { address: "192.0.2.1:40000", name: "home" },
 * });
 * await session.done;
 * ```
 */
export class ClientSession {
  /** Resolves once the connection is closed. */
  readonly done: Promise<void>;
  readonly #socket: TLSSocket;
  readonly #journal: Journal;
  readonly #options: FanoutServerOptions;
  readonly #peer: SessionPeer;
  readonly #splitter: FrameSplitter;
  readonly #labels: { client: string };
  #cursor: Cursor | undefined;
  #unsubscribe: (() => void) | undefined;
  #lastSent = Date.now();
  #lastReceived = Date.now();
  #timer: ReturnType<typeof setInterval>;
  #helloTimer: ReturnType<typeof setTimeout> | undefined;
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  #closing = false;
  #sentMessages: Counter | undefined;
  #sentBytes: Counter | undefined;
  #lost: Counter | undefined;
  #resolveDone!: () => void;

  /** Starts serving `socket` (a verified client): waits for its greeting. */
  constructor(socket: TLSSocket, { journal, server: options, peer }: ClientSessionOptions) {
    this.#socket = socket;
    this.#journal = journal;
    this.#options = options;
    this.#peer = peer;
    this.#labels = { client: `${peer.name}@${peer.address}` };
    this.#splitter = new FrameSplitter({ maxFrame: options.maxFrame ?? 65536 });
    this.done = new Promise((resolve) => this.#resolveDone = resolve);
    const keepAliveMs = options.keepAliveMs ?? 30_000;
    this.#timer = setInterval(
      () => this.#guard(() => this.#tick()),
      Math.min(keepAliveMs, HANDSHAKE_TIMEOUT_MS),
    );
    // Absolute: counted from the end of the TLS handshake, whatever trickles in.
    const helloMs = options.helloTimeoutMs ?? HANDSHAKE_TIMEOUT_MS;
    this.#helloTimer = setTimeout(() => {
      this.#helloTimer = undefined;
      if (!this.#cursor) this.close(`no greeting within ${formatSeconds(helloMs)}`);
    }, helloMs);
    socket.setNoDelay(true);
    socket.on("data", (chunk: Uint8Array) => this.#guard(() => this.#receive(chunk)));
    socket.on("drain", () => this.#guard(() => this.#pump()));
    socket.on("error", (error: Error) => {
      this.#finish(`connection error: ${error.message}`);
      socket.destroy();
    });
    socket.on("close", () => {
      this.#finish("connection closed by client");
      clearTimeout(this.#closeTimer);
      this.#resolveDone();
    });
  }

  /** Runs `step`; anything it throws closes this one connection, never the server. */
  #guard(step: () => void): void {
    try {
      step();
    } catch (error) {
      if (error instanceof ProtocolError) {
        this.close(`protocol error: ${error.message}`);
      } else {
        log("serve").error("client {address} ({name}): internal error: {error}", {
          address: this.#peer.address,
          name: this.#peer.name,
          error: errorMessage(error),
        });
        this.close("internal error");
      }
    }
  }

  /**
   * Reads the client's frames. A client may send only `H` (once, first of
   * the frames that matter), `K` and `C`; each frame's type and length are
   * checked before its body is looked at.
   */
  #receive(chunk: Uint8Array): void {
    if (this.#closing) return;
    this.#lastReceived = Date.now();
    const buf = this.#splitter.push(chunk); // whole frames only; throws ProtocolError
    let pos = 0;
    while (pos + 4 <= buf.length && !this.#closing) {
      const length = (buf[pos]! << 24 >>> 0) + (buf[pos + 1]! << 16) + (buf[pos + 2]! << 8) +
        buf[pos + 3]!;
      const end = pos + 4 + length;
      if (length < 1) throw new ProtocolError("frame of 4 bytes with LENGTH 0");
      if (end > buf.length) {
        throw new ProtocolError(`frame of ${length + 4} bytes runs past the data`);
      }
      const type = buf[pos + 4]!;
      const body = buf.subarray(pos + 5, end);
      pos = end;
      if (type === FrameType.Hello) {
        this.#hello(parseClientHello(body));
      } else if (type === FrameType.Close) {
        this.close(
          `client closed: ${printable(decoder.decode(body), MAX_LOGGED_REASON, PEER_LOG)}`,
        );
      } else if (type === FrameType.KeepAlive) {
        if (body.length > 0) throw new ProtocolError("'K' frame with a body");
      } else {
        throw new ProtocolError(`unexpected ${frameTypeName(type)} frame from a client`);
      }
    }
  }

  #hello(hello: ClientHello): void {
    if (this.#cursor) throw new ProtocolError("second greeting");
    clearTimeout(this.#helloTimer);
    this.#helloTimer = undefined;
    const journal = this.#journal;
    const { start, lost } = resumeRule(hello, {
      epoch: journal.epoch,
      first: journal.firstSeq,
      next: journal.nextSeq,
      evictedTime: journal.lastEvictedTime,
    });
    const maxFrame = DEFAULT_MAX_FRAME;
    const serverHello: ServerHello = {
      proto: "reclog",
      v: PROTOCOL_VERSION,
      epoch: journal.epoch,
      first: journal.firstSeq,
      next: journal.nextSeq,
      start,
      maxFrame,
      keepAliveMs: this.#options.keepAliveMs ?? 30_000,
    };
    this.#write(encodeControl(FrameType.Hello, serverHello));
    this.#cursor = journal.cursor(start);
    log("serve").info("client {address} ({name}) connected, from seq {start} ({behind} behind)", {
      address: this.#peer.address,
      name: this.#peer.name,
      start,
      behind: journal.nextSeq - start,
    });
    const metrics = this.#options.metrics;
    if (metrics) {
      this.#sentMessages = metrics.counter(
        "reclog_client_messages_total",
        "Messages sent to each connected client",
        this.#labels,
      );
      this.#sentBytes = metrics.counter(
        "reclog_client_bytes_total",
        "Bytes of frames sent to each connected client",
        this.#labels,
      );
      this.#lost = metrics.counter(
        "reclog_lost_messages_total",
        "Messages clients were told they lost (fell behind the journal)",
      );
    }
    if (lost) this.#sendLost(lost);
    this.#unsubscribe = journal.onAppend(() => this.#guard(() => this.#pump()));
    this.#pump();
  }

  #write(bytes: Uint8Array): void {
    this.#lastSent = Date.now();
    this.#socket.write(bytes);
  }

  #pump(): void {
    const cursor = this.#cursor;
    if (!cursor || this.#closing) return;
    const highWater = this.#options.highWaterBytes ?? 1024 * 1024;
    while (this.#socket.writableLength < highWater) {
      const read = cursor.read();
      if (!read) return;
      if (read.kind === "lost") {
        const { count, from, to, toTime, reason } = read;
        if (reason === undefined) {
          this.#sendLost({ count, from, to, toTime, reason: BEHIND_REASON });
        } else this.#write(encodeControl(FrameType.Lost, { count, from, to, toTime, reason }));
      } else {
        // The segment's buffer must not be recycled while this write is in flight.
        const { segment } = read;
        this.#journal.pin(segment);
        this.#lastSent = Date.now();
        this.#socket.write(read.bytes, () => this.#journal.unpin(segment));
        this.#sentMessages?.inc(read.endSeq - read.firstSeq);
        this.#sentBytes?.inc(read.bytes.length);
      }
    }
  }

  /** Sends an `L` frame; one with a known range is logged and counted. */
  #sendLost(report: LostReport): void {
    this.#write(encodeControl(FrameType.Lost, report));
    if (report.unknown) return;
    log("serve").warn(
      "client {address} ({name}) fell behind: {count} messages lost ({from}..{to})",
      { address: this.#peer.address, name: this.#peer.name, ...report },
    );
    this.#lost?.inc(report.count);
  }

  #tick(): void {
    const now = Date.now();
    const idle = this.#options.idleTimeoutMs ?? 90_000;
    if (now - this.#lastReceived > idle) {
      this.#finish(`client silent for ${formatSeconds(idle)}`);
      this.#socket.destroy();
      return;
    }
    if (this.#cursor && now - this.#lastSent >= (this.#options.keepAliveMs ?? 30_000)) {
      this.#write(encodeControl(FrameType.KeepAlive));
    }
  }

  /** Sends the closing reason and ends the connection; resolves once closed. */
  close(reason: string): Promise<void> {
    if (this.#finish(reason)) {
      const socket = this.#socket;
      socket.end(encodeControl(FrameType.Close, reason));
      this.#closeTimer = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS);
    }
    return this.done;
  }

  /** Stops feeding and logs the end, once; false if it had already ended. */
  #finish(reason: string): boolean {
    if (this.#closing) return false;
    this.#closing = true;
    clearInterval(this.#timer);
    clearTimeout(this.#helloTimer);
    this.#helloTimer = undefined;
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    this.#cursor = undefined;
    this.#options.metrics?.remove("reclog_client_messages_total", this.#labels);
    this.#options.metrics?.remove("reclog_client_bytes_total", this.#labels);
    log("serve").info("client {address} ({name}) disconnected: {reason}", {
      address: this.#peer.address,
      name: this.#peer.name,
      reason,
    });
    return true;
  }
}

const decoder = new TextDecoder();
