// JetStreamSink and JetStreamSource against a real nats-server (started here
// on free loopback ports): two durables each get everything in order; a
// SIGKILLed and restarted server (file storage) loses nothing and stores
// nothing twice (message-id de-duplication when the sink retries from taken).
import nodeAssert from "node:assert/strict";
import { SinkError } from "../lib/batch.ts";
import { JetStreamSink } from "../lib/sinks/nats.ts";
import { JetStreamSource } from "../lib/sources/nats.ts";
import { NatsServer } from "../lib/transport/nats_server.ts";
import {
  collect,
  publishAll,
  type Received,
  SeqBatch,
  streamMessages,
  waitFor,
} from "./nats_helpers_test.ts";

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
    await waitFor("the connections to come back", () => sink.connected && source.connected);
    await source.close();
    nodeAssert.ok(!source.connected);
    const seqs = new Set(got.map((r) => r.seq));
    nodeAssert.deepStrictEqual(seqs.size, total);
    console.log(`durable got ${got.length} for ${total} (redelivered ${got.length - total})`);
    await Deno.remove(dir, { recursive: true });
  },
});
