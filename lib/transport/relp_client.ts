/**
 * The sending side of RELP (rsyslog's `imrelp` receives from it): for pull's
 * `--to relp://HOST:PORT`.
 *
 * Delivery guarantee: {@linkcode RelpClient.send} resolves only when the
 * receiver answered `rsp 200` for every message of the batch. When it
 * rejects, the {@linkcode RelpSendError} says how many messages at the start
 * of the batch were acknowledged (`acked`); the others may or may not have
 * arrived, and the caller sends them again (at least once; duplicates are
 * bounded by what was in flight, at most `window` messages).
 *
 * Reconnecting is the caller's: after a failure every send in flight rejects,
 * and the next `send()` opens a new connection (one attempt, bounded by
 * `timeoutMs`). The caller chooses the back-off between attempts.
 *
 * @module
 */

import {
  encodeRelpFrame,
  nextRelpTxnr,
  parseRelpOffers,
  parseRelpResponse,
  RELP_DEFAULT_MAX_DATA,
  relpFrameLength,
  RelpFrameParser,
  writeRelpFrame,
} from "../framing/relp.ts";
import { describeNetError } from "../util/errors.ts";

/** Options for {@linkcode RelpClient}. */
export interface RelpClientOptions {
  /** The receiver's host (name or address). */
  host: string;
  /** The receiver's TCP port. */
  port: number;
  /**
   * Most messages sent and not yet answered.
   * @default {1024}
   */
  window?: number;
  /**
   * Bound on connecting plus the `open` handshake, on waiting for the oldest
   * answer while any is due, and on the `close` handshake.
   * @default {10000}
   */
  timeoutMs?: number;
  /**
   * Longer messages are cut to this many bytes (and counted in
   * {@linkcode RelpClient.truncated}); keep it at most the receiver's limit
   * (imrelp's `maxDataSize`, which defaults to rsyslog's `maxMessageSize`).
   * @default {131072}
   */
  maxMessage?: number;
  /**
   * The `relp_software` offer.
   * @default {"reclog"}
   */
  software?: string;
}

/**
 * A batch was not (wholly) acknowledged. The first `acked` messages of it
 * were; the rest must be sent again.
 *
 * @example Resend what was not acknowledged
 * ```ts
 * import { RelpClient, RelpSendError } from "./relp_client.ts";
 * const client = new RelpClient({ host: "127.0.0.1", port: 2514 });
 * let pending = [new TextEncoder().encode("<13>hello")];
 * try {
 *   await client.send(pending);
 *   pending = [];
 * } catch (error) {
 *   if (!(error instanceof RelpSendError)) throw error;
 *   pending = pending.slice(error.acked); // send these again later
 * }
 * await client.close();
 * ```
 */
export class RelpSendError extends Error {
  /** How many messages at the start of the batch the receiver acknowledged. */
  readonly acked: number;

  /** Makes the error. */
  constructor(message: string, acked: number) {
    super(message);
    this.name = "RelpSendError";
    this.acked = acked;
  }
}

interface Batch {
  total: number;
  acked: number;
  resolve: () => void;
  reject: (error: Error) => void;
}

const encoder = new TextEncoder();
const READ_SIZE = 64 * 1024;
/** Bytes of frames written at once at most. */
const WRITE_CHUNK = 1024 * 1024;

/** One connection and its RELP session. */
class Link {
  readonly #conn: Deno.Conn;
  readonly #options: Required<RelpClientOptions>;
  readonly #where: string;
  readonly #parser = new RelpFrameParser();
  /** TXNR of the next command sent. */
  #nextTxnr = 1;
  /** TXNR of the oldest command not answered. */
  #oldest = 1;
  #outstanding = 0;
  readonly #batches: Batch[] = [];
  #writeLock: Promise<void> = Promise.resolve();
  #spaceWaiter: (() => void) | undefined;
  #openWaiter: { resolve: () => void; reject: (error: Error) => void } | undefined;
  #closeTxnr = -1;
  #closeWaiter: (() => void) | undefined;
  #serverClosed = false;
  failed: Error | undefined;
  #lastProgress = Date.now();
  #timer: ReturnType<typeof setInterval>;
  readonly reader: Promise<void>;

  constructor(conn: Deno.Conn, options: Required<RelpClientOptions>, where: string) {
    this.#conn = conn;
    this.#options = options;
    this.#where = where;
    const timeout = options.timeoutMs;
    this.#timer = setInterval(() => {
      if (this.failed) return;
      const due = this.#outstanding > 0 || this.#openWaiter !== undefined ||
        this.#closeWaiter !== undefined;
      if (due && Date.now() - this.#lastProgress > timeout) {
        this.fail(new Error(`${where}: no answer for ${timeout} ms`));
      }
    }, Math.max(10, Math.min(1000, Math.floor(timeout / 4))));
    this.reader = this.#read();
  }

  /** Sends `open` and waits for its answer. */
  open(): Promise<void> {
    const offers = encoder.encode(
      `relp_version=0\nrelp_software=${this.#options.software}\ncommands=syslog`,
    );
    const done = new Promise<void>((resolve, reject) => this.#openWaiter = { resolve, reject });
    this.#lastProgress = Date.now();
    this.#outstanding = 1;
    this.#nextTxnr = 2;
    this.#writeLock = this.#writeAll(encodeRelpFrame(1, "open", offers)).catch((error) =>
      this.fail(error)
    );
    return done;
  }

  async #writeAll(bytes: Uint8Array): Promise<void> {
    let done = 0;
    while (done < bytes.length) done += await this.#conn.write(bytes.subarray(done));
  }

  /** Queues a batch; resolves when all of it is acknowledged. */
  send(messages: readonly Uint8Array[]): Promise<void> {
    if (this.failed) return Promise.reject(new RelpSendError(this.failed.message, 0));
    const batch = {} as Batch;
    const promise = new Promise<void>((resolve, reject) => {
      batch.resolve = resolve;
      batch.reject = reject;
    });
    batch.total = messages.length;
    batch.acked = 0;
    this.#batches.push(batch);
    this.#writeLock = this.#writeLock.then(() => this.#writeBatch(messages)).catch((error) =>
      this.fail(error)
    );
    return promise;
  }

  async #writeBatch(messages: readonly Uint8Array[]): Promise<void> {
    const window = this.#options.window;
    const max = this.#options.maxMessage;
    let sent = 0;
    while (sent < messages.length) {
      while (this.#outstanding >= window && !this.failed) {
        await new Promise<void>((resolve) => this.#spaceWaiter = resolve);
      }
      if (this.failed) return;
      const space = window - this.#outstanding;
      let count = 0;
      let size = 0;
      let txnr = this.#nextTxnr;
      while (count < space && sent + count < messages.length && size < WRITE_CHUNK) {
        size += relpFrameLength(txnr, "syslog", Math.min(max, messages[sent + count]!.length));
        txnr = nextRelpTxnr(txnr);
        count++;
      }
      const out = new Uint8Array(size);
      let at = 0;
      txnr = this.#nextTxnr;
      for (let k = 0; k < count; k++) {
        const message = messages[sent + k]!;
        at = writeRelpFrame(
          out,
          at,
          txnr,
          "syslog",
          message.length > max ? message.subarray(0, max) : message,
        );
        txnr = nextRelpTxnr(txnr);
      }
      this.#nextTxnr = txnr;
      if (this.#outstanding === 0) this.#lastProgress = Date.now();
      this.#outstanding += count;
      sent += count;
      await this.#writeAll(out);
    }
  }

  /** Sends `close` after everything queued, waits for its answer, closes. */
  async close(): Promise<void> {
    await this.#writeLock;
    if (this.failed) return;
    await new Promise<void>((resolve) => {
      this.#closeWaiter = resolve;
      this.#closeTxnr = this.#nextTxnr;
      this.#lastProgress = Date.now();
      this.#outstanding++;
      this.#writeAll(encodeRelpFrame(this.#nextTxnr, "close")).catch((error) => this.fail(error));
      this.#nextTxnr = nextRelpTxnr(this.#nextTxnr);
    });
    this.fail(new Error(`${this.#where}: the client closed the session`));
    await this.reader;
  }

  /** Ends the link: every unfinished batch rejects with its acked count. */
  fail(error: unknown): void {
    if (this.failed) return;
    const why = describeNetError(error);
    const failure = why.startsWith(this.#where) && error instanceof Error
      ? error
      : new Error(why.startsWith(this.#where) ? why : `${this.#where}: ${why}`);
    this.failed = failure;
    clearInterval(this.#timer);
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
    for (const batch of this.#batches.splice(0)) {
      batch.reject(
        new RelpSendError(
          `${failure.message} (${batch.acked} of ${batch.total} acknowledged)`,
          batch.acked,
        ),
      );
    }
    this.#openWaiter?.reject(failure);
    this.#openWaiter = undefined;
    this.#closeWaiter?.();
    this.#closeWaiter = undefined;
    this.#spaceWaiter?.();
  }

  #onFrame = (txnr: number, command: string, data: Uint8Array): void => {
    if (command === "serverclose" && txnr === 0) {
      this.#serverClosed = true;
      return;
    }
    if (command !== "rsp") {
      throw new Error(`${this.#where}: unexpected '${command}' from the server`);
    }
    if (this.#outstanding === 0 || txnr !== this.#oldest) {
      throw new Error(`${this.#where}: an answer for TXNR ${txnr} where ${this.#oldest} was due`);
    }
    this.#oldest = nextRelpTxnr(txnr);
    this.#outstanding--;
    if (this.#spaceWaiter) {
      const waiter = this.#spaceWaiter;
      this.#spaceWaiter = undefined;
      waiter();
    }
    if (txnr === this.#closeTxnr) {
      this.#closeWaiter?.();
      this.#closeWaiter = undefined;
      return;
    }
    const rsp = parseRelpResponse(data);
    if (this.#openWaiter) {
      const waiter = this.#openWaiter;
      this.#openWaiter = undefined;
      const offers = parseRelpOffers(rsp.rest);
      if (rsp.code !== 200) {
        const error = new Error(
          `${this.#where}: the receiver refused the session: '${rsp.code} ${rsp.text}'`,
        );
        waiter.reject(error);
        throw error;
      }
      if (
        !offers.has("relp_version") || !(offers.get("commands") ?? "").split(",").includes("syslog")
      ) {
        const error = new Error(
          `${this.#where}: the receiver does not offer relp_version and the syslog command`,
        );
        waiter.reject(error);
        throw error;
      }
      waiter.resolve();
      return;
    }
    if (rsp.code !== 200) {
      throw new Error(
        `${this.#where}: the receiver answered TXNR ${txnr} with '${rsp.code} ${rsp.text}'`,
      );
    }
    const batch = this.#batches[0];
    if (batch === undefined) throw new Error(`${this.#where}: an answer for nothing sent`);
    if (++batch.acked === batch.total) {
      this.#batches.shift();
      batch.resolve();
    }
  };

  async #read(): Promise<void> {
    const buffer = new Uint8Array(READ_SIZE);
    try {
      while (!this.failed) {
        const n = await this.#conn.read(buffer);
        if (n === null) {
          throw new Error(
            this.#serverClosed
              ? `${this.#where}: the receiver closed the session (serverclose)`
              : `${this.#where}: the receiver closed the connection`,
          );
        }
        this.#lastProgress = Date.now();
        this.#parser.push(buffer.subarray(0, n), this.#onFrame);
      }
    } catch (error) {
      if (!this.failed) this.fail(error);
    }
  }
}

/**
 * A RELP client with a window of outstanding messages. `send()` may be called
 * again before an earlier one settled (batches go out in call order).
 *
 * @example Send a batch to rsyslog's imrelp
 * ```ts
 * import { RelpClient } from "./relp_client.ts";
 * const client = new RelpClient({ host: "127.0.0.1", port: 2514 });
 * try {
 *   await client.send([new TextEncoder().encode("<13>Jan  1 00:00:00 vps app: hi")]);
 * } finally {
 *   await client.close();
 * }
 * ```
 */
export class RelpClient {
  readonly #options: Required<RelpClientOptions>;
  readonly #where: string;
  #link: Link | undefined;
  #connecting: Promise<Link> | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  #truncated = 0;

  /** Makes a client; it connects on the first send (or {@linkcode RelpClient.connect}). */
  constructor(options: RelpClientOptions) {
    this.#options = {
      host: options.host,
      port: options.port,
      window: Math.max(1, options.window ?? 1024),
      timeoutMs: options.timeoutMs ?? 10_000,
      maxMessage: options.maxMessage ?? RELP_DEFAULT_MAX_DATA,
      software: options.software ?? "reclog",
    };
    const host = options.host.includes(":") ? `[${options.host}]` : options.host;
    this.#where = `relp://${host}:${options.port}`;
  }

  /** True while a session is open. */
  get connected(): boolean {
    return this.#link !== undefined && this.#link.failed === undefined;
  }

  /** Messages cut to `maxMessage` so far. */
  get truncated(): number {
    return this.#truncated;
  }

  /** Opens a session now if none is open (one attempt, within `timeoutMs`). */
  async connect(): Promise<void> {
    await this.#ensure();
  }

  #ensure(): Promise<Link> {
    if (this.#closed) return Promise.reject(new Error(`${this.#where}: the client is closed`));
    if (this.#link && !this.#link.failed) return Promise.resolve(this.#link);
    this.#connecting ??= this.#open().finally(() => this.#connecting = undefined);
    return this.#connecting;
  }

  async #open(): Promise<Link> {
    const { host, port, timeoutMs } = this.#options;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${this.#where}: no session within ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    expired.catch(() => {});
    const connecting = Deno.connect({ hostname: host, port, transport: "tcp" });
    try {
      let conn: Deno.TcpConn;
      try {
        conn = await Promise.race([connecting, expired]);
      } catch (error) {
        connecting.then((late) => late.close(), () => {});
        const why = describeNetError(error);
        throw new Error(why.startsWith(this.#where) ? why : `${this.#where}: ${why}`);
      }
      try {
        conn.setNoDelay(true);
      } catch {
        // not fatal
      }
      const link = new Link(conn, this.#options, this.#where);
      try {
        await Promise.race([link.open(), expired]);
      } catch (error) {
        link.fail(error);
        await link.reader;
        throw error;
      }
      if (this.#link) await this.#link.reader;
      this.#link = link;
      return link;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Sends a batch; resolves when the receiver acknowledged every message.
   * Rejects with {@linkcode RelpSendError} (its `acked` says how many at the
   * start were acknowledged) when the session broke, the receiver answered
   * other than 200, or no session could be opened (`acked` 0).
   */
  async send(messages: readonly Uint8Array[]): Promise<void> {
    if (messages.length === 0) return;
    let link: Link;
    try {
      link = await this.#ensure();
    } catch (error) {
      throw new RelpSendError(error instanceof Error ? error.message : String(error), 0);
    }
    const max = this.#options.maxMessage;
    for (const message of messages) if (message.length > max) this.#truncated++;
    return link.send(messages);
  }

  /**
   * Waits for every batch sent to settle, runs the `close` handshake (within
   * `timeoutMs`) and closes the connection; safe to call twice.
   */
  close(): Promise<void> {
    this.#closed = true;
    this.#closing ??= (async () => {
      await this.#connecting?.catch(() => {});
      const link = this.#link;
      if (link) await link.close();
    })();
    return this.#closing;
  }

  /** Closes now without the handshake: unfinished batches reject. Safe twice. */
  async abort(): Promise<void> {
    this.#closed = true;
    await this.#connecting?.catch(() => {});
    const link = this.#link;
    if (link) {
      link.fail(new Error(`${this.#where}: the client was aborted`));
      await link.reader;
    }
  }
}
