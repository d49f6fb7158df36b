/**
 * NATS JetStream output: serve's `--publish nats://HOST:PORT`.
 *
 * Every message is published to JetStream with `Nats-Msg-Id` =
 * `EPOCH:SEQ` (the journal's epoch and sequence number) and headers carrying
 * what the wire protocol carries: `Reclog-Stream`, `Reclog-Seq`,
 * `Reclog-Epoch`, `Reclog-Time` (receive time, ms) and `Reclog-Host` (origin
 * host). {@linkcode JetStreamSink.write} publishes the whole batch pipelined
 * (up to `window` publishes awaiting their acknowledgement) and resolves when
 * JetStream acknowledged (stored, replicated as the stream says) every one.
 * Otherwise it rejects with a {@linkcode SinkError} whose `taken` is the
 * acknowledged prefix; the caller keeps the rest in its journal and writes it
 * again (from `taken`) after a back-off. Messages after `taken` may have been
 * stored already: JetStream drops the repeats by their `Nats-Msg-Id`, as
 * long as the retry comes within the stream's `duplicate_window`, so the
 * stream holds each message once.
 *
 * The stream: by default it must exist (an operator's decision: subjects,
 * replicas, limits), and the first write fails with a one-line error naming it
 * otherwise. With `createStream` the sink creates it when missing (file
 * storage, the limits given, subjects `reclog.>` or the template's
 * wildcard); an existing stream is never changed.
 *
 * The connection reconnects on its own; a write while disconnected rejects
 * after `timeoutMs` (nothing taken) and the next write tries again.
 *
 * @module
 */

import { headers } from "@nats-io/transport-node";
import { DiscardPolicy, jetstreamManager, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import { ALL_TAKEN, SinkError } from "../batch.ts";
import type { MessageBatch, Refusal, Sink, WriteReport } from "../batch.ts";
import { connectNats, followConnected, NATS_HEADERS } from "../transport/nats_connect.ts";
import type { NatsConnection, NatsTls } from "../transport/nats_connect.ts";
import { type JetStreamAck, JetStreamPublisher } from "../transport/nats_publisher.ts";
import { errorMessage } from "../util/errors.ts";

export type { MessageBatch, Refusal, Sink, WriteReport } from "../batch.ts";
export { SinkError } from "../batch.ts";
export type { NatsTls } from "../transport/nats_connect.ts";

/** The default subject template. */
export const DEFAULT_NATS_SUBJECT = "reclog.{host}.{stream}";

/** Limits of a stream {@linkcode JetStreamSink} creates when missing. */
export interface CreateStreamOptions {
  /** Subjects of the stream. @default {the template with `*` for each placeholder} */
  subjects?: string[];
  /** Replicas (1, 3 or 5 in a cluster). @default {1} */
  replicas?: number;
  /** Oldest message kept, ms (0: no limit). @default {0} */
  maxAgeMs?: number;
  /** Most bytes kept (-1: no limit); the oldest go first. @default {-1} */
  maxBytes?: number;
  /** Most messages kept (-1: no limit). @default {-1} */
  maxMessages?: number;
  /**
   * How long JetStream remembers message ids, ms: the longest outage or
   * restart after which a retry still publishes nothing twice.
   * @default {600000}
   */
  duplicateWindowMs?: number;
}

/** Options for {@linkcode JetStreamSink}. */
export interface JetStreamSinkOptions {
  /** Server URLs of one cluster (`nats://HOST:PORT`). */
  servers: string[];
  /** The JetStream stream (`--nats-stream`). */
  stream: string;
  /**
   * Subject template: `{host}` and `{stream}` are replaced by the origin host
   * and the message's reclog stream, each made a subject token (characters
   * other than letters, digits, `-` and `_` become `_`).
   * @default {"reclog.{host}.{stream}"}
   */
  subject?: string;
  /** The origin host. @default {Deno.hostname()} */
  host?: string;
  /** The journal epoch in message ids; see {@linkcode JetStreamSink.begin}. @default {0} */
  epoch?: number | string;
  /** TLS to NATS (PEM texts or paths). */
  tls?: NatsTls;
  /** Create the stream when missing, with these limits; without it the stream must exist. */
  createStream?: CreateStreamOptions;
  /**
   * Most publishes awaiting their acknowledgement (also the bound on what a
   * retry sends again that may already be stored).
   * @default {1024}
   */
  window?: number;
  /** Bound on connecting and on each acknowledgement, ms. @default {5000} */
  timeoutMs?: number;
  /** Aborts the sink: later writes reject, the connection closes. */
  signal?: AbortSignal;
}

function token(text: string): string {
  const t = text.replace(/[^A-Za-z0-9_-]/g, "_");
  return t === "" ? "_" : t;
}

/**
 * Publishes batches to a JetStream stream, acknowledged.
 *
 * @example Publish a journal's batch
 * ```ts ignore
 * import { JetStreamSink } from "./nats.ts";
 * await using sink = new JetStreamSink({ servers: ["nats://127.0.0.1:4222"], stream: "LOGS" });
 * sink.begin(1733140000);
 * // await sink.write(batch); // batch with seq(i), stream(i), time(i)
 * ```
 */
export class JetStreamSink implements Sink {
  /** `nats://HOST:PORT,... stream NAME`. */
  readonly description: string;
  #options: JetStreamSinkOptions;
  #host: string;
  #epoch: string;
  #template: string;
  #subjects = new Map<string, string>();
  #conn: Promise<{ nc: NatsConnection; js: JetStreamPublisher }> | undefined;
  #closed: Promise<void> | undefined;
  #abort = new AbortController();
  #published = 0;
  #connected: () => boolean = () => false;

  /** Makes the sink; nothing connects before the first write. */
  constructor(options: JetStreamSinkOptions) {
    this.#options = options;
    this.#host = options.host ?? Deno.hostname();
    this.#epoch = String(options.epoch ?? 0);
    this.#template = options.subject ?? DEFAULT_NATS_SUBJECT;
    this.description = `${options.servers.join(",")} stream ${options.stream}`;
    options.signal?.addEventListener("abort", () => void this.close(), { once: true });
  }

  /** Sets the journal epoch of the message ids of later writes. */
  begin(epoch: number | string): void {
    this.#epoch = String(epoch);
  }

  /** Whether the connection to NATS is up (false before the first write). */
  get connected(): boolean {
    return this.#connected();
  }

  /** Messages acknowledged by JetStream so far (repeats it dropped included). */
  get published(): number {
    return this.#published;
  }

  /** The subject of a message of reclog stream `stream`. */
  subjectFor(stream: string): string {
    let subject = this.#subjects.get(stream);
    if (subject === undefined) {
      subject = this.#template.replaceAll("{host}", token(this.#host))
        .replaceAll("{stream}", token(stream));
      this.#subjects.set(stream, subject);
    }
    return subject;
  }

  #connect(): Promise<{ nc: NatsConnection; js: JetStreamPublisher }> {
    this.#conn ??= (async () => {
      const nc = await connectNats({
        servers: this.#options.servers,
        name: `reclog serve ${this.#host}`,
        timeoutMs: this.#options.timeoutMs ?? 5000,
        ...(this.#options.tls ? { tls: this.#options.tls } : {}),
      });
      this.#connected = followConnected(nc);
      try {
        await this.#ensureStream(nc);
      } catch (error) {
        await nc.close();
        throw error;
      }
      return { nc, js: new JetStreamPublisher(nc, { timeoutMs: this.#options.timeoutMs ?? 5000 }) };
    })();
    this.#conn.catch(() => this.#conn = undefined);
    return this.#conn;
  }

  async #ensureStream(nc: NatsConnection): Promise<void> {
    const jsm = await jetstreamManager(nc, { timeout: this.#options.timeoutMs ?? 5000 });
    const name = this.#options.stream;
    try {
      await jsm.streams.info(name);
      return;
    } catch (error) {
      if (!/not found/i.test(errorMessage(error))) throw error;
    }
    const create = this.#options.createStream;
    if (!create) {
      throw new Error(
        `NATS stream ${name} does not exist (--nats-stream; create it or pass --nats-create)`,
      );
    }
    const wildcard = this.#template.replaceAll("{host}", "*").replaceAll("{stream}", "*");
    await jsm.streams.add({
      name,
      subjects: create.subjects ?? [wildcard],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      num_replicas: create.replicas ?? 1,
      max_age: (create.maxAgeMs ?? 0) * 1e6,
      max_bytes: create.maxBytes ?? -1,
      max_msgs: create.maxMessages ?? -1,
      duplicate_window: (create.duplicateWindowMs ?? 600_000) * 1e6,
    });
  }

  /** Publishes the batch; resolves when JetStream acknowledged all of it. */
  async write(batch: MessageBatch): Promise<WriteReport> {
    if (this.#closed || this.#abort.signal.aborted) {
      throw new SinkError(`${this.description}: sink closed`, 0);
    }
    let conn;
    try {
      conn = await this.#connect();
    } catch (error) {
      throw new SinkError(errorMessage(error), 0, { cause: error });
    }
    const { nc, js } = conn;
    if (nc.isClosed()) {
      // Closed for good (not a reconnect): the next write connects anew.
      js.close();
      this.#conn = undefined;
      throw new SinkError(`${this.description}: connection closed`, 0);
    }
    const maxPayload = nc.info?.max_payload ?? 1024 * 1024;
    const window = Math.max(1, this.#options.window ?? 1024);
    const refused: Refusal[] = [];
    for (let start = 0; start < batch.count; start += window) {
      const end = Math.min(batch.count, start + window);
      const acks: (Promise<JetStreamAck> | undefined)[] = [];
      for (let i = start; i < end; i++) acks.push(this.#publish(js, batch, i, maxPayload, refused));
      const results = await Promise.allSettled(acks);
      for (let k = 0; k < results.length; k++) {
        const r = results[k]!;
        if (r.status === "rejected") {
          throw new SinkError(`${this.description}: ${errorMessage(r.reason)}`, start + k, {
            cause: r.reason,
          });
        }
        if (r.value && r.value.stream !== this.#options.stream) {
          throw new SinkError(
            `${this.description}: subject stored by stream ${r.value.stream} instead (--nats-subject)`,
            start + k,
          );
        }
        if (r.value) this.#published++;
      }
    }
    return refused.length === 0 ? ALL_TAKEN : { refused };
  }

  #publish(
    js: JetStreamPublisher,
    batch: MessageBatch,
    i: number,
    maxPayload: number,
    refused: Refusal[],
  ): Promise<JetStreamAck> | undefined {
    const data = batch.message(i);
    if (data.length > maxPayload - 512) {
      refused.push({ index: i, reason: `too large for NATS (${data.length} bytes)` });
      return undefined;
    }
    const stream = batch.stream?.(i) ?? "syslog";
    const h = headers();
    h.set(NATS_HEADERS.stream, stream);
    h.set(NATS_HEADERS.host, this.#host);
    h.set(NATS_HEADERS.epoch, this.#epoch);
    const time = batch.time?.(i);
    if (time !== undefined) h.set(NATS_HEADERS.time, String(time));
    const seq = batch.seq?.(i);
    if (seq !== undefined) {
      h.set(NATS_HEADERS.seq, String(seq));
      h.set(NATS_HEADERS.msgId, `${this.#epoch}:${seq}`);
    }
    return js.publish(this.subjectFor(stream), data, h);
  }

  /** Closes the connection (after what was published went out); safe twice. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#abort.abort();
      const conn = await this.#conn?.catch(() => undefined);
      conn?.js.close();
      if (conn && !conn.nc.isClosed()) await conn.nc.close();
    })();
    return this.#closed;
  }

  /** Same as {@linkcode JetStreamSink.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
