/**
 * Signals and refusals outside serve/pull (issue 11 item 14): `play -` removes
 * its temporary copy of stdin on SIGINT; `listen` stops cleanly on the first
 * signal and exits at once on the second; `listen --cert` gives the real
 * reason for refusing a sender's certificate.
 */

import assert from "node:assert/strict";
import * as tls from "node:tls";
import { issueCertificate } from "../lib/pki/pki.ts";
import {
  makeCerts,
  reclogArgv,
  Running,
  startReclog,
  tempDir,
  waitFor,
  writeIssued,
} from "./helpers.ts";

/** A tlog message line: "hello", then 30 s later "world". */
function slowRecording(): string {
  return JSON.stringify({
    ver: "2.3",
    host: "box",
    rec: "slow-1",
    user: "alice",
    term: "xterm",
    session: 7,
    id: 1,
    pos: 0,
    time: 1700000000,
    timing: "=80x24>5+30000>5",
    in_txt: "",
    in_bin: [],
    out_txt: "helloworld",
    out_bin: [],
  }) + "\n";
}

/** Starts `reclog play -` with stdin piped and TMPDIR set to `tmp`. */
function startPlay(tmp: string): { running: Running; stdin: WritableStreamDefaultWriter } {
  const child = new Deno.Command(Deno.execPath(), {
    args: reclogArgv(["play", "-"]),
    env: { NO_COLOR: "1", TMPDIR: tmp },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return { running: new Running("reclog play", child), stdin: child.stdin.getWriter() };
}

function entries(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((entry) => entry.name);
}

Deno.test("play -: SIGINT while playing from stdin removes its temporary file and exits 130", async () => {
  await using dir = await tempDir();
  const tmp = `${dir.path}/tmp`;
  await Deno.mkdir(tmp);
  const { running, stdin } = startPlay(tmp);
  await using _play = running;
  await stdin.write(new TextEncoder().encode(slowRecording()));
  await stdin.close();
  // "hello" is played; "world" is 30 s away.
  await waitFor(() => running.stdout.includes("hello"), {
    what: () => `play to print hello; stderr: ${running.stderr}`,
  });
  assert.equal(entries(tmp).length, 1, "stdin is spooled to one temporary file");
  running.kill("SIGINT");
  const status = await running.wait(5_000);
  assert.equal(status.code, 130, running.stderr);
  assert.ok(!running.stdout.includes("world"), "stopped before the rest");
  assert.deepEqual(entries(tmp), [], "temporary file removed");
});

Deno.test("play -: SIGINT while stdin is still being read removes the temporary file too", async () => {
  await using dir = await tempDir();
  const tmp = `${dir.path}/tmp`;
  await Deno.mkdir(tmp);
  const { running, stdin } = startPlay(tmp);
  await using _play = running;
  await stdin.write(new TextEncoder().encode(slowRecording()));
  await waitFor(() => entries(tmp).length === 1, { what: "the temporary copy of stdin" });
  running.kill("SIGINT");
  const status = await running.wait(5_000);
  assert.equal(status.code, 130, running.stderr);
  assert.deepEqual(entries(tmp), [], "temporary file removed");
  await stdin.close().catch(() => {});
});

Deno.test("listen: the first signal stops cleanly, a second one exits at once", async () => {
  await using dir = await tempDir();
  const file = `${dir.path}/out.log`;
  await using listen = startReclog(["listen", "--port", "0", "--file", file]);
  const port = Number((await listen.waitForStderr(/listening on \S*:(\d+)/))[1]);
  // A sender that stays connected: the clean stop waits for it (1 s grace).
  using sender = await Deno.connect({ hostname: "127.0.0.1", port });
  await sender.write(new TextEncoder().encode("a line\n"));
  await waitFor(async () => (await Deno.readTextFile(file).catch(() => "")).includes("a line"), {
    what: "the line in the file",
  });
  const started = Date.now();
  listen.kill("SIGTERM");
  await listen.waitForStderr(/stopping \(signal received\)/);
  listen.kill("SIGTERM");
  const status = await listen.wait(5_000);
  const elapsed = Date.now() - started;
  assert.equal(status.code, 1, `exit at once with 1, not a clean 0:\n${listen.stderr}`);
  assert.match(listen.stderr, /second signal: exiting at once/);
  assert.ok(elapsed < 900, `exited after ${elapsed} ms, before the 1 s grace`);
});

Deno.test("listen: one signal alone still stops cleanly with exit 0", async () => {
  await using dir = await tempDir();
  const file = `${dir.path}/out.log`;
  await using listen = startReclog(["listen", "--port", "0", "--file", file]);
  await listen.waitForStderr(/listening on/);
  listen.kill("SIGINT");
  assert.equal((await listen.wait()).code, 0, listen.stderr);
  assert.match(listen.stderr, /stopped; 0 lines written/);
});

Deno.test("listen --cert: an expired sender certificate from the right CA is refused as expired, not as 'not signed by --ca'", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const expired = await issueCertificate(certs.caIssued, {
    kind: "client",
    commonName: "old",
    notBefore: new Date("2020-01-01T00:00:00Z"),
    days: 30,
  });
  const old = await writeIssued(dir.path, "old", expired);
  await using listen = startReclog([
    "listen",
    "--port",
    "0",
    "--file",
    `${dir.path}/out.log`,
    "--cert",
    certs.serverCert,
    "--key",
    certs.serverKey,
    "--ca",
    certs.ca,
  ]);
  const port = Number((await listen.waitForStderr(/listening on \S*:(\d+)/))[1]);
  const socket = tls.connect({
    host: "127.0.0.1",
    port,
    servername: "localhost",
    cert: await Deno.readTextFile(old.cert),
    key: await Deno.readTextFile(old.key),
    ca: await Deno.readTextFile(certs.ca),
  });
  const closed = new Promise<void>((resolve) => {
    socket.on("close", () => resolve());
    socket.on("error", () => {});
  });
  try {
    const line = await listen.waitForStderr(/refused TLS sender .*/);
    assert.match(line[0], /client certificate expired on 2020-01-31/);
    assert.doesNotMatch(line[0], /not signed by --ca/);
  } finally {
    socket.destroy();
    await closed;
  }
});
