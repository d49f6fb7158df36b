/**
 * Tests of RelpSource (lib/sources/relp.ts): the Source contract over
 * RelpServer, in-process and against real rsyslog omrelp, including a
 * SIGKILL of the process running the source while rsyslog sends.
 *
 * Run as a program (`deno run -A tests/relp_source_test.ts PORT FILE`), this
 * file is that process: a RelpSource whose handler appends each message as a
 * line to FILE (a synchronous write) before it resolves.
 */

import assert from "node:assert/strict";
import { configureSync, type LogRecord } from "@logtape/logtape";
import { RelpSource } from "../lib/sources/relp.ts";
import { RelpClient, RelpSendError } from "../lib/transport/relp_client.ts";
import { freePort, readOrEmpty, Running, tempDir, waitFor } from "./helpers.ts";
import {
  batchTexts as texts,
  feedTcp,
  numbered,
  startOmrelp,
  summary,
  tally,
} from "./relp_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The child: a RelpSource on 127.0.0.1:PORT writing what it takes to FILE. */
async function child(port: number, file: string): Promise<void> {
  const out = Deno.openSync(file, { append: true, create: true });
  const source = new RelpSource({
    host: "127.0.0.1",
    port,
    onBatch: async (batch) => {
      let text = "";
      for (let i = 0; i < batch.count; i++) text += decoder.decode(batch.message(i)) + "\n";
      const bytes = encoder.encode(text);
      let done = 0;
      while (done < bytes.length) done += out.writeSync(bytes.subarray(done));
      // slow enough that the kill lands mid-stream
      await new Promise((resolve) => setTimeout(resolve, 5));
    },
  });
  await source.listen();
  console.error(`${source.description} listening on 127.0.0.1:${port}`);
  await new Promise(() => {}); // until killed
}

if (import.meta.main) {
  await child(Number(Deno.args[0]), Deno.args[1]!);
}

/** reclog's RELP log lines, captured for the assertions. */
const logLines: string[] = [];
configureSync({
  reset: true,
  sinks: {
    capture(record: LogRecord) {
      logLines.push(
        record.message.map((part) => typeof part === "string" ? part : String(part)).join(""),
      );
    },
  },
  loggers: [
    { category: ["reclog", "relp"], lowestLevel: "info", sinks: ["capture"] },
    { category: ["logtape", "meta"], lowestLevel: "error", sinks: [] },
  ],
});

Deno.test("RelpSource: listen resolves with the bound port, the description names it, batches carry the messages", async () => {
  const taken: string[] = [];
  const streams = new Set<string>();
  await using source = new RelpSource({
    host: "127.0.0.1",
    port: 0,
    onBatch: (batch) => {
      taken.push(...texts(batch));
      for (let i = 0; i < batch.count; i++) streams.add(batch.stream?.(i) ?? "");
    },
  });
  assert.equal(source.description, "relp://127.0.0.1:0");
  const addr = await source.listen();
  assert.ok(addr.port > 0);
  assert.equal(source.description, `relp://127.0.0.1:${addr.port}`);
  const client = new RelpClient({ host: "127.0.0.1", port: addr.port });
  try {
    await client.send(numbered(0, 2_000));
  } finally {
    await client.close();
  }
  assert.equal(taken.length, 2_000);
  assert.ok(taken[1_999]!.endsWith("msg-001999"));
  assert.equal(source.received, 2_000);
  assert.deepEqual([...streams], ["syslog"]);
  await source.close();
  await source.close();
});

Deno.test("RelpSource acknowledges only after onBatch's promise resolved", async () => {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => open = resolve);
  let seen = 0;
  await using source = new RelpSource({
    host: "127.0.0.1",
    port: 0,
    onBatch: async (batch) => {
      seen += batch.count;
      await opened;
    },
  });
  const addr = await source.listen();
  const client = new RelpClient({ host: "127.0.0.1", port: addr.port });
  try {
    let settled = false;
    const sent = client.send(numbered(0, 10)).then(() => settled = true);
    await waitFor(() => seen === 10, { what: "the batch at the handler" });
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(settled, false, "the sender was answered before onBatch resolved");
    open();
    await sent;
  } finally {
    await client.close();
  }
});

Deno.test("RelpSource: a rejecting onBatch is not acknowledged, the connection closes with the reason, the resend is taken", async () => {
  let fail = true;
  const taken: string[] = [];
  await using source = new RelpSource({
    host: "127.0.0.1",
    port: 0,
    onBatch: (batch) => {
      if (fail) return Promise.reject(new Error("journal append failed"));
      taken.push(...texts(batch));
      return Promise.resolve();
    },
  });
  const addr = await source.listen();
  const client = new RelpClient({ host: "127.0.0.1", port: addr.port });
  try {
    const batch = numbered(0, 50);
    const error = await client.send(batch).then(() => undefined, (error) => error);
    assert.ok(error instanceof RelpSendError, `expected a RelpSendError, got ${error}`);
    assert.equal(error.acked, 0);
    assert.equal(source.rejected, 50);
    await waitFor(
      () => logLines.some((line) => /closing: .*not taken \(journal append failed\)/.test(line)),
      { what: () => `the reason in the log; lines: ${logLines.join("\n")}` },
    );
    fail = false;
    await client.send(batch);
    assert.equal(taken.length, 50);
  } finally {
    await client.close();
  }
});

Deno.test("RelpSource: a message over maxFrame is cut to it and counted, split across reads too; nothing behind it waits", async () => {
  const taken: string[] = [];
  await using source = new RelpSource({
    host: "127.0.0.1",
    port: 0,
    maxFrame: 100,
    onBatch: (batch) => void taken.push(...texts(batch)),
  });
  const addr = await source.listen();
  const client = new RelpClient({ host: "127.0.0.1", port: addr.port });
  try {
    const big = "<13>" + "y".repeat(100_000); // several reads
    await client.send([encoder.encode("a"), encoder.encode(big), encoder.encode("b")]);
    await client.send([encoder.encode(big.slice(0, 150)), encoder.encode("c")]);
  } finally {
    await client.close();
  }
  assert.deepEqual(taken, ["a", "<13>" + "y".repeat(96), "b", "<13>" + "y".repeat(96), "c"]);
  assert.equal(source.truncated, 2);
  assert.ok(
    logLines.some((line) => /a message of 100004 bytes cut to 100/.test(line)),
    logLines.join("\n"),
  );
});

Deno.test("RelpSource with oversize close: a frame over maxFrame closes that connection with a reason; others are served", async () => {
  const taken: string[] = [];
  await using source = new RelpSource({
    host: "127.0.0.1",
    port: 0,
    maxFrame: 100,
    oversize: "close",
    onBatch: (batch) => void taken.push(...texts(batch)),
  });
  const addr = await source.listen();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: addr.port });
  await conn.write(encoder.encode("1 open 30 relp_version=0\ncommands=syslog\n2 syslog 500 "));
  const buffer = new Uint8Array(4096);
  let answer = "";
  for (let n; (n = await conn.read(buffer)) !== null;) {
    answer += decoder.decode(buffer.subarray(0, n));
  }
  conn.close();
  assert.ok(answer.endsWith("0 serverclose 0\n"), answer);
  assert.ok(logLines.some((line) => /frame too large: DATALEN over the limit of 100/.test(line)));
  const client = new RelpClient({ host: "127.0.0.1", port: addr.port });
  await client.send(numbered(0, 3));
  await client.close();
  assert.equal(taken.length, 3);
});

Deno.test("RelpSource: a port in use is a one-line error naming it", async () => {
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (taken.addr as Deno.NetAddr).port;
  const source = new RelpSource({ host: "127.0.0.1", port, onBatch: () => {} });
  await assert.rejects(
    source.listen(),
    new RegExp(
      `^Error: cannot listen for RELP on 127\\.0\\.0\\.1:${port}: address already in use$`,
    ),
  );
  await source.close();
});

// ---- against real rsyslog ----

Deno.test("rsyslog omrelp → RelpSource: 5,000 messages once each; one over maxFrame (a 65,520-byte one) is cut, not a stall", async () => {
  await using dir = await tempDir();
  const taken: string[] = [];
  await using source = new RelpSource({
    host: "127.0.0.1",
    port: 0,
    maxFrame: 8_192,
    onBatch: (batch) => void taken.push(...texts(batch)),
  });
  const addr = await source.listen();
  const { rsyslog, tcpPort } = await startOmrelp(dir.path, addr.port);
  await using _rsyslog = rsyslog;
  await feedTcp(tcpPort, 0, 2_500);
  {
    // rsyslog's imtcp takes up to its maxMessageSize (64k in the tests' config)
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: tcpPort });
    const line = `<13>Jan  1 00:00:00 vps relptest: big ${"z".repeat(65_480)}\n`;
    const bytes = encoder.encode(line);
    let done = 0;
    while (done < bytes.length) done += await conn.write(bytes.subarray(done));
    conn.close();
  }
  await feedTcp(tcpPort, 2_500, 2_500);
  await waitFor(() => taken.some((text) => text.includes("big z")), {
    timeoutMs: 30_000,
    what: () => `the big message at the source; rsyslog: ${rsyslog.stderr}`,
  });
  await waitFor(() => taken.length >= 5_001, {
    timeoutMs: 30_000,
    what: () => `5,001 messages at the source (have ${taken.length}); rsyslog: ${rsyslog.stderr}`,
  });
  await new Promise((resolve) => setTimeout(resolve, 500)); // would-be extra copies
  const { missing, dups } = summary(tally(taken.join("\n")), 5_000);
  assert.deepEqual(missing, []);
  assert.equal(dups, 0);
  assert.equal(taken.length, 5_001);
  const big = taken.find((text) => text.includes("big z"))!;
  assert.equal(big.length, 8_192);
  assert.equal(source.truncated, 1);
});

/** Starts this file as the child process (a RelpSource writing to `file`). */
async function startChild(port: number, file: string): Promise<Running> {
  const process = new Running(
    "relp source child",
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "-q", import.meta.filename!, String(port), file],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn(),
  );
  await process.waitForListening(`relp://127.0.0.1:${port}`);
  return process;
}

Deno.test("rsyslog omrelp → RelpSource in a process SIGKILLed mid-stream and restarted: nothing lost, duplicates within omrelp's window", async () => {
  await using dir = await tempDir();
  const port = freePort();
  const file = `${dir.path}/taken.log`;
  let source = await startChild(port, file);
  const { rsyslog, tcpPort } = await startOmrelp(dir.path, port);
  await using _rsyslog = rsyslog;
  try {
    await feedTcp(tcpPort, 0, 5_000);
    await waitFor(async () => tally(await readOrEmpty(file)).size >= 1_500, {
      timeoutMs: 30_000,
      what: () => `1,500 messages taken before the kill; rsyslog: ${rsyslog.stderr}`,
    });
    source.kill("SIGKILL");
    await source.wait();
    const before = tally(await readOrEmpty(file)).size;
    assert.ok(before < 5_000, "everything was taken before the kill; nothing was tested");
    await source[Symbol.asyncDispose]();
    await new Promise((resolve) => setTimeout(resolve, 500)); // down for a while
    source = await startChild(port, file);
    let counts = new Map<number, number>();
    await waitFor(async () => {
      counts = tally(await readOrEmpty(file));
      return counts.size >= 5_000;
    }, {
      timeoutMs: 60_000,
      what: () => `all 5,000 taken after the restart (have ${counts.size}); ${rsyslog.stderr}`,
    });
    await new Promise((resolve) => setTimeout(resolve, 500)); // would-be extra copies
    const { missing, dups } = summary(tally(await readOrEmpty(file)), 5_000);
    assert.deepEqual(missing, []);
    assert.ok(dups <= 128, `${dups} duplicates, more than omrelp's window of 128`);
    console.log(
      `RelpSource SIGKILL: ${before} taken before the kill, 5,000 unique after, ${dups} duplicates`,
    );
  } finally {
    await source[Symbol.asyncDispose]();
  }
});
