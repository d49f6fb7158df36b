/**
 * A spool that cannot be written (a full disk, `ulimit -f`) or that lost its
 * segments: serve keeps running, says so once, reports exactly what it could
 * not keep, resumes when space returns, and never lets a resuming client skip
 * messages that reuse old sequence numbers.
 */

import assert from "node:assert/strict";
import { type CertPaths, makeCerts, Running, tempDir, waitFor } from "./helpers.ts";
import { indices, numbered, sendTcp, startPull, startServe } from "./relay.ts";
import { reclogArgv, runProgram, serveArgv } from "./helpers.ts";

/** A tmpfs of `size` mounted on a new directory under `parent`. */
async function mountTmpfs(
  parent: string,
  size: string,
): Promise<{ path: string } & AsyncDisposable> {
  const path = `${parent}/tmpfs`;
  await Deno.mkdir(path);
  const mounted = await runProgram("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", path]);
  assert.equal(mounted.code, 0, `mount tmpfs: ${mounted.stderr}`);
  return {
    path,
    async [Symbol.asyncDispose]() {
      const out = await runProgram("umount", ["-l", path]);
      assert.equal(out.code, 0, `umount: ${out.stderr}`);
    },
  };
}

/** Writes `path` in 16 KiB pieces until `bytes` or the disk is full; returns bytes written. */
function fill(path: string, bytes = Infinity): number {
  using file = Deno.openSync(path, { write: true, create: true, append: true });
  const chunk = new Uint8Array(16 * 1024).fill(0x66);
  let written = 0;
  for (let i = 0; i < 100_000 && written < bytes; i++) {
    try {
      written += file.writeSync(chunk.subarray(0, Math.min(chunk.length, bytes - written)));
    } catch {
      break; // full
    }
  }
  return written;
}

async function scrape(port: number, path = "/metrics"): Promise<{ status: number; text: string }> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: response.status, text: await response.text() };
}

function metric(text: string, name: string): number {
  const match = text.match(new RegExp(`^${name} (\\S+)$`, "m"));
  assert.ok(match, `${name} in\n${text}`);
  return Number(match[1]);
}

/** The loss notices a `pull --to -` wrote: exact counts and unknown ones. */
function lossNotices(stdout: string): { counts: number[]; unknown: number } {
  const counts = [
    ...stdout.matchAll(/reclog: (\d+) messages from \S+ lost \(seq (\d+)\.\.(\d+)\)/g),
  ]
    .map((m) => {
      assert.equal(Number(m[3]) - Number(m[2]) + 1, Number(m[1]), "count matches its range");
      return Number(m[1]);
    });
  const unknown = [...stdout.matchAll(/reclog: an unknown number of messages/g)].length;
  return { counts, unknown };
}

function segmentFiles(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".seg")).sort();
}

function serveArgs(spool: string, metrics = true): string[] {
  return [
    "--spool",
    spool,
    "--journal-bytes",
    "512KiB",
    ...(metrics ? ["--metrics", "127.0.0.1:0"] : []),
  ];
}

async function metricsPort(served: { process: Running }): Promise<number> {
  return await served.process.waitForListening("metrics");
}

const SENT = 20_000;

Deno.test("serve on a full 2 MiB tmpfs spool keeps running, reports exactly what it dropped, and resumes spooling when space returns", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  await using tmpfs = await mountTmpfs(dir.path, "2m");
  const spool = `${tmpfs.path}/spool`;
  const filler = `${tmpfs.path}/filler`;
  const state = `${dir.path}/pull.state`;
  const served = await startServe(certs, { tcp: true, args: serveArgs(spool) });
  await using serve = served.process;
  const mport = await metricsPort(served);
  // A resume point before the flood, so that the later pull is told what it missed.
  {
    await using first = await startPull(certs, served.port, { args: ["--state", state] });
    await sendTcp(served.tcpPort!, numbered("pre", 0, 10));
    await waitFor(() => indices(first.stdout, "pre").length === 10, { what: "ten first" });
    first.kill("SIGTERM");
    assert.equal((await first.wait()).code, 0);
  }
  // Leave the spool about 256 KiB: less than the 512 KiB the journal holds in memory.
  fill(filler, 1792 * 1024);
  await sendTcp(served.tcpPort!, numbered("full", 0, SENT, 180));
  await waitFor(
    async () => metric((await scrape(mport)).text, "reclog_journal_next_seq") === SENT + 11,
    {
      what: () => `serve to take all ${SENT}; stderr:\n${serve.stderr}`,
    },
  );
  assert.equal(serve.exited, undefined, `serve still runs; stderr:\n${serve.stderr}`);
  const paused = await scrape(mport);
  assert.equal(metric(paused.text, "reclog_spool_healthy"), 0);
  assert.ok(metric(paused.text, "reclog_spool_write_errors_total") >= 1);
  assert.equal((await scrape(mport, "/healthz")).status, 503);
  const pauseLines = serve.stderr.match(/spool .* cannot be written \(no space left on device\)/g);
  assert.equal(pauseLines?.length, 1, `one line saying why:\n${serve.stderr}`);
  assert.doesNotMatch(serve.stderr, /Uncaught/);
  assert.throws(() => Deno.statSync(`${spool}/journal.json`), Deno.errors.NotFound);

  // What the journal kept arrives; what it did not is reported, exactly.
  await using second = await startPull(certs, served.port, { args: ["--state", state] });
  await waitFor(() => indices(second.stdout, "full").at(-1) === SENT - 1, {
    what: () => `the last message (at ${indices(second.stdout, "full").at(-1)})`,
  });
  const got = indices(second.stdout, "full");
  const { counts, unknown } = lossNotices(second.stdout);
  assert.equal(unknown, 0);
  assert.equal(counts.length, 1, second.stdout.slice(0, 400));
  const lost = counts[0]!;
  assert.ok(lost > 0 && lost < SENT, `${lost} lost`);
  assert.equal(new Set(got).size, got.length, "no duplicates");
  assert.equal(got.length + lost, SENT, "kept + reported lost == sent");
  assert.deepEqual(got, Array.from({ length: SENT - lost }, (_, i) => lost + i));
  console.log(`full spool: ${got.length} kept, ${lost} reported lost of ${SENT}`);

  // Space returns: spooling resumes, said once, and the held messages reach the disk.
  const before = segmentFiles(spool);
  await Deno.remove(filler);
  await waitFor(async () => metric((await scrape(mport)).text, "reclog_spool_healthy") === 1, {
    what: () => `spooling to resume; stderr:\n${serve.stderr}`,
  });
  assert.equal((await scrape(mport, "/healthz")).status, 200);
  assert.equal(serve.stderr.match(/spool .* is written again/g)?.length, 1, serve.stderr);
  const after = segmentFiles(spool);
  assert.ok(after.some((name) => !before.includes(name)), `new segments: ${before} → ${after}`);
  const journalFile = JSON.parse(await Deno.readTextFile(`${spool}/journal.json`));
  assert.equal(journalFile.epoch, JSON.parse(await Deno.readTextFile(state)).epoch);

  // A restart on that spool continues the journal: same epoch, next number.
  serve.kill("SIGTERM");
  assert.equal((await serve.wait()).code, 0);
  const again = await startServe(certs, {
    tcp: true,
    args: serveArgs(spool, false),
    port: served.port,
  });
  await using _again = again.process;
  const next = await again.process.waitForStderr(/journal (\S+): next seq (\d+), (\d+) messages/);
  assert.equal(next[1], journalFile.epoch);
  assert.equal(Number(next[2]), SENT + 11);
  await sendTcp(again.tcpPort!, numbered("post", 0, 10));
  await waitFor(() => indices(second.stdout, "post").length === 10, {
    what: () => `ten after the restart; pull stderr:\n${second.stderr}`,
  });
  assert.equal(lossNotices(second.stdout).unknown, 0, "no unknown loss: the same journal");
  assert.equal(lossNotices(second.stdout).counts.length, 1);
});

Deno.test("serve restarted on a full spool starts in memory with spooling paused, and spools once space returns", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  await using tmpfs = await mountTmpfs(dir.path, "2m");
  const spool = `${tmpfs.path}/spool`;
  const filler = `${tmpfs.path}/filler`;
  let port: number;
  let epoch: string;
  {
    const served = await startServe(certs, { tcp: true, args: serveArgs(spool, false) });
    await using serve = served.process;
    port = served.port;
    await sendTcp(served.tcpPort!, numbered("old", 0, 100));
    await waitFor(() => segmentFiles(spool).length > 0, { what: "a segment" });
    serve.kill("SIGTERM");
    assert.equal((await serve.wait()).code, 0);
    epoch = JSON.parse(await Deno.readTextFile(`${spool}/journal.json`)).epoch;
    // journal.json gone too: the restart must record a new epoch on a full disk.
    await Deno.remove(`${spool}/journal.json`);
  }
  assert.ok(fill(filler) > 0);
  assert.equal(fill(`${filler}2`, 4096), 0, "the disk is full");
  const served = await startServe(certs, {
    tcp: true,
    args: serveArgs(spool),
    port,
  });
  await using serve = served.process;
  const mport = await metricsPort(served);
  assert.match(serve.stderr, /starting a new epoch/);
  assert.match(serve.stderr, /spool .* cannot be written \(no space left on device\)/);
  assert.equal(metric((await scrape(mport)).text, "reclog_spool_healthy"), 0);
  await using pull = await startPull(certs, served.port, { args: ["--state", `${dir.path}/s`] });
  await waitFor(() => indices(pull.stdout, "old").length === 100, { what: "the spooled ones" });
  await sendTcp(served.tcpPort!, numbered("new", 0, 1000));
  await waitFor(() => indices(pull.stdout, "new").length === 1000, { what: "new ones, in memory" });
  assert.equal(serve.exited, undefined);

  await Deno.remove(filler);
  await waitFor(async () => metric((await scrape(mport)).text, "reclog_spool_healthy") === 1, {
    what: () => `spooling to resume; stderr:\n${serve.stderr}`,
  });
  const recorded = JSON.parse(await Deno.readTextFile(`${spool}/journal.json`));
  assert.notEqual(recorded.epoch, epoch);
  serve.kill("SIGTERM");
  assert.equal((await serve.wait()).code, 0);
  const again = await startServe(certs, { args: serveArgs(spool, false) });
  await using _again = again.process;
  const next = await again.process.waitForStderr(/journal (\S+): next seq (\d+), (\d+) messages/);
  assert.equal(next[1], recorded.epoch);
  assert.equal(Number(next[2]), 1101, "the messages held in memory were spooled");
  assert.equal(Number(next[3]), 1100);
});

Deno.test("serve under ulimit -f keeps running when a segment file hits the size limit (no SIGXFSZ death)", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const spool = `${dir.path}/spool`;
  // 1 MiB segments (the default) against a 256 KiB file size limit.
  const child = new Deno.Command("bash", {
    args: [
      "-c",
      'ulimit -f 256; exec "$0" "$@"',
      Deno.execPath(),
      ...reclogArgv([
        ...serveArgv(certs),
        "--syslog-in",
        "tcp://127.0.0.1:0",
        "--spool",
        spool,
        "--metrics",
        "127.0.0.1:0",
      ]),
    ],
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  await using serve = new Running("reclog serve (ulimit -f 256)", child);
  const tcpPort = await serve.waitForListening("syslog-in tcp");
  const port = await serve.waitForListening("mTLS");
  const mport = await serve.waitForListening("metrics");
  await using pull = await startPull(certs, port);
  await sendTcp(tcpPort, numbered("big", 0, 5000, 180));
  await waitFor(() => indices(pull.stdout, "big").length === 5000, {
    what: () => `all 5000 at the client; serve stderr:\n${serve.stderr}`,
  });
  assert.equal(serve.exited, undefined, `serve still runs:\n${serve.stderr}`);
  assert.match(serve.stderr, /spool .* cannot be written \(file too large/);
  const text = (await scrape(mport)).text;
  assert.equal(metric(text, "reclog_spool_healthy"), 0);
  assert.ok(metric(text, "reclog_spool_write_errors_total") >= 1);
  for (const name of segmentFiles(spool)) {
    assert.ok(Deno.statSync(`${spool}/${name}`).size <= 256 * 1024, `${name} within the limit`);
  }
});

Deno.test("a spool whose segments were deleted starts a new epoch: a resuming client gets every new message and an unknown-loss notice", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const spool = `${dir.path}/spool`;
  const state = `${dir.path}/pull.state`;
  let port: number;
  {
    const served = await startServe(certs, { tcp: true, args: ["--spool", spool] });
    await using serve = served.process;
    port = served.port;
    await using pull = await startPull(certs, port, { args: ["--state", state] });
    await sendTcp(served.tcpPort!, numbered("one", 0, 30));
    await waitFor(() => indices(pull.stdout, "one").length === 30, { what: "the first 30" });
    pull.kill("SIGTERM");
    assert.equal((await pull.wait()).code, 0);
    serve.kill("SIGTERM");
    assert.equal((await serve.wait()).code, 0);
  }
  const saved = JSON.parse(await Deno.readTextFile(state));
  assert.equal(saved.next, 31);
  for (const name of segmentFiles(spool)) await Deno.remove(`${spool}/${name}`);
  await newMessagesAllArrive(certs, spool, state, port, saved.epoch, /its segments are gone/);
});

Deno.test("a spool whose segments were all dropped after damage starts a new epoch: nothing new is skipped", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const spool = `${dir.path}/spool`;
  const state = `${dir.path}/pull.state`;
  let port: number;
  {
    const served = await startServe(certs, { tcp: true, args: ["--spool", spool] });
    await using serve = served.process;
    port = served.port;
    await using pull = await startPull(certs, port, { args: ["--state", state] });
    await sendTcp(served.tcpPort!, numbered("one", 0, 30));
    await waitFor(() => indices(pull.stdout, "one").length === 30, { what: "the first 30" });
    pull.kill("SIGTERM");
    assert.equal((await pull.wait()).code, 0);
    serve.kill("SIGTERM");
    assert.equal((await serve.wait()).code, 0);
  }
  const saved = JSON.parse(await Deno.readTextFile(state));
  // Damage inside the first of two segments: it and the later one are dropped.
  const [name] = segmentFiles(spool);
  const bytes = await Deno.readFile(`${spool}/${name}`);
  await Deno.writeFile(`${spool}/${String(31).padStart(16, "0")}.seg`, bytes);
  bytes[4] = 0;
  await Deno.writeFile(`${spool}/${name}`, bytes);
  await newMessagesAllArrive(certs, spool, state, port, saved.epoch, /cannot continue/);
});

async function newMessagesAllArrive(
  certs: CertPaths,
  spool: string,
  state: string,
  port: number,
  oldEpoch: string,
  why: RegExp,
): Promise<void> {
  const served = await startServe(certs, {
    tcp: true,
    args: ["--spool", spool, "--metrics", "127.0.0.1:0"],
    port,
  });
  await using serve = served.process;
  const mport = await metricsPort(served);
  // More new messages than the old resume point: the old numbering would skip 30 of them.
  await sendTcp(served.tcpPort!, numbered("two", 0, 50));
  await waitFor(async () => metric((await scrape(mport)).text, "reclog_journal_next_seq") === 51, {
    what: "serve to take the 50",
  });
  await using pull = await startPull(certs, port, { args: ["--state", state] });
  await waitFor(() => indices(pull.stdout, "two").length >= 50, {
    what: () => `all 50 new messages (have ${indices(pull.stdout, "two")})`,
  });
  assert.deepEqual(indices(pull.stdout, "two"), Array.from({ length: 50 }, (_, i) => i));
  assert.equal(lossNotices(pull.stdout).unknown, 1, pull.stdout.slice(0, 300));
  assert.match(serve.stderr, why);
  assert.match(serve.stderr, /starting a new epoch/);
  const epoch = JSON.parse(await Deno.readTextFile(`${spool}/journal.json`)).epoch;
  assert.notEqual(epoch, oldEpoch);
}
