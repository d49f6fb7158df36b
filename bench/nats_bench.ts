/**
 * JetStream throughput (issue 16): 200-byte messages, one local
 * `nats-server -js` with file storage, R1, everything on loopback.
 *
 * Rows, each the median of ROUNDS rounds of COUNT messages (one run):
 * 1. core publish (no JetStream ack): `nc.publish` then `flush`, the wire's ceiling;
 * 2. library JetStream publisher: `js.publish` pipelined, 1024 awaiting acks
 *    (what `nats bench --js --pubbatch` does), the ceiling for an acked sink;
 * 3. JetStreamSink.write, batches of 500 (serve's `--publish` path);
 * 4. JetStreamSource alone, draining a durable (pull's `--from nats://` path);
 * 5. sink → JetStream → source at once: publish and consume together,
 *    messages/s until the source acknowledged the last one.
 *
 * Run: `deno run --allow-all bench/nats_bench.ts [COUNT] [ROUNDS]`
 *
 * @module
 */

import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { MessageBatch } from "../lib/batch.ts";
import { JetStreamSink } from "../lib/sinks/nats.ts";
import { JetStreamSource } from "../lib/sources/nats.ts";
import { connectNats } from "../lib/transport/nats_connect.ts";
import { NatsServer } from "../lib/transport/nats_server.ts";

const COUNT = Number(Deno.args[0] ?? 100_000);
const ROUNDS = Number(Deno.args[1] ?? 5);
const SIZE = 200;
const BATCH = 500;
const payload = new TextEncoder().encode(`<13>Jan  1 00:00:00 vps bench: ${"x".repeat(SIZE - 32)}`);

class BenchBatch implements MessageBatch {
  constructor(readonly from: number, readonly count: number) {}
  message(): Uint8Array {
    return payload;
  }
  stream(): string {
    return "syslog";
  }
  seq(i: number): number {
    return this.from + i;
  }
  time(i: number): number {
    return 1_700_000_000_000 + this.from + i;
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function rate(run: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await run();
  return COUNT / ((performance.now() - t0) / 1000);
}

async function sinkRun(sink: JetStreamSink, base: number): Promise<void> {
  for (let i = 0; i < COUNT; i += BATCH) {
    await sink.write(new BenchBatch(base + i, Math.min(BATCH, COUNT - i)));
  }
}

async function drain(servers: string[], stream: string, durable: string): Promise<void> {
  let got = 0;
  let done!: () => void;
  const finished = new Promise<void>((resolve) => done = resolve);
  const source = new JetStreamSource({
    servers,
    stream,
    durable,
    onBatch: (batch) => {
      got += batch.count;
      if (got >= COUNT) done();
    },
  });
  await source.listen();
  await finished;
  await source.close();
}

const dir = await Deno.makeTempDir({ prefix: "reclog_nats_bench_" });
const server = await NatsServer.start({ dir });
const servers = [server.url];
const nc = await connectNats({ servers });
const jsm = await jetstreamManager(nc);
const js = jetstream(nc);
const rows: [string, number[]][] = [
  ["core publish, no ack (wire ceiling)", []],
  ["library js.publish, 1024 in flight (ceiling)", []],
  [`JetStreamSink.write, batches of ${BATCH}`, []],
  ["JetStreamSource, draining a durable", []],
  ["sink -> JetStream -> source, together", []],
];
try {
  for (let round = 0; round < ROUNDS; round++) {
    const stream = `B${round}`;
    await jsm.streams.add({ name: stream, subjects: [`bench${round}.>`] });
    rows[0]![1].push(
      await rate(async () => {
        for (let i = 0; i < COUNT; i++) nc.publish(`core${round}.x`, payload);
        await nc.flush();
      }),
    );
    rows[1]![1].push(
      await rate(async () => {
        for (let i = 0; i < COUNT; i += 1024) {
          const acks = [];
          for (let k = i; k < Math.min(COUNT, i + 1024); k++) {
            acks.push(js.publish(`bench${round}.raw`, payload, { msgID: `raw:${k}` }));
          }
          await Promise.all(acks);
        }
      }),
    );
    await jsm.streams.purge(stream);
    const sink = new JetStreamSink({
      servers,
      stream,
      host: "bench",
      subject: `bench${round}.{host}.{stream}`,
    });
    rows[2]![1].push(await rate(() => sinkRun(sink, 0)));
    rows[3]![1].push(await rate(() => drain(servers, stream, "drain")));
    rows[4]![1].push(
      await rate(async () => {
        await Promise.all([sinkRun(sink, COUNT), drain(servers, stream, "live")]);
      }),
    );
    await sink.close();
    await jsm.streams.delete(stream);
  }
} finally {
  await nc.close();
  await server.close();
  await Deno.remove(dir, { recursive: true });
}

console.log(
  `\nJetStream, ${COUNT} x ${SIZE}-byte messages, median of ${ROUNDS} rounds, nats-server file storage R1, loopback\n`,
);
console.log("| path | msgs/s (median) | min | max |");
console.log("| --- | ---: | ---: | ---: |");
for (const [name, values] of rows) {
  const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
  console.log(
    `| ${name} | ${fmt(median(values))} | ${fmt(Math.min(...values))} | ${
      fmt(Math.max(...values))
    } |`,
  );
}
