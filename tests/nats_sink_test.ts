// JetStreamSink and JetStreamSource against a real nats-server (started here
// on free loopback ports): two durables each get everything in order; a
// SIGKILLed and restarted server (file storage) loses nothing and stores
// nothing twice (message-id de-duplication when the sink retries from taken).
import nodeAssert from "node:assert/strict";
import { jetstreamManager } from "@nats-io/jetstream";
import type { MessageBatch } from "../lib/batch.ts";
import { SinkError } from "../lib/batch.ts";
import { JetStreamSink } from "../lib/sinks/nats.ts";
import { type JetStreamBatch, JetStreamSource } from "../lib/sources/nats.ts";
import { connectNats } from "../lib/transport/nats_connect.ts";
import { NatsServer } from "../lib/transport/nats_server.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Messages `from..to-1` as a journal would hand them on. */
export class SeqBatch implements MessageBatch {
  constructor(readonly from: number, readonly to: number) {}
  get count(): number {
    return this.to - this.from;
  }
  message(i: number): Uint8Array {
    return encoder.encode(`<13>message ${this.from + i}`);
  }
  stream(i: number): string {
    return (this.from + i) % 2 === 0 ? "syslog" : "file:/var/log/app.log";
  }
  seq(i: number): number {
    return this.from + i;
  }
  time(i: number): number {
    return 1_700_000_000_000 + this.from + i;
  }
}

/** Publishes 0..total-1 in batches like serve's journal would: on SinkError, again from taken. */
export async function publishAll(
  sink: JetStreamSink,
  total: number,
  batchSize: number,
  onProgress?: (acked: number) => Promise<void> | void,
  deadlineMs = 90_000,
): Promise<{ retries: number }> {
  const deadline = Date.now() + deadlineMs;
  let acked = 0;
  let retries = 0;
  while (acked < total) {
    nodeAssert.ok(Date.now() < deadline, `publishing stuck at ${acked} of ${total}`);
    const batch = new SeqBatch(acked, Math.min(total, acked + batchSize));
    try {
      await sink.write(batch);
      acked = batch.to;
    } catch (error) {
      nodeAssert.ok(error instanceof SinkError, String(error));
      acked += error.taken;
      retries++;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await onProgress?.(acked);
  }
  return { retries };
}

/** What a source handed on: one entry a message. */
export interface Received {
  seq: number;
  text: string;
  stream: string;
  time: number;
  host: string;
}

export function collect(into: Received[]): (batch: MessageBatch) => void {
  return (b) => {
    const batch = b as JetStreamBatch;
    for (let i = 0; i < batch.count; i++) {
      into.push({
        seq: batch.seq(i),
        text: decoder.decode(batch.message(i)),
        stream: batch.stream(i),
        time: batch.time(i),
        host: batch.host(i),
      });
    }
  };
}

export async function waitFor(what: string, ok: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export async function streamMessages(servers: string[], stream: string): Promise<number> {
  const nc = await connectNats({ servers });
  try {
    const jsm = await jetstreamManager(nc);
    return (await jsm.streams.info(stream)).state.messages;
  } finally {
    await nc.close();
  }
}

function expected(total: number): Received[] {
  const b = new SeqBatch(0, total);
  return Array.from({ length: total }, (_, i) => ({
    seq: i,
    text: `<13>message ${i}`,
    stream: b.stream(i),
    time: b.time(i),
    host: "web1",
  }));
}

Deno.test({
  name: "JetStream: sink -> stream -> two durables: every message once per durable, in order",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "reclog_nats_" });
    await using server = await NatsServer.start({ dir });
    const servers = [server.url];
    await using sink = new JetStreamSink({
      servers,
      stream: "LOGS",
      host: "web1",
      epoch: 7,
      createStream: {},
    });
    const total = 5000;
    await publishAll(sink, total, 500);
    nodeAssert.deepStrictEqual(
      sink.subjectFor("file:/var/log/app.log"),
      "reclog.web1.file__var_log_app_log",
    );
    const a: Received[] = [];
    const b: Received[] = [];
    await using sa = new JetStreamSource({
      servers,
      stream: "LOGS",
      durable: "a",
      onBatch: collect(a),
    });
    await using sb = new JetStreamSource({
      servers,
      stream: "LOGS",
      durable: "b",
      onBatch: collect(b),
    });
    await sa.listen();
    await sb.listen();
    await waitFor("both durables", () => a.length >= total && b.length >= total);
    await sa.close();
    await sb.close();
    nodeAssert.deepStrictEqual(a, expected(total));
    nodeAssert.deepStrictEqual(b, expected(total));
    // Publishing the same journal range again stores nothing new (message ids).
    await publishAll(sink, 1000, 500);
    nodeAssert.deepStrictEqual(await streamMessages(servers, "LOGS"), total);
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test({
  name: "JetStream: a missing stream is an error naming it unless createStream",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "reclog_nats_" });
    await using server = await NatsServer.start({ dir });
    await using sink = new JetStreamSink({ servers: [server.url], stream: "NOPE" });
    const error = await sink.write(new SeqBatch(0, 1)).catch((e) => e);
    nodeAssert.ok(error instanceof SinkError);
    nodeAssert.deepStrictEqual(error.taken, 0);
    nodeAssert.ok(/NOPE does not exist/.test(error.message), error.message);
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test({
  name:
    "JetStream: nats-server SIGKILLed and restarted mid-flow: nothing lost, nothing stored twice",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "reclog_nats_" });
    await using server = await NatsServer.start({ dir });
    const servers = [server.url];
    await using sink = new JetStreamSink({
      servers,
      stream: "LOGS",
      host: "web1",
      createStream: {},
      timeoutMs: 1000,
    });
    const got: Received[] = [];
    const total = 20_000;
    // The source reads during the whole flow, outage included.
    await sink.write(new SeqBatch(0, 1));
    await using source = new JetStreamSource({
      servers,
      stream: "LOGS",
      durable: "home",
      onBatch: collect(got),
    });
    await source.listen();
    let killed = false;
    const { retries } = await publishAll(sink, total, 200, async (acked) => {
      if (!killed && acked >= total / 4) {
        killed = true;
        await server.kill();
        await server.restart();
      }
    });
    nodeAssert.ok(killed);
    console.log(`retries after the restart: ${retries}`);
    nodeAssert.deepStrictEqual(await streamMessages(servers, "LOGS"), total);
    await waitFor(
      "the durable to get everything",
      () => new Set(got.map((r) => r.seq)).size >= total,
    );
    await source.close();
    const seqs = new Set(got.map((r) => r.seq));
    nodeAssert.deepStrictEqual(seqs.size, total);
    console.log(`durable got ${got.length} for ${total} (redelivered ${got.length - total})`);
    await Deno.remove(dir, { recursive: true });
  },
});
