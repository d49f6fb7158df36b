import assert from "node:assert/strict";
import {
  freePort,
  makeCerts,
  readOrEmpty,
  runProgram,
  runReclog,
  startReclog,
  tempDir,
  waitFor,
  writeIssued,
} from "./helpers.ts";
import { createCa, issueCertificate } from "../lib/pki/pki.ts";

const LISTENING = /listening on \S*:(\d+)/;

function numbered(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}${i} ${"x".repeat(i % 300)}`);
}

async function lineCount(path: string): Promise<number> {
  const text = await readOrEmpty(path);
  return text === "" ? 0 : text.split("\n").length - 1;
}

Deno.test("send: the listener is down for ~5 s, then every line arrives once, in order", async () => {
  await using dir = await tempDir();
  const file = `${dir.path}/out.log`;
  const port = freePort();
  const lines = numbered("line", 20_000);
  const started = Date.now();
  const sending = runReclog(["send", `127.0.0.1:${port}`, "--linger", "30"], {
    stdin: lines.join("\n") + "\n",
  });
  // The outage: the endpoint is simply not there for 5 s (this is not a readiness wait).
  await new Promise((resolve) => setTimeout(resolve, 5_000));
  await using listen = startReclog(["listen", "--port", String(port), "--file", file]);
  await listen.waitForStderr(LISTENING);
  const result = await sending;
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stderr, /connection refused/);
  assert.ok(Date.now() - started >= 5_000);
  await waitFor(async () => (await lineCount(file)) >= lines.length, {
    what: () => `all lines in the file; listen stderr:\n${listen.stderr}`,
  });
  listen.kill("SIGTERM");
  assert.equal((await listen.wait()).code, 0);
  assert.deepEqual((await readOrEmpty(file)).split("\n").slice(0, -1), lines);
});

Deno.test("send -- COMMAND: stdout and stderr lines whole, the command's exit code", async () => {
  await using dir = await tempDir();
  const file = `${dir.path}/out.log`;
  await using listen = startReclog(["listen", "--port", "0", "--file", file]);
  const port = Number((await listen.waitForStderr(LISTENING))[1]);
  const script = `i=0; while [ $i -lt 2000 ]; do echo "out $i"; echo "err $i" >&2; ` +
    `i=$((i+1)); done; printf 'no newline'; exit 3`;
  await using send = startReclog(["send", `127.0.0.1:${port}`, "--", "sh", "-c", script]);
  const status = await send.wait(30_000);
  assert.equal(status.code, 3, send.stderr);
  await waitFor(async () => (await lineCount(file)) >= 4001, { what: "4001 lines" });
  const got = (await readOrEmpty(file)).split("\n").slice(0, -1);
  const out = got.filter((line) => line.startsWith("out "));
  const err = got.filter((line) => line.startsWith("err "));
  assert.deepEqual(out, numbered("out ", 2000).map((_, i) => `out ${i}`));
  assert.deepEqual(err, numbered("err ", 2000).map((_, i) => `err ${i}`));
  assert.ok(got.includes("no newline"));
  assert.equal(got.length, 4001);
  listen.kill("SIGTERM");
  assert.equal((await listen.wait()).code, 0);
});

Deno.test("send: the listener restarts mid-stream; lines arrive once, in order", async () => {
  await using dir = await tempDir();
  const file = `${dir.path}/out.log`;
  const port = freePort();
  const listenArgs = ["listen", "--port", String(port), "--file", file];
  let listen = startReclog(listenArgs);
  try {
    await listen.waitForStderr(LISTENING);
    const script = `i=0; while [ $i -lt 4000 ]; do echo "line $i"; i=$((i+1)); ` +
      `[ $((i % 200)) -eq 0 ] && sleep 0.1; done; exit 0`;
    await using send = startReclog(["send", `127.0.0.1:${port}`, "--", "sh", "-c", script]);
    for (const after of [1000, 2500]) {
      await waitFor(async () => (await lineCount(file)) >= after, {
        what: () => `${after} lines; send stderr:\n${send.stderr}`,
      });
      listen.kill("SIGTERM");
      assert.equal((await listen.wait()).code, 0, listen.stderr);
      await listen[Symbol.asyncDispose]();
      listen = startReclog(listenArgs);
      await listen.waitForStderr(LISTENING);
    }
    const status = await send.wait(30_000);
    assert.equal(status.code, 0, send.stderr);
    assert.match(send.stderr, /connection to 127\.0\.0\.1:\d+ lost/);
    await waitFor(async () => (await lineCount(file)) >= 4000, { what: "4000 lines" });
    listen.kill("SIGTERM");
    assert.equal((await listen.wait()).code, 0);
    const got = (await readOrEmpty(file)).split("\n").slice(0, -1);
    assert.deepEqual(got, Array.from({ length: 4000 }, (_, i) => `line ${i}`));
  } finally {
    await listen[Symbol.asyncDispose]();
  }
});

Deno.test("send: a full buffer while the endpoint is away drops lines, says so, exits 1", async () => {
  const port = freePort();
  const result = await runReclog(
    ["send", `127.0.0.1:${port}`, "--buffer-bytes", "2KiB", "--linger", "0.5"],
    { stdin: numbered("line", 1000).join("\n") + "\n" },
  );
  assert.equal(result.code, 1, result.stderr);
  const dropped = Number(/dropped (\d+) lines/.exec(result.stderr)?.[1]);
  const undelivered = Number(/(\d+) lines not delivered/.exec(result.stderr)?.[1]);
  assert.ok(dropped > 900, result.stderr);
  assert.equal(dropped + undelivered, 1000, result.stderr);
});

Deno.test("send: mutual TLS to listen; a sender without a certificate is refused", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const file = `${dir.path}/out.log`;
  await using listen = startReclog([
    "listen",
    "--port",
    "0",
    "--file",
    file,
    "--cert",
    certs.serverCert,
    "--key",
    certs.serverKey,
    "--ca",
    certs.ca,
  ]);
  const port = Number((await listen.waitForStderr(LISTENING))[1]);
  const lines = numbered("tls", 3000);
  const sent = await runReclog([
    "send",
    `127.0.0.1:${port}`,
    "--cert",
    certs.clientCert,
    "--key",
    certs.clientKey,
    "--ca",
    certs.ca,
  ], { stdin: lines.join("\n") + "\n" });
  assert.equal(sent.code, 0, sent.stderr);
  assert.match(listen.stderr, /connected \(TLS, CN home\)/);
  await waitFor(async () => (await lineCount(file)) >= lines.length, { what: "TLS lines" });
  assert.deepEqual((await readOrEmpty(file)).split("\n").slice(0, -1), lines);

  // openssl without -cert: the handshake is refused, nothing it sent is written.
  const openssl = await runProgram("openssl", [
    "s_client",
    "-connect",
    `127.0.0.1:${port}`,
    "-CAfile",
    certs.ca,
    "-quiet",
  ], { stdin: "sneaky line from openssl\n" });
  assert.notEqual(openssl.code, 0, openssl.stderr);
  await listen.waitForStderr(/refused TLS sender 127\.0\.0\.1:\d+: .*certificate/i);

  // Plain text to the TLS port: refused too.
  const plain = await runProgram("socat", ["-u", "-", `TCP4:127.0.0.1:${port}`], {
    stdin: "plain line\n",
  });
  assert.equal(plain.code, 0, plain.stderr);
  await waitFor(() => (listen.stderr.match(/refused TLS sender/g) ?? []).length >= 2, {
    what: () => `two refusals; stderr:\n${listen.stderr}`,
  });

  // reclog send with a certificate from another CA (its own --ca trusts both): the
  // listener refuses it after the handshake, and send counts its lines as not delivered.
  const other = await createCa({ subject: "CN=other CA" });
  const mallory = await writeIssued(
    dir.path,
    "mallory",
    await issueCertificate(other, { kind: "client", commonName: "mallory" }),
  );
  const bundle = `${dir.path}/both-cas.pem`;
  await Deno.writeTextFile(bundle, (await Deno.readTextFile(certs.ca)) + other.certPem);
  const refused = await runReclog([
    "send",
    `127.0.0.1:${port}`,
    "--cert",
    mallory.cert,
    "--key",
    mallory.key,
    "--ca",
    bundle,
    "--linger",
    "2",
  ], { stdin: "mallory one\nmallory two\n" });
  assert.equal(refused.code, 1, refused.stderr);
  assert.match(refused.stderr, /does it accept our --cert/);
  assert.match(refused.stderr, /2 lines not delivered/);

  listen.kill("SIGTERM");
  assert.equal((await listen.wait()).code, 0);
  const text = await readOrEmpty(file);
  assert.ok(!text.includes("mallory"), "the refused sender's lines were written");
  assert.ok(!text.includes("sneaky"), "openssl's line was written");
  assert.ok(!text.includes("plain line"), "the plain sender's line was written");
  assert.equal(await lineCount(file), lines.length);
});

Deno.test("send: mistakes are one line on stderr and exit 2", async () => {
  const cases: Array<[string[], RegExp]> = [
    [[], /expected the endpoint HOST:PORT/],
    [["nonsense"], /HOST:PORT 'nonsense': expected HOST:PORT/],
    [["127.0.0.1:1", "--cert", "c.pem", "--ca", "ca.pem"], /--key missing/],
    [["127.0.0.1:1", "--buffer-bytes", "lots"], /--buffer-bytes 'lots'/],
    [["127.0.0.1:1", "--linger", "-1"], /--linger/],
    [["127.0.0.1:1", "--server-name", "x"], /--server-name needs --cert/],
    [
      ["127.0.0.1:1", "--", "/nonexistent/command"],
      /Cannot run COMMAND '\/nonexistent\/command': not found/,
    ],
  ];
  for (const [args, pattern] of cases) {
    const result = await runReclog(["send", ...args], { stdin: "" });
    assert.equal(result.code, 2, `${args.join(" ")}: ${result.stderr}`);
    const lines = result.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1, `one line for ${args.join(" ")}: ${result.stderr}`);
    assert.match(lines[0]!, /^reclog send: /);
    assert.match(lines[0]!, pattern);
  }
  const help = await runReclog(["send", "--help"]);
  assert.equal(help.code, 0);
  for (
    const flag of [
      "--cert",
      "--key",
      "--ca",
      "--server-name",
      "--buffer-bytes",
      "--linger",
      "--max-line",
    ]
  ) {
    assert.ok(help.stdout.includes(flag), `--help mentions ${flag}`);
  }
});
