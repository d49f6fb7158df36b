/**
 * Nothing lost across disconnects: the journal on the server, the resume
 * point on the client, over real sockets on loopback.
 */

import assert from "node:assert/strict";
import { makeCerts, readOrEmpty, tempDir, waitFor } from "./helpers.ts";
import { indices, numbered, sendTcp, startPull, startServe } from "./relay.ts";

function range(from: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => from + i);
}

Deno.test("pull stopped while 10,000 messages arrive, then restarted: all delivered once, in order", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const state = `${dir.path}/pull.state`;
  const served = await startServe(certs, { tcp: true });
  await using _serve = served.process;
  {
    await using first = await startPull(certs, served.port, { args: ["--state", state] });
    await sendTcp(served.tcpPort!, numbered("stop", 0, 10));
    await waitFor(() => indices(first.stdout, "stop").length === 10, { what: "first ten" });
    first.kill("SIGTERM");
    assert.equal((await first.wait()).code, 0);
    assert.deepEqual(indices(first.stdout, "stop"), range(0, 10));
  }
  await sendTcp(served.tcpPort!, numbered("stop", 10, 10_000));
  await using second = await startPull(certs, served.port, { args: ["--state", state] });
  await waitFor(() => indices(second.stdout, "stop").length >= 10_000, {
    what: () => `10,000 messages after restart (have ${indices(second.stdout, "stop").length})`,
  });
  assert.deepEqual(indices(second.stdout, "stop"), range(10, 10_000));
  const saved = JSON.parse(await readOrEmpty(state) || "{}");
  assert.equal(typeof saved.epoch, "string");
});

Deno.test("pull killed with SIGKILL mid-stream: resumes from the saved point, duplicates bounded", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const state = `${dir.path}/pull.state`;
  const served = await startServe(certs, { tcp: true });
  await using _serve = served.process;
  const total = 12_000;
  const rate = 4000; // messages a second, in 40 bursts of 100
  const first = await startPull(certs, served.port, { args: ["--state", state] });
  let sent = 0;
  const sender = (async () => {
    while (sent < total) {
      await sendTcp(served.tcpPort!, numbered("kill", sent, 100));
      sent += 100;
      await new Promise((resolve) => setTimeout(resolve, 1000 / (rate / 100)));
    }
  })();
  await waitFor(() => indices(first.stdout, "kill").length > 4000, {
    what: "4000 messages in the first run",
  });
  first.kill("SIGKILL");
  await first.wait();
  await first[Symbol.asyncDispose]();
  const firstSeen = indices(first.stdout, "kill");
  const saved = JSON.parse(await readOrEmpty(state));
  await using second = await startPull(certs, served.port, { args: ["--state", state] });
  await sender;
  await waitFor(() => indices(second.stdout, "kill").at(-1) === total - 1, {
    what: () => `the last message in the second run (at ${indices(second.stdout, "kill").at(-1)})`,
  });
  const secondSeen = indices(second.stdout, "kill");
  // The second run starts exactly at the saved resume point, and has no gap.
  assert.equal(secondSeen[0], saved.next - 1);
  assert.deepEqual(secondSeen, range(saved.next - 1, total - saved.next + 1));
  // Nothing lost: the first run covered everything before it.
  assert.deepEqual(firstSeen, range(0, firstSeen.length));
  assert.ok(secondSeen[0]! <= firstSeen.length, "no gap between the runs");
  // Duplicates: only the unsaved tail, at most ~1 s of traffic plus a batch.
  const duplicates = firstSeen.length - secondSeen[0]!;
  assert.ok(duplicates >= 0);
  assert.ok(duplicates <= rate * 1.5 + 1000, `${duplicates} duplicates`);
  console.log(`SIGKILL resume: ${duplicates} duplicates (state saved every second)`);
});

Deno.test("serve --spool killed with SIGKILL during ingest: everything accepted reaches the client", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const spool = `${dir.path}/spool`;
  const state = `${dir.path}/pull.state`;
  const first = await startServe(certs, { tcp: true, args: ["--spool", spool] });
  const port = first.port;
  const pull = await startPull(certs, port, { args: ["--state", state] });
  // Ingest continuously and kill serve in the middle of it.
  const sending = sendTcp(first.tcpPort!, numbered("spool", 0, 50_000)).catch(() => {});
  await waitFor(() => indices(pull.stdout, "spool").length > 5000, { what: "ingest under way" });
  first.process.kill("SIGKILL");
  await first.process.wait();
  await first.process[Symbol.asyncDispose]();
  await sending;
  const second = await startServe(certs, { args: ["--spool", spool], port });
  await using _second = second.process;
  const restored = await second.process.waitForStderr(/next seq (\d+), (\d+) messages held/);
  const accepted = Number(restored[1]) - 1;
  assert.ok(accepted >= 5000, `accepted ${accepted}`);
  await using _pull = pull;
  await waitFor(() => indices(pull.stdout, "spool").at(-1) === accepted - 1, {
    what: () =>
      `message ${accepted - 1} at the client (at ${indices(pull.stdout, "spool").at(-1)})`,
    timeoutMs: 30_000,
  });
  // Every accepted message, in order; only the unsaved tail twice; nothing corrupt.
  const seen = indices(pull.stdout, "spool");
  const unique = [...new Set(seen)].sort((a, b) => a - b);
  assert.deepEqual(unique, range(0, accepted));
  const lines = pull.stdout.trimEnd().split("\n");
  assert.ok(lines.every((line) => /^<14>spool m\d+$/.test(line)), "no corrupt line");
});

Deno.test("retention overflow: an exact lost count and a marker message in the sink", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const state = `${dir.path}/pull.state`;
  const served = await startServe(certs, { tcp: true, args: ["--journal-bytes", "256KiB"] });
  await using _serve = served.process;
  {
    await using first = await startPull(certs, served.port, { args: ["--state", state] });
    await sendTcp(served.tcpPort!, numbered("ret", 0, 5));
    await waitFor(() => indices(first.stdout, "ret").length === 5, { what: "five messages" });
    first.kill("SIGTERM");
    await first.wait();
  }
  const total = 20_000;
  await sendTcp(served.tcpPort!, numbered("ret", 5, total - 5, 100));
  await using second = await startPull(certs, served.port, { args: ["--state", state] });
  await waitFor(() => indices(second.stdout, "ret").at(-1) === total - 1, {
    what: "the last message",
  });
  const marker = second.stdout.match(
    /^<12>1 \S+ \S+ reclog - - - reclog: (\d+) messages from 127\.0\.0\.1:\d+ lost \(seq 6\.\.(\d+)\) between \S+ and \S+/m,
  );
  assert.ok(marker, `marker message in the sink:\n${second.stdout.slice(0, 500)}`);
  const lost = Number(marker[1]);
  const received = indices(second.stdout, "ret");
  assert.equal(received[0], 5 + lost);
  assert.deepEqual(received, range(5 + lost, total - 5 - lost));
  assert.equal(Number(marker[2]), 5 + lost);
  assert.match(second.stderr, /WRN.*messages from .* lost/);
});
