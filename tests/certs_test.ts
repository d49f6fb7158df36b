/**
 * `reclog certs`: the files it makes, their modes, what openssl thinks of
 * them (verify, x509 -text, a TLS 1.3 mutual handshake with s_server and
 * s_client), `show`, --force, and the one-line usage errors.
 */

import assert from "node:assert/strict";
import { createCa } from "../lib/pki/pki.ts";
import {
  freePort,
  requirePeer,
  runProgram,
  runReclog,
  type RunResult,
  startProgram,
  tempDir,
  waitFor,
  writeIssued,
} from "./helpers.ts";

const UMASK = Deno.umask();

/** `certs init` for localhost/127.0.0.1/::1 plus `certs client home`, in `dir/pki`. */
async function initPki(dir: string): Promise<{ pki: string; init: RunResult }> {
  const pki = `${dir}/pki`;
  const init = await runReclog([
    "certs",
    "init",
    "--dir",
    pki,
    "--server-name",
    "localhost",
    "--ip",
    "127.0.0.1",
    "--ip",
    "::1",
  ]);
  assert.equal(init.code, 0, init.stderr);
  const client = await runReclog(["certs", "client", "home", "--dir", pki]);
  assert.equal(client.code, 0, client.stderr);
  return { pki, init };
}

/** A usage error: exit 2, exactly one line on stderr, no stack trace. */
function assertUsageError(result: RunResult, pattern: RegExp): void {
  assert.equal(result.code, 2, `expected exit 2; stderr: ${result.stderr}`);
  const lines = result.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `expected one line on stderr, got:\n${result.stderr}`);
  assert.match(lines[0]!, /^reclog certs: /);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(result.stderr, /^\s+at /m);
}

async function mode(path: string): Promise<number> {
  return (await Deno.stat(path)).mode! & 0o777;
}

/** Runs a program with `input` on stdin, killing it after `timeoutMs`. */
async function runWithInput(
  program: string,
  args: string[],
  input: string,
  timeoutMs = 15_000,
): Promise<RunResult> {
  const child = new Deno.Command(requirePeer(program), {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }, timeoutMs);
  try {
    const writing = (async () => {
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode(input));
      await writer.close();
    })().catch(() => {});
    const out = await child.output();
    await writing;
    const decoder = new TextDecoder();
    return {
      code: out.code,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
    };
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("certs init and client make the files with the right modes", async () => {
  await using dir = await tempDir();
  const { pki, init } = await initPki(dir.path);
  assert.equal(await mode(pki), 0o700);
  for (const name of ["ca", "server", "home"]) {
    assert.equal(await mode(`${pki}/${name}.key`), 0o600, `${name}.key`);
    assert.equal(await mode(`${pki}/${name}.pem`), 0o644 & ~UMASK, `${name}.pem`);
    assert.match(await Deno.readTextFile(`${pki}/${name}.key`), /^-----BEGIN PRIVATE KEY-----/);
    assert.match(await Deno.readTextFile(`${pki}/${name}.pem`), /^-----BEGIN CERTIFICATE-----/);
  }
  const leftovers = [...Deno.readDirSync(pki)].map((entry) => entry.name).sort();
  assert.deepEqual(leftovers, [
    "ca.key",
    "ca.pem",
    "home.key",
    "home.pem",
    "server.key",
    "server.pem",
  ]);
  // The next steps, with absolute paths, and where each file goes.
  assert.ok(
    init.stdout.includes(
      `scp ${pki}/ca.pem ${pki}/server.pem ${pki}/server.key root@localhost:/etc/reclog/`,
    ) &&
      init.stdout.includes(
        "reclog serve --cert /etc/reclog/server.pem --key /etc/reclog/server.key --ca /etc/reclog/ca.pem",
      ),
    init.stdout,
  );
  assert.ok(init.stdout.includes(`reclog certs client home --dir ${pki}`), init.stdout);
  assert.ok(
    init.stdout.includes(
      "reclog pull --server localhost:6514 --cert /etc/reclog/home.pem --key /etc/reclog/home.key --ca /etc/reclog/ca.pem",
    ),
    init.stdout,
  );
  assert.match(init.stdout, /Copy ca\.pem, server\.pem and server\.key to the VPS/);
  assert.match(init.stdout, /ca\.key stays at home: it never goes to the VPS/);
});

Deno.test("certs: openssl verifies and reads what init and client make", async () => {
  await using dir = await tempDir();
  const { pki } = await initPki(dir.path);
  const verify = await runProgram("openssl", [
    "verify",
    "-CAfile",
    `${pki}/ca.pem`,
    `${pki}/server.pem`,
    `${pki}/home.pem`,
  ]);
  assert.equal(verify.code, 0, verify.stderr + verify.stdout);
  assert.match(verify.stdout, /server\.pem: OK/);
  assert.match(verify.stdout, /home\.pem: OK/);

  const text = async (name: string) => {
    const out = await runProgram("openssl", ["x509", "-noout", "-text", "-in", `${pki}/${name}`]);
    assert.equal(out.code, 0, out.stderr);
    return out.stdout;
  };
  const ca = await text("ca.pem");
  assert.match(ca, /Version: 3 \(0x2\)/);
  assert.match(ca, /Basic Constraints: critical\s+CA:TRUE/);
  assert.match(ca, /Key Usage: critical\s+Certificate Sign, CRL Sign/);
  assert.match(ca, /NIST CURVE: P-256/);

  const server = await text("server.pem");
  assert.match(server, /Version: 3 \(0x2\)/);
  assert.match(server, /Subject: CN = localhost/);
  assert.match(server, /Basic Constraints: critical\s+CA:FALSE/);
  assert.match(server, /Key Usage: critical\s+Digital Signature/);
  assert.match(server, /Extended Key Usage:\s+TLS Web Server Authentication\n/);
  assert.match(
    server,
    /Subject Alternative Name:\s+DNS:localhost, IP Address:127\.0\.0\.1, IP Address:0:0:0:0:0:0:0:1\n/,
  );
  assert.match(server, /ecdsa-with-SHA256/);

  const client = await text("home.pem");
  assert.match(client, /Version: 3 \(0x2\)/);
  assert.match(client, /Subject: CN = home/);
  assert.match(client, /Key Usage: critical\s+Digital Signature/);
  assert.match(client, /Extended Key Usage:\s+TLS Web Client Authentication\n/);
  assert.doesNotMatch(client, /Subject Alternative Name/);
});

Deno.test("certs: existing files are kept without --force and replaced with it", async () => {
  await using dir = await tempDir();
  const { pki } = await initPki(dir.path);
  const before = await Deno.readTextFile(`${pki}/ca.pem`);
  const beforeKey = await Deno.readTextFile(`${pki}/ca.key`);

  const again = await runReclog(["certs", "init", "--dir", pki, "--server-name", "localhost"]);
  assertUsageError(again, /ca\.pem'.*already exist.*--force/);
  assert.equal(again.stdout, "");
  assert.equal(await Deno.readTextFile(`${pki}/ca.pem`), before);
  assert.equal(await Deno.readTextFile(`${pki}/ca.key`), beforeKey);

  const homeBefore = await Deno.readTextFile(`${pki}/home.pem`);
  const clientAgain = await runReclog(["certs", "client", "home", "--dir", pki]);
  assertUsageError(clientAgain, /home\.pem'.*already exist.*--force/);
  assert.equal(await Deno.readTextFile(`${pki}/home.pem`), homeBefore);

  // A key left world-readable is replaced by one created 0600.
  await Deno.chmod(`${pki}/home.key`, 0o644);
  const forced = await runReclog(["certs", "client", "home", "--dir", pki, "--force"]);
  assert.equal(forced.code, 0, forced.stderr);
  assert.notEqual(await Deno.readTextFile(`${pki}/home.pem`), homeBefore);
  assert.equal(await mode(`${pki}/home.key`), 0o600);

  const reinit = await runReclog([
    "certs",
    "init",
    "--dir",
    pki,
    "--server-name",
    "localhost",
    "--force",
  ]);
  assert.equal(reinit.code, 0, reinit.stderr);
  assert.notEqual(await Deno.readTextFile(`${pki}/ca.pem`), before);
  assert.equal(await mode(`${pki}/ca.key`), 0o600);
  assert.match(reinit.stdout, /Replaced \(--force\)/);
  // The old client certificate no longer chains to the new CA.
  const verify = await runProgram("openssl", [
    "verify",
    "-CAfile",
    `${pki}/ca.pem`,
    `${pki}/home.pem`,
  ]);
  assert.notEqual(verify.code, 0);
});

Deno.test("certs init: one existing target stops it before anything is written", async () => {
  await using dir = await tempDir();
  const pki = `${dir.path}/pki`;
  await Deno.mkdir(pki);
  await Deno.writeTextFile(`${pki}/server.key`, "mine\n", { mode: 0o600 });
  const result = await runReclog(["certs", "init", "--dir", pki, "--server-name", "vps.test"]);
  assertUsageError(result, /server\.key' already exists/);
  assert.deepEqual([...Deno.readDirSync(pki)].map((entry) => entry.name), ["server.key"]);
  assert.equal(await Deno.readTextFile(`${pki}/server.key`), "mine\n");
});

Deno.test("certs show: subject, SANs, validity, usages and openssl's fingerprint", async () => {
  await using dir = await tempDir();
  const { pki } = await initPki(dir.path);
  const show = await runReclog(["certs", "show", `${pki}/server.pem`]);
  assert.equal(show.code, 0, show.stderr);
  const fingerprint = await runProgram("openssl", [
    "x509",
    "-noout",
    "-fingerprint",
    "-sha256",
    "-in",
    `${pki}/server.pem`,
  ]);
  const expected = /Fingerprint=([0-9A-F:]+)/.exec(fingerprint.stdout)?.[1];
  assert.ok(expected, fingerprint.stdout);
  assert.match(show.stdout, /^Subject: +CN=localhost$/m);
  assert.match(show.stdout, /^Issuer: +CN=reclog CA for localhost$/m);
  assert.match(show.stdout, /^SANs: +DNS:localhost, IP:127\.0\.0\.1, IP:::1$/m);
  assert.match(show.stdout, /^Not after: +\S+ \(82[45] days left\)$/m);
  assert.match(show.stdout, new RegExp(`^SHA-256: +${expected}$`, "m"));
  assert.match(show.stdout, /^Key usage: +digitalSignature.*serverAuth$/m);
  assert.match(show.stdout, /^CA: +no$/m);

  const ca = await runReclog(["certs", "show", `${pki}/ca.pem`]);
  assert.equal(ca.code, 0, ca.stderr);
  assert.match(ca.stdout, /^CA: +yes/m);
  assert.match(ca.stdout, /^Key usage: +keyCertSign, cRLSign$/m);

  const home = await runReclog(["certs", "show", `${pki}/home.pem`]);
  assert.match(home.stdout, /^Subject: +CN=home$/m);
  assert.match(home.stdout, /^Key usage: +.*clientAuth$/m);
});

Deno.test("certs show: an expired certificate says how long ago", async () => {
  await using dir = await tempDir();
  const old = await createCa({ notBefore: new Date(Date.now() - 10 * 86_400_000), days: 1 });
  const { cert } = await writeIssued(dir.path, "old", old);
  const show = await runReclog(["certs", "show", cert]);
  assert.equal(show.code, 0, show.stderr);
  assert.match(show.stdout, /^Not after: +\S+ \(EXPIRED 8 days ago\)$/m);
});

Deno.test("certs: mistakes are one line on stderr and exit 2", async () => {
  await using dir = await tempDir();
  const pki = `${dir.path}/pki`;

  assertUsageError(
    await runReclog(["certs", "client", "home", "--dir", pki]),
    new RegExp(
      `Cannot read '${RegExp.escape(pki)}/ca\\.key': file not found .*run 'reclog certs init`,
    ),
  );
  assertUsageError(
    await runReclog(["certs", "init", "--dir", pki, "--server-name", "h", "--ip", "10.0.0.300"]),
    /--ip '10\.0\.0\.300'/,
  );
  assertUsageError(
    await runReclog(["certs", "init", "--dir", pki, "--server-name", "h", "--ip", "fe80::1%eth0"]),
    /--ip 'fe80::1%eth0'/,
  );
  assertUsageError(await runReclog(["certs", "init", "--dir", pki]), /--server-name/);
  assertUsageError(
    await runReclog(["certs", "init", "--dir", pki, "--server-name", "not a name"]),
    /--server-name 'not a name'/,
  );
  assertUsageError(
    await runReclog(["certs", "init", "--server-name", "h"]),
    /--dir DIR is required/,
  );
  assertUsageError(await runReclog(["certs", "frobnicate"]), /unknown subcommand 'frobnicate'/);
  assertUsageError(await runReclog(["certs"]), /missing subcommand/);
  assertUsageError(
    await runReclog(["certs", "init", "--dir", pki, "--server-name", "h", "--nope"]),
    /init: Unknown option '--nope'/,
  );
  assertUsageError(
    await runReclog(["certs", "init", "--dir", pki, "--server-name", "h", "--days", "0"]),
    /--days '0'/,
  );
  // Nothing above created the directory.
  await assert.rejects(Deno.stat(pki), Deno.errors.NotFound);

  const made = await runReclog(["certs", "init", "--dir", pki, "--server-name", "h"]);
  assert.equal(made.code, 0, made.stderr);
  assertUsageError(
    await runReclog(["certs", "client", "../evil", "--dir", pki]),
    /client NAME '\.\.\/evil'/,
  );
  assertUsageError(await runReclog(["certs", "client", "ca", "--dir", pki]), /reserved/);
  assertUsageError(await runReclog(["certs", "show", `${pki}/ca.key`]), /not a certificate/);
  assertUsageError(await runReclog(["certs", "show", `${pki}/none.pem`]), /file not found/);
  await Deno.writeTextFile(`${dir.path}/text.pem`, "hello\n");
  assertUsageError(
    await runReclog(["certs", "show", `${dir.path}/text.pem`]),
    /text\.pem' is not a certificate/,
  );
});

Deno.test("certs --help and <sub> --help print usage and exit 0", async () => {
  for (
    const [args, pattern] of [
      [["certs", "--help"], /Usage: reclog certs <init\|client\|show>/],
      [["certs", "init", "--help"], /Usage: reclog certs init --dir DIR --server-name NAME/],
      [["certs", "client", "-h"], /Usage: reclog certs client NAME --dir DIR/],
      [["certs", "show", "--help"], /Usage: reclog certs show FILE/],
    ] as const
  ) {
    const result = await runReclog([...args]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, pattern);
    assert.equal(result.stderr, "");
  }
});

Deno.test("certs: openssl s_server and s_client complete a TLS 1.3 mutual handshake", async () => {
  await using dir = await tempDir();
  const { pki } = await initPki(dir.path);

  /** One-connection s_server requiring a client certificate, once it accepts. */
  const startServer = async () => {
    const port = freePort();
    const server = startProgram("openssl", [
      "s_server",
      "-Verify",
      "1",
      "-verify_return_error",
      "-CAfile",
      `${pki}/ca.pem`,
      "-cert",
      `${pki}/server.pem`,
      "-key",
      `${pki}/server.key`,
      "-accept",
      `127.0.0.1:${port}`,
      "-tls1_3",
      "-naccept",
      "1",
      "-www",
    ]);
    await waitFor(() => {
      if (server.exited) throw new Error(`s_server exited early: ${server.stderr}`);
      return server.stdout.includes("ACCEPT");
    }, { what: () => `s_server to accept; stderr: ${server.stderr}` });
    return { server, port };
  };
  const client = (port: number, hostname: string) =>
    runWithInput("openssl", [
      "s_client",
      "-connect",
      `127.0.0.1:${port}`,
      "-servername",
      hostname,
      "-cert",
      `${pki}/home.pem`,
      "-key",
      `${pki}/home.key`,
      "-CAfile",
      `${pki}/ca.pem`,
      "-verify_return_error",
      "-verify_hostname",
      hostname,
      "-tls1_3",
      "-ign_eof",
    ], "GET / HTTP/1.0\r\n\r\n");

  {
    const { server, port } = await startServer();
    await using _server = server;
    const result = await client(port, "localhost");
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /New, TLSv1\.3, Cipher is TLS_/);
    assert.match(result.stdout, /Verify return code: 0 \(ok\)/);
    assert.match(result.stdout, /HTTP\/1\.0 200 ok/);
    // The -www page describes the client certificate the server accepted.
    assert.match(result.stdout, /Client certificate[\s\S]*Subject: CN ?= ?home/);
    const status = await server.wait();
    assert.equal(status.code, 0, server.stderr);
    assert.match(server.stderr, /depth=0 CN = home\nverify return:1/);
  }
  {
    // The server certificate does not name other hosts: the client refuses.
    const { server, port } = await startServer();
    await using _server = server;
    const result = await client(port, "other.example");
    assert.notEqual(result.code, 0);
    assert.match(result.stdout + result.stderr, /hostname mismatch|Verify return code: 62/);
    await server.wait();
  }
});
