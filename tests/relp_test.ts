/**
 * Tests of the RELP parts (lib/framing/relp.ts, lib/transport/relp_server.ts,
 * lib/transport/relp_client.ts): against each other over loopback, against raw bytes,
 * and against real rsyslog (omrelp into RelpServer, RelpClient into imrelp),
 * including a receiver that stops acknowledging or is SIGKILLed mid-stream.
 */

import assert from "node:assert/strict";
import { configureSync, type LogRecord } from "@logtape/logtape";
import { RelpClient, RelpSendError } from "../lib/transport/relp_client.ts";
import { RelpServer } from "../lib/transport/relp_server.ts";
import { freePort, readOrEmpty, tempDir, waitFor } from "./helpers.ts";
import { feedTcp, numbered, startImrelp, startOmrelp, summary, tally } from "./relp_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** reclog's RELP log lines, as text, captured for the assertions. */
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

/** Reads from a raw connection until EOF or `timeoutMs`. */
async function readUntilEof(conn: Deno.Conn, timeoutMs = 5_000): Promise<string> {
  const chunks: string[] = [];
  const buffer = new Uint8Array(4096);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const n = await conn.read(buffer).catch(() => null);
    if (n === null) break;
    chunks.push(decoder.decode(buffer.subarray(0, n)));
  }
  return chunks.join("");
}

/** A server that keeps every taken message as text. */
function collectingServer(
  options: { gate?: () => Promise<void>; port?: number; window?: number } = {},
): { server: RelpServer; taken: string[] } {
  const taken: string[] = [];
  const server = new RelpServer({
    port: options.port ?? 0,
    window: options.window,
    onBatch: async (messages) => {
      if (options.gate) await options.gate();
      for (const message of messages) taken.push(decoder.decode(message));
    },
  });
  return { server, taken };
}

Deno.test("RelpClient → RelpServer: 10,000 messages arrive once each, in order", async () => {
  const { server, taken } = collectingServer();
  const addr = await server.listen();
  const client = new RelpClient({ host: "127.0.0.1", port: addr.port, window: 300 });
  try {
    const sends: Promise<void>[] = [];
    for (let b = 0; b < 20; b++) sends.push(client.send(numbered(b * 500, 500)));
    await Promise.all(sends);
    assert.equal(taken.length, 10_000);
    for (let i = 0; i < 10_000; i++) {
      assert.ok(taken[i]!.endsWith(`msg-${String(i).padStart(6, "0")}`));
    }
  } finally {
    await client.close();
    await server.close();
  }
});

Deno.test("RelpServer acknowledges a batch only after onBatch resolved", async () => {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => open = resolve);
  const { server, taken } = collectingServer({ gate: () => opened });
  const addr = await server.listen();
  const client = new RelpClient({ host: "127.0.0.1", port: addr.port });
  try {
    let settled = false;
    const sent = client.send(numbered(0, 10)).then(() => settled = true);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(settled, false, "send() resolved before onBatch took the batch");
    assert.equal(taken.length, 0);
    open();
    await sent;
    assert.equal(taken.length, 10);
  } finally {
    await client.close();
    await server.close();
  }
});

Deno.test("RelpServer: a rejected onBatch closes the connection unacknowledged; the client resends after reconnect", async () => {
  let fail = true;
  const taken: string[] = [];
  const server = new RelpServer({
    port: 0,
    onBatch: (messages) => {
      if (fail) return Promise.reject(new Error("disk full"));
      for (const message of messages) taken.push(decoder.decode(message));
      return Promise.resolve();
    },
  });
  const addr = await server.listen();
  const client = new RelpClient({ host: "127.0.0.1", port: addr.port });
  try {
    const batch = numbered(0, 50);
    const error = await client.send(batch).then(() => undefined, (error) => error);
    assert.ok(error instanceof RelpSendError, `expected a RelpSendError, got ${error}`);
    assert.equal(error.acked, 0);
    assert.match(error.message, /relp:\/\/127\.0\.0\.1:\d+: the receiver closed the session/);
    fail = false;
    await client.send(batch.slice(error.acked));
    assert.equal(taken.length, 50);
  } finally {
    await client.close();
    await server.close();
  }
});

Deno.test("RelpServer answers open with its offers, syslog with 200 OK, close with rsp, then closes", async () => {
  const { server, taken } = collectingServer();
  const addr = await server.listen();
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: addr.port });
    await conn.write(encoder.encode(
      "1 open 30 relp_version=0\ncommands=syslog\n2 syslog 5 hello\n3 syslog 0\n4 close 0\n",
    ));
    const answer = await readUntilEof(conn);
    conn.close();
    assert.equal(
      answer,
      "1 rsp 58 200 OK\nrelp_version=0\nrelp_software=reclog\ncommands=syslog\n" +
        "2 rsp 6 200 OK\n3 rsp 6 200 OK\n4 rsp 6 200 OK\n",
    );
    assert.deepEqual(taken, ["hello", ""]);
  } finally {
    await server.close();
  }
});

for (
  const [name, bytes, limit, reason] of [
    ["garbage", "GET / HTTP/1.1\r\n\r\n", 0, /bad txnr: 'G' where a TXNR digit belongs at byte 0/],
    ["a syslog frame before open", "1 syslog 5 hello\n", 0, /'syslog' before 'open'/],
    [
      "a TXNR out of sequence",
      "1 open 30 relp_version=0\ncommands=syslog\n5 syslog 1 x\n",
      0,
      /TXNR 5 where 2 was due/,
    ],
    [
      "a frame over the size limit",
      "1 open 30 relp_version=0\ncommands=syslog\n2 syslog 2000 ",
      1000,
      /frame too large: DATALEN over the limit of 1000 bytes/,
    ],
    [
      "a bad trailer",
      "1 open 30 relp_version=0\ncommands=syslog\n2 syslog 1 xy",
      0,
      /bad trailer: 'y' after data/,
    ],
    ["an open without relp_version", "1 open 15 commands=syslog\n", 0, /without a relp_version/],
  ] as const
) {
  Deno.test(`RelpServer closes on ${name} with serverclose and keeps serving others`, async () => {
    const taken: string[] = [];
    const server = new RelpServer({
      port: 0,
      maxFrame: limit || undefined,
      onBatch: (messages) => {
        for (const message of messages) taken.push(decoder.decode(message));
        return Promise.resolve();
      },
    });
    const addr = await server.listen();
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: addr.port });
      await conn.write(encoder.encode(bytes));
      const answer = await readUntilEof(conn);
      conn.close();
      assert.ok(answer.endsWith("0 serverclose 0\n"), `answer was ${JSON.stringify(answer)}`);
      assert.equal(taken.length, 0);
      await waitFor(() => logLines.some((line) => reason.test(line)), {
        what: () => `a log line matching ${reason}; lines: ${logLines.join("\n")}`,
      });
      assert.ok(logLines.some((line) => /^relp: 127\.0\.0\.1:\d+: closing: /.test(line)));
      const client = new RelpClient({ host: "127.0.0.1", port: addr.port });
      await client.send(numbered(0, 3));
      await client.close();
      assert.equal(taken.length, 3);
    } finally {
      await server.close();
    }
  });
}

Deno.test("RelpServer refuses connections over maxConnections and closes idle ones", async () => {
  const server = new RelpServer({
    port: 0,
    maxConnections: 1,
    idleTimeoutMs: 300,
    onBatch: () => Promise.resolve(),
  });
  const addr = await server.listen();
  try {
    const first = await Deno.connect({ hostname: "127.0.0.1", port: addr.port });
    await waitFor(() => server.connections === 1, { what: "the first connection" });
    const second = await Deno.connect({ hostname: "127.0.0.1", port: addr.port });
    assert.equal(await readUntilEof(second), "0 serverclose 0\n");
    second.close();
    const started = Date.now();
    assert.equal(await readUntilEof(first), "0 serverclose 0\n");
    const idle = Date.now() - started;
    assert.ok(idle >= 250 && idle < 3_000, `idle close after ${idle} ms`);
    first.close();
  } finally {
    await server.close();
  }
});

Deno.test("RelpClient: no receiver gives a RelpSendError naming the sink, and close() is safe twice", async () => {
  const port = freePort();
  const client = new RelpClient({ host: "127.0.0.1", port, timeoutMs: 2_000 });
  const error = await client.send(numbered(0, 1)).then(() => undefined, (error) => error);
  assert.ok(error instanceof RelpSendError);
  assert.equal(error.acked, 0);
  assert.match(error.message, new RegExp(`^relp://127\\.0\\.0\\.1:${port}: .*refused`, "i"));
  await client.close();
  await client.close();
});

Deno.test("RelpClient: a receiver that never answers times out and the batch rejects", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) accepted.push(conn);
  })();
  const client = new RelpClient({
    host: "127.0.0.1",
    port: (listener.addr as Deno.NetAddr).port,
    timeoutMs: 400,
  });
  try {
    const error = await client.send(numbered(0, 1)).then(() => undefined, (error) => error);
    assert.ok(error instanceof RelpSendError);
    assert.match(error.message, /no session within 400 ms|no answer for 400 ms/);
  } finally {
    await client.close();
    listener.close();
    await accepting.catch(() => {});
    for (const conn of accepted) conn.close();
  }
});

// ---- against real rsyslog ----

Deno.test("rsyslog omrelp → RelpServer: 5,000 messages received once each", async () => {
  await using dir = await tempDir();
  const { server, taken } = collectingServer();
  const addr = await server.listen();
  const { rsyslog, tcpPort } = await startOmrelp(dir.path, addr.port);
  await using _rsyslog = rsyslog;
  try {
    await feedTcp(tcpPort, 0, 5_000);
    await waitFor(() => taken.length >= 5_000, {
      timeoutMs: 30_000,
      what: () =>
        `5,000 messages at the RELP server (have ${taken.length}); rsyslog: ${rsyslog.stderr}`,
    });
    await new Promise((resolve) => setTimeout(resolve, 500)); // would-be extra copies
    const { missing, dups } = summary(tally(taken.join("\n")), 5_000);
    assert.deepEqual(missing, []);
    assert.equal(dups, 0);
    assert.equal(taken.length, 5_000);
  } finally {
    await server.close();
  }
});

Deno.test("rsyslog omrelp → RelpServer that stops acknowledging: after a restart rsyslog resends everything not acknowledged", async () => {
  await using dir = await tempDir();
  const port = freePort();
  // server 1 acknowledges the first 1,000 messages, then takes nothing more
  const acked1: string[] = [];
  const stall = new Promise<void>(() => {});
  const server1 = new RelpServer({
    port,
    onBatch: async (messages) => {
      if (acked1.length + messages.length > 1_000) await stall;
      for (const message of messages) acked1.push(decoder.decode(message));
    },
  });
  await server1.listen();
  const { rsyslog, tcpPort } = await startOmrelp(dir.path, port);
  await using _rsyslog = rsyslog;
  const server2 = collectingServer({ port });
  try {
    await feedTcp(tcpPort, 0, 5_000);
    await waitFor(() => acked1.length >= 900, {
      timeoutMs: 30_000,
      what: () => `server 1 to take messages (has ${acked1.length}); rsyslog: ${rsyslog.stderr}`,
    });
    await new Promise((resolve) => setTimeout(resolve, 500)); // let rsyslog fill its window
    await server1.close(); // the unacknowledged window dies with the connection
    await server2.server.listen();
    await waitFor(
      () => {
        const { missing } = summary(tally(acked1.join("\n") + server2.taken.join("\n")), 5_000);
        return missing.length === 0;
      },
      {
        timeoutMs: 60_000,
        what: () =>
          `all 5,000 acknowledged across both servers (server 2 has ${server2.taken.length})`,
      },
    );
    const { dups } = summary(tally(acked1.join("\n") + server2.taken.join("\n")), 5_000);
    // rsyslog may resend what it had not seen acknowledged when the connection died
    assert.ok(dups <= 1_024, `${dups} duplicates`);
    assert.ok(acked1.length <= 1_000);
  } finally {
    await server1.close();
    await server2.server.close();
  }
});

Deno.test("RelpClient → rsyslog imrelp → file: 5,000 messages exactly once", async () => {
  await using dir = await tempDir();
  const port = freePort();
  const file = `${dir.path}/home.log`;
  await using _rsyslog = await startImrelp(dir.path, port, file);
  const client = new RelpClient({ host: "127.0.0.1", port });
  try {
    for (let b = 0; b < 10; b++) await client.send(numbered(b * 500, 500));
  } finally {
    await client.close();
  }
  let counts = new Map<number, number>();
  await waitFor(async () => {
    counts = tally(await readOrEmpty(file));
    return counts.size >= 5_000;
  }, { timeoutMs: 15_000, what: () => `5,000 lines in ${file} (have ${counts.size})` });
  const { missing, dups } = summary(counts, 5_000);
  assert.deepEqual(missing, []);
  assert.equal(dups, 0);
});

Deno.test("RelpClient → rsyslog imrelp SIGKILLed and restarted mid-stream: resending the unacknowledged delivers all 5,000, duplicates within the window", async () => {
  await using dir = await tempDir();
  const port = freePort();
  const file = `${dir.path}/home.log`;
  const window = 200;
  let rsyslog = await startImrelp(dir.path, port, file);
  const client = new RelpClient({ host: "127.0.0.1", port, window, timeoutMs: 3_000 });
  let failures = 0;
  let killed = false;
  try {
    // the sender's loop: batches of 100; on failure resend from the first unacknowledged
    const sending = (async () => {
      const deadline = Date.now() + 60_000;
      for (let b = 0; b < 50; b++) {
        let pending = numbered(b * 100, 100);
        while (pending.length > 0) {
          assert.ok(Date.now() < deadline, "sending did not finish within 60 s");
          try {
            await client.send(pending);
            pending = [];
          } catch (error) {
            if (!(error instanceof RelpSendError)) throw error;
            failures++;
            pending = pending.slice(error.acked);
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
        }
        // a paced stream, so the kill lands mid-stream
        if (b % 5 === 0) await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    await waitFor(async () => tally(await readOrEmpty(file)).size >= 1_500, {
      timeoutMs: 30_000,
      what: "1,500 messages in the file before the kill",
    });
    rsyslog.kill("SIGKILL");
    await rsyslog.wait();
    killed = true;
    await rsyslog[Symbol.asyncDispose]();
    await new Promise((resolve) => setTimeout(resolve, 300)); // down for a while
    rsyslog = await startImrelp(dir.path, port, file);
    await sending;
  } finally {
    await client.close();
    await rsyslog[Symbol.asyncDispose]();
  }
  assert.ok(killed);
  assert.ok(failures >= 1, "the kill did not break a send");
  const counts = tally(await readOrEmpty(file));
  const { missing, dups } = summary(counts, 5_000);
  assert.deepEqual(missing, []);
  assert.ok(dups <= window, `${dups} duplicates, more than the window of ${window}`);
  console.log(`imrelp SIGKILL: 5,000 unique, ${dups} duplicates, ${failures} failed sends`);
});
