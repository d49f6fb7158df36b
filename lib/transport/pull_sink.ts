/**
 * `pull`'s side of a sink failure: a sink that fails is retried with
 * back-off while the server connection stays up (pull stops reading it:
 * back-pressure, the messages wait in the server's journal). Log lines and
 * the status file name the sink, a metric says whether it is up, and what a
 * sink reports it cut, dropped as empty, or knows lost is counted.
 *
 * @module
 */

import { ALL_TAKEN, type MessageBatch, type Sink, SinkError, type WriteReport } from "../batch.ts";
import type { Refusal } from "../batch.ts";
import { describeNetError, errorMessage } from "../util/errors.ts";
import { log } from "../util/log.ts";
import { sleep } from "../util/sleep.ts";
import type { StatusFile } from "../ops/status_file.ts";
import type { Metrics } from "../ops/metrics.ts";
import { Backoff } from "./backoff.ts";

/** Options for {@linkcode PullSink}. */
export interface PullSinkOptions {
  /** The upstream's name, for status keys and metric labels. */
  upstream: string;
  /** Where problems are reported. */
  status?: StatusFile;
  /** Where `reclog_pull_sink_*` series are registered. */
  metrics?: Metrics;
  /**
   * First retry delay after a sink failure, ms.
   * @default {500}
   */
  minDelayMs?: number;
  /**
   * Longest retry delay, ms.
   * @default {30000}
   */
  maxDelayMs?: number;
  /** Stops retrying when aborted (the write then rejects with the last error). */
  signal?: AbortSignal;
}

/** What a sink may count of its own (each optional): read for metrics and logs. */
interface SinkCounts {
  readonly truncated?: number;
  readonly empty?: number;
  readonly dropped?: number;
}

/**
 * A sink written until it takes each batch: failures are retried with
 * back-off, never passed on as a failure of the server connection.
 *
 * @example Write through a guard
 * ```ts
 * import { PullSink } from "./pull_sink.ts";
 * import { TcpSink } from "../sinks/tcp.ts";
 * import { RangeBatch } from "../batch.ts";
 * await using tcp = new TcpSink({ host: "127.0.0.1", port: 514 });
 * const guard = new PullSink(tcp, { upstream: "vps:6514" });
 * const batch = new RangeBatch(0);
 * await guard.write(batch, (taken) => console.log(`taken up to ${taken}`));
 * ```
 */
export class PullSink {
  readonly #sink: Sink & SinkCounts;
  readonly #options: PullSinkOptions;
  readonly #backoff: Backoff;
  #downSince: Date | undefined;
  #lastReason = "";
  #seen = { truncated: 0, empty: 0, dropped: 0 };

  /** Guards `sink`; registers `reclog_pull_sink_up` and the sink's counters. */
  constructor(sink: Sink, options: PullSinkOptions) {
    this.#sink = sink as Sink & SinkCounts;
    this.#options = options;
    this.#backoff = new Backoff({
      minMs: options.minDelayMs ?? 500,
      maxMs: options.maxDelayMs ?? 30_000,
    });
    const metrics = options.metrics;
    if (metrics) {
      const labels = { upstream: options.upstream, sink: sink.description };
      metrics.gauge(
        "reclog_pull_sink_up",
        "1 while the sink takes messages, 0 while pull retries it",
        labels,
        () => this.up ? 1 : 0,
      );
      const counts = this.#sink;
      metrics.counterOf(
        "reclog_pull_sink_truncated_total",
        "Messages cut to the sink's size limit",
        labels,
        () => counts.truncated ?? 0,
      );
      metrics.counterOf(
        "reclog_pull_sink_empty_total",
        "Empty messages dropped (an octet count of 0 is not valid syslog over TCP)",
        labels,
        () => counts.empty ?? 0,
      );
      metrics.counterOf(
        "reclog_pull_sink_dropped_total",
        "Datagrams known dropped by the receiver (its kernel's drop counter)",
        labels,
        () => counts.dropped ?? 0,
      );
    }
  }

  /** `udp://127.0.0.1:514`, ... */
  get description(): string {
    return this.#sink.description;
  }

  /** False from a failed write until a write succeeds again. */
  get up(): boolean {
    return this.#downSince === undefined;
  }

  /**
   * Writes `batch` until the sink took all of it, retrying with back-off;
   * `onTaken(n)` is called when a failed write says the first `n` messages
   * were taken (so the resume point can move past them). Resolves with the
   * messages refused (indexes into `batch`); rejects only when the signal
   * aborted.
   */
  async write(batch: MessageBatch, onTaken: (taken: number) => void): Promise<WriteReport> {
    let from = 0;
    let refused: Refusal[] = [];
    for (;;) {
      const view = from === 0 ? batch : new TailBatch(batch, from);
      try {
        const report = await this.#sink.write(view);
        this.#recovered();
        this.#noteCounts();
        refused = refused.concat(shift(report.refused, from));
        return refused.length === 0 ? ALL_TAKEN : { refused };
      } catch (error) {
        this.#noteCounts();
        if (this.#options.signal?.aborted) throw error;
        const taken = error instanceof SinkError ? Math.min(error.taken, view.count) : 0;
        const prefix = (error as { refused?: readonly Refusal[] }).refused;
        if (prefix) refused = refused.concat(shift(prefix, from));
        if (taken > 0) {
          from += taken;
          onTaken(from);
        }
        if (from >= batch.count) {
          this.#recovered();
          return refused.length === 0 ? ALL_TAKEN : { refused };
        }
        await this.#failed(error);
      }
    }
  }

  #noteCounts(): void {
    const sink = this.#sink;
    const description = sink.description;
    const truncated = sink.truncated ?? 0;
    if (truncated > this.#seen.truncated && this.#seen.truncated === 0) {
      log("pull").warn(
        "sink {sink}: a message over its size limit was cut (further ones are only counted in reclog_pull_sink_truncated_total)",
        { sink: description },
      );
    }
    const empty = sink.empty ?? 0;
    if (empty > this.#seen.empty && this.#seen.empty === 0) {
      log("pull").warn(
        "sink {sink}: an empty message was dropped (further ones are only counted in reclog_pull_sink_empty_total)",
        { sink: description },
      );
    }
    const dropped = sink.dropped ?? 0;
    if (dropped > this.#seen.dropped) {
      const text = `sink ${description}: ${dropped} datagrams dropped by the receiver's kernel ` +
        `(last ${dropped - this.#seen.dropped} at ${new Date().toISOString()})`;
      log("pull").warn("{text}", { text });
      this.#options.status?.set(`${this.#options.upstream} sink drops`, text);
    }
    this.#seen = { truncated, empty, dropped };
  }

  async #failed(error: unknown): Promise<void> {
    const description = this.#sink.description;
    const reason = sinkReason(error, description);
    const first = this.#downSince === undefined;
    this.#downSince ??= new Date();
    const since = this.#downSince.toISOString();
    this.#options.status?.set(
      `${this.#options.upstream} sink`,
      `sink ${description}: ${reason} since ${since}`,
    );
    const delay = this.#backoff.next();
    if (first || reason !== this.#lastReason) {
      log("pull").warn(
        "sink {sink}: {reason}; retrying in {delay} ms, holding the connection to {upstream} (the messages wait there)",
        { sink: description, reason, delay, upstream: this.#options.upstream },
      );
    } else {
      log("pull").info("sink {sink}: {reason} since {since}; retrying in {delay} ms", {
        sink: description,
        reason,
        since,
        delay,
      });
    }
    this.#lastReason = reason;
    await sleep(delay, this.#options.signal);
    if (this.#options.signal?.aborted) throw error;
  }

  #recovered(): void {
    if (this.#downSince === undefined) return;
    const seconds = ((Date.now() - this.#downSince.getTime()) / 1000).toFixed(1);
    log("pull").info("sink {sink}: up again after {seconds} s", {
      sink: this.#sink.description,
      seconds,
    });
    this.#downSince = undefined;
    this.#lastReason = "";
    this.#backoff.reset();
    this.#options.status?.set(`${this.#options.upstream} sink`, undefined);
  }
}

/** The messages of a batch from index `from` on. */
class TailBatch implements MessageBatch {
  readonly #batch: MessageBatch;
  readonly #from: number;
  readonly count: number;
  readonly stream?: (i: number) => string;
  readonly seq?: (i: number) => number;
  readonly time?: (i: number) => number;

  constructor(batch: MessageBatch, from: number) {
    this.#batch = batch;
    this.#from = from;
    this.count = batch.count - from;
    if (batch.stream) this.stream = (i) => batch.stream!(i + from);
    if (batch.seq) this.seq = (i) => batch.seq!(i + from);
    if (batch.time) this.time = (i) => batch.time!(i + from);
  }

  message(i: number): Uint8Array {
    return this.#batch.message(i + this.#from);
  }
}

function shift(refused: readonly Refusal[], by: number): Refusal[] {
  return by === 0
    ? [...refused]
    : refused.map(({ index, reason }) => ({ index: index + by, reason }));
}

/** A sink error in a few words, without a leading `SINK: ` (the caller names the sink). */
function sinkReason(error: unknown, description: string): string {
  const cause = (error as { cause?: unknown })?.cause ?? error;
  const net = describeNetError(cause);
  const text = net !== errorMessage(cause) ? net : errorMessage(error);
  return text.startsWith(`${description}: `) ? text.slice(description.length + 2) : text;
}
