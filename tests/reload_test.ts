/**
 * Certificates that change while reclog runs: SIGHUP and on-disk changes,
 * checked with a connected pull and with openssl s_client.
 */

import assert from "node:assert/strict";
import { createCa, describeCertificate, issueCertificate } from "../lib/pki/pki.ts";
import { makeCerts, runProgram, startReclog, tempDir, waitFor, writeIssued } from "./helpers.ts";
import { sendUdp, startPull, startServe } from "./relay.ts";

/** The SHA-256 fingerprint of the certificate a fresh TLS client is shown. */
async function servedFingerprint(port: number, ca: string, cert: string, key: string) {
  const out = await runProgram("sh", [
    "-c",
    `openssl s_client -connect 127.0.0.1:${port} -servername localhost -CAfile ${ca} -cert ${cert} -key ${key} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256`,
  ]);
  return out.stdout.trim().replace(/^.*=/, "");
}

Deno.test("SIGHUP with a new server certificate: connected clients go on, new ones see the new one", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const served = await startServe(certs);
  await using serve = served.process;
  await using pull = await startPull(certs, served.port);
  const before = await servedFingerprint(served.port, certs.ca, certs.clientCert, certs.clientKey);
  assert.match(before, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);

  const renewed = await issueCertificate(certs.caIssued, {
    kind: "server",
    commonName: "localhost renewed",
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
  });
  await Deno.writeTextFile(certs.serverCert, renewed.certPem);
  await Deno.writeTextFile(certs.serverKey, renewed.keyPem);
  serve.kill("SIGHUP");
  await serve.waitForStderr(/new certificate material in use/);
  const after = await servedFingerprint(served.port, certs.ca, certs.clientCert, certs.clientKey);
  assert.equal(after, (await describeCertificate(renewed.certPem)).fingerprint);
  assert.notEqual(after, before);

  await sendUdp(served.udpPort, ["<14>after the reload"]);
  await waitFor(() => pull.stdout.includes("<14>after the reload\n"), {
    what: "the connected client to keep receiving",
  });
  assert.doesNotMatch(pull.stderr, /reconnecting/);
  assert.equal(serve.exited, undefined);
});

Deno.test("a changed --ca on disk revokes a client: its next connection is refused", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const otherCa = await createCa({ subject: "CN=second CA" });
  const other = await writeIssued(
    dir.path,
    "other",
    await issueCertificate(otherCa, { kind: "client", commonName: "other" }),
  );
  const original = await Deno.readTextFile(certs.ca);
  await Deno.writeTextFile(certs.ca, `${original}\n${otherCa.certPem}\n`);
  // The client's own bundle: the server's CA (first) and its own issuer.
  const clientCa = `${dir.path}/client-ca.pem`;
  await Deno.writeTextFile(clientCa, `${original}\n${otherCa.certPem}\n`);
  const served = await startServe(certs);
  await using serve = served.process;
  await using pull = await startPull(certs, served.port, {
    cert: other.cert,
    key: other.key,
    ca: clientCa,
  });
  // The server's bundle drops the second CA (no signal: noticed on disk).
  await Deno.writeTextFile(certs.ca, original);
  await serve.waitForStderr(
    /certificate files changed on disk[\s\S]*new certificate material in use/,
  );
  // The connected client goes on until it reconnects, then it is refused.
  await sendUdp(served.udpPort, ["<14>still connected"]);
  await waitFor(() => pull.stdout.includes("<14>still connected\n"), {
    what: "the old connection",
  });
  await using again = await startPull(certs, served.port, {
    cert: other.cert,
    key: other.key,
    ca: clientCa,
    waitConnected: false,
  });
  await serve.waitForStderr(/refused: client certificate not signed by --ca/);
  await again.waitForStderr(/refused: client certificate not signed by --ca/);
});

Deno.test("a bad new certificate is refused and the old one stays in use", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const served = await startServe(certs);
  await using serve = served.process;
  const before = await servedFingerprint(served.port, certs.ca, certs.clientCert, certs.clientKey);
  await Deno.writeTextFile(certs.serverKey, "not a key\n");
  serve.kill("SIGHUP");
  await serve.waitForStderr(/refused the new certificate material, keeping the old: .*--key/);
  assert.equal(
    await servedFingerprint(served.port, certs.ca, certs.clientCert, certs.clientKey),
    before,
  );
});

Deno.test("a certificate that expires within 30 days is warned about at start", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const soon = await writeIssued(
    dir.path,
    "soon",
    await issueCertificate(certs.caIssued, {
      kind: "server",
      commonName: "localhost",
      dnsNames: ["localhost"],
      days: 10,
    }),
  );
  await using serve = startReclog([
    "serve",
    "--cert",
    soon.cert,
    "--key",
    soon.key,
    "--ca",
    certs.ca,
    "--listen",
    "127.0.0.1:0",
    "--syslog-in",
    "127.0.0.1:0",
  ]);
  await serve.waitForStderr(/--cert '.*soon\.pem' expires on \d{4}-\d\d-\d\d \(\d+ days left\)/);
});
