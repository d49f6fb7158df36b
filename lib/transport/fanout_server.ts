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
import { encodeControl, FrameType } from "../protocol/frame.ts";
import type { Journal } from "../journal/journal.ts";
import { ClientSession, CLOSE_GRACE_MS } from "./fanout_session.ts";
import { log } from "../util/log.ts";
import {
  checkPeer,
  peerIdentity,
  type PeerPolicy,
  serverTlsOptions,
  type TlsMaterial,
} from "../tls/policy.ts";
import { errorMessage } from "../util/errors.ts";
import { formatHostPort } from "../util/address.ts";
import type { Metrics } from "../ops/metrics.ts";

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
      const session = new ClientSession(socket, {
        journal: this.#journal,
        server: this.#options,
        peer: { address, name: peer.commonName },
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
