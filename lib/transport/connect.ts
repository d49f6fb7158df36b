/**
 * One connect for every client (`send`, `pull`): TCP, or mutual TLS with the
 * options of `lib/tls/policy.ts`, within a time limit, cut short by an
 * AbortSignal, failing with a {@linkcode ConnectError} worded for a log line.
 *
 * @module
 */

import net from "node:net";
import tls from "node:tls";
import type { HostPort } from "../util/address.ts";
import { describeNetError } from "../util/errors.ts";
import { clientTlsOptions, type TlsMaterial } from "../tls/policy.ts";

/** Options for {@linkcode connect}. */
export interface ConnectOptions {
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
   * Time allowed for the TCP connect and the TLS handshake together, ms.
   * @default {10000}
   */
  timeoutMs?: number;
  /**
   * With `tls`: after the handshake, wait this long for the server to close
   * the connection, and fail if it does. With TLS 1.3 the client's handshake
   * is done before the server has checked the client certificate, so a
   * refused client would otherwise write into a connection about to be
   * closed (the session ticket is no sign of acceptance: a server sends it
   * before its own checks of the certificate), ms. 0: no wait. The wait
   * reads the socket: what the server sends meanwhile is discarded, so it
   * fits protocols where the server speaks only when spoken to.
   * @default {0}
   */
  probationMs?: number;
  /**
   * Gives up (rejecting with a {@linkcode ConnectError}) when aborted.
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/**
 * A connect that failed; `message` says why in a few words ("connection
 * refused", "no connection after 10 s"), `cause` is the original error.
 *
 * @example Log why
 * ```ts
 * import { ConnectError } from "./connect.ts";
 * const error = new ConnectError("connection refused");
 * console.error(`cannot reach 127.0.0.1:5140: ${error.message}`);
 * ```
 */
export class ConnectError extends Error {
  /** Always `"ConnectError"`. */
  override name = "ConnectError";
  /** Whether it failed because the signal aborted. */
  readonly aborted: boolean;

  /** Makes the error. */
  constructor(message: string, options?: ErrorOptions & { aborted?: boolean }) {
    super(message, options);
    this.aborted = options?.aborted ?? false;
  }
}

function formatMs(ms: number): string {
  return ms >= 1000 && ms % 100 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

/**
 * Connects to `endpoint`; resolves once the connection is up (with `tls`,
 * once the handshake is done, the server certificate verified and the
 * probation, if any, passed). Rejects with a {@linkcode ConnectError}; the
 * socket is destroyed then.
 *
 * @example Connect with a 2 s limit
 * ```ts
 * import { connect, ConnectError } from "./connect.ts";
 * try {
 *   const socket = await connect({ host: "127.0.0.1", port: 5140 }, { timeoutMs: 2000 });
 *   socket.end("hello\n");
 * } catch (error) {
 *   if (error instanceof ConnectError) console.error(error.message);
 * }
 * ```
 */
export async function connect(
  endpoint: HostPort,
  options: ConnectOptions = {},
): Promise<net.Socket> {
  const socket = await open(endpoint, options);
  const probationMs = options.probationMs ?? 0;
  if (options.tls && probationMs > 0) await probation(socket, probationMs, options.signal);
  return socket;
}

function open(endpoint: HostPort, options: ConnectOptions): Promise<net.Socket> {
  const { host, port } = endpoint;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const { signal } = options;
  if (signal?.aborted) {
    return Promise.reject(new ConnectError("closing", { aborted: true }));
  }
  return new Promise((resolve, reject) => {
    const socket = options.tls
      ? tls.connect({ host, port, ...clientTlsOptions(options.tls, options.serverName ?? host) })
      : net.connect({ host, port });
    const ready = options.tls ? "secureConnect" : "connect";
    const fail = (error: ConnectError) => {
      cleanup();
      socket.destroy();
      reject(error);
    };
    const timer = setTimeout(
      () => fail(new ConnectError(`no connection after ${formatMs(timeoutMs)}`)),
      timeoutMs,
    );
    const onAbort = () => fail(new ConnectError("closing", { aborted: true }));
    const onReady = () => {
      cleanup();
      resolve(socket);
    };
    const onError = (error: Error) =>
      fail(new ConnectError(describeNetError(error), { cause: error }));
    const onClose = () => fail(new ConnectError("connection closed during the handshake"));
    const cleanup = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      socket.off(ready, onReady);
      socket.off("error", onError);
      socket.off("close", onClose);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    socket.once(ready, onReady);
    socket.once("error", onError);
    socket.once("close", onClose);
  });
}

/** Resolves if the server keeps the connection `ms` long; see {@linkcode ConnectOptions.probationMs}. */
function probation(socket: net.Socket, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const cleanup = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      socket.off("error", onError);
      socket.off("end", onGone);
      socket.off("close", onGone);
    };
    const fail = (error: ConnectError) => {
      cleanup();
      socket.destroy();
      reject(error);
    };
    const timer = setTimeout(() => {
      cleanup();
      resolve();
    }, ms);
    const onAbort = () => fail(new ConnectError("closing", { aborted: true }));
    const onError = (error: Error) =>
      fail(new ConnectError(describeNetError(error), { cause: error }));
    const onGone = () =>
      fail(
        new ConnectError(
          "the endpoint closed the connection after the TLS handshake (does it accept our --cert?)",
        ),
      );
    if (signal?.aborted) return onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
    socket.once("error", onError);
    socket.once("end", onGone);
    socket.once("close", onGone);
    socket.resume();
  });
}
