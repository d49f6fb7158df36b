/**
 * Inputs that peers cannot exhaust: a TCP input caps its connections and
 * drops idle ones, an idle connection costs little memory, and a followed
 * file's memory of rotated files stays as small as what is on disk.
 */

import assert from "node:assert/strict";
import { TcpSource } from "../lib/sources/tcp.ts";
import { FileTail } from "../lib/sources/file.ts";
import { eachMessage } from "../lib/sources/batches.ts";
import { makeCerts, serveArgv, startReclog, tempDir, waitFor } from "./helpers.ts";

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** Resolves with what a read gives (null: closed by the peer), or "open" after `ms`. */
async function readOrTimeout(conn: Deno.TcpConn, ms: number): Promise<number | null | "open"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"open">((resolve) => timer = setTimeout(() => resolve("open"), ms));
  try {
    return await Promise.race([
      conn.read(new Uint8Array(16)).catch(() => null),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("a TCP input refuses senders beyond maxConnections and keeps serving the others", async () => {
  const got: string[] = [];
  await using source = new TcpSource({
    host: "127.0.0.1",
    port: 0,
    maxConnections: 20,
    onBatch: eachMessage((buf, start, end) => got.push(decoder.decode(buf.subarray(start, end)))),
  });
  const address = await source.listen();
  const conns: Deno.TcpConn[] = [];
  try {
    for (let i = 0; i < 30; i++) {
      conns.push(await Deno.connect({ hostname: "127.0.0.1", port: address.port }));
      // In order: the first 20 are accepted before the next one connects.
      await waitFor(() => source.connections + source.refused === i + 1, {
        timeoutMs: 5_000,
        what: () => `connection ${i} accepted or refused`,
      });
    }
    assert.equal(source.connections, 20);
    assert.equal(source.refused, 10);
    for (const conn of conns.slice(20)) assert.equal(await readOrTimeout(conn, 5_000), null);
    // The accepted ones still work.
    await conns[0]!.write(encoder.encode("<13>first\n"));
    await conns[19]!.write(encoder.encode("<13>twentieth\n"));
    await waitFor(() => got.length === 2, { timeoutMs: 5_000, what: () => `2 messages: ${got}` });
    assert.deepEqual(got.sort(), ["<13>first", "<13>twentieth"]);
  } finally {
    for (const conn of conns) {
      try {
        conn.close();
      } catch {
        // closed already
      }
    }
  }
});

Deno.test("a TCP sender that sends nothing for idleTimeoutMs is disconnected; a busy one is not", async () => {
  const got: string[] = [];
  await using source = new TcpSource({
    host: "127.0.0.1",
    port: 0,
    idleTimeoutMs: 300,
    framing: "lines",
    onBatch: eachMessage((buf, start, end) => got.push(decoder.decode(buf.subarray(start, end)))),
  });
  const address = await source.listen();
  const idle = await Deno.connect({ hostname: "127.0.0.1", port: address.port });
  const busy = await Deno.connect({ hostname: "127.0.0.1", port: address.port });
  try {
    await idle.write(encoder.encode("hello then silence\n"));
    const started = performance.now();
    let sent = 0;
    // The busy sender writes every 50 ms while the idle one waits (bounded: 60 rounds).
    while (sent < 60 && source.idleClosed === 0) {
      await busy.write(encoder.encode(`busy ${sent++}\n`));
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const elapsed = performance.now() - started;
    assert.equal(source.idleClosed, 1, "the idle sender was disconnected");
    assert.ok(elapsed >= 250, `not before its timeout (${Math.round(elapsed)} ms)`);
    assert.equal(await readOrTimeout(idle, 5_000), null);
    assert.equal(source.connections, 1);
    await busy.write(encoder.encode("still here\n"));
    await waitFor(() => got.includes("still here"), { timeoutMs: 5_000, what: "busy sender" });
    assert.ok(got.includes("hello then silence"));
  } finally {
    idle.close();
    busy.close();
  }
});

/** Resident memory of a process, KiB. */
async function rssKiB(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(status.match(/VmRSS:\s+(\d+)/)![1]);
}

Deno.test("serve with 1,100 idle TCP senders refuses those over 1,024 and its RSS stays bounded", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  await using serve = startReclog([
    ...serveArgv(certs),
    "--syslog-in",
    "tcp://127.0.0.1:0",
  ]);
  const port = await serve.waitForListening("syslog-in tcp");
  await serve.waitForListening("mTLS");
  const pid = serve.child.pid;
  // Warm up with a few connections so that first-use costs are not counted.
  for (let i = 0; i < 10; i++) (await Deno.connect({ hostname: "127.0.0.1", port })).close();
  await new Promise((resolve) => setTimeout(resolve, 200));
  const before = await rssKiB(pid);
  const conns: Deno.TcpConn[] = [];
  try {
    for (let i = 0; i < 1100; i++) {
      conns.push(await Deno.connect({ hostname: "127.0.0.1", port }));
      // Each sender says one short message and then stays idle.
      await conns[i]!.write(encoder.encode(`<13>sender ${i}\n`));
    }
    await serve.waitForStderr(/refused sender 127\.0\.0\.1:\d+: 1024 connections open/, 20_000);
    // The refused ones are closed by serve.
    let closed = 0;
    for (const conn of conns.slice(1024)) if (await readOrTimeout(conn, 5_000) === null) closed++;
    assert.equal(closed, 76);
    const after = await rssKiB(pid);
    const kibEach = (after - before) / 1024; // 1024 accepted senders
    console.log(
      `serve RSS ${before} KiB -> ${after} KiB with 1024 idle senders (${
        kibEach.toFixed(1)
      } KiB each)`,
    );
    // 256 KiB each would be 256 MiB; allow 48 KiB each (48 MiB) for Deno's own per-socket cost.
    assert.ok(after - before < 48 * 1024, `RSS grew ${after - before} KiB`);
  } finally {
    for (const conn of conns) {
      try {
        conn.close();
      } catch {
        // closed already
      }
    }
  }
  serve.kill("SIGTERM");
  assert.equal((await serve.wait()).code, 0, serve.stderr);
});

Deno.test("following a file through 40 rotations keeps its set of seen files bounded and reads every line once", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/app.log`;
  await Deno.writeTextFile(path, "");
  let text = "";
  let rotations = 0;
  await using tail = new FileTail({
    path,
    name: "app",
    fromStart: true,
    intervalMs: 10,
    onBatch: eachMessage((buf, start, end) => text += decoder.decode(buf.subarray(start, end))),
    onRotated: () => rotations++,
  });
  await tail.listen();
  const expected: string[] = [];
  for (let i = 0; i < 40; i++) {
    const line = `line ${i}\n`;
    expected.push(line);
    await Deno.writeTextFile(path, line, { append: true });
    await waitFor(() => text.endsWith(line), {
      timeoutMs: 5_000,
      what: () => `${JSON.stringify(line)}; got ${JSON.stringify(text.slice(-40))}`,
    });
    // logrotate with `rotate 2`: app.log.2 deleted, .1 -> .2, app.log -> .1, new app.log.
    await Deno.remove(`${path}.2`).catch(() => {});
    await Deno.rename(`${path}.1`, `${path}.2`).catch(() => {});
    await Deno.rename(path, `${path}.1`);
    await Deno.writeTextFile(path, "");
    await waitFor(() => rotations === i + 1, {
      timeoutMs: 5_000,
      what: () => `rotation ${i + 1}; saw ${rotations}`,
    });
  }
  assert.equal(text, expected.join(""));
  // app.log, app.log.1, app.log.2 at most (and one just rotated away).
  assert.ok(tail.seenFiles <= 4, `${tail.seenFiles} files remembered`);
});
