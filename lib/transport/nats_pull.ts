/**
 * `pull --from nats://HOST:PORT --nats-stream NAME --durable NAME`: a
 * JetStream durable consumer ({@linkcode JetStreamSource}) into pull's sink
 * step ({@linkcode PullSink}: the same sinks, retried with back-off while the
 * NATS connection stays up). A batch is acknowledged to JetStream only after
 * the sink took it.
 *
 * Messages of many origins arrive in one stream: each (origin host, journal
 * epoch) has its own run of sequence numbers. `--mirror DIR` mirrors each
 * origin into `DIR/<host>/` (the same files and `.reclog-mirror.json` a
 * direct `pull --mirror` of that server writes, so its exactly-once skip
 * works per origin). A gap in an origin's sequence numbers is reported as a
 * direct pull reports a server's `L` frame: a log line, the status file,
 * `reclog_pull_lost_messages_total` and a loss notice written into the sink.
 * Only a gap this process saw whole counts: between two messages of the
 * origin, every delivery of the durable came here (several pulls sharing a
 * durable each see part of every origin, and that is not a loss), and without
 * `--nats-filter` (a filter may leave out some of an origin's streams, whose
 * numbers then look missing).
 *
 * @module
 */

import { ALL_TAKEN, type MessageBatch, type Sink, type WriteReport } from "../batch.ts";
import type { Counter, Metrics } from "../ops/metrics.ts";
import type { StatusFile } from "../ops/status_file.ts";
import { lossText, NoticeBatch } from "../protocol/loss_notice.ts";
import type { LostReport } from "../protocol/messages.ts";
import type { Rotation } from "../protocol/frame_batch.ts";
import { MirrorSink, type RotatingBatch } from "../sinks/mirror.ts";
import {
  type JetStreamBatch,
  JetStreamSource,
  type JetStreamSourceOptions,
} from "../sources/nats.ts";
import { errorMessage } from "../util/errors.ts";
import { log } from "../util/log.ts";
import { sleep } from "../util/sleep.ts";
import { Backoff } from "./backoff.ts";
import { PullSink } from "./pull_sink.ts";

const logger = log("pull");

/** Options for {@linkcode NatsPull}. */
export interface NatsPullOptions {
  /** The durable to read (from `natsFromOptions`). */
  source: Omit<JetStreamSourceOptions, "onBatch" | "signal">;
  /** The sink (`--to`); exclusive with `mirror`. */
  sink?: Sink;
  /** `--mirror DIR`: each origin host into `DIR/<host>/`. */
  mirror?: string;
  /** Where problems are reported. */
  status?: StatusFile;
  /** Where `reclog_pull_*` series are registered. */
  metrics?: Metrics;
  /** How often the connection state is looked at for the status file, ms. @default {1000} */
  checkEveryMs?: number;
  /** Stops the pull when aborted. */
  signal?: AbortSignal;
}

/** The counters of the durable: metric name and help (as a direct pull's). */
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

/** What was last seen of one origin (host and epoch). */
interface Last {
  seq: number;
  time: number;
  /** Its delivery sequence on the durable. */
  delivery: number;
}

/**
 * Reads a durable into a sink (or a mirror per origin), acknowledging after
 * the sink took each batch; reconnects forever.
 *
 * @example Pull a durable into the local syslog
 * ```ts ignore
 * import { NatsPull } from "./nats_pull.ts";
 * import { UdpSink } from "../sinks/udp.ts";
 * const controller = new AbortController();
 * await using pull = new NatsPull({
 *   source: { servers: ["nats://127.0.0.1:4222"], stream: "LOGS", durable: "home" },
 *   sink: new UdpSink({ host: "127.0.0.1", port: 514 }),
 *   signal: controller.signal,
 * });
 * await pull.run();
 * ```
 */
export class NatsPull implements AsyncDisposable {
  /** `nats:STREAM/DURABLE`: the upstream's name in status keys and metric labels. */
  readonly name: string;
  readonly #options: NatsPullOptions;
  readonly #sink: PullSink | undefined;
  readonly #mirrors = new Map<string, { sink: PullSink; mirror: MirrorSink; epoch?: string }>();
  readonly #counters: { -readonly [K in keyof typeof COUNTERS]?: Counter } = {};
  readonly #last = new Map<string, Last>();
  #source: JetStreamSource | undefined;
  #previousDelivery = -1;
  #runStart = 0;
  #up = false;
  #downSince: Date | undefined = new Date();
  #closed: Promise<void> | undefined;

  /** Makes the pull and registers its metrics; nothing connects before {@linkcode NatsPull.run}. */
  constructor(options: NatsPullOptions) {
    this.#options = options;
    this.name = `nats:${options.source.stream}/${options.source.durable}`;
    if (options.sink) this.#sink = this.#guard(options.sink);
    const metrics = options.metrics;
    if (metrics) {
      const labels = { upstream: this.name };
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

  /** Whether the connection to NATS is up and the durable is being read. */
  get connected(): boolean {
    return this.#up && (this.#source?.connected ?? false);
  }

  #guard(sink: Sink): PullSink {
    const o = this.#options;
    return new PullSink(sink, {
      upstream: this.name,
      status: o.status,
      metrics: o.metrics,
      signal: o.signal,
    });
  }

  /** Reads until the signal aborts (or {@linkcode NatsPull.close}); connects again after failures. */
  async run(): Promise<void> {
    const o = this.#options;
    const signal = o.signal;
    const backoff = new Backoff({ minMs: 1000, maxMs: 30_000 });
    const every = o.checkEveryMs ?? 1000;
    while (!signal?.aborted && !this.#closed) {
      const source = new JetStreamSource({
        ...o.source,
        onBatch: (batch) => this.#take(batch as JetStreamBatch),
        ...(signal ? { signal } : {}),
      });
      this.#source = source;
      try {
        await source.listen();
      } catch (error) {
        await source.close();
        this.#down(errorMessage(error));
        this.#counters.reconnects?.inc();
        await sleep(backoff.next(), signal);
        continue;
      }
      this.#up = true;
      backoff.reset();
      logger.info("reading {source}{mirror}", {
        source: source.description,
        mirror: o.mirror ? ` into mirror ${o.mirror}/<host>` : ` into ${this.#sink?.description}`,
      });
      // The connection reconnects on its own: follow it until the pull stops.
      while (!signal?.aborted && !this.#closed) {
        if (source.connected) this.#upAgain();
        else this.#down("connection lost, reconnecting");
        await sleep(every, signal);
      }
      await source.close();
    }
    this.#up = false;
  }

  #down(reason: string): void {
    const first = this.#downSince === undefined || this.#up;
    this.#downSince ??= new Date();
    if (first) {
      logger.warn("{name}: {reason}", { name: this.name, reason });
      if (this.#up) this.#counters.reconnects?.inc();
    }
    this.#up = false;
    this.#options.status?.set(
      `${this.name} connection`,
      `disconnected from ${
        this.#options.source.servers.join(",")
      } since ${this.#downSince.toISOString()} (${reason})`,
    );
  }

  #upAgain(): void {
    this.#up = true;
    if (this.#downSince === undefined) return;
    this.#downSince = undefined;
    this.#options.status?.set(`${this.name} connection`, undefined);
    logger.info("{name}: connected to NATS", { name: this.name });
  }

  /** Hands one fetched batch on, origin by origin; resolves when the sink took all of it. */
  async #take(batch: JetStreamBatch): Promise<void> {
    let run: OriginRun | undefined;
    for (let i = 0; i < batch.count; i++) {
      const delivery = batch.deliverySeq(i);
      if (delivery !== this.#previousDelivery + 1) this.#runStart = delivery;
      this.#previousDelivery = delivery;
      const host = batch.host(i);
      const epoch = batch.epoch(i);
      const key = `${host}\n${epoch}`;
      const seq = batch.seq(i);
      const last = this.#last.get(key);
      const lost = last && !this.#options.source.filter && last.delivery >= this.#runStart &&
          !batch.redelivered(i) && seq > last.seq + 1
        ? { count: seq - last.seq - 1, from: last.seq + 1, to: seq - 1, since: last.time }
        : undefined;
      if (run && (run.key !== key || lost)) {
        await this.#write(run);
        run = undefined;
      }
      if (lost) await this.#lost(host, epoch, lost, batch.time(i));
      run ??= new OriginRun(batch, key, host, epoch);
      run.add(i);
      if (!last || seq > last.seq) this.#last.set(key, { seq, time: batch.time(i), delivery });
    }
    if (run) await this.#write(run);
  }

  async #sinkFor(host: string, epoch: string): Promise<PullSink> {
    const dir = this.#options.mirror;
    if (!dir) return this.#sink!;
    const name = hostDir(host);
    let entry = this.#mirrors.get(name);
    if (!entry) {
      await Deno.mkdir(`${dir}/${name}`, { recursive: true });
      const mirror = new MirrorSink(`${dir}/${name}`);
      entry = { mirror, sink: this.#guard(mirror) };
      this.#mirrors.set(name, entry);
    }
    if (epoch && entry.epoch !== epoch) {
      entry.mirror.begin(epoch);
      entry.epoch = epoch;
    }
    return entry.sink;
  }

  async #write(run: OriginRun): Promise<void> {
    const sink = await this.#sinkFor(run.host, run.epoch);
    const report = run.count + run.rotations.length === 0
      ? ALL_TAKEN
      : await sink.write(run, () => {});
    this.#refused(run, report, sink);
    this.#counters.messages?.inc(run.count + run.rotations.length);
    this.#counters.bytes?.inc(run.bytes);
  }

  #refused(batch: MessageBatch, report: WriteReport, sink: PullSink): void {
    if (report.refused.length === 0) return;
    this.#counters.refused?.inc(report.refused.length);
    for (const { index, reason } of report.refused) {
      logger.warn("{name}: {sink} refused message seq {seq}: {reason}", {
        name: this.name,
        sink: sink.description,
        seq: batch.seq?.(index) ?? "-",
        reason,
      });
    }
  }

  async #lost(
    host: string,
    epoch: string,
    gap: { count: number; from: number; to: number; since: number },
    toTime: number,
  ): Promise<void> {
    const report: LostReport = {
      count: gap.count,
      from: gap.from,
      to: gap.to,
      toTime,
      reason: `not in JetStream stream ${this.#options.source.stream}, epoch ${epoch}: ` +
        "serve's journal dropped them before they were published, or the stream's limits " +
        `before durable ${this.#options.source.durable} read them`,
    };
    const text = lossText(host || "an unnamed host", report, gap.since);
    logger.warn("{text}", { text });
    this.#options.status?.set(`${this.name} lost`, text.replace(/^reclog: /, ""));
    this.#counters.lost?.inc(gap.count);
    const notice = new NoticeBatch(text);
    const sink = await this.#sinkFor(host, epoch);
    this.#refused(notice, await sink.write(notice, () => {}), sink);
  }

  /** Stops reading (after the batch being handed on) and closes the mirrors; safe twice. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      await this.#source?.close();
      for (const { mirror } of this.#mirrors.values()) await mirror.close();
    })();
    return this.#closed;
  }

  /** Same as {@linkcode NatsPull.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** A safe directory name for an origin host (`_` for other characters; `unknown` when empty). */
function hostDir(host: string): string {
  const name = host.replace(/[^A-Za-z0-9._-]/g, "_");
  return name === "" || name === "." || name === ".." ? "unknown" : name;
}

/** The messages of one origin (host, epoch) in a fetched batch, rotation markers apart. */
class OriginRun implements RotatingBatch {
  readonly #batch: JetStreamBatch;
  readonly #indexes: number[] = [];
  readonly key: string;
  readonly host: string;
  readonly epoch: string;
  readonly rotations: Rotation[] = [];
  bytes = 0;

  constructor(batch: JetStreamBatch, key: string, host: string, epoch: string) {
    this.#batch = batch;
    this.key = key;
    this.host = host;
    this.epoch = epoch;
  }

  add(i: number): void {
    const batch = this.#batch;
    if (batch.rotated(i)) {
      this.rotations.push({
        before: this.#indexes.length,
        stream: batch.stream(i),
        seq: batch.seq(i),
        time: batch.time(i),
      });
      return;
    }
    this.#indexes.push(i);
    this.bytes += batch.message(i).length;
  }

  get count(): number {
    return this.#indexes.length;
  }

  message(i: number): Uint8Array {
    return this.#batch.message(this.#indexes[i]!);
  }

  stream(i: number): string {
    return this.#batch.stream(this.#indexes[i]!);
  }

  seq(i: number): number {
    return this.#batch.seq(this.#indexes[i]!);
  }

  time(i: number): number {
    return this.#batch.time(this.#indexes[i]!);
  }
}
