/**
 * Tests of RelpSink (lib/sinks/relp.ts): the Sink contract over RelpClient,
 * in-process against RelpSource and against real rsyslog imrelp, including
 * an imrelp restarted while messages flow (the caller resends from
 * `SinkError.taken`).
 */

import assert from "node:assert/strict";
import { configureSync } from "@logtape/logtape";
import { RangeBatch, SinkError } from "../lib/batch.ts";
import { encodeRelpFrame, RelpFrameParser } from "../lib/framing/relp.ts";
import { RelpSink, RelpSinkError } from "../lib/sinks/relp.ts";
import { RelpSource } from "../lib/sources/relp.ts";
import { freePort, readOrEmpty, tempDir, waitFor } from "./helpers.ts";
import {
  batchTexts as texts,
  numberedTexts as numbered,
  startImrelp,
  summary,
  tally,
} from "./relp_helpers.ts";

const encoder = new TextEncoder();

configureSync({
  reset: true,
  sinks: {},
  loggers: [{ category: ["logtape", "meta"], lowestLevel: "error", sinks: [] }],
});

/** A batch of the given texts over one buffer. */
function batchOf(texts: string[]): RangeBatch {
  const parts = texts.map((text) => encoder.encode(text));
  const buf = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  const batch = new RangeBatch(parts.length);
  batch.reset(buf);
  let at = 0;
  for (const part of parts) {
    buf.set(part, at);
    batch.push(at, at + part.length);
    at += part.length;
  }
  return batch;
}

Deno.test("RelpSink → RelpSource: write resolves once all are acknowledged; description; close safe twice", async () => {
  const taken: string[] = [];
  await using source = new RelpSource({
    host: "127.0.0.1",
    port: 0,
    onBatch: (batch) => void taken.push(...texts(batch)),
  });
  const addr = await source.listen();
  const sink = new RelpSink({ host: "127.0.0.1", port: addr.port });
  assert.equal(sink.description, `relp://127.0.0.1:${addr.port}`);
  const report = await sink.write(batchOf(numbered(0, 1_000)));
  assert.deepEqual(report.refused, []);
  assert.equal(taken.length, 1_000);
  assert.equal(sink.acknowledged, 1_000);
  assert.equal(sink.connected, true);
  await sink.close();
  await sink.close();
  const after = await sink.write(batchOf(numbered(0, 1))).then(() => undefined, (e) => e);
  assert.ok(after instanceof SinkError, "a write after close must reject");
});

Deno.test("RelpSink: a message over maxMessage is refused with a reason, the rest is delivered, nothing stalls; 'cut' sends its first bytes", async () => {
  const taken: string[] = [];
  await using source = new RelpSource({
    host: "127.0.0.1",
    port: 0,
    maxFrame: 1_000,
    onBatch: (batch) => void taken.push(...texts(batch)),
  });
  const addr = await source.listen();
  await using sink = new RelpSink({ host: "127.0.0.1", port: addr.port, maxMessage: 1_000 });
  const big = "<13>" + "x".repeat(1_500);
  const report = await sink.write(batchOf(["a", big, "b", big.slice(0, 1_000)]));
  assert.equal(report.refused.length, 1);
  assert.equal(report.refused[0]!.index, 1);
  assert.equal(
    report.refused[0]!.reason,
    `too large for relp://127.0.0.1:${addr.port} (1504 bytes, the limit is 1000)`,
  );
  assert.deepEqual(taken, ["a", "b", big.slice(0, 1_000)]);
  assert.equal(sink.refused, 1);
  await sink.write(batchOf(["c"]));
  assert.equal(taken.at(-1), "c");

  await using cutting = new RelpSink({
    host: "127.0.0.1",
    port: addr.port,
    maxMessage: 1_000,
    tooLarge: "cut",
  });
  const cut = await cutting.write(batchOf([big, "d"]));
  assert.deepEqual(cut.refused, []);
  assert.equal(cutting.truncated, 1);
  assert.deepEqual(taken.slice(-2), [big.slice(0, 1_000), "d"]);
});

Deno.test("RelpSink: no receiver rejects with SinkError taken 0 naming the sink; the next write after it comes up reconnects", async () => {
  const port = freePort();
  await using sink = new RelpSink({ host: "127.0.0.1", port, timeoutMs: 2_000 });
  const error = await sink.write(batchOf(["a", "b"])).then(() => undefined, (e) => e);
  assert.ok(error instanceof RelpSinkError, `expected a RelpSinkError, got ${error}`);
  assert.ok(error instanceof SinkError);
  assert.equal(error.taken, 0);
  assert.equal(error.message, `relp://127.0.0.1:${port}: connection refused`);
  assert.equal(sink.failures, 1);
  assert.equal(sink.connected, false);
  const taken: string[] = [];
  await using source = new RelpSource({
    host: "127.0.0.1",
    port,
    onBatch: (batch) => void taken.push(...texts(batch)),
  });
  await source.listen();
  await sink.write(batchOf(["a", "b"]));
  assert.deepEqual(taken, ["a", "b"]);
});

Deno.test("RelpSink: taken is the acknowledged prefix in batch indexes, refused messages in it are listed", async () => {
  // a receiver that answers open and the first 3 syslog frames, then hangs up
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    const conn = await listener.accept();
    const parser = new RelpFrameParser();
    const buffer = new Uint8Array(65536);
    let acked = 0;
    let done = false;
    while (!done) {
      const n = await conn.read(buffer);
      if (n === null) break;
      const out: Uint8Array[] = [];
      parser.push(buffer.subarray(0, n), (txnr, command) => {
        if (done) return;
        if (command === "open") {
          out.push(
            encodeRelpFrame(txnr, "rsp", encoder.encode("200 OK\nrelp_version=0\ncommands=syslog")),
          );
        } else if (command === "syslog" && acked < 3) {
          acked++;
          out.push(encodeRelpFrame(txnr, "rsp", encoder.encode("200 OK")));
        } else done = true;
      });
      for (const frame of out) await conn.write(frame);
    }
    conn.close();
  })();
  const port = (listener.addr as Deno.NetAddr).port;
  try {
    await using sink = new RelpSink({ host: "127.0.0.1", port, maxMessage: 100 });
    const error = await sink.write(batchOf(["a", "x".repeat(200), "b", "c", "d", "e"])).then(
      () => undefined,
      (e) => e,
    );
    assert.ok(error instanceof RelpSinkError, `expected a RelpSinkError, got ${error}`);
    // a (0), the refused one (1), b (2), c (3) are done; d (4) was not acknowledged
    assert.equal(error.taken, 4);
    assert.equal(error.refused.length, 1);
    assert.equal(error.refused[0]!.index, 1);
    assert.match(error.message, /^relp:\/\/127\.0\.0\.1:\d+: the receiver closed the connection/);
    assert.equal(sink.acknowledged, 3);
  } finally {
    listener.close();
    await serving;
  }
});

Deno.test("RelpSink: aborting its signal rejects the write in flight and later ones", async () => {
  const stall = new Promise<void>(() => {});
  await using source = new RelpSource({ host: "127.0.0.1", port: 0, onBatch: () => stall });
  const addr = await source.listen();
  const controller = new AbortController();
  await using sink = new RelpSink({
    host: "127.0.0.1",
    port: addr.port,
    signal: controller.signal,
  });
  const writing = sink.write(batchOf(["a", "b"])).then(() => undefined, (e) => e);
  await waitFor(() => sink.connected, { what: "the session" });
  controller.abort();
  const error = await writing;
  assert.ok(error instanceof SinkError, `expected a SinkError, got ${error}`);
  assert.equal(error.taken, 0);
  assert.match(error.message, /aborted/);
  const later = await sink.write(batchOf(["c"])).then(() => undefined, (e) => e);
  assert.ok(later instanceof SinkError);
});

// ---- against real rsyslog ----

Deno.test("RelpSink → rsyslog imrelp → file: 5,000 messages exactly once", async () => {
  await using dir = await tempDir();
  const port = freePort();
  const file = `${dir.path}/home.log`;
  await using _rsyslog = await startImrelp(dir.path, port, file);
  const sink = new RelpSink({ host: "127.0.0.1", port });
  try {
    for (let b = 0; b < 10; b++) {
      const report = await sink.write(batchOf(numbered(b * 500, 500)));
      assert.deepEqual(report.refused, []);
    }
  } finally {
    await sink.close();
  }
  // imrelp wrote each message before it answered: the file is complete now
  const { missing, dups } = summary(tally(await readOrEmpty(file)), 5_000);
  assert.deepEqual(missing, []);
  assert.equal(dups, 0);
});

Deno.test("RelpSink → rsyslog imrelp restarted mid-flow: write rejects with SinkError.taken, resending the rest delivers all 5,000, duplicates within the window", async () => {
  await using dir = await tempDir();
  const port = freePort();
  const file = `${dir.path}/home.log`;
  const window = 200;
  let rsyslog = await startImrelp(dir.path, port, file);
  const sink = new RelpSink({ host: "127.0.0.1", port, window, timeoutMs: 3_000 });
  const errors: SinkError[] = [];
  let restarted = false;
  try {
    // pull's loop: batches of 500; on failure resend from `taken` after a pause
    const sending = (async () => {
      const deadline = Date.now() + 60_000;
      for (let b = 0; b < 10; b++) {
        const all = numbered(b * 500, 500);
        let from = 0;
        while (from < all.length) {
          assert.ok(Date.now() < deadline, "sending did not finish within 60 s");
          try {
            await sink.write(batchOf(all.slice(from)));
            from = all.length;
          } catch (error) {
            if (!(error instanceof SinkError)) throw error;
            assert.ok(error.taken <= all.length - from);
            errors.push(error);
            from += error.taken;
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
        }
      }
    })();
    // restart while a batch is in flight: between 1,100 and 1,400 is inside the third
    await waitFor(async () => tally(await readOrEmpty(file)).size >= 1_100, {
      timeoutMs: 30_000,
      intervalMs: 2,
      what: "1,100 messages in the file before the restart",
    });
    rsyslog.kill("SIGTERM");
    await rsyslog.wait();
    await rsyslog[Symbol.asyncDispose]();
    restarted = true;
    await new Promise((resolve) => setTimeout(resolve, 300)); // down for a while
    rsyslog = await startImrelp(dir.path, port, file);
    await sending;
  } finally {
    await sink.close();
    await rsyslog[Symbol.asyncDispose]();
  }
  assert.ok(restarted);
  assert.ok(errors.length >= 1, "the restart did not fail a write");
  assert.ok(
    errors.every((error) => error.message.startsWith(`relp://127.0.0.1:${port}: `)),
    errors.map((error) => error.message).join("\n"),
  );
  const { missing, dups } = summary(tally(await readOrEmpty(file)), 5_000);
  assert.deepEqual(missing, []);
  assert.ok(dups <= window, `${dups} duplicates, more than the window of ${window}`);
  console.log(
    `imrelp restart: 5,000 unique, ${dups} duplicates, ${errors.length} failed writes (taken: ${
      errors.map((error) => error.taken).join(", ")
    }); first: ${errors[0]?.message}`,
  );
});

Deno.test("RelpSink → rsyslog imrelp with oversizeMode abort: a message over its maxDataSize is refused, not sent, and nothing behind it stalls", async () => {
  await using dir = await tempDir();
  const port = freePort();
  const file = `${dir.path}/home.log`;
  // sent as is, a 100,000-byte frame makes this imrelp drop the session, every time
  await using _rsyslog = await startImrelp(
    dir.path,
    port,
    file,
    `maxDataSize="70000" oversizeMode="abort"`,
  );
  await using sink = new RelpSink({ host: "127.0.0.1", port, maxMessage: 70_000 });
  const big = "<13>Jan  1 00:00:00 vps relptest: " + "x".repeat(100_000);
  const [a, b, c] = numbered(0, 3);
  const report = await sink.write(batchOf([a!, big, b!]));
  assert.deepEqual(report.refused.map((refusal) => refusal.index), [1]);
  assert.match(report.refused[0]!.reason, /too large for relp:\/\/127\.0\.0\.1:\d+ \(100034 bytes/);
  await sink.write(batchOf([c!]));
  const { missing, dups } = summary(tally(await readOrEmpty(file)), 3);
  assert.deepEqual(missing, []);
  assert.equal(dups, 0);
  assert.ok(!(await readOrEmpty(file)).includes("xxxx"));
});
