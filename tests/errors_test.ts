/**
 * Configuration mistakes: one line naming the flag and the problem, exit
 * code 2, no stack trace.
 */

import assert from "node:assert/strict";
import { createCa, issueCertificate } from "../lib/pki/pki.ts";
import { type CertPaths, makeCerts, runReclog, tempDir, writeIssued } from "./helpers.ts";

function serveArgs(certs: CertPaths, overrides: Record<string, string> = {}): string[] {
  const flags: Record<string, string> = {
    "--cert": certs.serverCert,
    "--key": certs.serverKey,
    "--ca": certs.ca,
    "--listen": "127.0.0.1:0",
    "--syslog-in": "127.0.0.1:0",
    ...overrides,
  };
  return ["serve", ...Object.entries(flags).flatMap(([k, v]) => v === "" ? [] : [k, v])];
}

function pullArgs(certs: CertPaths, overrides: Record<string, string> = {}): string[] {
  const flags: Record<string, string> = {
    "--server": "127.0.0.1:1",
    "--cert": certs.clientCert,
    "--key": certs.clientKey,
    "--ca": certs.ca,
    "--live": "",
    ...overrides,
  };
  return [
    "pull",
    ...Object.entries(flags).flatMap(([k, v]) => k === "--live" ? [k] : v === "" ? [] : [k, v]),
  ];
}

async function expectUsageError(args: string[], pattern: RegExp): Promise<void> {
  const result = await runReclog(args);
  const lines = result.stderr.trimEnd().split("\n");
  assert.equal(result.code, 2, `exit code for ${args.join(" ")}: ${result.stderr}`);
  assert.equal(lines.length, 1, `one line for ${args.join(" ")}, got:\n${result.stderr}`);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(result.stderr, /^\s+at /m);
}

Deno.test("serve: missing, unreadable and mismatched files are named", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  await expectUsageError(serveArgs(certs, { "--cert": "" }), /--cert is required/);
  await expectUsageError(
    serveArgs(certs, { "--cert": `${dir.path}/nope.pem` }),
    /Cannot read --cert '.*nope\.pem': file not found/,
  );
  await Deno.chmod(certs.serverKey, 0o000);
  if (Deno.uid() !== 0) {
    await expectUsageError(serveArgs(certs), /Cannot read --key '.*': permission denied/);
  }
  await Deno.chmod(certs.serverKey, 0o600);
  await expectUsageError(
    serveArgs(certs, { "--key": certs.clientKey }),
    /--key '.*home\.key' does not match --cert '.*server\.pem'/,
  );
  await expectUsageError(
    serveArgs(certs, { "--key": certs.serverCert }),
    /Cannot use --key '.*server\.pem': not a PEM private key/,
  );
  await expectUsageError(
    serveArgs(certs, { "--ca": certs.serverKey }),
    /Cannot use --ca '.*server\.key': no PEM certificate in it/,
  );
  const otherCa = await createCa({ subject: "CN=other" });
  const otherFiles = await writeIssued(dir.path, "other-ca", otherCa);
  await expectUsageError(
    serveArgs(certs, { "--ca": otherFiles.cert }),
    /--cert '.*server\.pem' is not signed by --ca '.*other-ca\.pem'/,
  );
  const expired = await issueCertificate(certs.caIssued, {
    kind: "server",
    commonName: "localhost",
    dnsNames: ["localhost"],
    notBefore: new Date("2020-01-01T00:00:00Z"),
    days: 30,
  });
  const expiredFiles = await writeIssued(dir.path, "expired", expired);
  await expectUsageError(
    serveArgs(certs, { "--cert": expiredFiles.cert, "--key": expiredFiles.key }),
    /--cert '.*expired\.pem' expired on 2020-01-31/,
  );
});

Deno.test("serve: malformed addresses and DNs, ports in use", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  await expectUsageError(
    serveArgs(certs, { "--listen": "localhost" }),
    /--listen 'localhost': expected HOST:PORT/,
  );
  await expectUsageError(
    serveArgs(certs, { "--listen": "127.0.0.1:70000" }),
    /--listen '127\.0\.0\.1:70000': expected HOST:PORT/,
  );
  await expectUsageError(
    serveArgs(certs, { "--syslog-in": "ftp://127.0.0.1:5" }),
    /--syslog-in 'ftp:\/\/127\.0\.0\.1:5': unknown scheme/,
  );
  await expectUsageError(
    serveArgs(certs, { "--issuer": "just some words" }),
    /--issuer 'just some words': expected a DN/,
  );
  await expectUsageError(
    serveArgs(certs, { "--allow-fingerprint": "abc" }),
    /--allow-fingerprint 'abc': expected a SHA-256 fingerprint/,
  );
  await expectUsageError(serveArgs(certs, { "--bogus": "1" }), /Unknown option '--bogus'/);
  {
    using busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (busy.addr as Deno.NetAddr).port;
    await expectUsageError(
      serveArgs(certs, { "--listen": `127.0.0.1:${port}` }),
      new RegExp(`--listen '127\\.0\\.0\\.1:${port}': address already in use`),
    );
  }
  {
    const busy = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    try {
      const port = (busy.addr as Deno.NetAddr).port;
      await expectUsageError(
        serveArgs(certs, { "--syslog-in": `127.0.0.1:${port}` }),
        new RegExp(`--syslog-in '127\\.0\\.0\\.1:${port}': address already in use`),
      );
    } finally {
      busy.close();
    }
  }
});

Deno.test("pull: malformed server address, sink URL and missing files", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  await expectUsageError(pullArgs(certs, { "--server": "" }), /--server is required/);
  await expectUsageError(
    pullArgs(certs, { "--server": "[::1]" }),
    /--server '\[::1\]': expected HOST:PORT/,
  );
  await expectUsageError(
    pullArgs(certs, { "--to": "http://x:1" }),
    /--to 'http:\/\/x:1': unknown scheme 'http:\/\/'/,
  );
  await expectUsageError(
    pullArgs(certs, { "--ca": `${dir.path}/missing-ca.pem` }),
    /Cannot read --ca '.*missing-ca\.pem': file not found/,
  );
  await expectUsageError(
    pullArgs(certs, { "--key": certs.serverKey }),
    /--key '.*server\.key' does not match --cert '.*home\.pem'/,
  );
});

Deno.test("every role answers --help with exit 0, and unknown roles exit 2", async () => {
  for (const role of ["serve", "pull", "certs", "listen", "send", "play"]) {
    const result = await runReclog([role, "--help"]);
    assert.equal(result.code, 0, `${role} --help: ${result.stderr}`);
    assert.match(result.stdout, new RegExp(`reclog ${role}`));
  }
  const version = await runReclog(["--version"]);
  assert.equal(version.code, 0);
  assert.match(version.stdout, /^reclog \d+\.\d+\.\d+\n$/);
  const unknown = await runReclog(["frobnicate"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown role 'frobnicate'/);
});
