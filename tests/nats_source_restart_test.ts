// A process reading a durable with JetStreamSource, SIGKILLed mid-flow and
// started again, resumes from its durable: nothing lost, and what comes twice
// is bounded by one batch (the batch the handler took whose acks had not
// reached the server) plus nothing else.
import nodeAssert from "node:assert/strict";
import { JetStreamSink } from "../lib/sinks/nats.ts";
import { NatsServer } from "../lib/transport/nats_server.ts";
import { publishAll } from "./nats_helpers_test.ts";

const BATCH = 100;

// The reader: appends "SEQ\n" per message to a file (a sink that writes
// before it resolves), so what it took survives its SIGKILL.
const child = (url: string, out: string) => `
import { JetStreamSource } from ${
  JSON.stringify(new URL("../lib/sources/nats.ts", import.meta.url).href)
};
const file = await Deno.open(${JSON.stringify(out)}, { append: true, create: true });
const enc = new TextEncoder();
const source = new JetStreamSource({
  servers: [${
  JSON.stringify(url)
}], stream: "LOGS", durable: "home", batchSize: ${BATCH}, ackWaitMs: 2000,
  onBatch: async (batch) => {
    let text = "";
    for (let i = 0; i < batch.count; i++) text += batch.seq(i) + "\\n";
    const bytes = enc.encode(text);
    for (let n = 0; n < bytes.length;) n += await file.write(bytes.subarray(n));
    await new Promise((r) => setTimeout(r, 2)); // a slow sink: the kill lands mid-flow
  },
});
await source.listen();
await new Promise(() => {});
`;

function spawnReader(url: string, out: string): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", child(url, out)],
    cwd: new URL("..", import.meta.url).pathname,
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
}

async function lines(out: string): Promise<number[]> {
  try {
    return (await Deno.readTextFile(out)).split("\n").filter((l) => l !== "").map(Number);
  } catch {
    return [];
  }
}

Deno.test({
  name:
    "JetStreamSource process SIGKILLed and restarted: resumes from its durable, duplicates <= one batch",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "reclog_nats_src_" });
    const out = `${dir}/got.txt`;
    await using server = await NatsServer.start({ dir: `${dir}/nats` });
    await using sink = new JetStreamSink({
      servers: [server.url],
      stream: "LOGS",
      host: "web1",
      createStream: {},
    });
    const total = 20_000;
    await publishAll(sink, total, 1000);
    let reader = spawnReader(server.url, out);
    try {
      let seen: number[] = [];
      const poll = async () => {
        const deadline = Date.now() + 60_000;
        while ((seen = await lines(out)).length < total / 4 && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 20));
        }
      };
      await poll();
      nodeAssert.ok(seen.length >= total / 4 && seen.length < total, `killed at ${seen.length}`);
      reader.kill("SIGKILL");
      await reader.status;
      const atKill = (await lines(out)).length;
      reader = spawnReader(server.url, out);
      const deadline = Date.now() + 90_000;
      while (new Set(seen = await lines(out)).size < total && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
      nodeAssert.deepStrictEqual(new Set(seen).size, total);
      const duplicates = seen.length - total;
      console.log(`killed after ${atKill} lines; ${duplicates} duplicates (bound ${BATCH})`);
      nodeAssert.ok(duplicates <= BATCH, `${duplicates} duplicates`);
      // Before the kill and after the restart each in order; the redelivered
      // batch may come after newer ones.
      nodeAssert.deepStrictEqual(seen.slice(0, atKill), [...Array(atKill).keys()]);
    } finally {
      try {
        reader.kill("SIGKILL");
      } catch {
        // ended
      }
      await reader.status;
      await Deno.remove(dir, { recursive: true });
    }
  },
});
