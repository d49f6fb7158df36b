/**
 * The mutual-TLS listener of `serve`: accepts verified clients, reads their
 * greeting, and streams the journal to each through its own cursor.
 *
 * Sending is a slice of a journal segment per write (many frames at once);
 * a client whose socket backs up is simply not fed until it drains, so it
 * never slows ingest or the other clients. If it falls behind what the
 * journal holds, it is told how many messages it lost.
 *
 * @module
 */

import tls from "node:tls";
import type { TLSSocket } from "node:tls";
import {
  DEFAULT_MAX_FRAME,
  encodeControl,
  FrameSplitter,
  FrameType,
  PROTOCOL_VERSION,
  ProtocolError,
} from "../protocol/frame.ts";
import type { Cursor, Journal } from "../journal/journal.ts";
import { log } from "../util/log.ts";
import {
  checkPeer,
  HANDSHAKE_TIMEOUT_MS,
  peerIdentity,
  type PeerPolicy,
  serverTlsOptions,
  type TlsMaterial,
} from "../tls/policy.ts";
import { errorMessage } from "../util/errors.ts";
import { formatHostPort } from "../util/address.ts";
import type { Counter, Metrics } from "../ops/metrics.ts";

/** Options for {@linkcode FanoutServer}. */
export interface FanoutServerOptions {
  /** Address to bind. */
  host: string;
  /** Port to bind; 0 picks a free one. */
  port: number;
  /** Certificate, key and CA. */
  material: TlsMaterial;
  /** Extra checks on client certificates. */
  policy: PeerPolicy;
  /**
   * Send a keep-alive after this long without other frames, ms.
   * @default {30000}
   */
  keepAliveMs?: number;
  /**
   * Drop a client silent for this long, ms.
   * @default {90000}
   */
  idleTimeoutMs?: number;
  /**
   * Drop a client whose greeting has not fully arrived this long after its
   * TLS handshake finished, ms. The deadline is absolute: bytes that trickle
   * in do not extend it.
   * @default {10000}
   */
  helloTimeoutMs?: number;
  /**
   * Stop feeding a client while its socket holds this many unsent bytes.
   * @default {1 MiB}
   */
  highWaterBytes?: number;
  /**
   * Largest frame accepted from a client.
   * @default {65536}
   */
  maxFrame?: number;
  /** Counts what is sent, refused and lost. */
  metrics?: Metrics;
  /** Closes the server when aborted. */
  signal?: AbortSignal;
}

/** The greeting a client sends. */
export interface ClientHello {
  /** Protocol name; always `"reclog"`. */
  proto: "reclog";
  /** Protocol version; must equal {@linkcode PROTOCOL_VERSION} or the client is closed. */
  v: number;
  /** Resume point: the journal's epoch and the next sequence number wanted. */
  resume?: { epoch: string; next: number };
  /** Start at the live tail. */
  live?: boolean;
  /** Start at the oldest message held (a first connection with a state file). */
  oldest?: boolean;
}

/** The greeting the server answers with. */
export interface ServerHello {
  /** Protocol name; always `"reclog"`. */
  proto: "reclog";
  /** Protocol version: {@linkcode PROTOCOL_VERSION}. */
  v: number;
  /** Id of the journal's life; a resume point from another epoch cannot be honoured. */
  epoch: string;
  /** Oldest sequence number held. */
  first: number;
  /** Sequence number the next message will get. */
  next: number;
  /** Where this client's stream starts. */
  start: number;
  /** Largest frame the server sends, bytes ({@linkcode DEFAULT_MAX_FRAME}). */
  maxFrame: number;
  /** Longest the server stays quiet before a keep-alive, ms. */
  keepAliveMs: number;
}

/** The body of a Lost frame. */
export interface LostReport {
  /** Messages lost (0 when unknown). */
  count: number;
  /** First lost sequence number (when known). */
  from?: number;
  /** Last lost sequence number (when known). */
  to?: number;
  /** Set when the client's resume point belongs to another journal. */
  unknown?: boolean;
  /** Time of the newest lost message, ms (when known). */
  toTime?: number;
  /** Why. */
  reason: string;
}

/**
 * The fan-out server.
 *
 * @example Serve a journal
 * ```ts
 * import { FanoutServer } from "./fanout_server.ts";
 * import { Journal } from "../journal/journal.ts";
 * import { loadTlsMaterial } from "../tls/policy.ts";
 * const material = await loadTlsMaterial({ cert: "s.pem", key: "s.key", ca: "ca.pem" });
 * await using server = new FanoutServer(new Journal(), {
 *   host: "0.0.0.0",
 *   port: 6514,
 *   material,
 *   policy: { allowCn: [], allowFingerprint: [] },
 * });
 * const { port } = await server.listen();
 * ```
 */
export class FanoutServer implements AsyncDisposable {
  readonly #journal: Journal;
  readonly #options: FanoutServerOptions;
  #server: tls.Server | undefined;
  readonly #sessions = new Set<ClientSession>();
  #closed: Promise<void> | undefined;

  /**
   * Makes a server for `journal`; nothing is bound until {@linkcode FanoutServer.listen}.
   * `options` is kept (not copied): {@linkcode FanoutServer.reload} updates its `material`.
   */
  constructor(journal: Journal, options: FanoutServerOptions) {
    this.#journal = journal;
    this.#options = options;
  }

  /** Clients currently streaming. */
  get clients(): number {
    return this.#sessions.size;
  }

  /** Uses new certificate material for new connections; established ones go on. */
  reload(material: TlsMaterial): void {
    this.#options.material = material;
    this.#server?.setSecureContext({ cert: material.cert, key: material.key, ca: material.ca });
  }

  /** Binds; resolves with the real address once listening. */
  listen(): Promise<{ host: string; port: number }> {
    const options = this.#options;
    const server = tls.createServer(serverTlsOptions(options.material));
    this.#server = server;
    server.on("secureConnection", (socket: TLSSocket) => this.#accept(socket));
    server.on("tlsClientError", (error: Error, socket: TLSSocket) => {
      const reason = tlsReason(error);
      log("serve").warn("client {address} refused: {reason}", { address: remote(socket), reason });
      this.#refused(reason);
      socket.destroy();
    });
    options.signal?.addEventListener("abort", () => this.close("server shutting down"), {
      once: true,
    });
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(options.port, options.host, () => {
        server.off("error", reject);
        server.on("error", (error) => log("serve").error("listener: {error}", { error }));
        const address = server.address() as { address: string; port: number };
        resolve({ host: address.address, port: address.port });
      });
    });
  }

  #accept(socket: TLSSocket): void {
    // Nothing a client does may throw out of here: it would end the process.
    socket.on("error", () => {}); // each session logs its own errors
    try {
      const address = remote(socket);
      const reason = checkPeer(socket, this.#options.policy, this.#options.material.authorities);
      if (reason) {
        log("serve").warn("client {address} refused: {reason}", { address, reason });
        this.#refused(reason);
        socket.end(encodeControl(FrameType.Close, `refused: ${reason}`));
        socket.destroySoon();
        const timer = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS);
        socket.once("close", () => clearTimeout(timer));
        return;
      }
      const peer = peerIdentity(socket)!;
      const session = new ClientSession(socket, this.#journal, this.#options, {
        address,
        name: peer.commonName,
      });
      this.#sessions.add(session);
      session.done.then(() => this.#sessions.delete(session));
    } catch (error) {
      log("serve").error("client {address} dropped: {error}", {
        address: remote(socket),
        error: errorMessage(error),
      });
      socket.destroy();
    }
  }

  #refused(reason: string): void {
    const category = REFUSAL_CATEGORIES.find(([pattern]) => pattern.test(reason))?.[1] ?? "other";
    this.#options.metrics?.counter(
      "reclog_tls_refusals_total",
      "TLS clients refused, by reason",
      { reason: category },
    ).inc();
  }

  /** Says `reason` to every client, closes them and stops listening; safe to call twice. */
  close(reason = "server shutting down"): Promise<void> {
    this.#closed ??= (async () => {
      const server = this.#server;
      const stopped = server
        ? new Promise<void>((resolve) => server.close(() => resolve()))
        : Promise.resolve();
      await Promise.all([...this.#sessions].map((session) => session.close(reason)));
      await stopped;
    })();
    return this.#closed;
  }

  /** Closes like {@linkcode FanoutServer.close} with the default reason. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** How long a closing connection may take to flush its `C` frame, ms. */
const CLOSE_GRACE_MS = 2000;

/** The longest text of a client's `C` frame that is logged. */
const MAX_LOGGED_REASON = 200;

const REFUSAL_CATEGORIES: Array<[RegExp, string]> = [
  [/a CA certificate/, "not_leaf"],
  [/extendedKeyUsage|keyUsage/, "key_usage"],
  [/no client certificate/, "no_certificate"],
  [/not signed by --ca/, "unknown_ca"],
  [/expired/, "expired"],
  [/not valid yet/, "not_yet_valid"],
  [/TLS version/, "tls_version"],
  [/--issuer/, "issuer"],
  [/--allow-cn/, "cn"],
  [/--allow-fingerprint/, "fingerprint"],
  [/timed out/, "handshake_timeout"],
];

function remote(socket: TLSSocket): string {
  // Deno's node:tls keeps the address on the wrapped TCP socket.
  const parent = (socket as unknown as { _parent?: TLSSocket })._parent;
  const host = socket.remoteAddress ?? parent?.remoteAddress;
  const port = socket.remotePort ?? parent?.remotePort ?? 0;
  return host ? formatHostPort({ host, port }) : "unknown address";
}

function tlsReason(error: Error): string {
  const message = error.message;
  if (/no certificates|CertificateRequired/i.test(message)) return "no client certificate";
  if (/UnknownIssuer|unknown ca|BadSignature/i.test(message)) {
    return "client certificate not signed by --ca";
  }
  if (/Expired/i.test(message)) return "client certificate expired";
  if (/protocol version|ProtocolVersion|wrong version|SupportedVersions/i.test(message)) {
    return "TLS version below 1.3";
  }
  if (/timed? ?out|ETIMEDOUT/i.test(message)) return "TLS handshake timed out";
  return message;
}

interface SessionPeer {
  address: string;
  name: string;
}

/** One verified client: greeting, then the journal through a cursor. */
class ClientSession {
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

  constructor(
    socket: TLSSocket,
    journal: Journal,
    options: FanoutServerOptions,
    peer: SessionPeer,
  ) {
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
        this.#hello(parseHello(body));
      } else if (type === FrameType.Close) {
        this.close(`client closed: ${printable(decoder.decode(body), MAX_LOGGED_REASON)}`);
      } else if (type === FrameType.KeepAlive) {
        if (body.length > 0) throw new ProtocolError("'K' frame with a body");
      } else {
        throw new ProtocolError(`unexpected ${frameName(type)} frame from a client`);
      }
    }
  }

  #hello(hello: ClientHello): void {
    if (this.#cursor) throw new ProtocolError("second greeting");
    clearTimeout(this.#helloTimer);
    this.#helloTimer = undefined;
    const journal = this.#journal;
    let start = journal.nextSeq;
    let lost: LostReport | undefined;
    const resume = hello.resume;
    if (hello.oldest && !resume) start = journal.firstSeq;
    if (resume && !hello.live) {
      if (resume.epoch !== journal.epoch) {
        start = journal.firstSeq;
        lost = { count: 0, unknown: true, reason: "the server's journal was restarted" };
      } else if (resume.next > journal.nextSeq) {
        start = journal.firstSeq;
        lost = { count: 0, unknown: true, reason: "resume point is ahead of the journal" };
      } else {
        start = resume.next; // the cursor reports what was dropped before it
      }
    }
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
    if (lost) this.#write(encodeControl(FrameType.Lost, lost));
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
        log("serve").warn(
          "client {address} ({name}) fell behind: {count} messages lost ({from}..{to})",
          { address: this.#peer.address, name: this.#peer.name, ...read },
        );
        const report: LostReport = {
          count: read.count,
          from: read.from,
          to: read.to,
          toTime: read.toTime,
          reason: "client fell behind the journal's retention",
        };
        this.#write(encodeControl(FrameType.Lost, report));
        this.#lost?.inc(read.count);
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

/** `'M'` for a printable type byte, else `0x00`. */
function frameName(type: number): string {
  return type >= 0x21 && type <= 0x7e
    ? `'${String.fromCharCode(type)}'`
    : `0x${type.toString(16).padStart(2, "0")}`;
}

/** Text from a peer, safe for one log line: control characters escaped, length capped. */
function printable(text: string, max: number): string {
  const clean = text.replace(
    // deno-lint-ignore no-control-regex
    /[\x00-\x1f\x7f]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
  return clean.length > max ? `${clean.slice(0, max)}...` : clean;
}

function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

/** Parses and checks a client's greeting; anything else is a {@linkcode ProtocolError}. */
function parseHello(body: Uint8Array): ClientHello {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(body));
  } catch {
    throw new ProtocolError("malformed JSON in the greeting");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ProtocolError("the greeting is not a JSON object");
  }
  const hello = value as Record<string, unknown>;
  if (hello.proto !== "reclog" || hello.v !== PROTOCOL_VERSION) {
    throw new ProtocolError(`unsupported greeting (want proto reclog v${PROTOCOL_VERSION})`);
  }
  for (const flag of ["live", "oldest"] as const) {
    if (hello[flag] !== undefined && typeof hello[flag] !== "boolean") {
      throw new ProtocolError(`greeting field '${flag}' is not a boolean`);
    }
  }
  const resume = hello.resume;
  if (resume !== undefined) {
    if (typeof resume !== "object" || resume === null || Array.isArray(resume)) {
      throw new ProtocolError("greeting field 'resume' is not an object");
    }
    const { epoch, next } = resume as Record<string, unknown>;
    if (typeof epoch !== "string" || epoch.length === 0 || epoch.length > 200) {
      throw new ProtocolError("greeting field 'resume.epoch' is not an epoch id");
    }
    if (typeof next !== "number" || !Number.isSafeInteger(next) || next < 1) {
      throw new ProtocolError("greeting field 'resume.next' is not a sequence number");
    }
  }
  return hello as unknown as ClientHello;
}
