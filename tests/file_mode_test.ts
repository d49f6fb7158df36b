/**
 * File-mode: `serve --file` follows files through rotation, `pull --mirror`
 * keeps an exact copy at home. Real files, real rotation (logrotate and
 * renames/truncation by the test), real restarts.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { makeCerts, type Running, runProgram, startReclog, tempDir, waitFor } from "./helpers.ts";
import { startPull, startServe } from "./relay.ts";

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

async function hashOf(path: string): Promise<string> {
  try {
    return sha256(await Deno.readFile(path));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "missing";
    throw error;
  }
}

/** Local rotated copies of `name` in `dir`, oldest first. */
function localRotated(dir: string, name: string): string[] {
  const names: string[] = [];
  try {
    for (const entry of Deno.readDirSync(dir)) {
      if (
        entry.name.startsWith(`${name}.`) &&
        /^\d{14}(-\d+)?$/.test(entry.name.slice(name.length + 1))
      ) {
        names.push(entry.name);
      }
    }
  } catch {
    return [];
  }
  return names.sort((a, b) => {
    const [sa, na] = a.slice(name.length + 1).split("-");
    const [sb, nb] = b.slice(name.length + 1).split("-");
    return sa === sb ? Number(na ?? 0) - Number(nb ?? 0) : sa! < sb! ? -1 : 1;
  }).map((n) => `${dir}/${n}`);
}

/** Waits until the home copies equal the remote files: rotated ones in order, then the current. */
async function assertMirrored(
  remoteRotated: Array<string | { sha256: string; size: number }>,
  remoteCurrent: string,
  homeDir: string,
  name: string,
  timeoutMs = 30_000,
): Promise<void> {
  const wanted = async () => [
    ...await Promise.all(remoteRotated.map((r) => typeof r === "string" ? hashOf(r) : r.sha256)),
    await hashOf(remoteCurrent),
  ];
  const have = async () => [
    ...await Promise.all(localRotated(homeDir, name).map(hashOf)),
    await hashOf(`${homeDir}/${name}`),
  ];
  let last: string[] = [];
  const sizes = (paths: Array<string | { size: number }>) =>
    paths.map((p) => {
      if (typeof p !== "string") return p.size;
      try {
        return Deno.statSync(p).size;
      } catch {
        return -1;
      }
    }).join(",");
  await waitFor(async () => {
    last = await have();
    return JSON.stringify(last) === JSON.stringify(await wanted());
  }, {
    timeoutMs,
    what: () =>
      `home copies to match: want sizes ${sizes([...remoteRotated, remoteCurrent])}, have ${
        sizes([...localRotated(homeDir, name), `${homeDir}/${name}`])
      }`,
  });
}

/** Random printable lines with some binary bytes, of random sizes. */
function randomLines(count: number, maxLength: number): Uint8Array {
  const parts: Uint8Array[] = [];
  let size = 0;
  for (let i = 0; i < count; i++) {
    const length = Math.floor(Math.random() * maxLength);
    const line = new Uint8Array(length + 1);
    for (let j = 0; j < length; j++) {
      const r = Math.random();
      line[j] = r < 0.02
        ? 0xff - Math.floor(Math.random() * 16)
        : r < 0.03
        ? 0
        : 32 + Math.floor(Math.random() * 90);
    }
    line[length] = 0x0a;
    parts.push(line);
    size += line.length;
  }
  const all = new Uint8Array(size);
  let offset = 0;
  for (const part of parts) {
    all.set(part, offset);
    offset += part.length;
  }
  return all;
}

async function append(path: string, bytes: Uint8Array): Promise<void> {
  await Deno.writeFile(path, bytes, { append: true });
}

Deno.test("file-mode: random appends while logrotate and the test rotate: identical SHA-256 at home", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const remote = `${dir.path}/remote`;
  const home = `${dir.path}/home`;
  await Deno.mkdir(remote);
  const log = `${remote}/app.log`;
  await Deno.writeFile(log, randomLines(50, 200));
  const served = await startServe(certs, {
    args: [
      "--file",
      `${log}=app`,
      "--from-start",
      "--spool",
      `${dir.path}/spool`,
      "--rotated",
      `${remote}/app.log?*`,
    ],
  });
  await using _serve = served.process;
  await served.process.waitForStderr(/file app following/);
  await using _pull = await startPull(certs, served.port, {
    to: null,
    args: ["--mirror", home, "--state", `${dir.path}/pull.state`],
  });

  const conf = `${dir.path}/logrotate.conf`;
  await Deno.writeTextFile(
    conf,
    `${log} {\n  rotate 1000\n  nocompress\n  create 0644\n  missingok\n}\n`,
  );
  // What was rotated, in order, recorded as it happens (rotated files do not change after).
  const rotated: Array<{ sha256: string; size: number }> = [];
  const record = async (path: string) => {
    const bytes = await Deno.readFile(path);
    rotated.push({ sha256: sha256(bytes), size: bytes.length });
  };
  for (let round = 0; round < 30; round++) {
    await append(log, randomLines(1 + Math.floor(Math.random() * 40), 600));
    if (round % 10 === 4) {
      // logrotate (rename + create): app.log → app.log.1, older ones shift up.
      const out = await runProgram("logrotate", ["-f", "-s", `${dir.path}/logrotate.state`, conf]);
      assert.equal(out.code, 0, out.stderr);
      await record(`${log}.1`);
    } else if (round % 10 === 8) {
      // The test renames by hand, as some daemons do.
      const target = `${remote}/app.log-manual-${round}`;
      await Deno.rename(log, target);
      await record(target);
      await append(log, randomLines(3, 100));
    }
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 60));
  }
  assert.equal(rotated.length, 6);
  try {
    await assertMirrored(rotated, log, home, "app");
  } catch (error) {
    console.log(
      served.process.stderr,
      [...Deno.readDirSync(home)].map((e) => `${e.name} ${Deno.statSync(`${home}/${e.name}`).size}`)
        .sort(),
    );
    throw error;
  }

  // copytruncate once everything is across: the copy keeps the bytes, the
  // file starts again from 0.
  const copy = `${remote}/app.log-copytruncate`;
  await Deno.copyFile(log, copy);
  await Deno.truncate(log, 0);
  await record(copy);
  await append(log, randomLines(20, 300));
  try {
    await assertMirrored(rotated, log, home, "app");
  } catch (error) {
    console.log(served.process.stderr, [...Deno.readDirSync(home)].map((e) => e.name).sort());
    throw error;
  }
});

Deno.test("file-mode: server restarted while the file rotates, client killed during a rotation, a 10 MB line, binary bytes", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const remote = `${dir.path}/remote`;
  const home = `${dir.path}/home`;
  await Deno.mkdir(remote);
  const log = `${remote}/data.log`;
  const spool = `${dir.path}/spool`;
  const state = `${dir.path}/pull.state`;
  const rotated: string[] = [];
  await Deno.writeFile(log, randomLines(100, 300));
  const serveArgs = [
    "--file",
    log,
    "--from-start",
    "--spool",
    spool,
    "--rotated",
    `${remote}/data.log.*`,
  ];
  let served = await startServe(certs, { args: serveArgs });
  const port = served.port;
  let pull: Running = await startPull(certs, port, {
    to: null,
    args: ["--mirror", home, "--state", state],
  });
  try {
    await assertMirrored([], log, home, "data.log");

    // serve stops (SIGTERM), the file grows and rotates meanwhile, serve comes back.
    served.process.kill("SIGTERM");
    assert.equal((await served.process.wait()).code, 0);
    await served.process[Symbol.asyncDispose]();
    await append(log, randomLines(50, 300));
    rotated.push(`${log}.1`);
    await Deno.rename(log, `${log}.1`);
    await append(log, randomLines(30, 300));
    served = await startServe(certs, { args: serveArgs, port });
    await served.process.waitForStderr(/rotated while we were away/);
    await assertMirrored(rotated, log, home, "data.log");

    // The client is killed (SIGKILL) in the middle of a rotation.
    await append(log, randomLines(200, 500));
    pull.kill("SIGKILL");
    await pull.wait();
    await pull[Symbol.asyncDispose]();
    rotated.push(`${log}.2`);
    await Deno.rename(log, `${log}.2`);
    await append(log, randomLines(20, 100));
    pull = await startPull(certs, port, { to: null, args: ["--mirror", home, "--state", state] });
    await assertMirrored(rotated, log, home, "data.log");

    // A 10 MB line (split into messages on the way, whole again at home) and raw bytes.
    const big = new Uint8Array(10 * 1024 * 1024 + 1).fill(0x61);
    big[big.length - 1] = 0x0a;
    await append(log, big);
    await append(log, new Uint8Array([0x00, 0xff, 0xfe, 0x80, 0x0a, 0xc3, 0x28, 0x0a]));
    await assertMirrored(rotated, log, home, "data.log", 60_000);
    // No line twice: the copy is exactly the file (checked), and the sizes agree.
    assert.equal((await Deno.stat(`${home}/data.log`)).size, (await Deno.stat(log)).size);
  } finally {
    await pull[Symbol.asyncDispose]();
    await served.process[Symbol.asyncDispose]();
  }
});

Deno.test("file-mode: a file that does not exist yet is waited for; --file errors are named", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const log = `${dir.path}/later.log`;
  const served = await startServe(certs, {
    args: ["--file", log, "--file-state", `${dir.path}/files.json`],
  });
  await using serve = served.process;
  await serve.waitForStderr(/waiting for .*later\.log to appear/);
  await using _pull = await startPull(certs, served.port, {
    to: null,
    args: ["--mirror", `${dir.path}/home`],
  });
  await Deno.writeTextFile(log, "first line\n");
  await assertMirrored([], log, `${dir.path}/home`, "later.log");
  await using bad = startReclog([
    "serve",
    "--cert",
    certs.serverCert,
    "--key",
    certs.serverKey,
    "--ca",
    certs.ca,
    "--file",
    `${log}=syslog`,
  ]);
  assert.equal((await bad.wait()).code, 2);
  assert.match(bad.stderr, /--file '.*=syslog': the stream name 'syslog' is reserved/);
});

Deno.test("pull --status-file: OK while healthy, names a disconnect and an unwritable mirror, nothing lost", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const log = `${dir.path}/app.log`;
  await Deno.writeTextFile(log, "");
  const status = `${dir.path}/status`;
  const home = `${dir.path}/home`;
  const served = await startServe(certs, {
    args: ["--file", log, "--file-state", `${dir.path}/files.json`],
  });
  await using pull = await startPull(certs, served.port, {
    to: null,
    args: ["--mirror", home, "--state", `${dir.path}/state`, "--status-file", status],
  });
  const statusText = () => readOrEmptySync(status);
  await waitFor(() => statusText() === "OK\n", {
    what: () => `OK in the status file: ${statusText()}`,
  });

  // The mirror file cannot be written (a directory is in the way).
  await Deno.mkdir(`${home}/app.log`, { recursive: true });
  await append(log, new TextEncoder().encode("line 1\nline 2\n"));
  await waitFor(() => /cannot write mirror file '.*app\.log'/.test(statusText()), {
    what: () => `the mirror problem in the status file: ${statusText()}`,
  });
  await Deno.remove(`${home}/app.log`);
  await assertMirrored([], log, home, "app.log");
  await waitFor(() => statusText() === "OK\n", { what: () => `OK again: ${statusText()}` });

  // The server goes away: named within 5 s.
  served.process.kill("SIGKILL");
  await served.process.wait();
  await served.process[Symbol.asyncDispose]();
  await waitFor(() => /^disconnected from 127\.0\.0\.1:\d+ since \d{4}-/.test(statusText()), {
    timeoutMs: 5000,
    what: () => `the disconnect in the status file within 5 s: ${statusText()}`,
  });
  pull.kill("SIGTERM");
  assert.equal((await pull.wait()).code, 0);
});

function readOrEmptySync(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return "";
  }
}
