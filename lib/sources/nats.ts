/**
 * NATS JetStream input: pull's `--from nats://HOST:PORT --nats-stream NAME
 * --durable NAME`.
 *
 * A durable pull consumer is the reader's resume point, kept by JetStream
 * (replicated with the stream): the source creates it when missing
 * (explicit acks, from the first message, `filter` as its subject filter) and
 * otherwise uses it as it is. Messages are handed to `onBatch` as a
 * {@linkcode JetStreamBatch} whose `stream()`, `seq()` and `time()` come from
 * the headers {@linkcode ../sinks/nats.ts} wrote, so a sink sees what it
 * would see from serve directly. Each message is acknowledged only after
 * `onBatch`'s promise resolved, and the acks are flushed to the server before
 * the next batch is handed on; when the promise rejects, the batch is
 * negatively acknowledged and comes again after `retryDelayMs`.
 *
 * Several sources on one durable share the work (each message goes to one
 * of them; order holds within what each gets, not across them); sources on
 * different durables each get everything.
 *
 * Duplicates: when the process dies, what it was handed and had not yet
 * acknowledged comes again, to it or another source on the durable: at most
 * one batch (`batchSize` messages) that `onBatch` took and whose acks had not
 * reached the server. Nothing is lost: unacknowledged messages (up to 8
 * batches are pulled ahead) are delivered again after the consumer's
 * `ack_wait`, so after a crash those come up to `ack_wait` late, after newer
 * ones. A consumer created here allows 32 batches unacknowledged in all
 * (`max_ack_pending`), shared by the sources on the durable.
 *
 * @module
 */

import {
  AckPolicy,
  type Consumer,
  type ConsumerMessages,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  type JsMsg,
} from "@nats-io/jetstream";
import type { BatchHandler, MessageBatch, Source } from "../batch.ts";
import {
  connectNats,
  followConnected,
  NATS_HEADERS,
  type NatsConnection,
  type NatsTls,
} from "../transport/nats_connect.ts";
import { errorMessage } from "../util/errors.ts";
import { log } from "../util/log.ts";

const logger = log("nats");

export type { BatchHandler, MessageBatch, Source } from "../batch.ts";
export type { NatsTls } from "../transport/nats_connect.ts";

/** Options for {@linkcode JetStreamSource}. */
export interface JetStreamSourceOptions {
  /** Server URLs of one cluster (`nats://HOST:PORT`). */
  servers: string[];
  /** The JetStream stream (`--nats-stream`). */
  stream: string;
  /** The durable consumer's name (`--durable`): letters, digits, `-`, `_`. */
  durable: string;
  /** Subject filter of a consumer created here (`--nats-filter`), e.g. `reclog.web1.>`. */
  filter?: string;
  /** TLS to NATS (PEM texts or paths). */
  tls?: NatsTls;
  /** Gets each batch; its promise resolving acknowledges the batch. */
  onBatch: BatchHandler;
  /** Most messages a batch. @default {256} */
  batchSize?: number;
  /**
   * The consumer's `ack_wait` when created here, ms: how long before a
   * message handed on and not acknowledged is delivered again (the source
   * tells the server it is still working while `onBatch` runs).
   * @default {30000}
   */
  ackWaitMs?: number;
  /** Delay before a batch whose `onBatch` rejected comes again, ms. @default {1000} */
  retryDelayMs?: number;
  /** Stops the source (as {@linkcode JetStreamSource.close}). */
  signal?: AbortSignal;
}

/**
 * A batch of JetStream messages, with reclog's headers read back.
 *
 * @example Read a batch
 * ```ts
 * import type { JetStreamBatch } from "./nats.ts";
 * function first(batch: JetStreamBatch): string {
 *   return `${batch.host(0)} ${batch.stream(0)} #${batch.seq(0)}`;
 * }
 * ```
 */
export class JetStreamBatch implements MessageBatch {
  #msgs: JsMsg[];

  /** Wraps the messages of one fetch. */
  constructor(msgs: JsMsg[]) {
    this.#msgs = msgs;
  }

  /** Number of messages. */
  get count(): number {
    return this.#msgs.length;
  }

  #header(i: number, name: string): string | undefined {
    const value = this.#msgs[i]!.headers?.get(name);
    return value === undefined || value === "" ? undefined : value;
  }

  /** The message bytes. */
  message(i: number): Uint8Array {
    return this.#msgs[i]!.data;
  }

  /** The reclog stream (`Reclog-Stream`; `syslog` when absent). */
  stream(i: number): string {
    return this.#header(i, NATS_HEADERS.stream) ?? "syslog";
  }

  /** The journal sequence number (`Reclog-Seq`; else the JetStream sequence). */
  seq(i: number): number {
    const value = this.#header(i, NATS_HEADERS.seq);
    return value === undefined ? this.#msgs[i]!.seq : Number(value);
  }

  /** Receive time, ms (`Reclog-Time`; else when JetStream stored it). */
  time(i: number): number {
    const value = this.#header(i, NATS_HEADERS.time);
    return value === undefined ? this.#msgs[i]!.time.getTime() : Number(value);
  }

  /** The origin host (`Reclog-Host`; empty when absent). */
  host(i: number): string {
    return this.#header(i, NATS_HEADERS.host) ?? "";
  }

  /** The journal epoch (`Reclog-Epoch`; empty when absent). */
  epoch(i: number): string {
    return this.#header(i, NATS_HEADERS.epoch) ?? "";
  }

  /** The JetStream stream sequence of message `i`. */
  streamSeq(i: number): number {
    return this.#msgs[i]!.seq;
  }

  /** Whether message `i` was delivered before (a possible duplicate). */
  redelivered(i: number): boolean {
    return this.#msgs[i]!.redelivered;
  }
}

const TICK = Symbol("tick");

/**
 * Reads a durable JetStream consumer and hands on batches, acknowledged
 * after the handler took them.
 *
 * @example Print what a durable gets
 * ```ts ignore
 * import { JetStreamSource } from "./nats.ts";
 * const decoder = new TextDecoder();
 * await using source = new JetStreamSource({
 *   servers: ["nats://127.0.0.1:4222"],
 *   stream: "LOGS",
 *   durable: "home",
 *   onBatch: (batch) => {
 *     for (let i = 0; i < batch.count; i++) console.log(decoder.decode(batch.message(i)));
 *   },
 * });
 * await source.listen();
 * ```
 */
export class JetStreamSource implements Source {
  /** `nats://HOST:PORT,... stream NAME durable NAME`. */
  readonly description: string;
  #options: JetStreamSourceOptions;
  #nc: NatsConnection | undefined;
  #messages: ConsumerMessages | undefined;
  #loop: Promise<void> | undefined;
  #closed: Promise<void> | undefined;
  #stopping = false;
  #handed = 0;
  #connected: () => boolean = () => false;

  /** Makes the source; nothing connects before {@linkcode JetStreamSource.listen}. */
  constructor(options: JetStreamSourceOptions) {
    if (!/^[A-Za-z0-9_-]+$/.test(options.durable)) {
      throw new Error(`--durable ${options.durable}: use letters, digits, - and _ only`);
    }
    this.#options = options;
    this.description = `${
      options.servers.join(",")
    } stream ${options.stream} durable ${options.durable}`;
    options.signal?.addEventListener("abort", () => void this.close(), { once: true });
  }

  /** Whether the connection to NATS is up (for status files and `/healthz`). */
  get connected(): boolean {
    return this.#connected();
  }

  /** Messages handed on and acknowledged so far. */
  get handed(): number {
    return this.#handed;
  }

  /** Connects, finds or creates the durable and starts reading; resolves once reading. */
  async listen(): Promise<undefined> {
    if (this.#nc || this.#closed) throw new Error(`${this.description}: listen called twice`);
    const o = this.#options;
    const nc = await connectNats({
      servers: o.servers,
      name: `reclog pull ${o.durable}`,
      ...(o.tls ? { tls: o.tls } : {}),
    });
    this.#nc = nc;
    this.#connected = followConnected(nc);
    try {
      const consumer = await this.#consumer(nc);
      const size = Math.max(1, o.batchSize ?? 256);
      this.#messages = await consumer.consume({ max_messages: size * 8 });
    } catch (error) {
      await nc.close();
      throw new Error(`${this.description}: ${errorMessage(error)}`);
    }
    this.#loop = this.#run(this.#messages).catch((error) => {
      if (!this.#stopping) {
        logger.error("{source}: {error}", { source: this.description, error: errorMessage(error) });
      }
    });
    return undefined;
  }

  async #consumer(nc: NatsConnection): Promise<Consumer> {
    const o = this.#options;
    const jsm = await jetstreamManager(nc);
    try {
      await jsm.consumers.info(o.stream, o.durable);
    } catch (error) {
      if (!/not found/i.test(errorMessage(error))) throw error;
      await jsm.consumers.add(o.stream, {
        durable_name: o.durable,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        ack_wait: (o.ackWaitMs ?? 30_000) * 1e6,
        max_ack_pending: Math.max(8192, (o.batchSize ?? 256) * 32),
        ...(o.filter ? { filter_subject: o.filter } : {}),
      });
    }
    return await jetstream(nc).consumers.get(o.stream, o.durable);
  }

  async #run(messages: ConsumerMessages): Promise<void> {
    const size = Math.max(1, this.#options.batchSize ?? 256);
    const iterator = messages[Symbol.asyncIterator]();
    let next = iterator.next();
    while (!this.#stopping) {
      const first = await next;
      if (first.done || this.#stopping) return;
      const msgs: JsMsg[] = [first.value];
      next = iterator.next();
      // Take what is already buffered, without waiting for more.
      while (msgs.length < size) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const tick = new Promise<typeof TICK>((resolve) =>
          timer = setTimeout(() => resolve(TICK), 0)
        );
        const r = await Promise.race([next, tick]).finally(() => clearTimeout(timer));
        if (r === TICK || r.done) break;
        msgs.push(r.value);
        next = iterator.next();
      }
      await this.#hand(msgs);
    }
  }

  async #hand(msgs: JsMsg[]): Promise<void> {
    const o = this.#options;
    const keepAlive = setInterval(() => {
      for (const m of msgs) m.working();
    }, Math.max(500, (o.ackWaitMs ?? 30_000) / 3));
    try {
      await o.onBatch(new JetStreamBatch(msgs));
    } catch (error) {
      logger.warning("{source}: batch not taken, again in {delay} ms: {error}", {
        source: this.description,
        delay: o.retryDelayMs ?? 1000,
        error: errorMessage(error),
      });
      for (const m of msgs) m.nak(o.retryDelayMs ?? 1000);
      return;
    } finally {
      clearInterval(keepAlive);
    }
    for (const m of msgs) m.ack();
    this.#handed += msgs.length;
    await this.#nc?.flush().catch(() => {});
  }

  /** Stops reading (after the batch being handed on), flushes the acks and closes; safe twice. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#stopping = true;
      this.#messages?.stop();
      await this.#loop;
      const nc = this.#nc;
      if (nc && !nc.isClosed()) {
        await nc.flush().catch(() => {});
        await nc.close();
      }
    })();
    return this.#closed;
  }

  /** Same as {@linkcode JetStreamSource.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
