/**
 * RELP input (rsyslog's `omrelp` sends to it): serve's
 * `--syslog-in relp://HOST:PORT`.
 *
 * Delivery guarantee: the messages of one read go to `onBatch` as one
 * {@linkcode MessageBatch}; their `rsp 200 OK` answers are sent only after
 * the handler's promise resolved (and in TXNR order). Resolve it once the
 * messages are durable (serve: after the journal append, and with `--spool`
 * after the spool write); then a SIGKILL loses nothing the sender was told
 * was taken, and the sender resends what it was not told (at least once:
 * after a crash, up to its window of messages may arrive twice). When the
 * promise rejects, nothing of that batch (or after it on that connection) is
 * acknowledged and the connection is closed with a logged reason; the sender
 * reconnects and resends.
 *
 * @module
 */

import type { BatchHandler, MessageBatch, Source } from "../batch.ts";
import { type RelpPeer, RelpServer } from "../transport/relp_server.ts";
import { formatHostPort } from "../util/address.ts";

export type { BatchHandler, MessageBatch, Source } from "../batch.ts";

/** Options for {@linkcode RelpSource}. */
export interface RelpSourceOptions {
  /** Address to bind. */
  host: string;
  /** TCP port; 0 picks a free one (see what {@linkcode RelpSource.listen} resolves to). */
  port: number;
  /**
   * Takes each batch (the syslog messages of one read, views into that read's
   * buffer, valid until the returned promise settles); the answers to the
   * sender wait for the promise.
   */
  onBatch: BatchHandler;
  /**
   * Longest message (RELP DATALEN) taken whole; see {@linkcode RelpSourceOptions.oversize}.
   * @default {131072}
   */
  maxFrame?: number;
  /**
   * A longer message: `"truncate"` takes its first `maxFrame` bytes and
   * counts it in {@linkcode RelpSource.truncated} (what rsyslog does with
   * `maxMessageSize`; nothing behind it waits); `"close"` closes that
   * connection with a logged reason (the sender then resends it, forever).
   * @default {"truncate"}
   */
  oversize?: "truncate" | "close";
  /**
   * Most messages of one connection taken but not yet answered; beyond it the
   * connection is not read until answers go out.
   * @default {1024}
   */
  window?: number;
  /**
   * Most senders at once; one more is closed at once, with a log line.
   * @default {256}
   */
  maxConnections?: number;
  /**
   * A connection that sends nothing and waits for nothing this long is
   * closed (with `serverclose`), ms; 0 never.
   * @default {600000}
   */
  idleTimeoutMs?: number;
  /** Stops the source when aborted. */
  signal?: AbortSignal;
}

/**
 * The messages of one read, as a batch: no copies, the arrays the server
 * made (never changed after), all of stream `syslog`, received at `time`.
 */
function relpBatch(
  messages: Uint8Array[],
  peer: RelpPeer,
  time: number,
): MessageBatch & { readonly peer: RelpPeer } {
  return {
    count: messages.length,
    peer,
    message: (i) => messages[i]!,
    stream: () => "syslog",
    time: () => time,
  };
}

/**
 * A RELP input: every open connection is a RELP session; each read's syslog
 * frames go to `onBatch` as one batch, acknowledged once it resolved.
 *
 * @example Receive from rsyslog's omrelp, acknowledging after the write
 * ```ts
 * import { RelpSource } from "./relp.ts";
 * await using source = new RelpSource({
 *   host: "127.0.0.1",
 *   port: 0,
 *   onBatch: async (batch) => {
 *     console.log(`${batch.count} messages`); // store them, then resolve
 *   },
 * });
 * const addr = await source.listen();
 * console.log(source.description, addr?.port);
 * ```
 */
export class RelpSource implements Source {
  readonly #options: RelpSourceOptions;
  readonly #server: RelpServer;
  #description: string;
  #received = 0;
  #rejected = 0;

  /** Makes the source; nothing is bound until {@linkcode RelpSource.listen}. */
  constructor(options: RelpSourceOptions) {
    this.#options = options;
    this.#description = `relp://${formatHostPort(options)}`;
    this.#server = new RelpServer({
      host: options.host,
      port: options.port,
      maxFrame: options.maxFrame,
      oversize: options.oversize ?? "truncate",
      window: options.window,
      maxConnections: options.maxConnections,
      idleTimeoutMs: options.idleTimeoutMs,
      signal: options.signal,
      onBatch: (messages, peer) => this.#take(messages, peer),
    });
  }

  /** `relp://HOST:PORT`; after {@linkcode RelpSource.listen}, with the bound port. */
  get description(): string {
    return this.#description;
  }

  /** Connections open now. */
  get connections(): number {
    return this.#server.connections;
  }

  /** Messages cut to `maxFrame` so far. */
  get truncated(): number {
    return this.#server.truncated;
  }

  /** Messages handed to `onBatch` so far. */
  get received(): number {
    return this.#received;
  }

  /** Messages of batches whose `onBatch` rejected (not acknowledged; the sender resends). */
  get rejected(): number {
    return this.#rejected;
  }

  async #take(messages: Uint8Array[], peer: RelpPeer): Promise<void> {
    this.#received += messages.length;
    try {
      await this.#options.onBatch(relpBatch(messages, peer, Date.now()));
    } catch (error) {
      this.#rejected += messages.length;
      throw error;
    }
  }

  /** Binds and starts accepting; resolves with the bound address. */
  async listen(): Promise<Deno.NetAddr> {
    const addr = await this.#server.listen();
    this.#description = `relp://${formatHostPort({ host: addr.hostname, port: addr.port })}`;
    return addr;
  }

  /** Stops listening and closes every session (with `serverclose`); safe twice. */
  close(): Promise<void> {
    return this.#server.close();
  }

  /** Same as {@linkcode RelpSource.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
