/**
 * The receiving side of RELP (rsyslog's `omrelp` sends to it): for serve's
 * `--syslog-in relp://HOST:PORT`.
 *
 * Delivery guarantee: a message is answered `rsp 200 OK` only after the
 * `onBatch` promise of the batch holding it resolved, and answers go out in
 * TXNR order. So whatever the sender was told is taken, `onBatch` took; what it
 * was not told, it sends again after a reconnect (at least once; a sender
 * may resend a message whose answer was lost with the connection).
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import {
  encodeRelpFrame,
  nextRelpTxnr,
  parseRelpOffers,
  RELP_DEFAULT_MAX_DATA,
  relpFrameLength,
  RelpFrameParser,
  writeRelpFrame,
} from "../framing/relp.ts";
import { describeNetError } from "../util/errors.ts";

/** Where a batch came from. */
export interface RelpPeer {
  /** The sender's address, `HOST:PORT`. */
  address: string;
}

/**
 * Takes a batch of syslog messages (the DATA of each `syslog` frame, in
 * order); the promise resolves once they are durably taken. It may be called
 * again for the same connection before an earlier promise resolved; answers
 * are still sent in order. A rejection closes that connection without
 * answering the batch (and anything after it), so the sender resends it.
 * The arrays stay valid after the call (they are never reused).
 */
export type RelpBatchHandler = (messages: Uint8Array[], peer: RelpPeer) => Promise<void>;

/** Options for {@linkcode RelpServer}. */
export interface RelpServerOptions {
  /**
   * Address to listen on.
   * @default {"127.0.0.1"}
   */
  host?: string;
  /**
   * TCP port; 0 picks a free one (see the address {@linkcode RelpServer.listen} returns).
   * @default {0}
   */
  port?: number;
  /**
   * Largest DATALEN accepted; see {@linkcode RelpServerOptions.oversize} for a larger frame.
   * @default {131072}
   */
  maxFrame?: number;
  /**
   * A frame over `maxFrame`: `"close"` closes the connection with a reason
   * (the sender will resend it after reconnecting, and stall on it);
   * `"truncate"` takes its first `maxFrame` bytes, counts it in
   * {@linkcode RelpServer.truncated} and logs the first of each connection
   * (as imrelp's `oversizeMode="truncate"`).
   * @default {"close"}
   */
  oversize?: "close" | "truncate";
  /**
   * Most transactions of one connection taken but not yet answered; at that
   * many the server stops reading from that connection until answers go out
   * (back-pressure, the sender's window then holds it).
   * @default {1024}
   */
  window?: number;
  /** Called with each batch (all syslog frames parsed from one read). */
  onBatch: RelpBatchHandler;
  /**
   * Most connections at once; one more is closed at once, and logged.
   * @default {256}
   */
  maxConnections?: number;
  /**
   * A connection that sends nothing and waits for nothing this long is closed
   * (with `serverclose`). 0 disables.
   * @default {600000}
   */
  idleTimeoutMs?: number;
  /** Closes the server when aborted. */
  signal?: AbortSignal;
  /**
   * The `relp_software` offer sent back.
   * @default {"reclog"}
   */
  software?: string;
}

const encoder = new TextEncoder();
const OK = encoder.encode("200 OK");
const SERVERCLOSE = encodeRelpFrame(0, "serverclose");
const READ_SIZE = 64 * 1024;

/** Writes all of `bytes`. */
async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) done += await conn.write(bytes.subarray(done));
}

/** Encodes `rsp 200 OK` for `count` TXNRs from `first`, in one buffer. */
function encodeAcks(first: number, count: number): Uint8Array {
  let size = 0;
  let txnr = first;
  for (let k = 0; k < count; k++) {
    size += relpFrameLength(txnr, "rsp", OK.length);
    txnr = nextRelpTxnr(txnr);
  }
  const out = new Uint8Array(size);
  let at = 0;
  txnr = first;
  for (let k = 0; k < count; k++) {
    at = writeRelpFrame(out, at, txnr, "rsp", OK);
    txnr = nextRelpTxnr(txnr);
  }
  return out;
}

class Closing extends Error {}

/** One RELP session. */
class Session {
  readonly conn: Deno.Conn;
  readonly peer: RelpPeer;
  readonly #server: RelpServerOptionsResolved;
  readonly #parser: RelpFrameParser;
  #expected = 1;
  #opened = false;
  #closeRequested = false;
  /** Answers are written in this chain, strictly in order. */
  #chain: Promise<void> = Promise.resolve();
  /** Transactions taken, not yet answered. */
  #outstanding = 0;
  #spaceWaiter: (() => void) | undefined;
  #failed: Error | undefined;
  /** Resolves when the session failed (so no write waits on a batch forever). */
  readonly #dead: Promise<void>;
  #markDead!: () => void;
  #closed = false;
  lastActivity = Date.now();

  constructor(conn: Deno.Conn, server: RelpServerOptionsResolved) {
    this.conn = conn;
    const addr = conn.remoteAddr as Deno.NetAddr;
    this.peer = {
      address: addr.hostname.includes(":")
        ? `[${addr.hostname}]:${addr.port}`
        : `${addr.hostname}:${addr.port}`,
    };
    this.#server = server;
    this.#parser = new RelpFrameParser({
      maxData: server.maxFrame,
      oversize: server.truncate ? "truncate" : "error",
    });
    this.#dead = new Promise((resolve) => this.#markDead = resolve);
  }

  /** True while nothing is being waited for. */
  get quiet(): boolean {
    return this.#outstanding === 0 && this.#parser.idle;
  }

  /** Queues a write after every earlier answer. */
  #write(bytes: Uint8Array | (() => Uint8Array), after?: Promise<void>): void {
    this.#chain = this.#chain.then(async () => {
      if (after) await Promise.race([after, this.#dead]);
      if (this.#failed) return;
      await writeAll(this.conn, typeof bytes === "function" ? bytes() : bytes);
    }).catch((error) => this.#fail(error instanceof Error ? error : new Error(String(error))));
  }

  #fail(error: Error): void {
    if (this.#failed) return;
    this.#failed = error;
    this.#markDead();
    const fields = { peer: this.peer.address, reason: error.message };
    if (error instanceof Closing) this.#server.log.info("relp: {peer}: closed: {reason}", fields);
    else this.#server.log.warn("relp: {peer}: closing: {reason}", fields);
    this.close(!(error instanceof Closing));
    this.#spaceWaiter?.();
  }

  /** Sends `serverclose` (best effort) and closes the socket; safe twice. */
  close(hint = true): void {
    if (this.#closed) return;
    this.#closed = true;
    if (hint) {
      // one small write; the kernel takes it or the peer is gone
      this.conn.write(SERVERCLOSE).catch(() => {}).finally(() => this.#closeConn());
    } else {
      this.#closeConn();
    }
  }

  #closeConn(): void {
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }

  /** Handles one read's frames. Throws on a protocol violation. */
  #handle(chunk: Uint8Array): void {
    let batch: Uint8Array[] | undefined;
    let batchFirst = 0;
    this.#parser.push(chunk, (txnr, command, data, datalen) => {
      if (this.#closeRequested) throw new Error(`'${command}' after 'close'`);
      if (txnr !== this.#expected) {
        throw new Error(`TXNR ${txnr} where ${this.#expected} was due`);
      }
      this.#expected = nextRelpTxnr(txnr);
      if (!this.#opened) {
        if (command !== "open") throw new Error(`'${command}' before 'open'`);
        this.#open(txnr, data);
        return;
      }
      switch (command) {
        case "syslog":
          if (batch === undefined) {
            batch = [];
            batchFirst = txnr;
          }
          batch.push(data);
          if (datalen > data.length) this.#truncated(datalen);
          return;
        case "close":
          if (batch) this.#dispatch(batch, batchFirst);
          batch = undefined;
          this.#closeRequested = true;
          this.#write(encodeRelpFrame(txnr, "rsp", OK));
          this.#chain = this.#chain.then(() => {
            if (!this.#failed) this.#fail(new Closing("the client closed the session"));
          });
          return;
        case "open":
          throw new Error("a second 'open'");
        default:
          throw new Error(`unsupported command '${command}'`);
      }
    });
    if (batch) this.#dispatch(batch, batchFirst);
  }

  #truncatedLogged = false;

  #truncated(datalen: number): void {
    this.#server.stats.truncated++;
    if (this.#truncatedLogged) return;
    this.#truncatedLogged = true;
    this.#server.log.warn(
      "relp: {peer}: a message of {bytes} bytes cut to {max} (counted; later ones of this connection are not logged)",
      { peer: this.peer.address, bytes: datalen, max: this.#server.maxFrame },
    );
  }

  #open(txnr: number, data: Uint8Array): void {
    const offers = parseRelpOffers(data);
    const version = offers.get("relp_version");
    if (version === undefined || !/^\d+$/.test(version)) {
      throw new Error("'open' without a relp_version offer");
    }
    const commands = (offers.get("commands") ?? "").split(",");
    if (!commands.includes("syslog")) {
      this.#write(encodeRelpFrame(txnr, "rsp", encoder.encode("500 command syslog required")));
      throw new Error("the client does not offer the syslog command");
    }
    this.#opened = true;
    const reply = encoder.encode(
      `200 OK\nrelp_version=0\nrelp_software=${this.#server.software}\ncommands=syslog`,
    );
    this.#write(encodeRelpFrame(txnr, "rsp", reply));
  }

  #dispatch(batch: Uint8Array[], first: number): void {
    this.#outstanding += batch.length;
    let taken: Promise<void>;
    try {
      taken = this.#server.onBatch(batch, this.peer);
    } catch (error) {
      taken = Promise.reject(error);
    }
    const count = batch.length;
    const guarded = taken.catch((error) => {
      throw new Error(
        `the batch of ${count} messages was not taken (${
          error instanceof Error ? error.message : String(error)
        }); not acknowledged, the sender resends`,
      );
    });
    this.#write(() => encodeAcks(first, count), guarded);
    this.#chain = this.#chain.then(() => {
      this.#outstanding -= count;
      const waiter = this.#spaceWaiter;
      this.#spaceWaiter = undefined;
      waiter?.();
    });
  }

  /** Reads until the peer or the server closes. Never throws. */
  async run(): Promise<void> {
    try {
      while (!this.#failed && !this.#closed) {
        while (this.#outstanding >= this.#server.window && !this.#failed) {
          await new Promise<void>((resolve) => this.#spaceWaiter = resolve);
        }
        if (this.#failed) break;
        // a fresh buffer a read: batches hold views into it
        const buffer = new Uint8Array(READ_SIZE);
        const n = await this.conn.read(buffer);
        if (n === null) {
          if (!this.#parser.idle) throw new Error("connection closed inside a frame");
          break;
        }
        this.lastActivity = Date.now();
        this.#handle(buffer.subarray(0, n));
      }
      // answer what was taken before the peer went away, if it still listens
      await this.#chain;
    } catch (error) {
      if (!this.#closed) {
        this.#fail(error instanceof Error ? error : new Error(String(error)));
      }
    } finally {
      await this.#chain.catch(() => {});
      this.close(false);
    }
  }

  /** Closes because of `reason` (idle, shutdown). */
  shutdown(reason: string): void {
    this.#fail(new Error(reason));
  }
}

interface RelpServerOptionsResolved {
  maxFrame: number;
  truncate: boolean;
  stats: { truncated: number };
  window: number;
  onBatch: RelpBatchHandler;
  software: string;
  log: ReturnType<typeof getLogger>;
}

/**
 * A RELP server: accepts `open`, answers `syslog` frames once `onBatch` took
 * them, honours `close`, and closes a connection that breaks the protocol
 * with `serverclose` and a log line (never throwing out of the server).
 *
 * @example Receive from rsyslog's omrelp
 * ```ts
 * import { RelpServer } from "./relp_server.ts";
 * const server = new RelpServer({
 *   port: 0,
 *   onBatch: async (messages) => {
 *     console.log(`took ${messages.length}`);
 *   },
 * });
 * const addr = await server.listen();
 * console.log(`relp on ${addr.hostname}:${addr.port}`);
 * await server.close();
 * ```
 */
export class RelpServer {
  readonly #options: RelpServerOptions;
  readonly #resolved: RelpServerOptionsResolved;
  readonly #log = getLogger(["reclog", "relp"]);
  #listener: Deno.TcpListener | undefined;
  readonly #sessions = new Set<Session>();
  readonly #runs = new Set<Promise<void>>();
  #acceptLoop: Promise<void> | undefined;
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #closed = false;
  #onAbort = () => void this.close();

  /** Makes a server; {@linkcode RelpServer.listen} starts it. */
  constructor(options: RelpServerOptions) {
    this.#options = options;
    this.#resolved = {
      maxFrame: options.maxFrame ?? RELP_DEFAULT_MAX_DATA,
      truncate: options.oversize === "truncate",
      stats: { truncated: 0 },
      window: Math.max(1, options.window ?? 1024),
      onBatch: options.onBatch,
      software: options.software ?? "reclog",
      log: this.#log,
    };
  }

  /** Connections open now. */
  get connections(): number {
    return this.#sessions.size;
  }

  /** Messages cut to `maxFrame` so far (`oversize: "truncate"`). */
  get truncated(): number {
    return this.#resolved.stats.truncated;
  }

  /** Binds and starts accepting; resolves with the bound address. */
  listen(): Promise<Deno.NetAddr> {
    if (this.#listener) throw new Error("RelpServer.listen() was already called");
    const host = this.#options.host ?? "127.0.0.1";
    const port = this.#options.port ?? 0;
    try {
      this.#listener = Deno.listen({ hostname: host, port, transport: "tcp" });
    } catch (error) {
      return Promise.reject(
        new Error(`cannot listen for RELP on ${host}:${port}: ${describeNetError(error)}`),
      );
    }
    const addr = this.#listener.addr as Deno.NetAddr;
    this.#log.info("relp listening on {host}:{port}", { host: addr.hostname, port: addr.port });
    this.#acceptLoop = this.#accept(this.#listener);
    const idle = this.#options.idleTimeoutMs ?? 600_000;
    if (idle > 0) {
      this.#sweeper = setInterval(() => {
        const now = Date.now();
        for (const session of this.#sessions) {
          if (session.quiet && now - session.lastActivity > idle) {
            session.shutdown(`idle for ${Math.round(idle / 1000)} s`);
          }
        }
      }, Math.min(1000, Math.max(10, Math.floor(idle / 4))));
    }
    this.#options.signal?.addEventListener("abort", this.#onAbort, { once: true });
    if (this.#options.signal?.aborted) void this.close();
    return Promise.resolve(addr);
  }

  async #accept(listener: Deno.TcpListener): Promise<void> {
    const max = this.#options.maxConnections ?? 256;
    while (!this.#closed) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (this.#closed) return;
        this.#log.warn("relp: accept failed: {reason}", {
          reason: error instanceof Error ? error.message : String(error),
        });
        continue;
      }
      const session = new Session(conn, this.#resolved);
      if (this.#sessions.size >= max) {
        this.#log.warn("relp: {peer}: refused: already {max} connections", {
          peer: session.peer.address,
          max,
        });
        session.close(true);
        continue;
      }
      try {
        conn.setNoDelay(true);
      } catch {
        // not fatal
      }
      this.#log.info("relp: {peer} connected", { peer: session.peer.address });
      this.#sessions.add(session);
      const run = session.run().finally(() => {
        this.#sessions.delete(session);
        this.#runs.delete(run);
      });
      this.#runs.add(run);
    }
  }

  /** Stops listening, closes every connection (with `serverclose`); safe twice. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#options.signal?.removeEventListener("abort", this.#onAbort);
      if (this.#sweeper !== undefined) clearInterval(this.#sweeper);
      try {
        this.#listener?.close();
      } catch {
        // already closed
      }
      for (const session of this.#sessions) session.shutdown("the server is closing");
    }
    await this.#acceptLoop;
    await Promise.all([...this.#runs]);
  }
}
