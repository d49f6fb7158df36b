/**
 * The client side of `pull`: connects out over mutual TLS, greets with its
 * resume point, checks every frame, hands each run of entries to the sink
 * as a `FrameBatch` (messages indexed in place), and reconnects forever
 * (`connect.ts`, `backoff.ts`: exponential back-off with jitter).
 *
 * @module
 */

import type { TLSSocket } from "node:tls";
import { formatHostPort } from "../util/address.ts";
import {
  DEFAULT_MAX_FRAME,
  encodeControl,
  FrameReader,
  FrameSplitter,
  FrameType,
  isEntry,
  PROTOCOL_VERSION,
  ProtocolError,
} from "../protocol/frame.ts";
import { FrameBatch } from "../protocol/frame_batch.ts";
import {
  type LostReport,
  parseLostReport,
  parseServerHello,
  type ServerHello,
} from "../protocol/messages.ts";
import { acceptSequence, expectedAfterLost } from "../protocol/stream_rules.ts";
import { lossText, NoticeBatch } from "../protocol/loss_notice.ts";
import { formatSeconds, frameTypeName, printable } from "../protocol/peer_text.ts";
import type { MessageBatch, Sink, WriteReport } from "../batch.ts";
import { log } from "../util/log.ts";
import { sleep } from "../util/sleep.ts";
import type { ResumeState } from "../state/resume_state.ts";
import type { StatusFile } from "../ops/status_file.ts";
import type { Counter, Metrics } from "../ops/metrics.ts";
import type { TlsMaterial } from "../tls/policy.ts";
import { Backoff } from "./backoff.ts";
import { connect } from "./connect.ts";
import { PullSink } from "./pull_sink.ts";
import { describeError } from "./pull_errors.ts";

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
  /**
   * Where messages go (a {@linkcode FrameBatch} per run of entries); a sink
   * with `begin` is told the server journal's epoch on each connection. A
   * failing sink is retried with back-off (`pull_sink.ts`) while the server
   * connection stays up and unread.
   */
  sink: Sink & { begin?(epoch: string): void };
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

/**
 * The resume point is saved after this many messages were taken (and at
 * least every second while they flow), bounding what a SIGKILL re-sends.
 */
export const SAVE_EVERY = 500;

/** The counters of each upstream: metric name and help. */
const COUNTERS = {
  messages: ["reclog_pull_messages_total", "Messages handed to the sink"],
  bytes: ["reclog_pull_bytes_total", "Bytes of frames handed to the sink"],
  reconnects: ["reclog_pull_reconnects_total", "Reconnection attempts"],
  lost: ["reclog_pull_lost_messages_total", "Messages the server reported lost"],
  refused: [
    "reclog_pull_refused_messages_total",
    "Messages the sink could not take (e.g. too large for a UDP datagram)",
  ],
} as const;

/**
 * A `pull` connection that never gives up.
 *
 * @example Pull into the local syslog
 * ```ts
 * import { PullClient } from "./pull_client.ts";
 * import { openSink } from "../sinks/open.ts";
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
  #disconnectedSince: Date | undefined = new Date();
  readonly #sink: PullSink;
  #unsaved = 0;
  readonly #counters: { -readonly [K in keyof typeof COUNTERS]?: Counter } = {};

  /**
   * Makes a client and registers its metrics; nothing connects until
   * {@linkcode PullClient.run}. `options` is kept, not copied.
   */
  constructor(options: PullClientOptions) {
    this.#options = options;
    this.#server = options.name ?? formatHostPort(options);
    this.#sink = new PullSink(options.sink, {
      upstream: this.#server,
      status: options.status,
      metrics: options.metrics,
      signal: options.signal,
    });
    const metrics = options.metrics;
    if (metrics) {
      const labels = { upstream: this.#server };
      for (const [key, [name, help]] of Object.entries(COUNTERS)) {
        this.#counters[key as keyof typeof COUNTERS] = metrics.counter(name, help, labels);
      }
      metrics.gauge(
        "reclog_pull_connected",
        "1 while streaming",
        labels,
        () => this.connected ? 1 : 0,
      );
    }
  }

  /** Whether the sink takes messages now (false while pull retries it). */
  get sinkUp(): boolean {
    return this.#sink.up;
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
    const backoff = new Backoff({
      minMs: this.#options.minDelayMs ?? 1000,
      maxMs: this.#options.maxDelayMs ?? 30_000,
      // A connection that stayed up (streaming) long enough resets the back-off.
      resetAfterMs: this.#options.resetBackoffAfterMs ?? 10_000,
    });
    const onAbort = () => this.#socket?.destroy();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      while (!signal?.aborted) {
        try {
          await this.#session(backoff);
        } catch (error) {
          if (signal?.aborted) break;
          log("pull").warn("{server}: {error}", {
            server: this.#server,
            error: describeError(error),
          });
        } finally {
          backoff.disconnected();
        }
        if (signal?.aborted) break;
        this.#disconnectedSince ??= new Date();
        this.#options.status?.set(
          `${this.#server} connection`,
          `disconnected from ${this.#server} since ${this.#disconnectedSince.toISOString()}`,
        );
        const delay = backoff.next();
        this.#counters.reconnects?.inc();
        log("pull").info("{server}: reconnecting in {delay} ms (attempt {attempt})", {
          server: this.#server,
          delay,
          attempt: backoff.attempt,
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
  async #session(backoff: Backoff): Promise<void> {
    const options = this.#options;
    const helloMs = options.helloTimeoutMs ?? 10_000;
    // The hello is due `helloMs` after connecting began, TLS handshake included.
    const deadline = Date.now() + helloMs;
    const socket = await connect(options, {
      tls: options.material,
      serverName: options.serverName,
      timeoutMs: helloMs,
      signal: options.signal,
    }) as TLSSocket;
    this.#socket = socket;
    let hello: ServerHello | undefined;
    let lastReceived = Date.now();
    let lastSent = Date.now();
    // While the sink is retried nothing is read: the server is not silent.
    let delivering = false;
    const keepAliveMs = options.keepAliveMs ?? 30_000;
    const idleMs = options.idleTimeoutMs ?? 90_000;
    const helloTimer = setTimeout(() => {
      const error = new ProtocolError(
        `no hello from the server within ${formatSeconds(helloMs)} of connecting`,
      );
      closeWithReason(socket, error).then(() => socket.destroy(error));
    }, Math.max(0, deadline - Date.now()));
    const timer = setInterval(() => {
      const now = Date.now();
      if (hello && !delivering && now - lastReceived > idleMs) {
        socket.destroy(new Error(`server silent for ${formatSeconds(idleMs)}`));
      } else if (hello && now - lastSent >= keepAliveMs) {
        lastSent = now;
        socket.write(encodeControl(FrameType.KeepAlive));
      }
    }, Math.min(keepAliveMs, 5000));
    try {
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
      let closed = false;
      socket.on("error", () => {}); // surfaced by the iterator below
      const batch = new FrameBatch();
      // The run of entries not yet handed on: from `runStart` in `batch`'s buffer.
      let runStart = -1;
      const deliver = async (end: number) => {
        if (runStart < 0) return;
        const bytes = end - runStart;
        runStart = -1;
        delivering = true;
        try {
          await this.#deliver(batch, bytes);
        } finally {
          delivering = false;
          lastReceived = Date.now();
        }
      };
      for await (const chunk of socket as AsyncIterable<Uint8Array>) {
        lastReceived = Date.now();
        // Whole frames of the chunk; a run of entries goes to the sink in one write.
        let whole: Uint8Array;
        try {
          whole = splitter.push(chunk);
          if (whole.length === 0) continue;
          frame.reset(whole);
          batch.reset(whole);
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
              batch.add(frame);
              continue;
            }
            await deliver(frame.start);
            batch.reset(whole);
            if (type === FrameType.Hello) {
              if (hello) throw new ProtocolError("a second hello from the server");
              hello = parseServerHello(frame.json<unknown>());
              this.#hello(hello);
              backoff.connected();
              clearTimeout(helloTimer);
              expected = Math.max(1, hello.start);
            } else if (type === FrameType.Lost) {
              if (!hello) throw new ProtocolError("'L' frame before the server's hello");
              const report = parseLostReport(frame.json<unknown>());
              const next = expectedAfterLost(expected, report);
              gapAllowed = report.unknown === true;
              delivering = true;
              try {
                await this.#lost(report);
              } finally {
                delivering = false;
                lastReceived = Date.now();
              }
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
              // Nothing follows a C frame: the session ends here, not when (or if) the TLS close arrives.
              closed = true;
              break;
            } else if (type !== FrameType.KeepAlive) {
              throw new ProtocolError(`unknown frame type ${frameTypeName(type, true)}`);
            }
          }
        } catch (error) {
          // Entries before the bad frame are valid: hand them on first.
          if (error instanceof ProtocolError) {
            await deliver(frame.start);
            // Here, before leaving the loop: leaving it destroys the socket.
            await closeWithReason(socket, error);
          }
          throw error;
        }
        if (closed) break;
        await deliver(whole.length);
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
    this.#disconnectedSince = undefined;
    this.#options.status?.set(`${this.#server} connection`, undefined);
    log("pull").info("connected to {server}, streaming from seq {start} ({behind} behind)", {
      server: this.#server,
      start: hello.start,
      behind: Math.max(0, hello.next - hello.start),
    });
  }

  /**
   * Hands a run of checked entries to the sink (retried until it took them),
   * then moves the resume point past its last entry; while a failing sink is
   * retried, past what it says it took.
   */
  async #deliver(batch: FrameBatch, bytes: number): Promise<void> {
    const rotations = batch.rotations;
    const last = rotations.at(-1);
    const lastIsRotation = last !== undefined && last.before === batch.count;
    const seq = lastIsRotation ? last.seq : batch.seq(batch.count - 1);
    const time = lastIsRotation ? last.time : batch.time(batch.count - 1);
    const report = await this.#sink.write(batch, (taken) => {
      const i = Math.min(taken, batch.count) - 1;
      this.#advance(batch.seq(i), batch.time(i));
    });
    this.#refused(batch, report);
    this.#counters.messages?.inc(batch.count + rotations.length);
    this.#counters.bytes?.inc(bytes);
    this.#advance(seq, time);
    await this.#saveOften(batch.count);
  }

  /** The sink took everything up to the entry `seq`, received at `time`. */
  #advance(seq: number, time: number): void {
    this.#lastTime = time;
    if (this.#epoch) {
      this.#options.state?.advance({ epoch: this.#epoch, next: seq + 1, lastTime: time });
    }
  }

  /** Saves the resume point once {@linkcode SAVE_EVERY} messages were taken since the last save. */
  async #saveOften(taken: number): Promise<void> {
    this.#unsaved += taken;
    if (this.#unsaved < SAVE_EVERY) return;
    this.#unsaved = 0;
    await this.#options.state?.save();
  }

  /** Logs and counts what the sink refused (it will not be sent again). */
  #refused(batch: MessageBatch, report: WriteReport): void {
    if (report.refused.length === 0) return;
    this.#counters.refused?.inc(report.refused.length);
    for (const { index, reason } of report.refused) {
      log("pull").warn("{server}: {sink} refused message seq {seq}: {reason}", {
        server: this.#server,
        sink: this.#options.sink.description,
        seq: batch.seq?.(index) ?? "-",
        reason,
      });
    }
  }

  async #lost(report: LostReport): Promise<void> {
    const text = lossText(this.#server, report, this.#lastTime);
    log("pull").warn("{text}", { text });
    this.#options.status?.set(`${this.#server} lost`, text.replace(/^reclog: /, ""));
    this.#counters.lost?.inc(report.count);
    const notice = new NoticeBatch(text);
    this.#refused(notice, await this.#sink.write(notice, () => {}));
  }
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
