/**
 * `pull` against a server that lies: a fake TLS server with a valid server
 * certificate speaks frames by hand (lib/protocol/frame.ts's encoders) to a real
 * `reclog pull` process writing to stdout (`--to -`, a message a line) with a
 * real `--state` file. Each test asserts exactly what reached the sink, what
 * `--state` holds, the `C` reason the server got, and that pull reconnected.
 */

import assert from "node:assert/strict";
import tls from "node:tls";
import { configureSync, type LogRecord, resetSync } from "@logtape/logtape";
import { PullClient, type PullClientOptions } from "../lib/transport/pull_client.ts";
import { openSink } from "../lib/sinks/open.ts";
import { loadTlsMaterial } from "../lib/tls/policy.ts";
import type { TLSSocket } from "node:tls";
import {
  encodeControl,
  encodeMessage,
  FrameReader,
  FrameSplitter,
  FrameType,
  messageFrameSize,
} from "../lib/protocol/frame.ts";
import {
  type CertPaths,
  makeCerts,
  readOrEmpty,
  type Running,
  tempDir,
  waitFor,
} from "./helpers.ts";
import { startPull } from "./relay.ts";

const encoder = new TextEncoder();
const EPOCH = "epoch-test-1";

/** What the fake server saw on one connection. */
interface FakeConnection {
  socket: TLSSocket;
  /** Frames the client sent: type and body text. */
  frames: Array<{ type: string; body: string }>;
  /** Whether the client has closed. */
  closed: boolean;
}

/** A TLS server with a real certificate that runs `script` on each connection. */
class FakeServer implements AsyncDisposable {
  readonly connections: FakeConnection[] = [];
  readonly #server: tls.Server;
  port = 0;

  constructor(
    certs: { cert: string; key: string; ca: string },
    script: (connection: FakeConnection, index: number) => void,
  ) {
    this.#server = tls.createServer({
      cert: certs.cert,
      key: certs.key,
      ca: certs.ca,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: "TLSv1.3",
    }, (socket) => {
      const connection: FakeConnection = { socket, frames: [], closed: false };
      const index = this.connections.push(connection) - 1;
      const splitter = new FrameSplitter();
      const frame = new FrameReader(new Uint8Array(0));
      socket.on("data", (chunk: Uint8Array) => {
        frame.reset(splitter.push(chunk));
        while (frame.next()) {
          connection.frames.push({ type: String.fromCharCode(frame.type), body: frame.text() });
        }
      });
      socket.on("error", () => {});
      socket.on("close", () => connection.closed = true);
      script(connection, index);
    });
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    this.port = (this.#server.address() as { port: number }).port;
    return this;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const connection of this.connections) connection.socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** A valid server hello, with fields overridden. */
function hello(fields: Record<string, unknown> = {}): Uint8Array {
  return encodeControl(FrameType.Hello, {
    proto: "reclog",
    v: 1,
    epoch: EPOCH,
    first: 1,
    next: 1,
    start: 1,
    maxFrame: 1048576,
    keepAliveMs: 30000,
    ...fields,
  });
}

/** A message frame for `text` with sequence number `seq`. */
function message(seq: number, text: string, stream = "syslog"): Uint8Array {
  const name = encoder.encode(stream);
  const data = encoder.encode(text);
  const frame = new Uint8Array(messageFrameSize(name.length, data.length));
  encodeMessage(frame, 0, { seq, time: timeOf(seq), stream: name, data });
  return frame;
}

/** The receive time the fake server gives message `seq`. */
function timeOf(seq: number): number {
  return 1_700_000_000_000 + seq % 1_000_000;
}

/** A frame with any type and body bytes. */
function raw(type: number, body: ArrayLike<number>): Uint8Array {
  const frame = new Uint8Array(5 + body.length);
  new DataView(frame.buffer).setUint32(0, 1 + body.length);
  frame[4] = type;
  frame.set(body, 5);
  return frame;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

interface Outcome {
  /** pull's stdout (the sink). */
  sink: string;
  /** The --state file's content, parsed, or undefined when absent. */
  state: unknown;
  /** The `C` reason the fake server got on the first connection. */
  closeReason: string | undefined;
  /** The client hello of the second connection. */
  secondHello: Record<string, unknown>;
  /** pull's stderr. */
  stderr: string;
}

/**
 * Runs a real `pull --to - --state FILE` against a fake server that sends
 * `first` on the first connection (in one write) and only a valid hello
 * (with nothing after it) on later ones; returns once pull has reconnected.
 */
async function runAgainst(
  first: Uint8Array,
  options: { state?: unknown; expectClose?: boolean; waitFor?: RegExp } = {},
): Promise<Outcome> {
  await using dir = await tempDir();
  const certs: CertPaths = await makeCerts(dir.path);
  const statePath = `${dir.path}/pull.state`;
  if (options.state !== undefined) {
    await Deno.writeTextFile(statePath, JSON.stringify(options.state) + "\n");
  }
  const [cert, key, ca] = await Promise.all(
    [certs.serverCert, certs.serverKey, certs.ca].map((path) => Deno.readTextFile(path)),
  );
  await using server = await new FakeServer({ cert: cert!, key: key!, ca: ca! }, (c, index) => {
    // Later connections: another journal with nothing in it, so --state stays put.
    c.socket.write(index === 0 ? first : hello({ epoch: "other-epoch", start: 1, next: 1 }));
  }).listen();
  const pull: Running = await startPull(certs, server.port, {
    args: ["--state", statePath],
    waitConnected: false,
  });
  await using _pull = pull;
  await waitFor(() => server.connections.length >= 2 && server.connections[1]!.frames.length > 0, {
    what: () => `a second connection with a hello; stderr:\n${pull.stderr}`,
  });
  if (options.waitFor) await pull.waitForStderr(options.waitFor);
  await pull.waitForStderr(/reconnecting in \d+ ms \(attempt 1\)/);
  // The second connection's hello says where pull resumes; --state is saved before it.
  const secondHello = JSON.parse(server.connections[1]!.frames[0]!.body);
  pull.kill("SIGTERM");
  await pull.wait();
  const text = await readOrEmpty(statePath);
  const close = server.connections[0]!.frames.find((frame) => frame.type === "C");
  return {
    sink: pull.stdout,
    state: text ? JSON.parse(text) : undefined,
    closeReason: close?.body,
    secondHello,
    stderr: pull.stderr,
  };
}

/** Asserts a protocol error: logged, `C` sent to the server with the reason. */
function assertProtocolError(outcome: Outcome, reason: RegExp): void {
  assert.match(outcome.stderr, new RegExp(`protocol error: ${reason.source}`), outcome.stderr);
  assert.ok(outcome.closeReason, `no C frame reached the server; stderr:\n${outcome.stderr}`);
  assert.match(outcome.closeReason, new RegExp(`^protocol error: ${reason.source}`));
}

const twoGood = () => concat(hello({ next: 3 }), message(1, "good 1"), message(2, "good 2"));

Deno.test("pull: an M frame shorter than its header never reaches the sink; protocol error, reconnect", async () => {
  const out = await runAgainst(
    concat(twoGood(), raw(FrameType.Message, [1, 2, 3]), message(3, "after")),
  );
  assert.equal(out.sink, "good 1\ngood 2\n");
  assertProtocolError(out, /'M' frame of 8 bytes is shorter than its header/);
  assert.deepEqual(out.state, { epoch: EPOCH, next: 3, lastTime: 1_700_000_000_002 });
  assert.deepEqual(out.secondHello.resume, { epoch: EPOCH, next: 3 });
});

Deno.test("pull: an M frame whose stream length runs past the frame never reaches the sink", async () => {
  const bad = message(3, "xy");
  bad[21] = 200; // stream length past the frame's end
  const out = await runAgainst(concat(twoGood(), bad));
  assert.equal(out.sink, "good 1\ngood 2\n");
  assertProtocolError(out, /stream name runs past the end of its frame/);
  assert.deepEqual(out.state, { epoch: EPOCH, next: 3, lastTime: 1_700_000_000_002 });
});

Deno.test("pull: a short M frame after a long message puts no stale bytes into the sink", async () => {
  const long = "L".repeat(5000);
  const short = message(2, "").subarray(0, 20); // header cut short
  new DataView(short.buffer, short.byteOffset).setUint32(0, 16);
  const out = await runAgainst(concat(hello({ next: 3 }), message(1, long), short));
  assert.equal(out.sink, `${long}\n`);
  assertProtocolError(out, /'M' frame of 20 bytes is shorter than its header/);
  assert.deepEqual(out.state, { epoch: EPOCH, next: 2, lastTime: 1_700_000_000_001 });
});

Deno.test("pull: a message frame before the server's hello is not written", async () => {
  const out = await runAgainst(
    concat(message(1, "too early"), hello({ next: 2 }), message(1, "x")),
  );
  assert.equal(out.sink, "");
  assertProtocolError(out, /'M' frame before the server's hello/);
  assert.equal(out.state, undefined);
  assert.equal(out.secondHello.oldest, true);
});

Deno.test("pull: an unknown frame type ('Z') is a protocol error; what came before it is kept", async () => {
  const out = await runAgainst(concat(twoGood(), raw(0x5a, [1, 2]), message(3, "after Z")));
  assert.equal(out.sink, "good 1\ngood 2\n");
  assertProtocolError(out, /unknown frame type 'Z' \(0x5a\)/);
});

Deno.test("pull: a frame with LENGTH 0 is a protocol error", async () => {
  const out = await runAgainst(concat(twoGood(), new Uint8Array(4), message(3, "after")));
  assert.equal(out.sink, "good 1\ngood 2\n");
  assertProtocolError(out, /frame of 4 bytes with LENGTH 0/);
});

Deno.test("pull: a hello whose epoch is a number is refused; --state is never written with it", async () => {
  const out = await runAgainst(concat(hello({ epoch: 12345, next: 2 }), message(1, "x")));
  assert.equal(out.sink, "");
  assertProtocolError(out, /hello: "epoch" must be 1 to 128 printable ASCII characters/);
  assert.equal(out.state, undefined);
});

Deno.test("pull: a hello whose epoch is an object is refused; a saved point stays as it was", async () => {
  const saved = { epoch: EPOCH, next: 7, lastTime: 5 };
  const out = await runAgainst(
    concat(hello({ epoch: { a: 1 }, next: 9, start: 7 }), message(7, "x")),
    {
      state: saved,
    },
  );
  assert.equal(out.sink, "");
  assertProtocolError(out, /hello: "epoch" must be/);
  assert.deepEqual(out.state, saved);
  assert.deepEqual(out.secondHello.resume, { epoch: EPOCH, next: 7 });
});

Deno.test("pull: a hello with a start beyond 2^53 is refused", async () => {
  const out = await runAgainst(hello({ start: 2 ** 63, next: 2 ** 63 }));
  assert.equal(out.sink, "");
  assertProtocolError(out, /hello: "next" must be a safe non-negative integer/);
  assert.equal(out.state, undefined);
});

Deno.test("pull: a sequence number of 2^53 or more is a protocol error; --state keeps the last valid point", async () => {
  const big = message(3, "big");
  // seq = 2^63: upper half 0x80000000
  new DataView(big.buffer).setUint32(5, 0x8000_0000);
  new DataView(big.buffer).setUint32(9, 0);
  const out = await runAgainst(concat(twoGood(), big));
  assert.equal(out.sink, "good 1\ngood 2\n");
  assertProtocolError(out, /sequence number or time of 2\^53 or more/);
  assert.deepEqual(out.state, { epoch: EPOCH, next: 3, lastTime: 1_700_000_000_002 });
});

Deno.test("pull: a message at Number.MAX_SAFE_INTEGER is refused (no safe resume point after it)", async () => {
  const max = Number.MAX_SAFE_INTEGER;
  const out = await runAgainst(
    concat(
      hello({ first: max - 1, start: max - 1, next: max }),
      message(max - 1, "ok"),
      message(max, "x"),
    ),
  );
  assert.equal(out.sink, "ok\n");
  assertProtocolError(out, /sequence number 9007199254740991 leaves no safe integer after it/);
  assert.deepEqual(out.state, { epoch: EPOCH, next: max, lastTime: timeOf(max - 1) });
});

Deno.test("pull: decreasing sequence numbers (5, 4, 3) are refused; the resume point never moves back", async () => {
  const out = await runAgainst(
    concat(
      hello({ first: 1, start: 5, next: 6 }),
      message(5, "five"),
      message(4, "four"),
      message(3, "three"),
    ),
  );
  assert.equal(out.sink, "five\n");
  assertProtocolError(out, /sequence number 4 repeated or going back \(expected 6\)/);
  assert.deepEqual(out.state, { epoch: EPOCH, next: 6, lastTime: 1_700_000_000_005 });
});

Deno.test("pull: a repeated sequence number is written once", async () => {
  const out = await runAgainst(
    concat(twoGood(), message(2, "good 2"), message(2, "good 2")),
  );
  assert.equal(out.sink, "good 1\ngood 2\n");
  assertProtocolError(out, /sequence number 2 repeated or going back/);
  assert.deepEqual(out.state, { epoch: EPOCH, next: 3, lastTime: 1_700_000_000_002 });
});

Deno.test("pull: a gap without an L frame is a protocol error; the resume point stays before it", async () => {
  const out = await runAgainst(concat(twoGood(), message(3, "three"), message(7, "seven")));
  assert.equal(out.sink, "good 1\ngood 2\nthree\n");
  assertProtocolError(out, /sequence number 7 skips from 4 without an 'L' frame/);
  assert.deepEqual(out.state, { epoch: EPOCH, next: 4, lastTime: 1_700_000_000_003 });
});

Deno.test("pull: a gap announced by an L frame is accepted, with a loss notice in the sink", async () => {
  const lost = encodeControl(FrameType.Lost, {
    count: 3,
    from: 3,
    to: 5,
    toTime: 1_700_000_000_005,
    reason: "client fell behind\nFAKE LINE",
  });
  const out = await runAgainst(
    concat(twoGood(), lost, message(6, "six"), message(7, "seven"), raw(0x5a, [])),
    { waitFor: /unknown frame type/ },
  );
  const lines = out.sink.split("\n");
  assert.equal(lines.length, 6, out.sink);
  assert.deepEqual([lines[0], lines[1], lines[3], lines[4], lines[5]], [
    "good 1",
    "good 2",
    "six",
    "seven",
    "",
  ]);
  assert.match(
    lines[2]!,
    /^<12>1 \S+ \S+ reclog - - - reclog: 3 messages from 127\.0\.0\.1:\d+ lost \(seq 3\.\.5\)/,
  );
  assert.match(lines[2]!, /\(client fell behind\?FAKE LINE\)$/, "the server's reason is one line");
  assert.deepEqual(out.state, { epoch: EPOCH, next: 8, lastTime: 1_700_000_000_007 });
});

Deno.test("pull: an L frame whose count does not match its range is a protocol error", async () => {
  const lost = encodeControl(FrameType.Lost, { count: 1, from: 3, to: 900, reason: "x" });
  const out = await runAgainst(concat(twoGood(), lost, message(901, "skipped ahead")));
  assert.equal(out.sink, "good 1\ngood 2\n");
  assertProtocolError(out, /'L' frame: "count" 1 does not match "from" 3 and "to" 900/);
  assert.deepEqual(out.state, { epoch: EPOCH, next: 3, lastTime: 1_700_000_000_002 });
});

Deno.test("pull: an L frame for a range ahead of the stream is a protocol error", async () => {
  const lost = encodeControl(FrameType.Lost, { count: 2, from: 10, to: 11, reason: "x" });
  const out = await runAgainst(concat(twoGood(), lost, message(12, "twelve")));
  assert.equal(out.sink, "good 1\ngood 2\n");
  assertProtocolError(out, /'L' frame for seq 10\.\.11 does not meet the stream at seq 3/);
});

Deno.test("pull: a hello that would restart the same epoch before the resume point is refused", async () => {
  const saved = { epoch: EPOCH, next: 50, lastTime: 5 };
  const out = await runAgainst(concat(hello({ start: 1, next: 60 }), message(1, "old one")), {
    state: saved,
  });
  assert.equal(out.sink, "");
  assertProtocolError(out, /the server would start at seq 1, before our resume point 50/);
  assert.deepEqual(out.state, saved);
});

// In-process: the PullClient class with short timeouts, its log lines captured.

/** Collects reclog's log lines (rendered messages) while a test runs. */
function captureLogs(): { lines: string[] } & Disposable {
  const lines: string[] = [];
  configureSync({
    reset: true,
    sinks: { memory: (record: LogRecord) => lines.push(record.message.map(String).join("")) },
    loggers: [
      { category: ["reclog"], lowestLevel: "debug", sinks: ["memory"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: [] },
    ],
  });
  return { lines, [Symbol.dispose]: () => resetSync() };
}

/** Runs a PullClient against `server` until `until` holds, then stops it. */
async function runClient(
  certs: CertPaths,
  server: FakeServer,
  options: Partial<PullClientOptions>,
  until: () => boolean,
  what: () => string,
): Promise<void> {
  const material = await loadTlsMaterial({
    cert: certs.clientCert,
    key: certs.clientKey,
    ca: certs.ca,
  });
  await using sink = openSink({ kind: "udp", host: "127.0.0.1", port: 9 });
  const controller = new AbortController();
  const client = new PullClient({
    host: "127.0.0.1",
    port: server.port,
    serverName: "localhost",
    material,
    sink,
    signal: controller.signal,
    ...options,
  });
  const running = client.run();
  try {
    await waitFor(until, { what });
  } finally {
    controller.abort();
    await running;
  }
}

async function fakeServerFor(
  dir: string,
  script: (connection: FakeConnection, index: number) => void,
): Promise<{ certs: CertPaths; server: FakeServer }> {
  const certs = await makeCerts(dir);
  const [cert, key, ca] = await Promise.all(
    [certs.serverCert, certs.serverKey, certs.ca].map((path) => Deno.readTextFile(path)),
  );
  const server = await new FakeServer({ cert: cert!, key: key!, ca: ca! }, script).listen();
  return { certs, server };
}

/** Writes `bytes` to the connection one every `everyMs` until it closes. */
function every(connection: FakeConnection, everyMs: number, bytes: (n: number) => Uint8Array) {
  let n = 0;
  const timer = setInterval(() => {
    if (connection.closed) return clearInterval(timer);
    connection.socket.write(bytes(n++));
  }, everyMs);
  connection.socket.on("close", () => clearInterval(timer));
}

Deno.test("pull: a server that only sends keep-alives, never a hello, is a protocol error after the hello timeout; pull reconnects", async () => {
  using logs = captureLogs();
  await using dir = await tempDir();
  const { certs, server } = await fakeServerFor(dir.path, (connection) => {
    every(connection, 50, () => encodeControl(FrameType.KeepAlive));
  });
  await using _server = server;
  const opened: number[] = [];
  const closed: number[] = [];
  const started = Date.now();
  await runClient(certs, server, { helloTimeoutMs: 300, minDelayMs: 20, maxDelayMs: 40 }, () => {
    for (const [i, c] of server.connections.entries()) {
      opened[i] ??= Date.now();
      if (c.closed) closed[i] ??= Date.now();
    }
    return server.connections.length >= 3 && closed[1] !== undefined;
  }, () => `three connections; log:\n${logs.lines.join("\n")}`);
  const reason = server.connections[0]!.frames.find((frame) => frame.type === "C")?.body;
  assert.equal(reason, "protocol error: no hello from the server within 300 ms of connecting");
  assert.ok(
    logs.lines.some((line) => /protocol error: no hello from the server within 300 ms/.test(line)),
    logs.lines.join("\n"),
  );
  assert.ok(logs.lines.some((line) => /reconnecting in \d+ ms \(attempt 2\)/.test(line)));
  // Two timeouts (about 300 ms each) and two short back-offs: well under the 10 s default.
  assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
});

Deno.test("pull: a hello trickled a byte at a time is a protocol error after the hello timeout", async () => {
  using logs = captureLogs();
  await using dir = await tempDir();
  const greeting = hello();
  const { certs, server } = await fakeServerFor(dir.path, (connection) => {
    every(connection, 40, (n) => greeting.subarray(n, n + 1));
  });
  await using _server = server;
  await runClient(
    certs,
    server,
    { helloTimeoutMs: 300, minDelayMs: 20, maxDelayMs: 40 },
    () => server.connections.length >= 2 && server.connections[0]!.closed,
    () => `a second connection; log:\n${logs.lines.join("\n")}`,
  );
  const reason = server.connections[0]!.frames.find((frame) => frame.type === "C")?.body;
  assert.equal(reason, "protocol error: no hello from the server within 300 ms of connecting");
  assert.ok(!logs.lines.some((line) => /connected to/.test(line)), logs.lines.join("\n"));
});

Deno.test("pull: the back-off resets after a connection stayed up long enough, even when it ends in an error", async () => {
  using logs = captureLogs();
  await using dir = await tempDir();
  // 0, 1: dropped at once; 2: a hello, then silence until pull's idle timeout
  // (an error, after 500 ms up: resets); 3: dropped at once; 4: streams 50 ms
  // (too short to reset); 5: dropped at once; 6: stays up.
  const { certs, server } = await fakeServerFor(dir.path, (connection, index) => {
    const { socket } = connection;
    if (index === 2) {
      socket.write(hello());
    } else if (index === 4 || index === 6) {
      socket.write(hello());
      every(connection, 50, () => encodeControl(FrameType.KeepAlive));
      if (index === 4) setTimeout(() => socket.destroy(), 50);
    } else {
      socket.destroy();
    }
  });
  await using _server = server;
  await runClient(
    certs,
    server,
    {
      resetBackoffAfterMs: 400,
      idleTimeoutMs: 500,
      keepAliveMs: 100,
      minDelayMs: 20,
      maxDelayMs: 2000,
    },
    () => server.connections.length >= 7,
    () => `seven connections; log:\n${logs.lines.join("\n")}`,
  );
  assert.ok(
    logs.lines.some((line) => /server silent for 500 ms/.test(line)),
    logs.lines.join("\n"),
  );
  const attempts = logs.lines.flatMap((line) => {
    const match = line.match(/reconnecting in \d+ ms \(attempt (\d+)\)/);
    return match ? [Number(match[1])] : [];
  });
  assert.deepEqual(attempts.slice(0, 6), [1, 2, 1, 2, 3, 4], logs.lines.join("\n"));
});
