import assert from "node:assert/strict";
import { Backoff } from "../lib/transport/backoff.ts";
import { connect, ConnectError } from "../lib/transport/connect.ts";
import { loadTlsMaterial } from "../lib/tls/policy.ts";
import { makeCerts, tempDir } from "./helpers.ts";
import { ALL_TAKEN, RangeBatch, SinkError } from "../lib/batch.ts";
import { LineSender } from "../lib/sinks/line_sender.ts";

/** A back-off with no jitter (random() = 1: the whole base delay) and a hand-driven clock. */
function fixed(options: { minMs?: number; maxMs?: number; resetAfterMs?: number } = {}) {
  const clock = { now: 0 };
  const backoff = new Backoff({ ...options, random: () => 1, now: () => clock.now });
  return { backoff, clock };
}

Deno.test("backoff: 100 ms doubling to the 5 s cap by default", () => {
  const { backoff } = fixed();
  const delays = Array.from({ length: 10 }, () => backoff.next());
  assert.deepEqual(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000]);
  assert.equal(backoff.attempt, 10);
});

Deno.test("backoff: the jitter is between half and all of the base delay", () => {
  const low = new Backoff({ minMs: 100, maxMs: 1000, random: () => 0 });
  assert.deepEqual([low.next(), low.next(), low.next()], [50, 100, 200]);
  const values = [0.25, 0.5, 0.999];
  const mid = new Backoff({ minMs: 1000, maxMs: 1000, random: () => values.shift()! });
  assert.deepEqual([mid.next(), mid.next(), mid.next()], [625, 750, 1000]);
  const random = new Backoff({ minMs: 100, maxMs: 400 });
  for (let i = 0; i < 200; i++) {
    const delay = random.next();
    const base = Math.min(400, 100 * 2 ** Math.min(i, 2));
    assert.ok(delay >= base / 2 && delay <= base, `${delay} for base ${base}`);
  }
});

Deno.test("backoff: a huge attempt count stays at the cap", () => {
  const { backoff } = fixed({ minMs: 1, maxMs: 30_000 });
  for (let i = 0; i < 2000; i++) backoff.next();
  assert.equal(backoff.next(), 30_000);
});

Deno.test("backoff: resetAfterMs 0 (send): any connection resets", () => {
  const { backoff } = fixed({ minMs: 100, maxMs: 5000 });
  assert.deepEqual([backoff.next(), backoff.next(), backoff.next()], [100, 200, 400]);
  backoff.connected();
  backoff.disconnected();
  assert.equal(backoff.attempt, 0);
  assert.equal(backoff.next(), 100);
});

Deno.test("backoff: only a connection that lasted resetAfterMs resets (pull's numbering 1,2,1,2,3,4)", () => {
  const { backoff, clock } = fixed({ minMs: 20, maxMs: 2000, resetAfterMs: 400 });
  const attempts: number[] = [];
  const retry = () => {
    backoff.disconnected();
    backoff.next();
    attempts.push(backoff.attempt);
  };
  retry(); // 0: dropped at once
  retry(); // 1: dropped at once
  backoff.connected(); // 2: up 500 ms, then an error
  clock.now += 500;
  retry();
  retry(); // 3: dropped at once
  backoff.connected(); // 4: up 50 ms: too short
  clock.now += 50;
  retry();
  retry(); // 5: dropped at once
  assert.deepEqual(attempts, [1, 2, 1, 2, 3, 4]);
});

Deno.test("backoff: disconnected() without connected() and reset()", () => {
  const { backoff, clock } = fixed({ resetAfterMs: 10 });
  backoff.next();
  backoff.next();
  clock.now += 1000;
  backoff.disconnected();
  assert.equal(backoff.attempt, 2);
  backoff.connected();
  backoff.reset();
  clock.now += 1000;
  backoff.disconnected(); // the connection was forgotten by reset()
  assert.equal(backoff.attempt, 0);
  backoff.next();
  backoff.disconnected();
  assert.equal(backoff.attempt, 1);
});

Deno.test("backoff: wait() sleeps the delay and an abort cuts it short", async () => {
  const quick = new Backoff({ minMs: 20, maxMs: 20, random: () => 1 });
  let started = performance.now();
  assert.equal(await quick.wait(), 20);
  assert.ok(performance.now() - started >= 15);
  const long = new Backoff({ minMs: 60_000, maxMs: 60_000 });
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 20);
  started = performance.now();
  const delay = await long.wait(controller.signal);
  assert.ok(delay >= 30_000);
  assert.ok(performance.now() - started < 5_000);
  const aborted = AbortSignal.abort();
  started = performance.now();
  await long.wait(aborted);
  assert.ok(performance.now() - started < 1_000);
});

// connect.ts, the other half of reconnecting (local sockets only, fast).

Deno.test("connect: TCP up; a refused port and an abort are ConnectErrors worded for a log line", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  try {
    const accepted = listener.accept();
    const socket = await connect({ host: "127.0.0.1", port });
    (await accepted).close();
    socket.destroy();
  } finally {
    listener.close();
  }
  // The listener is closed: nothing listens on the port now.
  const refused = await connect({ host: "127.0.0.1", port }).catch((error) => error);
  assert.ok(refused instanceof ConnectError);
  assert.equal(refused.message, "connection refused");
  assert.equal(refused.aborted, false);
  const aborted = await connect({ host: "127.0.0.1", port }, { signal: AbortSignal.abort() })
    .catch((error) => error);
  assert.ok(aborted instanceof ConnectError && aborted.aborted);
});

Deno.test("connect: a TLS handshake that never comes times out, naming the time", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const material = await loadTlsMaterial({
    cert: certs.clientCert,
    key: certs.clientKey,
    ca: certs.ca,
  });
  // A TCP listener that accepts and says nothing: the handshake hangs.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) held.push(conn);
  })();
  try {
    const started = performance.now();
    const error = await connect({ host: "127.0.0.1", port }, { tls: material, timeoutMs: 200 })
      .catch((error) => error);
    assert.ok(error instanceof ConnectError, String(error));
    assert.equal(error.message, "no connection after 200 ms");
    assert.ok(performance.now() - started < 3_000);
  } finally {
    listener.close();
    await accepting.catch(() => {});
    for (const conn of held) conn.close();
  }
});

// LineSender's Sink face, which reconnects through connect.ts and backoff.ts.

function batchOf(...lines: string[]): RangeBatch {
  const buf = new TextEncoder().encode(lines.join(""));
  const batch = new RangeBatch(lines.length);
  batch.reset(buf);
  let offset = 0;
  for (const line of lines) {
    batch.push(offset, offset + line.length);
    offset += line.length;
  }
  return batch;
}

Deno.test("line sender: write() resolves once the lines were written; while away the full buffer drops the oldest and close() rejects the write", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  const received = (async () => {
    const conn = await listener.accept();
    let text = "";
    for await (const chunk of conn.readable) text += new TextDecoder().decode(chunk);
    return text;
  })();
  {
    await using sender = new LineSender({ endpoint: { host: "127.0.0.1", port } });
    assert.equal(sender.description, `127.0.0.1:${port}`);
    assert.deepEqual(await sender.write(batchOf("one", "two", "three")), ALL_TAKEN);
    assert.equal(sender.delivered, 3);
    assert.equal(await sender.finish(2000), 0);
    await assert.rejects(sender.write(batchOf("late")), SinkError);
  }
  assert.equal(await received, "one\ntwo\nthree\n");
  listener.close();

  // Nothing listens now: 4 bytes a line, 10 bytes of buffer; the first line is dropped.
  const away = new LineSender({
    endpoint: { host: "127.0.0.1", port },
    bufferBytes: 10,
    backoffMinMs: 10,
    backoffMaxMs: 20,
  });
  const writing = away.write(batchOf("aaa", "bbb", "ccc"));
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(away.dropped, 1);
  await away.close();
  await away.close();
  const error = await writing.catch((error) => error);
  assert.ok(error instanceof SinkError, String(error));
  assert.equal(error.taken, 1);
});
