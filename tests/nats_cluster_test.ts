// A three-node nats-server cluster on loopback with an R3 stream: the stream
// leader SIGKILLed mid-flow loses nothing (the sink retries from taken, the
// message ids keep the stream free of repeats), and a durable reading through
// the outage gets every message.
import nodeAssert from "node:assert/strict";
import { jetstreamManager } from "@nats-io/jetstream";
import { JetStreamSink } from "../lib/sinks/nats.ts";
import { JetStreamSource } from "../lib/sources/nats.ts";
import { connectNats } from "../lib/transport/nats_connect.ts";
import { startNatsCluster } from "../lib/transport/nats_server.ts";
import {
  collect,
  publishAll,
  type Received,
  streamMessages,
  waitFor,
} from "./nats_helpers_test.ts";

Deno.test({
  name: "JetStream cluster R3: a node SIGKILLed mid-flow loses nothing",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "reclog_nats_cluster_" });
    const nodes = await startNatsCluster(dir, 3);
    try {
      const servers = nodes.map((n) => n.url);
      await using sink = new JetStreamSink({
        servers,
        stream: "LOGS",
        host: "web1",
        createStream: { replicas: 3 },
        timeoutMs: 2000,
      });
      // The meta leader may take a moment after /healthz: retry creating.
      await waitForWrite(sink);
      const got: Received[] = [];
      await using source = new JetStreamSource({
        servers,
        stream: "LOGS",
        durable: "home",
        onBatch: collect(got),
      });
      await source.listen();
      const leader = await streamLeader(servers);
      const victim = nodes.find((n) => `n${nodes.indexOf(n) + 1}` === leader) ?? nodes[0]!;
      const total = 20_000;
      let killed = false;
      const { retries } = await publishAll(sink, total, 200, async (acked) => {
        if (!killed && acked >= total / 4) {
          killed = true;
          await victim.kill();
        }
      }, 120_000);
      nodeAssert.ok(killed);
      console.log(`killed ${leader} (stream leader); sink retries ${retries}`);
      const alive = nodes.filter((n) => n.running).map((n) => n.url);
      nodeAssert.deepStrictEqual(await streamMessages(alive, "LOGS"), total);
      await waitFor("the durable", () => new Set(got.map((r) => r.seq)).size >= total, 90_000);
      await source.close();
      nodeAssert.deepStrictEqual(new Set(got.map((r) => r.seq)).size, total);
      console.log(`durable got ${got.length} for ${total}`);
    } finally {
      for (const node of nodes) await node.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

async function waitForWrite(sink: JetStreamSink): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await publishAll(sink, 1, 1, undefined, 1000);
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
    }
  }
}

async function streamLeader(servers: string[]): Promise<string | undefined> {
  const nc = await connectNats({ servers });
  try {
    const jsm = await jetstreamManager(nc);
    return (await jsm.streams.info("LOGS")).cluster?.leader;
  } finally {
    await nc.close();
  }
}
