/**
 * Who `serve` refuses, checked with a real TLS client (`openssl s_client`):
 * refused clients get no byte of log data, and each refusal is logged with
 * the client's address and the reason.
 */

import assert from "node:assert/strict";
import { createCa, issueCertificate } from "../lib/pki/pki.ts";
import { encodeControl, FrameType } from "../lib/protocol/frame.ts";
import {
  type CertPaths,
  makeCerts,
  requirePeer,
  Running,
  tempDir,
  waitFor,
  writeIssued,
} from "./helpers.ts";
import { sendUdp, startServe } from "./relay.ts";

const HELLO = encodeControl(FrameType.Hello, { proto: "reclog", v: 1, live: true });
const SECRET = "<14>secret log line that refused clients must never see";

/** Starts `openssl s_client` that sends a reclog greeting and keeps reading. */
function sClient(port: number, certs: CertPaths, extra: string[]): Running {
  const child = new Deno.Command(requirePeer("openssl"), {
    args: [
      "s_client",
      "-connect",
      `127.0.0.1:${port}`,
      "-servername",
      "localhost",
      "-CAfile",
      certs.ca,
      "-ign_eof",
      "-quiet",
      ...extra,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  writer.write(HELLO).then(() => writer.close()).catch(() => {});
  return new Running("openssl s_client", child);
}

/**
 * Connects with s_client, sends log data into serve while it is connected,
 * and returns what it received and what serve logged.
 */
async function attempt(
  certs: CertPaths,
  serveArgs: string[],
  clientArgs: string[],
  expectAccepted: boolean,
): Promise<{ received: string; serveLog: string }> {
  const served = await startServe(certs, { args: serveArgs });
  await using serve = served.process;
  await using client = sClient(served.port, certs, clientArgs);
  if (expectAccepted) {
    await serve.waitForStderr(/client \S+ \(\S+\) connected/);
  } else {
    await serve.waitForStderr(/client \S+ refused: .+/);
  }
  await sendUdp(served.udpPort, [SECRET]);
  if (expectAccepted) {
    await waitFor(() => client.stdout.includes(SECRET), { what: "the accepted client's data" });
  } else {
    // Give a leak every chance to show: wait until serve has the message and
    // the client has ended (it was refused) or a short while has passed.
    await waitFor(() => client.exited !== undefined, {
      timeoutMs: 10_000,
      what: () => `refused s_client to exit; serve stderr:\n${serve.stderr}`,
    });
  }
  return { received: client.stdout, serveLog: serve.stderr };
}

Deno.test("an accepted client receives log data (control for the refusals below)", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const { received } = await attempt(certs, [], [
    "-cert",
    certs.clientCert,
    "-key",
    certs.clientKey,
  ], true);
  assert.ok(received.includes(SECRET));
});

Deno.test("refused: no client certificate", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const { received, serveLog } = await attempt(certs, [], [], false);
  assert.ok(!received.includes("secret"), received);
  assert.match(serveLog, /client 127\.0\.0\.1:\d+ refused: no client certificate/);
});

Deno.test("refused: certificate from another CA with the same subject names", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const otherCa = await createCa({ subject: "CN=test CA,O=reclog tests" });
  const impostor = await issueCertificate(otherCa, { kind: "client", commonName: "home" });
  const files = await writeIssued(dir.path, "impostor", impostor);
  const { received, serveLog } = await attempt(certs, [], [
    "-cert",
    files.cert,
    "-key",
    files.key,
  ], false);
  assert.ok(!received.includes("secret"), received);
  assert.match(serveLog, /client 127\.0\.0\.1:\d+ refused: client certificate not signed by --ca/);
});

Deno.test("refused: expired client certificate", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const expired = await issueCertificate(certs.caIssued, {
    kind: "client",
    commonName: "home",
    notBefore: new Date(Date.now() - 400 * 86_400_000),
    days: 30,
  });
  const files = await writeIssued(dir.path, "expired", expired);
  const { received, serveLog } = await attempt(certs, [], [
    "-cert",
    files.cert,
    "-key",
    files.key,
  ], false);
  assert.ok(!received.includes("secret"), received);
  assert.match(serveLog, /client 127\.0\.0\.1:\d+ refused: client certificate expired/);
});

Deno.test("refused: TLS 1.2", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const { received, serveLog } = await attempt(certs, [], [
    "-tls1_2",
    "-cert",
    certs.clientCert,
    "-key",
    certs.clientKey,
  ], false);
  assert.ok(!received.includes("secret"), received);
  assert.match(serveLog, /client 127\.0\.0\.1:\d+ refused: TLS version below 1\.3/);
});

Deno.test("refused with --issuer: a certificate from a second CA of the same trust store", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const secondCa = await createCa({ subject: "CN=second CA,O=reclog tests" });
  const other = await issueCertificate(secondCa, { kind: "client", commonName: "home" });
  const files = await writeIssued(dir.path, "second-home", other);
  // Both CAs are trusted; --issuer narrows to the first.
  await Deno.writeTextFile(certs.ca, `\n${secondCa.certPem}\n`, { append: true });
  const issuer = ["--issuer", "/O=reclog tests/CN=test CA"];
  const { received, serveLog } = await attempt(certs, issuer, [
    "-cert",
    files.cert,
    "-key",
    files.key,
  ], false);
  assert.ok(!received.includes("secret"), received);
  assert.match(serveLog, /client 127\.0\.0\.1:\d+ refused: issuer '.*second CA.*' is not --issuer/);
  // The first CA's client is still accepted under the same flags.
  const accepted = await attempt(certs, issuer, [
    "-cert",
    certs.clientCert,
    "-key",
    certs.clientKey,
  ], true);
  assert.ok(accepted.received.includes(SECRET));
});

Deno.test("refused by --allow-cn and --allow-fingerprint", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const byCn = await attempt(certs, ["--allow-cn", "someone-else"], [
    "-cert",
    certs.clientCert,
    "-key",
    certs.clientKey,
  ], false);
  assert.ok(!byCn.received.includes("secret"));
  assert.match(byCn.serveLog, /refused: subject CN 'home' is not in --allow-cn/);
  const byFingerprint = await attempt(certs, ["--allow-fingerprint", "ab".repeat(32)], [
    "-cert",
    certs.clientCert,
    "-key",
    certs.clientKey,
  ], false);
  assert.ok(!byFingerprint.received.includes("secret"));
  assert.match(
    byFingerprint.serveLog,
    /refused: fingerprint [0-9a-f]{64} is not in --allow-fingerprint/,
  );
});

Deno.test("a TLS handshake that does not finish in 10 s is dropped and logged", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const served = await startServe(certs);
  await using serve = served.process;
  using conn = await Deno.connect({ hostname: "127.0.0.1", port: served.port });
  const started = Date.now();
  // Say nothing: the server must close the connection on its own.
  const read = await conn.read(new Uint8Array(64)).catch(() => null);
  const seconds = (Date.now() - started) / 1000;
  assert.equal(read, null, "the server closed the connection");
  assert.ok(seconds >= 9 && seconds < 20, `closed after ${seconds} s`);
  await serve.waitForStderr(/client 127\.0\.0\.1:\d+ refused: TLS handshake timed out/);
});
