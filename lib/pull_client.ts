/**
 * The client side of `pull`: connects out over mutual TLS, greets with its
 * resume point, hands every batch of frames to the sink, and reconnects
 * forever with exponential back-off and jitter.
 *
 * @module
 */

import tls from "node:tls";
import type { TLSSocket } from "node:tls";
import { formatHostPort } from "./cli.ts";
import type { LostReport, ServerHello } from "./fanout_server.ts";
import {
  DEFAULT_MAX_FRAME,
  encodeControl,
  encodeMessage,
  FrameReader,
  FrameSplitter,
  FrameType,
  isEntry,
  messageFrameSize,
  PROTOCOL_VERSION,
  ProtocolError,
} from "./frame.ts";
import { log } from "./log.ts";
import { sleep } from "./sleep.ts";
import type { ResumeState } from "./resume_state.ts";
import type { Sink } from "./sink.ts";
import type { StatusFile } from "./status_file.ts";
import type { Counter, Metrics } from "./metrics.ts";
import { clientTlsOptions, HANDSHAKE_TIMEOUT_MS, type TlsMaterial } from "./tls_policy.ts";

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
 * import { openSink } from "./sink.ts";
 * import { loadTlsMaterial } from "./tls_policy.ts";
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
    let attempt = 0;
    try {
      while (!signal?.aborted) {
        const started = Date.now();
        let streamed = false;
        try {
          streamed = await this.#session();
        } catch (error) {
          if (signal?.aborted) break;
          log("pull").warn("{server}: {error}", {
            server: this.#server,
            error: describeError(error),
          });
        }
        if (signal?.aborted) break;
        this.#disconnectedSince ??= new Date();
        this.#options.status?.set(
          `${this.#server} connection`,
          `disconnected from ${this.#server} since ${this.#disconnectedSince.toISOString()}`,
        );
        if (streamed && Date.now() - started > 10_000) attempt = 0;
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

  /** One connection; resolves true if it got as far as streaming. */
  async #session(): Promise<boolean> {
    const options = this.#options;
    const socket = tls.connect({
      host: options.host,
      port: options.port,
      ...clientTlsOptions(options.material, options.serverName),
    });
    this.#socket = socket;
    let streaming = false;
    let lastReceived = Date.now();
    let lastSent = Date.now();
    const keepAliveMs = options.keepAliveMs ?? 30_000;
    const idleMs = options.idleTimeoutMs ?? 90_000;
    const timer = setInterval(() => {
      const now = Date.now();
      if (!streaming && now - lastReceived > HANDSHAKE_TIMEOUT_MS) {
        socket.destroy(new Error("no greeting from the server within 10 s"));
      } else if (now - lastReceived > idleMs) {
        socket.destroy(new Error(`server silent for ${Math.round(idleMs / 1000)} s`));
      } else if (now - lastSent >= keepAliveMs) {
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
      socket.on("error", () => {}); // surfaced by the iterator below
      for await (const chunk of socket as AsyncIterable<Uint8Array>) {
        lastReceived = Date.now();
        const whole = splitter.push(chunk);
        if (whole.length === 0) continue;
        frame.reset(whole);
        let runStart = -1;
        while (frame.next()) {
          if (isEntry(frame.type)) {
            if (runStart < 0) runStart = frame.start;
            continue;
          }
          if (runStart >= 0) await this.#deliver(whole.subarray(runStart, frame.start));
          runStart = -1;
          if (frame.type === FrameType.Hello) {
            this.#hello(frame.json<ServerHello>());
            streaming = true;
          } else if (frame.type === FrameType.Lost) {
            await this.#lost(frame.json<LostReport>());
          } else if (frame.type === FrameType.Close) {
            log("pull").warn("{server} closed the connection: {reason}", {
              server: this.#server,
              reason: frame.text(),
            });
          }
        }
        if (runStart >= 0) {
          if (!streaming) throw new ProtocolError("message before the greeting");
          await this.#deliver(whole.subarray(runStart));
        }
      }
      if (!options.signal?.aborted) {
        log("pull").warn("{server}: connection closed", { server: this.#server });
      }
    } finally {
      clearInterval(timer);
      socket.destroy();
      this.#socket = undefined;
      await options.state?.save();
    }
    return streaming;
  }

  #hello(hello: ServerHello): void {
    if (hello?.proto !== "reclog" || hello.v !== PROTOCOL_VERSION) {
      throw new ProtocolError("the server does not speak reclog protocol v1");
    }
    this.#epoch = hello.epoch;
    this.#options.sink.begin?.(hello.epoch);
    this.#disconnectedSince = undefined;
    this.#options.status?.set(`${this.#server} connection`, undefined);
    log("pull").info("connected to {server}, streaming from seq {start} ({behind} behind)", {
      server: this.#server,
      start: hello.start,
      behind: hello.next - hello.start,
    });
  }

  async #deliver(frames: Uint8Array): Promise<void> {
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
    // Find the last message's sequence number and time.
    const frame = new FrameReader(frames);
    let seq = 0;
    let count = 0;
    while (frame.next()) {
      if (!isEntry(frame.type)) continue;
      seq = frame.seq;
      this.#lastTime = frame.time;
      count++;
    }
    this.#counters.messages?.inc(count);
    this.#counters.bytes?.inc(frames.length);
    if (this.#epoch) {
      this.#options.state?.advance({ epoch: this.#epoch, next: seq + 1, lastTime: this.#lastTime });
    }
  }

  async #lost(report: LostReport): Promise<void> {
    const server = this.#server;
    const since = this.#lastTime ? new Date(this.#lastTime).toISOString() : "an unknown time";
    const until = report.toTime ? new Date(report.toTime).toISOString() : "now";
    const text = report.unknown
      ? `reclog: an unknown number of messages from ${server} may be lost since ${since} (${report.reason})`
      : `reclog: ${report.count} messages from ${server} lost (seq ${report.from}..${report.to}) between ${since} and ${until} (${report.reason})`;
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
