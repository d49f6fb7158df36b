/**
 * SystemdJournalSource and JournalCursorFile over real journal files, used
 * the way serve uses them: each batch "appended" (kept here), then its
 * cursor handed to the cursor file; stopped and restarted from the saved
 * cursor.
 */

import assert from "node:assert/strict";
import { type JournalEntry } from "../lib/framing/journal_entry.ts";
import {
  type JournalGap,
  type JournalMessageBatch,
  SystemdJournalSource,
  type SystemdJournalSourceOptions,
} from "../lib/sources/systemd_journal_source.ts";
import { JOURNAL_CURSOR_FILE, JournalCursorFile } from "../lib/state/journal_cursor.ts";
import { JournalInput } from "../lib/sources/systemd_journal_input.ts";
import { runProgram, tempDir, waitFor } from "./helpers.ts";
import {
  entry,
  type ExportEntry,
  journalctlJson,
  plain,
  wide,
  writeJournal,
} from "./systemd_journal_fixture.ts";

const decoder = new TextDecoder();
const encoder = new TextEncoder();

interface Kept {
  message: Uint8Array;
  cursor: string;
  seqnum: number;
  stream: string;
}

/** A source whose batches are kept (copied) and whose cursor goes to `cursors` after each. */
function keeping(
  options: Omit<SystemdJournalSourceOptions, "onBatch">,
  cursors?: JournalCursorFile,
) {
  const kept: Kept[] = [];
  const batches: string[] = [];
  const gaps: JournalGap[] = [];
  const source = new SystemdJournalSource({
    onGap: (gap) => void gaps.push(gap),
    ...options,
    onBatch: (batch: JournalMessageBatch) => {
      for (let i = 0; i < batch.count; i++) {
        kept.push({
          message: batch.message(i).slice(),
          cursor: batch.cursorAt(i),
          seqnum: batch.journalSeqnum(i),
          stream: batch.stream(i),
        });
      }
      batches.push(batch.cursor);
      cursors?.update(batch.cursor);
    },
  });
  return { source, kept, batches, gaps };
}

/** Parses an RFC 5424 message as the formatter writes it (no structured data). */
function parse5424(message: Uint8Array) {
  let at = 0;
  const fields: string[] = [];
  for (let n = 0; n < 7; n++) {
    let end = message.indexOf(0x20, at);
    if (end === -1) end = message.length;
    fields.push(decoder.decode(message.subarray(at, end)));
    at = end + 1;
  }
  const [pri, timestamp, hostname, app, procid, msgid, sd] = fields;
  return {
    pri: Number(/^<(\d+)>1$/.exec(pri!)![1]),
    timestamp,
    hostname,
    app,
    procid,
    msgid,
    sd,
    msg: at <= message.length ? message.subarray(at) : new Uint8Array(0),
  };
}

function text(entry: JournalEntry, name: string): string | undefined {
  const v = entry[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v === "string") return v;
  return typeof v[0] === "number" ? decoder.decode(Uint8Array.from(v as number[])) : String(v[0]);
}

function bytes(entry: JournalEntry, name: string): Uint8Array {
  const v = entry[name];
  if (v === undefined || v === null) return new Uint8Array(0);
  if (typeof v === "string") return encoder.encode(v);
  return Uint8Array.from(v as number[]);
}

/** journalctl processes reading DIR (to check none is left behind). */
async function journalctlsOf(dir: string): Promise<string[]> {
  const result = await runProgram("ps", ["-eo", "pid=,args="]);
  return result.stdout.split("\n").filter((l) =>
    l.includes("journalctl") && l.includes(`--directory=${dir}`)
  );
}

/** Entries of several kinds: identifiers, priorities, facilities, binary and multi-line. */
function mixed(from: number, count: number): ExportEntry[] {
  return Array.from({ length: count }, (_, k) => {
    const i = from + k;
    const fields: ExportEntry = {
      PRIORITY: String(i % 8),
      SYSLOG_FACILITY: String((i * 5) % 24),
      _HOSTNAME: i % 7 === 0 ? "other-host" : "vps1",
      SYSLOG_IDENTIFIER: ["sshd", "nginx", "cron"][i % 3]!,
      _PID: String(100 + i),
      MESSAGE: i % 5 === 0
        ? new Uint8Array([0x6d, 0xff, 0x00, 0x0a, 0xc3, 0x28, ...encoder.encode(String(i))])
        : i % 5 === 1
        ? `multi\nline ${i}\n`
        : `m${i}`,
    };
    if (i % 11 === 0) delete fields.SYSLOG_IDENTIFIER;
    if (i % 11 === 0) fields._COMM = "comm-only";
    return entry(i, fields);
  });
}

Deno.test("journal source: batches are journalctl -o json field by field, with the cursor of each batch's last entry", async () => {
  await using dir = await tempDir();
  await writeJournal(dir.path, mixed(1, 300));
  const run = keeping({ directory: dir.path });
  await using source = run.source;
  assert.equal(source.description, `journal:${dir.path}`);
  assert.equal(await source.listen(), undefined);
  await waitFor(() => run.kept.length >= 300, { what: "300 entries" });
  await source.close();
  const shown = await journalctlJson(dir.path);
  assert.equal(run.kept.length, shown.length);
  for (let i = 0; i < shown.length; i++) {
    const want = shown[i]!;
    const got = run.kept[i]!;
    assert.equal(got.cursor, want.__CURSOR);
    assert.equal(got.stream, "journal");
    assert.equal(got.seqnum, i + 1);
    const m = parse5424(got.message);
    assert.equal(
      m.pri,
      Number(text(want, "SYSLOG_FACILITY") ?? 1) * 8 + Number(text(want, "PRIORITY") ?? 6),
      `PRI of ${i}`,
    );
    const us = Number(text(want, "__REALTIME_TIMESTAMP"));
    assert.equal(
      m.timestamp,
      new Date(Math.floor(us / 1000)).toISOString().slice(0, 19) + "." +
        String(us % 1e6).padStart(6, "0") + "Z",
    );
    assert.equal(m.hostname, text(want, "_HOSTNAME"));
    assert.equal(m.app, text(want, "SYSLOG_IDENTIFIER") ?? text(want, "_COMM"));
    assert.equal(m.procid, text(want, "_PID"));
    assert.equal(m.msgid, "-");
    assert.equal(m.sd, "-");
    assert.deepEqual(m.msg, bytes(want, "MESSAGE"), `MESSAGE of ${i}`);
  }
  assert.ok(typeof shown[4]!.MESSAGE === "object", "entry 5 is binary in journalctl's JSON");
  // Each batch's cursor is that of its last entry, and the batches cover all.
  for (const cursor of run.batches) assert.ok(run.kept.some((k) => k.cursor === cursor));
  assert.equal(run.batches.at(-1), shown.at(-1)!.__CURSOR);
  assert.equal(source.cursor, shown.at(-1)!.__CURSOR);
  assert.deepEqual(run.gaps, []);
});

Deno.test("journal source: json format gives journalctl's JSON line of each entry", async () => {
  await using dir = await tempDir();
  await writeJournal(dir.path, mixed(1, 20));
  const run = keeping({ directory: dir.path, format: "json" });
  await using source = run.source;
  await source.listen();
  await waitFor(() => run.kept.length >= 20, { what: "20 entries" });
  await source.close();
  const shown = await journalctlJson(dir.path);
  assert.deepEqual(run.kept.map((k) => JSON.parse(decoder.decode(k.message))), shown);
});

Deno.test("journal source: stopped and restarted from the saved cursor, nothing lost or repeated, entries appended while stopped arrive", async () => {
  await using dir = await tempDir();
  await using state = await tempDir();
  await writeJournal(dir.path, mixed(1, 3000));
  const all: Kept[] = [];
  for (let round = 0; round < 4; round++) {
    await using cursors = await JournalCursorFile.open(state.path, { intervalMs: 20 });
    assert.equal(cursors.loaded === undefined, round === 0);
    const run = keeping({ directory: dir.path, afterCursor: cursors.loaded }, cursors);
    await using source = run.source;
    await source.listen();
    // Stop after the first batch of this round (3000 entries take several).
    await waitFor(() => run.kept.length > 0, { what: `round ${round}: a batch` });
    await source.close();
    await cursors.close();
    assert.equal(cursors.saved, run.batches.at(-1));
    all.push(...run.kept);
    // Appended while stopped.
    await writeJournal(dir.path, mixed(3001 + round * 10, 10));
  }
  {
    await using cursors = await JournalCursorFile.open(state.path);
    const run = keeping({ directory: dir.path, afterCursor: cursors.loaded }, cursors);
    await using source = run.source;
    await source.listen();
    await waitFor(() => all.length + run.kept.length >= 3040, { what: "the rest" });
    await source.close();
    all.push(...run.kept);
  }
  assert.deepEqual(all.map((k) => k.seqnum), Array.from({ length: 3040 }, (_, i) => i + 1));
  const shown = await journalctlJson(dir.path);
  assert.deepEqual(all.map((k) => k.cursor), shown.map((e) => e.__CURSOR));
});

Deno.test("journal source: after a kill (the file as last saved), only entries after the last save come again", async () => {
  await using dir = await tempDir();
  await using state = await tempDir();
  await writeJournal(dir.path, plain(1, 2000));
  const first: Kept[] = [];
  let savedAtKill: string | undefined;
  {
    // Saves rarely: what a SIGKILL between two saves leaves behind.
    await using cursors = await JournalCursorFile.open(state.path, { intervalMs: 60_000 });
    const run = keeping({ directory: dir.path }, cursors);
    await using source = run.source;
    await source.listen();
    await waitFor(() => run.kept.length > 0, { what: "a batch" });
    await cursors.flush(); // the last save before the "kill"
    savedAtKill = await Deno.readTextFile(`${state.path}/${JOURNAL_CURSOR_FILE}`);
    await waitFor(() => run.kept.length >= 2000, { what: "all entries" });
    await source.close();
    await cursors.close();
    first.push(...run.kept);
  }
  await Deno.writeTextFile(`${state.path}/${JOURNAL_CURSOR_FILE}`, savedAtKill);
  await using cursors = await JournalCursorFile.open(state.path);
  const savedSeq = first.findIndex((k) => k.cursor === cursors.loaded) + 1;
  assert.ok(savedSeq > 0 && savedSeq < 2000, `saved after ${savedSeq}`);
  const run = keeping({ directory: dir.path, afterCursor: cursors.loaded }, cursors);
  await using source = run.source;
  await source.listen();
  await waitFor(() => run.kept.length >= 2000 - savedSeq, { what: "the re-sent entries" });
  await source.close();
  assert.deepEqual(
    run.kept.map((k) => k.seqnum),
    Array.from({ length: 2000 - savedSeq }, (_, i) => savedSeq + 1 + i),
  );
});

Deno.test("journal source: entries vacuumed while stopped are reported to onGap with their count, before the entries after them", async () => {
  await using dir = await tempDir();
  await using state = await tempDir();
  // 1-4 end up in an archived file (rotation before 5), 5-7 in the active one.
  await writeJournal(dir.path, [...plain(1, 2)]);
  {
    await using cursors = await JournalCursorFile.open(state.path, { intervalMs: 0 });
    const run = keeping({ directory: dir.path }, cursors);
    await using source = run.source;
    await source.listen();
    await waitFor(() => run.kept.length >= 2, { what: "2 entries" });
  }
  await writeJournal(dir.path, [plain(3, 1)[0]!, wide(4), ...plain(5, 3)]);
  const archived = [...Deno.readDirSync(dir.path)].map((e) => e.name).filter((n) =>
    n.includes("@")
  );
  assert.equal(archived.length, 1);
  await Deno.remove(`${dir.path}/${archived[0]}`); // what journalctl --vacuum-files does
  const order: string[] = [];
  await using cursors = await JournalCursorFile.open(state.path);
  assert.ok(cursors.loaded);
  const run = keeping({
    directory: dir.path,
    afterCursor: cursors.loaded,
    onGap: (gap) => void order.push(`gap ${gap.from}-${gap.to} (${gap.count})`),
  }, cursors);
  await using source = run.source;
  await source.listen();
  await waitFor(() => run.kept.length >= 3, { what: "entries 5 to 7" });
  await source.close();
  assert.deepEqual(order, ["gap 3-4 (2)"]);
  assert.deepEqual(run.kept.map((k) => k.seqnum), [5, 6, 7]);
  assert.equal(source.stats.lost, 2);
});

Deno.test("journal source: a pending onBatch holds the reading back; close() waits for it", async () => {
  await using dir = await tempDir();
  await writeJournal(dir.path, plain(1, 3000));
  let inFlight = 0;
  let most = 0;
  let count = 0;
  let calls = 0;
  await using source = new SystemdJournalSource({
    directory: dir.path,
    onBatch: async (batch) => {
      inFlight++;
      most = Math.max(most, inFlight);
      calls++;
      await new Promise((resolve) => setTimeout(resolve, 30));
      count += batch.count;
      inFlight--;
    },
  });
  await source.listen();
  await waitFor(() => calls >= 2, { what: "two batches" });
  await source.close();
  assert.equal(most, 1);
  assert.equal(inFlight, 0, "close() waited for the handler");
  assert.ok(count < 3000 || calls > 1);
});

Deno.test("journal source: listen() errors name the directory or program; close() is safe twice and leaves no journalctl", async () => {
  await using dir = await tempDir();
  const missing = new SystemdJournalSource({ directory: `${dir.path}/none`, onBatch: () => {} });
  await assert.rejects(
    () => missing.listen(),
    new RegExp(`^Error: Cannot read journal directory '${dir.path}/none': `),
  );
  await missing.close();
  const noProgram = new SystemdJournalSource({
    directory: dir.path,
    journalctl: `${dir.path}/no-journalctl`,
    onBatch: () => {},
  });
  await assert.rejects(() => noProgram.listen(), /^Error: Cannot run '.*no-journalctl': /);
  await noProgram.close();
  assert.throws(
    () => new SystemdJournalSource({ matches: ["nope"], onBatch: () => {} }),
    /Cannot use journal match 'nope'/,
  );
  assert.throws(
    () => new SystemdJournalSource({ format: "xml" as "json", onBatch: () => {} }),
    /Cannot use journal format 'xml'/,
  );
  assert.equal(new SystemdJournalSource({ onBatch: () => {} }).description, "journal");

  await writeJournal(dir.path, plain(1, 2));
  let count = 0;
  {
    await using source = new SystemdJournalSource({
      directory: dir.path,
      onBatch: (b) => void (count += b.count),
    });
    await source.listen();
    assert.equal((await journalctlsOf(dir.path)).length, 1);
    await waitFor(() => count >= 2, { what: "2 entries" });
    await source.close();
    await source.close();
  } // and once more by await using
  assert.deepEqual(await journalctlsOf(dir.path), []);

  const controller = new AbortController();
  const aborted = new SystemdJournalSource({
    directory: dir.path,
    signal: controller.signal,
    onBatch: () => {},
  });
  await aborted.listen();
  controller.abort();
  await waitFor(async () => (await journalctlsOf(dir.path)).length === 0, {
    what: "journalctl stopped by the signal",
  });
  await aborted.close();
});

Deno.test("journal cursor file: absent, saved atomically after updates and on close, damaged is a one-line error", async () => {
  await using state = await tempDir();
  const id = "0123456789abcdef0123456789abcdef";
  const cursor = (i: number) => `s=${id};i=${i.toString(16)};b=${id};m=3e8;t=661a1e6443880;x=1f`;
  const path = `${state.path}/${JOURNAL_CURSOR_FILE}`;
  {
    await using cursors = await JournalCursorFile.open(state.path, {
      intervalMs: 30,
      source: "journal:/x",
    });
    assert.equal(cursors.loaded, undefined);
    for (let i = 1; i <= 50; i++) cursors.update(cursor(i));
    await waitFor(() => cursors.saved === cursor(50), { what: "a save" });
    assert.equal(cursors.saves, 1, "50 updates within the interval: one save");
    cursors.update(cursor(51));
    assert.throws(() => cursors.update("s=x"), /Cannot save journal cursor 's=x': not a cursor/);
    await cursors.close();
    await cursors.close();
    assert.deepEqual(JSON.parse(await Deno.readTextFile(path)), {
      version: 1,
      source: "journal:/x",
      cursor: cursor(51),
    });
  }
  {
    let healthy = false;
    await using cursors = await JournalCursorFile.open(state.path, {
      intervalMs: 10,
      canSave: () => healthy,
    });
    assert.equal(cursors.loaded, cursor(51));
    cursors.update(cursor(52));
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(cursors.saved, cursor(51), "not saved while canSave says no");
    healthy = true;
    await waitFor(() => cursors.saved === cursor(52), { what: "saved once allowed" });
  }
  assert.deepEqual([...Deno.readDirSync(state.path)].map((e) => e.name), [JOURNAL_CURSOR_FILE]);
  for (
    const damaged of ["", "{", '{"version":1,"cursor":"s=1"}', '{"cursor":"' + cursor(1) + '"}']
  ) {
    await Deno.writeTextFile(path, damaged);
    await assert.rejects(
      () => JournalCursorFile.open(state.path),
      (error: Error) => {
        assert.equal(
          error.message,
          `Cannot use journal cursor file '${path}': not a saved journal cursor (damaged?); move it away to start without one`,
        );
        return true;
      },
    );
  }
  await Deno.remove(path);
  await Deno.mkdir(path);
  await assert.rejects(
    () => JournalCursorFile.open(state.path),
    new RegExp(`^Error: Cannot read journal cursor file '${path}': `),
  );
});

Deno.test("journal input: appends then saves; a SIGKILLed serve-like process restarts after its last save, losing nothing, and leaves no journalctl", async () => {
  await using dir = await tempDir();
  await using state = await tempDir();
  await writeJournal(dir.path, plain(1, 3000));
  const out = `${state.path}/appended`;
  const child = `${state.path}/child.ts`;
  // What serve does: every message appended (here: a line in a file, written at once), then the cursor.
  await Deno.writeTextFile(
    child,
    `import { JournalInput } from ${
      JSON.stringify(new URL("../lib/sources/systemd_journal_input.ts", import.meta.url).href)
    };
const file = Deno.openSync(${JSON.stringify(out)}, { append: true, create: true });
const lf = new Uint8Array([10]);
const input = await JournalInput.open({
  directory: Deno.args[0], stateDir: Deno.args[1], cursorIntervalMs: 5,
  onBatch: (b) => {
    for (let i = 0; i < b.count; i++) {
      const m = b.message(i);
      file.writeSync(m.subarray(m.lastIndexOf(32) + 1));
      file.writeSync(lf);
    }
  },
});
await input.listen();
console.log("listening");
await new Promise(() => {});
`,
  );
  const lines = async () =>
    (await Deno.readTextFile(out).catch(() => "")).split("\n").filter((l) => l);
  const process = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      `--config=${new URL("../deno.json", import.meta.url).pathname}`,
      child,
      dir.path,
      state.path,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = process.stdout.getReader();
  const ready = await reader.read();
  reader.releaseLock();
  assert.equal(ready.done, false, "the child process started");
  await waitFor(async () => (await lines()).length >= 500, { what: "500 appended" });
  // Killed once a save happened (the first one comes a few ms after the first batch).
  await waitFor(async () => {
    try {
      return (await Deno.stat(`${state.path}/${JOURNAL_CURSOR_FILE}`)).isFile;
    } catch {
      return false;
    }
  }, { what: "the first cursor save" });
  process.kill("SIGKILL");
  await process.status;
  await process.stdout.cancel();
  const beforeKill = await lines();
  // Resume in this process, the way serve would after the restart.
  const resumed: string[] = [];
  {
    await using input = await JournalInput.open({
      directory: dir.path,
      stateDir: state.path,
      onBatch: async (b) => {
        await new Promise((resolve) => setTimeout(resolve, 1)); // a handler that waits
        for (let i = 0; i < b.count; i++) {
          const m = b.message(i);
          resumed.push(decoder.decode(m.subarray(m.lastIndexOf(32) + 1)));
        }
      },
    });
    assert.ok(input.startCursor, "a cursor was saved before the kill");
    await input.listen();
    await writeJournal(dir.path, plain(3001, 5));
    await waitFor(() => resumed.at(-1) === "m3005", { what: "m3005" });
  }
  const seen = new Set([...beforeKill, ...resumed]);
  assert.equal(seen.size, 3005, "nothing lost");
  assert.equal(new Set(resumed).size, resumed.length);
  const again = resumed.filter((m) => beforeKill.includes(m));
  // What came again is exactly what followed the last save: a contiguous run.
  assert.deepEqual(again, beforeKill.slice(beforeKill.length - again.length));
  console.log(`re-sent after SIGKILL: ${again.length} of ${beforeKill.length} appended`);
  // journalctl of the killed process exits at its next write (broken pipe).
  await waitFor(async () => (await journalctlsOf(dir.path)).length === 0, {
    what: "the killed process's journalctl to exit",
  });
});

Deno.test("journal input: a damaged cursor file stops it before journalctl runs", async () => {
  await using state = await tempDir();
  await Deno.writeTextFile(`${state.path}/${JOURNAL_CURSOR_FILE}`, "garbage");
  await assert.rejects(
    () => JournalInput.open({ stateDir: state.path, onBatch: () => {} }),
    /^Error: Cannot use journal cursor file '.*journal-cursor.json': not a saved journal cursor/,
  );
  await assert.rejects(
    () => JournalInput.open({ stateDir: `${state.path}/x`, priority: "loud", onBatch: () => {} }),
    /Cannot use journal priority 'loud'/,
  );
});
