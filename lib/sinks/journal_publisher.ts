/**
 * serve's `--publish`: a loop that hands every journal message, in order, to
 * a {@linkcode Sink} (the {@linkcode JetStreamSink}) and moves its publish
 * point past a message only when the sink took it.
 *
 * The publish point (`next`, the first sequence number not yet acknowledged)
 * is kept in a small state file beside the spool (`{epoch, next}`, written
 * atomically every `saveEveryMs` and on close), so a restarted serve
 * continues its journal from there and publishes nothing twice (what it
 * publishes again after a crash, JetStream drops by its `Nats-Msg-Id`). A
 * state file of another epoch, or none, starts at the journal's oldest message.
 * A failed write (NATS down, a timeout) goes back to the first message not
 * taken and retries after a back-off; messages the journal evicted before
 * they were published are logged and counted as lost.
 *
 * @module
 */

import type { Journal } from "../journal/journal.ts";
import { FrameBatch } from "../protocol/frame_batch.ts";
import { type Sink, SinkError } from "../batch.ts";
import { Backoff, type BackoffOptions } from "../transport/backoff.ts";
import { writeFileAtomic } from "../state/atomic_file.ts";
import type { Counter, Metrics } from "../ops/metrics.ts";
import { errorMessage } from "../util/errors.ts";
import { log } from "../util/log.ts";
import { NATS_PUBLISH_FLAGS, natsPublishOptions } from "../transport/nats_flags.ts";

/** serve's usage text for the `--publish` flags. */
export const PUBLISH_USAGE =
  `NATS JetStream (publish the journal; see README 'Many servers, many readers'):
  --publish URL             nats://HOST:PORT or tls://HOST:PORT, repeatable
                            (servers of one cluster)
  --nats-stream NAME        the JetStream stream (must exist unless --nats-create)
  --nats-subject TEMPLATE   subject, {host} and {stream}  [reclog.{host}.{stream}]
  --nats-create             create the stream when missing, with
  --nats-replicas N  --nats-max-age 30d  --nats-max-bytes SIZE  --nats-dupe-window 10m
  --nats-cert/--nats-key/--nats-ca FILE   TLS to NATS [serve's --cert/--key/--ca
                            for tls:// URLs]`;

/** serve's `--publish` flags (parseArgs config). */
export const PUBLISH_FLAGS = NATS_PUBLISH_FLAGS;

/** Options for {@linkcode JournalPublisher}. */
export interface JournalPublisherOptions {
  /** Where the publish point is kept (`{epoch, next}`); without it, start at the oldest message. */
  stateFile?: string;
  /** How often a moved publish point is saved, ms. @default {1000} */
  saveEveryMs?: number;
  /** Registers `reclog_publish_*` metrics. */
  metrics?: Metrics;
  /** Retry delays after a failed write. @default {{ minMs: 200, maxMs: 5000 }} */
  backoff?: BackoffOptions;
  /** Stops the loop (then {@linkcode JournalPublisher.close} saves the publish point). */
  signal?: AbortSignal;
}

interface State {
  epoch: string;
  next: number;
}

async function readState(path: string): Promise<State | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw new Error(`publish state file ${path}: ${errorMessage(error)}`);
  }
  try {
    const state = JSON.parse(text) as State;
    if (typeof state.epoch === "string" && Number.isSafeInteger(state.next)) return state;
  } catch { /* a torn or foreign file: start over */ }
  log("publish").warn("publish state file {path} unreadable: starting at the oldest message", {
    path,
  });
  return undefined;
}

/**
 * Publishes a journal to a sink, acknowledged, resuming across restarts.
 *
 * @example Publish a journal to JetStream
 * ```ts ignore
 * import { Journal } from "../journal/journal.ts";
 * import type { JetStreamSink } from "./nats.ts";
 * import { JournalPublisher } from "./journal_publisher.ts";
 * const journal = new Journal();
 * const sink = new JetStreamSink({ servers: ["nats://127.0.0.1:4222"], stream: "LOGS", epoch: journal.epoch });
 * await using publisher = await JournalPublisher.start(journal, sink);
 * console.log(publisher.next); // 1
 * ```
 */
export class JournalPublisher implements AsyncDisposable {
  #journal: Journal;
  #sink: Sink;
  #options: JournalPublisherOptions;
  #next: number;
  #saved: number;
  #abort = new AbortController();
  #wake: (() => void) | undefined;
  #unsubscribe: () => void;
  #timer: ReturnType<typeof setInterval> | undefined;
  #loop: Promise<void> = Promise.resolve();
  #saving: Promise<void> = Promise.resolve();
  #closed: Promise<void> | undefined;
  #up = false;
  #published: Counter | undefined;
  #lost: Counter | undefined;

  private constructor(
    journal: Journal,
    sink: Sink,
    next: number,
    options: JournalPublisherOptions,
  ) {
    this.#journal = journal;
    this.#sink = sink;
    this.#options = options;
    this.#next = this.#saved = next;
    this.#unsubscribe = journal.onAppend(() => this.#wake?.());
    const m = options.metrics;
    if (m) {
      const labels = { sink: sink.description ?? "publish" };
      this.#published = m.counter("reclog_publish_messages_total", "Messages published", labels);
      this.#lost = m.counter(
        "reclog_publish_lost_total",
        "Messages the journal dropped before they were published",
        labels,
      );
      m.gauge("reclog_publish_up", "1 while the last publish succeeded", labels, () => +this.#up);
      m.gauge(
        "reclog_publish_next_seq",
        "First message not yet published",
        labels,
        () => this.#next,
      );
    }
  }

  /** Reads the state file and starts publishing. */
  static async start(
    journal: Journal,
    sink: Sink,
    options: JournalPublisherOptions = {},
  ): Promise<JournalPublisher> {
    const state = options.stateFile ? await readState(options.stateFile) : undefined;
    const next = state?.epoch === journal.epoch ? state.next : journal.firstSeq;
    const publisher = new JournalPublisher(journal, sink, next, options);
    options.signal?.addEventListener("abort", () => publisher.#stop(), { once: true });
    if (options.stateFile) {
      publisher.#timer = setInterval(() => publisher.#save(), options.saveEveryMs ?? 1000);
      Deno.unrefTimer(publisher.#timer);
    }
    publisher.#loop = publisher.#run();
    return publisher;
  }

  /** The first sequence number not yet acknowledged. */
  get next(): number {
    return this.#next;
  }

  #stop(): void {
    this.#abort.abort();
    this.#wake?.();
  }

  #save(): Promise<void> {
    const path = this.#options.stateFile;
    if (!path || this.#next === this.#saved) return this.#saving;
    this.#saving = this.#saving.then(async () => {
      const next = this.#next;
      if (next === this.#saved) return;
      try {
        await writeFileAtomic(path, JSON.stringify({ epoch: this.#journal.epoch, next }) + "\n");
        this.#saved = next;
      } catch (error) {
        log("publish").warn("cannot write publish state file {path}: {reason}", {
          path,
          reason: errorMessage(error),
        });
      }
    });
    return this.#saving;
  }

  async #run(): Promise<void> {
    const signal = this.#abort.signal;
    const journal = this.#journal;
    const backoff = new Backoff(this.#options.backoff ?? { minMs: 200, maxMs: 5000 });
    let cursor = journal.cursor(this.#next);
    let failing = false;
    while (!signal.aborted) {
      const read = cursor.read();
      if (!read) {
        await new Promise<void>((resolve) => this.#wake = resolve);
        this.#wake = undefined;
        continue;
      }
      if (read.kind === "lost") {
        log("publish").warn(
          "messages {from}..{to} ({count}) were dropped before they were published{why}",
          { ...read, why: read.reason ? ` (${read.reason})` : " (journal full)" },
        );
        this.#lost?.inc(read.count);
        this.#next = cursor.seq;
        continue;
      }
      const batch = new FrameBatch(read.bytes);
      journal.pin(read.segment);
      try {
        if (batch.count > 0) await this.#sink.write(batch);
        this.#next = read.endSeq;
        this.#published?.inc(batch.count);
        this.#up = true;
        if (failing) {
          log("publish").info("publishing to {sink} again", { sink: this.#sink.description });
        }
        failing = false;
        backoff.reset();
      } catch (error) {
        const taken = error instanceof SinkError ? Math.min(error.taken, batch.count) : 0;
        this.#published?.inc(taken);
        this.#next = taken === 0
          ? read.firstSeq
          : taken < batch.count
          ? batch.seq(taken)
          : read.endSeq;
        this.#up = false;
        if (!failing && !signal.aborted) {
          log("publish").warn("publishing to {sink} failed ({reason}); retrying from {seq}", {
            sink: this.#sink.description,
            reason: errorMessage(error),
            seq: this.#next,
          });
        }
        failing = true;
        cursor = journal.cursor(this.#next);
        await backoff.wait(signal);
      } finally {
        journal.unpin(read.segment);
      }
    }
  }

  /** Stops the loop and saves the publish point; safe twice. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#stop();
      clearInterval(this.#timer);
      this.#unsubscribe();
      await this.#loop.catch((error) =>
        log("publish").error("publisher stopped: {reason}", { reason: errorMessage(error) })
      );
      await this.#save();
    })();
    return this.#closed;
  }

  /** Same as {@linkcode JournalPublisher.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** What {@linkcode startPublishing} needs from serve. */
export interface StartPublishingOptions {
  /** serve's --spool (the state file goes there). */
  spoolDir?: string;
  /** serve's --cert/--key/--ca, for tls:// URLs without --nats-* TLS flags. */
  serveTls?: { cert: string; key: string; ca: string };
  /** serve's metrics. */
  metrics?: Metrics;
  /** serve's shutdown. */
  signal?: AbortSignal;
}

/**
 * serve's `--publish` wiring: undefined without it, else the sink (closed
 * with the publisher) and the running publisher.
 *
 * @example Wire serve's flags
 * ```ts ignore
 * import { Journal } from "../journal/journal.ts";
 * import { startPublishing } from "./journal_publisher.ts";
 * const journal = new Journal();
 * const p = await startPublishing({ publish: ["nats://127.0.0.1:4222"], "nats-stream": "LOGS" }, journal);
 * await p?.close();
 * ```
 */
export async function startPublishing(
  values: Parameters<typeof natsPublishOptions>[0],
  journal: Journal,
  options: StartPublishingOptions = {},
): Promise<(AsyncDisposable & { close(): Promise<void>; description: string }) | undefined> {
  const tlsUrl = (values.publish ?? []).some((url) => url.startsWith("tls://"));
  const o = natsPublishOptions(values, tlsUrl ? options.serveTls : undefined);
  if (!o) return undefined;
  // The NATS client loads only with --publish (memory, and nothing to cache otherwise).
  const { JetStreamSink } = await import("./nats.ts");
  const sink = new JetStreamSink({ ...o, epoch: journal.epoch, signal: options.signal });
  const publisher = await JournalPublisher.start(journal, sink, {
    stateFile: options.spoolDir ? `${options.spoolDir}/nats-publish.json` : undefined,
    metrics: options.metrics,
    signal: options.signal,
  });
  const close = async () => {
    await sink.close();
    await publisher.close();
  };
  return { description: sink.description, close, [Symbol.asyncDispose]: close };
}
