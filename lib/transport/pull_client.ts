/**
 * The client side of `pull`: connects out over mutual TLS, greets with its
 * resume point, hands every batch of frames to the sink, and reconnects
 * forever with exponential back-off and jitter.
 *
 * @module
 */

import tls from "node:tls";
import type { TLSSocket } from "node:tls";
import { formatHostPort } from "../util/address.ts";
import type { LostReport, ServerHello } from "./fanout_server.ts";
export type { LostReport, ServerHello } from "./fanout_server.ts";
import {
  DEFAULT_MAX_FRAME,
  encodeControl,
  encodeMessage,
  FrameReader,
  FrameSplitter,
  FrameType,
  isEntry,
  MESSAGE_HEADER_BYTES,
  messageFrameSize,
  PROTOCOL_VERSION,
  ProtocolError,
} from "../protocol/frame.ts";
import { log } from "../util/log.ts";
import { sleep } from "../util/sleep.ts";
import type { ResumeState } from "../state/resume_state.ts";
import type { Sink } from "../sinks/sink.ts";
import type { StatusFile } from "../ops/status_file.ts";
import type { Counter, Metrics } from "../ops/metrics.ts";
import { clientTlsOptions, type TlsMaterial } from "../tls/policy.ts";

/** Options for {@linkcode PullClient}. */
export interface PullClientOptions {
  /** Server host. */
  host: string;
  /** Server port. */
  port: number;
  /** Name the server certificate must carry. */
  serverName: string;
  /** Certificate, key and CA. */
  material: TlsMaterial;
  /** Where messages go. */
  sink: Sink;
  /** Resume point storage; without it the client starts at the live tail. */
  state?: ResumeState;
  /** Where problems are reported for monitoring. */
  status?: StatusFile;
  /** Counts what arrives, reconnects and losses. */
  metrics?: Metrics;
  /**
   * Name of this upstream in status lines and metric labels.
   * @default {HOST:PORT of the server}
   */
  name?: string;
  /**
   * First reconnect delay, ms.
   * @default {1000}
   */
  minDelayMs?: number;
  /**
   * Longest reconnect delay, ms.
   * @default {30000}
   */
  maxDelayMs?: number;
  /**
   * Send a keep-alive after this long without sending, ms.
   * @default {30000}
   */
  keepAliveMs?: number;
  /**
   * Reconnect when the server is silent this long, ms.
   * @default {90000}
   */
  idleTimeoutMs?: number;
  /**
   * A connection whose server has not sent its hello this long after the
   * connection began (TLS handshake included) is a protocol error, ms.
   * @default {10000}
   */
  helloTimeoutMs?: number;
  /**
   * A connection that streamed (got the server's hello) at least this long
   * resets the back-off: the next reconnect waits the first delay again, ms.
   * @default {10000}
   */
  resetBackoffAfterMs?: number;
  /** Stops the client when aborted. */
  signal?: AbortSignal;
}

const encoder = new TextEncoder();
const SYSLOG_STREAM = encoder.encode("syslog");

/**
 * A `pull` connection that never gives up.
 *
 * @example Pull into the local syslog
 * ```ts
 * import { PullClient } from "./pull_client.ts";
 * import { openSink } from "../sinks/sink.ts";
 * import { loadTlsMaterial } from "../tls/policy.ts";
 * const material = await loadTlsMaterial({ cert: "c.pem", key: "c.key", ca: "ca.pem" });
 * const controller = new AbortController();
 * const client = new PullClient({
 *   host: "vps.example.org",
 *   port: 6514,
 *   serverName: "vps.example.org",
 *   material,
 *   sink: openSink({ kind: "udp", host: "127.0.0.1", port: 514 }),
 *   signal: controller.signal,
 * });
 * await client.run();
 * ```
 */
export class PullClient {
  readonly #options: PullClientOptions;
  readonly #server: string;
  #socket: TLSSocket | undefined;
  #epoch: string | undefined;
  #lastTime = 0;
  /** When the current connection got the server's hello (Date.now()). */
  #streamingSince: number | undefined;
  #disconnectedSince: Date | undefined = new Date();
  readonly #counters: {
    messages?: Counter;
    bytes?: Counter;
    reconnects?: Counter;
    lost?: Counter;
  } = {};

  /**
   * Makes a client and registers its metrics; nothing connects until
   * {@linkcode PullClient.run}. `options` is kept, not copied.
   */
  constructor(options: PullClientOptions) {
    this.#options = options;
    this.#server = options.name ?? formatHostPort(options);
    const metrics = options.metrics;
    if (metrics) {
      const labels = { upstream: this.#server };
      this.#counters.messages = metrics.counter(
        "reclog_pull_messages_total",
        "Messages handed to the sink",
        labels,
      );
      this.#counters.bytes = metrics.counter(
        "reclog_pull_bytes_total",
        "Bytes of frames handed to the sink",
        labels,
      );
      this.#counters.reconnects = metrics.counter(
        "reclog_pull_reconnects_total",
        "Reconnection attempts",
        labels,
      );
      this.#counters.lost = metrics.counter(
        "reclog_pull_lost_messages_total",
        "Messages the server reported lost",
        labels,
      );
      metrics.gauge(
        "reclog_pull_connected",
        "1 while streaming",
        labels,
        () => this.connected ? 1 : 0,
      );
    }
  }

  /** Whether a connection is streaming now. */
  get connected(): boolean {
    return this.#disconnectedSince === undefined;
  }

  /** Uses new certificate material from the next connection on. */
  reload(material: TlsMaterial): void {
    this.#options.material = material;
  }

  /** Connects, streams and reconnects until the signal aborts. */
  async run(): Promise<void> {
    const { signal } = this.#options;
    const minDelay = this.#options.minDelayMs ?? 1000;
    const maxDelay = this.#options.maxDelayMs ?? 30_000;
    const onAbort = () => this.#socket?.destroy();
    signal?.addEventListener("abort", onAbort, { once: true });
    const resetAfter = this.#options.resetBackoffAfterMs ?? 10_000;
    let attempt = 0;
    try {
      while (!signal?.aborted) {
        try {
          await this.#session();
        } catch (error) {
          if (signal?.aborted) break;
          log("pull").warn("{server}: {error}", {
            server: this.#server,
            error: describeError(error),
          });
        }
        if (signal?.aborted) break;
        // A connection that stayed up (streaming) long enough resets the back-off.
        const since = this.#streamingSince;
        this.#streamingSince = undefined;
        if (since !== undefined && Date.now() - since >= resetAfter) attempt = 0;
        this.#disconnectedSince ??= new Date();
        this.#options.status?.set(
          `${this.#server} connection`,
          `disconnected from ${this.#server} since ${this.#disconnectedSince.toISOString()}`,
        );
        const base = Math.min(maxDelay, minDelay * 2 ** attempt);
        const delay = Math.round(base / 2 + Math.random() * base / 2);
        attempt++;
        this.#counters.reconnects?.inc();
        log("pull").info("{server}: reconnecting in {delay} ms (attempt {attempt})", {
          server: this.#server,
          delay,
          attempt,
        });
        await sleep(delay, signal);
      }
    } finally {
      signal?.removeEventListener("abort", onAbort);
      await this.#options.state?.save();
    }
  }

  /**
   * One connection: greets, then checks every frame the server sends
   * (docs/protocol.md) before anything reaches the sink. A protocol error
   * hands the sink the valid entries before the bad frame, sends `C` with
   * the reason, and rejects.
   */
  async #session(): Promise<void> {
    const options = this.#options;
    const socket = tls.connect({
      host: options.host,
      port: options.port,
      ...clientTlsOptions(options.material, options.serverName),
    });
    this.#socket = socket;
    let hello: ServerHello | undefined;
    let lastReceived = Date.now();
    let lastSent = Date.now();
    const keepAliveMs = options.keepAliveMs ?? 30_000;
    const idleMs = options.idleTimeoutMs ?? 90_000;
    const helloMs = options.helloTimeoutMs ?? 10_000;
    const helloTimer = setTimeout(() => {
      const error = new ProtocolError(
        `no hello from the server within ${formatSeconds(helloMs)} of connecting`,
      );
      closeWithReason(socket, error).then(() => socket.destroy(error));
    }, helloMs);
    const timer = setInterval(() => {
      const now = Date.now();
      if (hello && now - lastReceived > idleMs) {
        socket.destroy(new Error(`server silent for ${formatSeconds(idleMs)}`));
      } else if (hello && now - lastSent >= keepAliveMs) {
        lastSent = now;
        socket.write(encodeControl(FrameType.KeepAlive));
      }
    }, Math.min(keepAliveMs, 5000));
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once("secureConnect", resolve);
        socket.once("error", reject);
        socket.once("close", () => reject(new Error("connection closed during the handshake")));
      });
      const point = options.state?.point;
      socket.write(encodeControl(FrameType.Hello, {
        proto: "reclog",
        v: PROTOCOL_VERSION,
        ...(point
          ? { resume: { epoch: point.epoch, next: point.next } }
          : options.state
          ? { oldest: true } // first connection: everything the server still holds
          : { live: true }),
      }));
      if (point?.lastTime) this.#lastTime = point.lastTime;
      const splitter = new FrameSplitter({ maxFrame: DEFAULT_MAX_FRAME });
      const frame = new FrameReader(new Uint8Array(0));
      // The sequence number the next journal entry must carry, and whether an
      // `L` frame of unknown extent allows it to be higher.
      let expected = 0;
      let gapAllowed = false;
      socket.on("error", () => {}); // surfaced by the iterator below
      for await (const chunk of socket as AsyncIterable<Uint8Array>) {
        lastReceived = Date.now();
        // Whole frames of the chunk; a run of entries goes to the sink in one write.
        let whole: Uint8Array | undefined;
        let runStart = -1;
        let runSeq = 0;
        let runTime = 0;
        let runCount = 0;
        try {
          whole = splitter.push(chunk);
          if (whole.length === 0) continue;
          frame.reset(whole);
          while (frame.next()) {
            const type = frame.type;
            if (isEntry(type)) {
              if (!hello) {
                throw new ProtocolError(
                  `'${String.fromCharCode(type)}' frame before the server's hello`,
                );
              }
              expected = acceptSequence(expected, frame.seq, gapAllowed);
              gapAllowed = false;
              if (runStart < 0) runStart = frame.start;
              runSeq = frame.seq;
              runTime = frame.time;
              runCount++;
              continue;
            }
            if (runStart >= 0) {
              const run = whole.subarray(runStart, frame.start);
              runStart = -1;
              await this.#deliver(run, runSeq, runTime, runCount);
              runCount = 0;
            }
            if (type === FrameType.Hello) {
              if (hello) throw new ProtocolError("a second hello from the server");
              hello = parseServerHello(frame.json<unknown>());
              this.#hello(hello);
              clearTimeout(helloTimer);
              expected = Math.max(1, hello.start);
            } else if (type === FrameType.Lost) {
              if (!hello) throw new ProtocolError("'L' frame before the server's hello");
              const report = parseLostReport(frame.json<unknown>());
              const next = expectedAfterLost(expected, report);
              gapAllowed = report.unknown === true;
              await this.#lost(report);
              if (next !== expected) {
                expected = next;
                // The sink holds the loss notice: resume after what was lost.
                options.state?.advance({ epoch: hello.epoch, next, lastTime: this.#lastTime });
              }
            } else if (type === FrameType.Close) {
              log("pull").warn("{server} closed the connection: {reason}", {
                server: this.#server,
                reason: printable(frame.text(), 200),
              });
            } else if (type !== FrameType.KeepAlive) {
              throw new ProtocolError(`unknown frame type ${describeType(type)}`);
            }
          }
        } catch (error) {
          // Entries before the bad frame are valid: hand them on first.
          if (error instanceof ProtocolError) {
            if (whole && runStart >= 0) {
              await this.#deliver(whole.subarray(runStart, frame.start), runSeq, runTime, runCount);
            }
            // Here, before leaving the loop: leaving it destroys the socket.
            await closeWithReason(socket, error);
          }
          throw error;
        }
        if (runStart >= 0) await this.#deliver(whole.subarray(runStart), runSeq, runTime, runCount);
      }
      if (!options.signal?.aborted) {
        log("pull").warn("{server}: connection closed", { server: this.#server });
      }
    } finally {
      clearTimeout(helloTimer);
      clearInterval(timer);
      socket.destroy();
      this.#socket = undefined;
      await options.state?.save();
    }
  }

  #hello(hello: ServerHello): void {
    const point = this.#options.state?.point;
    if (point && point.epoch === hello.epoch && hello.start < point.next) {
      throw new ProtocolError(
        `the server would start at seq ${hello.start}, before our resume point ${point.next} in the same epoch`,
      );
    }
    this.#epoch = hello.epoch;
    this.#options.sink.begin?.(hello.epoch);
    this.#streamingSince = Date.now();
    this.#disconnectedSince = undefined;
    this.#options.status?.set(`${this.#server} connection`, undefined);
    log("pull").info("connected to {server}, streaming from seq {start} ({behind} behind)", {
      server: this.#server,
      start: hello.start,
      behind: Math.max(0, hello.next - hello.start),
    });
  }

  /**
   * Hands a run of checked entries to the sink, then moves the resume point
   * past its last entry (`seq`, received at `time`).
   */
  async #deliver(frames: Uint8Array, seq: number, time: number, count: number): Promise<void> {
    try {
      await this.#options.sink.write(frames);
      this.#options.status?.set(`${this.#server} sink`, undefined);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      this.#options.status?.set(
        `${this.#server} sink`,
        `${this.#options.sink.description}: ${message}`,
      );
      throw error;
    }
    this.#lastTime = time;
    this.#counters.messages?.inc(count);
    this.#counters.bytes?.inc(frames.length);
    if (this.#epoch) {
      this.#options.state?.advance({ epoch: this.#epoch, next: seq + 1, lastTime: time });
    }
  }

  async #lost(report: LostReport): Promise<void> {
    const server = this.#server;
    const since = this.#lastTime ? new Date(this.#lastTime).toISOString() : "an unknown time";
    const until = report.toTime ? new Date(report.toTime).toISOString() : "now";
    const reason = printable(report.reason, MAX_REASON);
    const text = report.unknown
      ? `reclog: an unknown number of messages from ${server} may be lost since ${since} (${reason})`
      : `reclog: ${report.count} messages from ${server} lost (seq ${report.from}..${report.to}) between ${since} and ${until} (${reason})`;
    log("pull").warn("{text}", { text });
    this.#options.status?.set(`${this.#server} lost`, text.replace(/^reclog: /, ""));
    this.#counters.lost?.inc(report.count);
    await this.#options.sink.write(lossNotice(text));
  }
}

/** A message frame carrying an RFC 5424 syslog warning from reclog itself. */
function lossNotice(text: string): Uint8Array {
  const host = Deno.hostname();
  const line = encoder.encode(`<12>1 ${new Date().toISOString()} ${host} reclog - - - ${text}`);
  const frame = new Uint8Array(messageFrameSize(SYSLOG_STREAM.length, line.length));
  encodeMessage(frame, 0, { seq: 0, time: Date.now(), stream: SYSLOG_STREAM, data: line });
  return frame;
}

function describeError(error: unknown): string {
  if (error instanceof ProtocolError) return `protocol error: ${error.message}`;
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: string })?.code;
  if (code === "ECONNREFUSED") return "connection refused (is reclog serve running?)";
  if (
    /CertificateRequired|certificate required|UnknownCA|unknown ca|bad certificate/i.test(message)
  ) {
    return `the server refused our certificate (${message})`;
  }
  if (/UnknownIssuer|NotValidForName|CertNotValidForName|Expired|certificate/i.test(message)) {
    return `the server's certificate was rejected: ${message}`;
  }
  return message;
}

/** Longest epoch accepted in a server hello, characters. */
export const MAX_EPOCH_LENGTH = 128;
/** Longest loss reason copied into the sink's loss notice, characters. */
const MAX_REASON = 200;

/**
 * Checks a server hello (the parsed JSON body of its `H` frame) field by
 * field; throws {@linkcode ProtocolError} naming the first bad one. Unknown
 * extra fields are ignored.
 *
 * - `proto` is `"reclog"`, `v` is {@linkcode PROTOCOL_VERSION};
 * - `epoch` is 1 to {@linkcode MAX_EPOCH_LENGTH} printable ASCII characters;
 * - `first`, `next`, `start`, `maxFrame`, `keepAliveMs` are safe
 *   non-negative integers (at most `Number.MAX_SAFE_INTEGER`);
 * - `first <= next`, `start <= next`, `maxFrame` at least a message header.
 *
 * @example Check what a server sent
 * ```ts
 * import { parseServerHello } from "./pull_client.ts";
 * const hello = parseServerHello({
 *   proto: "reclog", v: 1, epoch: "5f0c", first: 1, next: 10, start: 1,
 *   maxFrame: 1048576, keepAliveMs: 30000,
 * });
 * console.log(hello.start); // 1
 * ```
 */
export function parseServerHello(value: unknown): ServerHello {
  const hello = object(value, "hello");
  if (hello.proto !== "reclog" || hello.v !== PROTOCOL_VERSION) {
    throw new ProtocolError(`the server does not speak reclog protocol v${PROTOCOL_VERSION}`);
  }
  const epoch = hello.epoch;
  if (
    typeof epoch !== "string" || epoch.length < 1 || epoch.length > MAX_EPOCH_LENGTH ||
    !/^[\x21-\x7e]+$/.test(epoch)
  ) {
    throw new ProtocolError(
      `hello: "epoch" must be 1 to ${MAX_EPOCH_LENGTH} printable ASCII characters`,
    );
  }
  const first = count(hello, "first", "hello");
  const next = count(hello, "next", "hello");
  const start = count(hello, "start", "hello");
  const maxFrame = count(hello, "maxFrame", "hello");
  const keepAliveMs = count(hello, "keepAliveMs", "hello");
  if (first > next) throw new ProtocolError(`hello: "first" ${first} is after "next" ${next}`);
  if (start > next) throw new ProtocolError(`hello: "start" ${start} is after "next" ${next}`);
  if (maxFrame < MESSAGE_HEADER_BYTES) {
    throw new ProtocolError(`hello: "maxFrame" ${maxFrame} is smaller than a message header`);
  }
  return { proto: "reclog", v: PROTOCOL_VERSION, epoch, first, next, start, maxFrame, keepAliveMs };
}

/**
 * Checks the parsed JSON body of an `L` frame; throws
 * {@linkcode ProtocolError} naming the first bad field. Either `unknown` is
 * true and `count` is 0, or `from` and `to` are safe integers with
 * `1 <= from <= to` and `count === to - from + 1`. `reason` is a string;
 * `toTime`, when present, a safe non-negative integer.
 *
 * @example Check a loss report
 * ```ts
 * import { parseLostReport } from "./pull_client.ts";
 * parseLostReport({ count: 3, from: 5, to: 7, reason: "client fell behind" });
 * ```
 */
export function parseLostReport(value: unknown): LostReport {
  const report = object(value, "'L' frame");
  const lostCount = count(report, "count", "'L' frame");
  const reason = report.reason;
  if (typeof reason !== "string") throw new ProtocolError(`'L' frame: "reason" must be a string`);
  let toTime: number | undefined;
  if (report.toTime !== undefined) toTime = count(report, "toTime", "'L' frame");
  if (report.unknown !== undefined && typeof report.unknown !== "boolean") {
    throw new ProtocolError(`'L' frame: "unknown" must be a boolean`);
  }
  if (report.unknown === true) {
    if (lostCount !== 0) throw new ProtocolError(`'L' frame: "unknown" with a "count"`);
    return { count: 0, unknown: true, reason, ...(toTime === undefined ? {} : { toTime }) };
  }
  const from = count(report, "from", "'L' frame");
  const to = count(report, "to", "'L' frame");
  if (from < 1 || from > to || lostCount !== to - from + 1) {
    throw new ProtocolError(
      `'L' frame: "count" ${lostCount} does not match "from" ${from} and "to" ${to}`,
    );
  }
  return { count: lostCount, from, to, reason, ...(toTime === undefined ? {} : { toTime }) };
}

/**
 * The sequence rule of a connection (docs/protocol.md): the next journal
 * entry must carry `expected` (the hello's `start` at first), or, right
 * after an `L` frame of unknown extent (`gapAllowed`), any higher number.
 * Returns the number the entry after `seq` must carry; throws
 * {@linkcode ProtocolError} for a repeated, decreasing or skipping number,
 * or one that leaves no safe integer after it.
 *
 * @example Walk a stream
 * ```ts
 * import { acceptSequence } from "./pull_client.ts";
 * let expected = 5;
 * expected = acceptSequence(expected, 5, false); // 6
 * expected = acceptSequence(expected, 6, false); // 7
 * // acceptSequence(expected, 9, false) throws: 7 and 8 were skipped
 * ```
 */
export function acceptSequence(expected: number, seq: number, gapAllowed: boolean): number {
  if (seq !== expected && !(gapAllowed && seq > expected)) {
    throw new ProtocolError(
      seq < expected
        ? `sequence number ${seq} repeated or going back (expected ${expected})`
        : `sequence number ${seq} skips from ${expected} without an 'L' frame`,
    );
  }
  if (seq >= Number.MAX_SAFE_INTEGER) {
    throw new ProtocolError(`sequence number ${seq} leaves no safe integer after it`);
  }
  return seq + 1;
}

/**
 * The sequence number expected after a checked `L` frame (see
 * {@linkcode parseLostReport}) when `expected` was: one past its `to`.
 * The lost range must reach the stream's position: `from <= expected <=
 * to + 1`; else it announces a gap that is not there, or is in the past
 * ({@linkcode ProtocolError}). A report of unknown extent changes nothing.
 *
 * @example After a loss of 5..7
 * ```ts
 * import { expectedAfterLost } from "./pull_client.ts";
 * expectedAfterLost(5, { count: 3, from: 5, to: 7, reason: "fell behind" }); // 8
 * ```
 */
export function expectedAfterLost(expected: number, report: LostReport): number {
  if (report.unknown || report.from === undefined || report.to === undefined) return expected;
  if (report.from > expected || report.to + 1 < expected) {
    throw new ProtocolError(
      `'L' frame for seq ${report.from}..${report.to} does not meet the stream at seq ${expected}`,
    );
  }
  return report.to + 1;
}

function object(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ProtocolError(`${what}: expected a JSON object`);
  }
  return value as Record<string, unknown>;
}

function count(record: Record<string, unknown>, field: string, what: string): number {
  const value = record[field];
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new ProtocolError(`${what}: "${field}" must be a safe non-negative integer`);
  }
  return value;
}

/** Sends `C` with the error as reason and half-closes; resolves when flushed or after 1 s. */
function closeWithReason(socket: TLSSocket, error: ProtocolError): Promise<void> {
  if (socket.destroyed || !socket.writable) return Promise.resolve();
  log("pull").debug("closing: protocol error: {reason}", { reason: error.message });
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      socket.off("close", done);
      resolve();
    };
    const timer = setTimeout(done, 1000);
    socket.once("close", done);
    socket.end(encodeControl(FrameType.Close, `protocol error: ${error.message}`), done);
  });
}

/** Text from the peer, made safe for a log line or syslog message. */
function printable(text: string, max: number): string {
  // deno-lint-ignore no-control-regex
  const clean = text.replace(/[\x00-\x1f\x7f]/g, "?");
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}

function describeType(type: number): string {
  const hex = `0x${type.toString(16).padStart(2, "0")}`;
  return type >= 0x21 && type <= 0x7e ? `'${String.fromCharCode(type)}' (${hex})` : hex;
}

function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}
