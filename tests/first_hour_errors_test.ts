/**
 * The first hour's mistakes (issue 17): each is one line naming the flag or
 * file, exit code 2, no stack trace.
 */

import assert from "node:assert/strict";
import { type CertPaths, makeCerts, runProgram, runReclog, serveArgv, tempDir } from "./helpers.ts";

function serveArgs(certs: CertPaths, extra: string[]): string[] {
  return serveArgv(certs, extra);
}

async function expectOneLine(args: string[], pattern: RegExp): Promise<string> {
  const result = await runReclog(args);
  const lines = result.stderr.trimEnd().split("\n");
  assert.equal(result.code, 2, `exit code for ${args.join(" ")}: ${result.stderr}`);
  assert.equal(lines.length, 1, `one line for ${args.join(" ")}, got:\n${result.stderr}`);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(result.stderr, /^\s+at /m);
  return lines[0]!;
}

Deno.test("serve --syslog-in without the ':' of the scheme names the flag and suggests tcp://", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  await expectOneLine(
    serveArgs(certs, ["--syslog-in", "tcp//127.0.0.1:5141"]),
    /^reclog serve: --syslog-in 'tcp\/\/127\.0\.0\.1:5141': 'tcp\/\/127\.0\.0\.1' is not a host name or IP address \(did you mean 'tcp:\/\/127\.0\.0\.1'\?\)$/,
  );
});

Deno.test("serve --syslog-in with a host name that does not resolve names the flag", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  for (const value of ["tcp://no-such-host.invalid:5141", "no-such-host.invalid:5140"]) {
    await expectOneLine(
      serveArgs(certs, ["--syslog-in", value]),
      new RegExp(`^reclog serve: --syslog-in '${value}': cannot resolve the host name$`),
    );
  }
});

Deno.test("serve --spool on a regular file says it is not a directory", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  await expectOneLine(
    serveArgs(certs, ["--spool", "/etc/passwd"]),
    /^reclog serve: Cannot use --spool '\/etc\/passwd': it exists and is not a directory$/,
  );
});

Deno.test("serve --spool under /proc says reclog may not write there", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  await expectOneLine(
    serveArgs(certs, ["--spool", "/proc/x/spool"]),
    /^reclog serve: Cannot use --spool '\/proc\/x\/spool': reclog's permission set does not allow it/,
  );
});

Deno.test("serve --syslog-in with an unknown scheme lists only the input schemes (udp, tcp, relp)", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const line = await expectOneLine(
    serveArgs(certs, ["--syslog-in", "tpc://127.0.0.1:5141"]),
    /^reclog serve: --syslog-in 'tpc:\/\/127\.0\.0\.1:5141': unknown scheme 'tpc:\/\/' \(expected udp:\/\/, tcp:\/\/ or relp:\/\/\)$/,
  );
  assert.doesNotMatch(line, /unix|-\)/);
});

Deno.test("serve --cert followed by another flag says --cert needs a value", async () => {
  await expectOneLine(
    ["serve", "--cert", "--key", "X"],
    /^reclog serve: --cert needs a value \(see 'reclog serve --help'\)$/,
  );
  await expectOneLine(["serve", "--cert"], /^reclog serve: --cert needs a value/);
});

Deno.test("pull --state on a read-only file system names the flag and says read-only", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const ro = `${dir.path}/ro`;
  await Deno.mkdir(ro);
  const mount = await runProgram("mount", ["-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", ro]);
  assert.equal(mount.code, 0, `mount a read-only tmpfs (the tests run as root): ${mount.stderr}`);
  try {
    for (const state of [`${ro}/missing/x`, `${ro}/x`]) {
      await expectOneLine(
        [
          "pull",
          "--server",
          "127.0.0.1:1",
          "--cert",
          certs.clientCert,
          "--key",
          certs.clientKey,
          "--ca",
          certs.ca,
          "--state",
          state,
        ],
        new RegExp(
          `^reclog pull: Cannot (use|write into) --state '${state}': read-only file system$`,
        ),
      );
    }
  } finally {
    await runProgram("umount", [ro]);
  }
});
