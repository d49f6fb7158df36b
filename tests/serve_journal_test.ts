/**
 * `serve --journal-dir` end to end: real journal files (made by
 * systemd-journal-remote) → serve → pull → a real rsyslog at home, compared
 * field by field with `journalctl -o json`; restarts (SIGKILL) lose nothing;
 * entries vacuumed while serve was down reach the home file as a loss notice.
 */

import assert from "node:assert/strict";
import {
  freePort,
  makeCerts,
  readOrEmpty,
  startReclog,
  startRsyslog,
  tempDir,
  waitFor,
} from "./helpers.ts";
import type { Running } from "./helpers.ts";
import { startPull } from "./relay.ts";
import {
  entry,
  type ExportEntry,
  journalctlJson,
  plain,
  wide,
  writeJournal,
} from "./systemd_journal_fixture.ts";
import type { CertPaths } from "./helpers.ts";

const decoder = new TextDecoder();

/** rsyslog at home: imtcp (octet counting) → one JSON object a line. */
async function homeRsyslog(dir: string): Promise<{ process: Running; port: number; file: string }> {
  const port = freePort();
  const file = `${dir}/home.log`;
  const process = await startRsyslog({
    dir: `${dir}/rsyslog`,
    rules: `
module(load="imtcp")
template(name="fields" type="string" string="{\\"pri\\":\\"%pri%\\",\\"time\\":\\"%timereported:::date-rfc3339%\\",\\"host\\":\\"%hostname:::json%\\",\\"app\\":\\"%app-name:::json%\\",\\"procid\\":\\"%procid:::json%\\",\\"msg\\":\\"%msg:::json%\\"}\\n")
input(type="imtcp" address="127.0.0.1" port="${port}" ruleset="home")
ruleset(name="home") { action(type="omfile" file="${file}" template="fields") }
`,
    readyTcpPort: port,
  });
  return { process, port, file };
}

interface Filed {
  pri: string;
  time: string;
  host: string;
  app: string;
  procid: string;
  msg: string;
}

async function filed(file: string): Promise<Filed[]> {
  return (await readOrEmpty(file)).split("\n").filter((l) => l !== "").map((l) => JSON.parse(l));
}

function startServe(
  certs: CertPaths,
  args: string[],
  port = 0,
): Promise<{ process: Running; port: number }> {
  const process = startReclog([
    "serve",
    "--cert",
    certs.serverCert,
    "--key",
    certs.serverKey,
    "--ca",
    certs.ca,
    "--listen",
    `127.0.0.1:${port}`,
    ...args,
    // The cursor without --spool goes to $XDG_STATE_HOME/reclog: one per test, beside its last argument.
  ], { env: { XDG_STATE_HOME: `${args.at(-1)}.state` } });
  return process.waitForListening("mTLS").then((port) => ({ process, port }));
}

function text(value: unknown): string {
  if (value === undefined || value === null) return "";
  // journalctl's JSON: a binary value is an array of byte values, a repeated field an array.
  if (Array.isArray(value) && value.every((b) => typeof b === "number")) {
    return decoder.decode(Uint8Array.from(value));
  }
  if (Array.isArray(value)) return text(value[0]);
  if (value instanceof Uint8Array) return decoder.decode(value);
  return String(value);
}

Deno.test("serve --journal-dir → pull → rsyslog: each entry filed with journalctl's fields", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const journalDir = `${dir.path}/journal`;
  await Deno.mkdir(journalDir);
  const written: ExportEntry[] = [
    entry(0, {
      PRIORITY: "3",
      SYSLOG_FACILITY: "4",
      _HOSTNAME: "vps1",
      SYSLOG_IDENTIFIER: "sshd",
      _PID: "42",
      MESSAGE: "Accepted publickey for alice",
    }),
    entry(1, {
      PRIORITY: "6",
      _HOSTNAME: "vps1",
      SYSLOG_IDENTIFIER: "app",
      _PID: "7",
      MESSAGE: "line one\nline two",
    }),
    entry(2, {
      PRIORITY: "0",
      SYSLOG_FACILITY: "0",
      _HOSTNAME: "vps1",
      _COMM: "kernel-ish",
      MESSAGE: new Uint8Array([0x62, 0xff, 0xfe, 0x01, 0x41]),
    }),
    entry(3, {
      SYSLOG_FACILITY: "23",
      PRIORITY: "7",
      _HOSTNAME: "vps2",
      SYSLOG_IDENTIFIER: "cron",
      SYSLOG_PID: "99",
      MESSAGE: "Grüße, 日本語",
    }),
    entry(4, { _HOSTNAME: "vps1", SYSLOG_IDENTIFIER: "nopri", MESSAGE: "defaults: user.info" }),
    entry(5, { PRIORITY: "4", _HOSTNAME: "vps1", SYSLOG_IDENTIFIER: "empty", MESSAGE: "" }),
  ];
  await writeJournal(journalDir, written);
  const home = await homeRsyslog(dir.path);
  await using _home = home.process;
  const serve = await startServe(certs, [
    "--syslog-in",
    "127.0.0.1:0",
    "--journal-dir",
    journalDir,
  ]);
  await using _serve = serve.process;
  await using _pull = await startPull(certs, serve.port, {
    to: `tcp://127.0.0.1:${home.port}`,
    args: ["--state", `${dir.path}/pull.state`],
  });
  await waitFor(async () => (await filed(home.file)).length >= written.length, {
    what: () => `${written.length} lines in ${home.file}: ${Deno.readTextFileSync(home.file)}`,
  });
  const got = await filed(home.file);
  const shown = await journalctlJson(journalDir);
  assert.equal(got.length, shown.length);
  for (let i = 0; i < shown.length; i++) {
    const e = shown[i]!;
    const facility = Number(text(e.SYSLOG_FACILITY) || 1);
    const severity = Number(text(e.PRIORITY) || 6);
    const micros = BigInt(text(e.__REALTIME_TIMESTAMP));
    const iso = new Date(Number(micros / 1000n)).toISOString().slice(0, 19) + "." +
      String(micros % 1_000_000n).padStart(6, "0");
    const line = got[i]!;
    assert.equal(line.pri, String(facility * 8 + severity), `entry ${i} PRI`);
    assert.match(
      line.time,
      new RegExp(`^${iso.replace(/\./g, "\\.")}(Z|\\+00:00)$`),
      `entry ${i} time`,
    );
    assert.equal(line.host, text(e._HOSTNAME), `entry ${i} host`);
    assert.equal(line.app, text(e.SYSLOG_IDENTIFIER) || text(e._COMM) || "-", `entry ${i} app`);
    assert.equal(line.procid, text(e._PID) || text(e.SYSLOG_PID) || "-", `entry ${i} procid`);
    assert.equal(line.msg, text(e.MESSAGE), `entry ${i} MESSAGE`);
  }
});

Deno.test("serve --journal-dir --spool: SIGKILL and restart lose nothing, repeat a bounded few; vacuumed entries reach home as a loss notice", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const journalDir = `${dir.path}/journal`;
  await Deno.mkdir(journalDir);
  const spool = `${dir.path}/spool`;
  const args = ["--syslog-in", "127.0.0.1:0", "--journal-dir", journalDir, "--spool", spool];
  const home = await homeRsyslog(dir.path);
  await using _home = home.process;
  const messages = async () => (await filed(home.file)).map((l) => l.msg);

  await writeJournal(journalDir, plain(1, 2000));
  let serve = await startServe(certs, args);
  await using pull = await startPull(certs, serve.port, {
    to: `tcp://127.0.0.1:${home.port}`,
    args: ["--state", `${dir.path}/pull.state`],
  });
  const port = serve.port;
  const restart = async () => {
    serve.process.kill("SIGKILL");
    await serve.process.wait();
    await serve.process[Symbol.asyncDispose]();
    serve = await startServe(certs, args, port);
  };
  const count = async () => {
    const all = await messages();
    return { all: all.length, distinct: new Set(all).size };
  };
  // Killed between batches (the cursor saved 200 ms after the last append): nothing again.
  await waitFor(async () => (await count()).all >= 2000, { what: "2000 filed" });
  await new Promise((resolve) => setTimeout(resolve, 500));
  await restart();
  await writeJournal(journalDir, plain(2001, 1000));
  await waitFor(async () => (await count()).distinct >= 3000, { what: "3000 filed" });
  assert.deepEqual(await count(), { all: 3000, distinct: 3000 }, "no duplicates");
  // Killed while entries flow in: nothing lost, at most what came after the last save again.
  const more = writeJournal(journalDir, plain(3001, 2000));
  await waitFor(async () => (await count()).all >= 3500, { what: "3500 filed" });
  await restart();
  await more;
  await waitFor(async () => (await count()).distinct >= 5000, {
    what: "5000 distinct messages filed",
    timeoutMs: 60_000,
  });
  const all = await messages();
  const distinct = new Set(all);
  for (let i = 1; i <= 5000; i++) assert.ok(distinct.has(`m${i}`), `m${i} arrived`);
  const duplicates = all.length - distinct.size;
  console.log(`after SIGKILL mid-flow: ${distinct.size} distinct, ${duplicates} duplicates`);
  assert.ok(duplicates <= 2000, `${duplicates} duplicates`);

  // Stopped (SIGTERM): entries written meanwhile, the older ones vacuumed away unread.
  serve.process.kill("SIGTERM");
  assert.equal((await serve.process.wait()).code, 0);
  await serve.process[Symbol.asyncDispose]();
  await writeJournal(journalDir, [...plain(5001, 3), wide(5004), ...plain(5005, 3)]);
  const archived = [...Deno.readDirSync(journalDir)].map((e) => e.name).filter((n) =>
    n.includes("@")
  );
  assert.ok(archived.length >= 1, "a rotated file");
  for (const name of archived) await Deno.remove(`${journalDir}/${name}`);
  serve = await startServe(certs, args, port);
  await using _serve = serve.process;
  await serve.process.waitForStderr(/were gone from the journal before serve read them/);
  await waitFor(async () => (await messages()).includes("m5007"), { what: "m5007 filed" });
  const after = await messages();
  const notice = after.find((m) => /lost/.test(m) && /systemd journal/.test(m));
  assert.ok(notice, `a loss notice in the home file: ${after.slice(-6).join(" | ")}`);
  assert.ok(!after.includes("m5001"), "m5001 was vacuumed");
  await pull.waitForStderr(/lost/);
});

Deno.test("journal.appendLost: a hole the cursor reports as lost with its reason, kept across a spool reopen", async () => {
  const { Journal } = await import("../lib/journal/journal.ts");
  await using dir = await tempDir();
  const stream = new TextEncoder().encode("journal");
  const data = new TextEncoder().encode("<14>1 - - - - - x");
  {
    await using journal = await Journal.open({ spoolDir: dir.path });
    journal.append(stream, data);
    assert.deepEqual(journal.appendLost(3, "gone at the source"), { from: 2, to: 4 });
    journal.append(stream, data);
    const cursor = journal.cursor(1);
    const reads = [cursor.read(), cursor.read(), cursor.read()];
    assert.deepEqual(reads.map((r) => r?.kind), ["frames", "lost", "frames"]);
    const lost = reads[1]!;
    assert.ok(lost.kind === "lost");
    assert.deepEqual([lost.from, lost.to, lost.count, lost.reason], [
      2,
      4,
      3,
      "gone at the source",
    ]);
    assert.equal(journal.nextSeq, 6);
  }
  await using journal = await Journal.open({ spoolDir: dir.path });
  assert.equal(journal.nextSeq, 6, "the numbering continues across the hole");
  const cursor = journal.cursor(2);
  const read = cursor.read();
  assert.ok(read?.kind === "lost" && read.from === 2 && read.to === 4, JSON.stringify(read));
  assert.equal(cursor.read()?.kind, "frames");
});
