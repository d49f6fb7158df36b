/**
 * The systemd journal reader and formatter against real journal files:
 * journal export format piped into `systemd-journal-remote` makes them,
 * `journalctl --directory` reads them, and what the reader hands on is
 * compared with what the test wrote and with `journalctl -o json`.
 */

import assert from "node:assert/strict";
import {
  type JournalBatch,
  type JournalRecord,
  SystemdJournalReader,
} from "../lib/sources/systemd_journal.ts";
import { tempDir, waitFor } from "./helpers.ts";
import {
  entry,
  type ExportEntry,
  type ExportValue,
  journalctlJson,
  plain,
  wide,
  writeJournal,
} from "./systemd_journal_fixture.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Collects records (copies) from a reader in the background. */
function collect(reader: SystemdJournalReader) {
  const records: JournalRecord[] = [];
  const batches: JournalBatch[] = [];
  const done = (async () => {
    for await (const batch of reader) {
      batches.push({ records: [], gaps: batch.gaps, cursor: batch.cursor });
      for (const r of batch.records) records.push({ ...r, message: r.message.slice() });
    }
  })();
  return { records, batches, done, text: (i: number) => decoder.decode(records[i]!.message) };
}

function valueBytes(value: ExportValue | ExportValue[] | undefined): Uint8Array {
  const first = Array.isArray(value) ? value[0] : value;
  return first === undefined
    ? new Uint8Array(0)
    : typeof first === "string"
    ? encoder.encode(first)
    : first;
}

Deno.test("journal entries become RFC 5424 messages with the mapped fields, MESSAGE byte for byte", async () => {
  await using dir = await tempDir();
  const written: ExportEntry[] = [
    entry(0, {
      PRIORITY: "3",
      SYSLOG_FACILITY: "4",
      _HOSTNAME: "vps1",
      SYSLOG_IDENTIFIER: "sshd",
      _PID: "42",
      MESSAGE: "Accepted key",
    }),
    entry(1, {
      PRIORITY: "6",
      _HOSTNAME: "vps1",
      SYSLOG_IDENTIFIER: "app",
      _PID: "7",
      MESSAGE: "line one\nline two\n",
    }),
    entry(2, {
      PRIORITY: "0",
      SYSLOG_FACILITY: "0",
      _HOSTNAME: "vps1",
      _COMM: "kernel-ish",
      MESSAGE: new Uint8Array([0x62, 0xff, 0x00, 0xfe, 0x0a, 0x41]),
    }),
    entry(3, {
      SYSLOG_FACILITY: "23",
      PRIORITY: "7",
      _HOSTNAME: "vps1",
      SYSLOG_IDENTIFIER: "x".repeat(60),
      _COMM: "ignored",
      _PID: "1",
      MESSAGE: "long app name",
    }),
    entry(4, {
      _HOSTNAME: "host with space",
      SYSLOG_IDENTIFIER: "ünï",
      MESSAGE: "no priority, no facility",
    }),
    entry(5, {
      PRIORITY: "9",
      SYSLOG_FACILITY: "30",
      SYSLOG_IDENTIFIER: "bad",
      SYSLOG_PID: "99",
      MESSAGE: "out of range: defaults; no _HOSTNAME",
    }),
    entry(6, { PRIORITY: "4", _HOSTNAME: "vps1", SYSLOG_IDENTIFIER: "empty" }),
    entry(7, {
      PRIORITY: "5",
      _HOSTNAME: "vps1",
      SYSLOG_IDENTIFIER: "tabs",
      MESSAGE: "a\tb\rc\u0001d",
    }),
  ];
  await writeJournal(dir.path, written);
  const expected = [
    "<35>1 2026-12-02T07:50:41.123456Z vps1 sshd 42 - - Accepted key",
    "<14>1 2026-12-02T07:50:42.123457Z vps1 app 7 - - line one\nline two\n",
    null, // binary: compared below
    `<191>1 2026-12-02T07:50:44.123459Z vps1 ${"x".repeat(48)} 1 - - long app name`,
    "<14>1 2026-12-02T07:50:45.123460Z host_with_space __n__ - - - no priority, no facility",
    "<14>1 2026-12-02T07:50:46.123461Z - bad 99 - - out of range: defaults; no _HOSTNAME",
    "<12>1 2026-12-02T07:50:47.123462Z vps1 empty - - -",
    "<13>1 2026-12-02T07:50:48.123463Z vps1 tabs - - - a\tb\rc\u0001d",
  ];
  await using reader = new SystemdJournalReader({ directory: dir.path });
  const got = collect(reader);
  await waitFor(() => got.records.length >= written.length, { what: "8 entries" });
  await reader.close();
  await got.done;
  assert.equal(got.records.length, written.length);
  for (let i = 0; i < expected.length; i++) {
    if (expected[i] !== null) assert.equal(got.text(i), expected[i], `entry ${i}`);
  }
  assert.deepEqual(
    got.records[2]!.message,
    new Uint8Array([
      ...encoder.encode("<0>1 2026-12-02T07:50:43.123458Z vps1 kernel-ish - - - "),
      0x62,
      0xff,
      0x00,
      0xfe,
      0x0a,
      0x41,
    ]),
  );
  // Field by field against journalctl's own view of the same files.
  const shown = await journalctlJson(dir.path);
  assert.equal(shown.length, written.length);
  for (let i = 0; i < shown.length; i++) {
    const record = got.records[i]!;
    assert.equal(record.cursor, shown[i]!.__CURSOR);
    assert.equal(record.seqnum, i + 1);
    assert.match(record.cursor, new RegExp(`^s=${record.seqnumId};i=${(i + 1).toString(16)};`));
    const message = valueBytes(written[i]!.MESSAGE);
    const msg = record.message.subarray(record.message.length - message.length);
    assert.deepEqual(msg, message, `MESSAGE of entry ${i}`);
    const shownMessage = shown[i]!.MESSAGE;
    if (shownMessage !== undefined) {
      assert.deepEqual(
        typeof shownMessage === "string"
          ? encoder.encode(shownMessage)
          : Uint8Array.from(shownMessage as number[]),
        message,
      );
    }
  }
  assert.equal(
    typeof shown[2]!.MESSAGE === "object",
    true,
    "journalctl gives the binary message as bytes",
  );
  assert.equal(reader.stats.entries, written.length);
  assert.equal(reader.stats.lost, 0);
});

Deno.test("selected fields go into structured data, repeated fields repeated, escaped", async () => {
  await using dir = await tempDir();
  await writeJournal(dir.path, [
    entry(0, {
      _HOSTNAME: "vps1",
      SYSLOG_IDENTIFIER: "app",
      _SYSTEMD_UNIT: "app.service",
      TAG: ["one", 'two "quoted" ]\\', new Uint8Array([0xff, 0x41])],
      MESSAGE: "hi",
    }),
    entry(1, { _HOSTNAME: "vps1", SYSLOG_IDENTIFIER: "app", MESSAGE: "no sd fields" }),
  ]);
  await using reader = new SystemdJournalReader({
    directory: dir.path,
    format: { sdFields: ["_SYSTEMD_UNIT", "TAG"] },
  });
  const got = collect(reader);
  await waitFor(() => got.records.length >= 2, { what: "2 entries" });
  await reader.close();
  await got.done;
  assert.equal(
    got.text(0),
    '<14>1 2026-12-02T07:50:41.123456Z vps1 app - - [journal@32473 _SYSTEMD_UNIT="app.service" TAG="one" TAG="two \\"quoted\\" \\]\\\\" TAG="\ufffdA"] hi',
  );
  assert.equal(got.text(1), "<14>1 2026-12-02T07:50:42.123457Z vps1 app - - - no sd fields");
});

Deno.test("json format hands on each entry as journalctl's JSON line, every field", async () => {
  await using dir = await tempDir();
  await writeJournal(dir.path, [
    entry(0, {
      SYSLOG_IDENTIFIER: "a",
      MESSAGE: new Uint8Array([0xff, 0x0a]),
      REPEATED: ["x", "y"],
    }),
    entry(1, { SYSLOG_IDENTIFIER: "b", MESSAGE: "two\nlines" }),
  ]);
  await using reader = new SystemdJournalReader({
    directory: dir.path,
    format: { format: "json" },
  });
  const got = collect(reader);
  await waitFor(() => got.records.length >= 2, { what: "2 entries" });
  await reader.close();
  await got.done;
  const shown = await journalctlJson(dir.path);
  for (let i = 0; i < 2; i++) {
    assert.deepEqual(JSON.parse(got.text(i)), shown[i]);
  }
  assert.deepEqual(shown[0]!.MESSAGE, [0xff, 0x0a]);
  assert.deepEqual(shown[0]!.REPEATED, ["x", "y"]);
});

Deno.test("following picks up entries another systemd-journal-remote run appends, across a rotation", async () => {
  await using dir = await tempDir();
  await writeJournal(dir.path, plain(1, 3));
  await using reader = new SystemdJournalReader({ directory: dir.path });
  const got = collect(reader);
  await waitFor(() => got.records.length >= 3, { what: "the first 3 entries" });
  await writeJournal(dir.path, plain(4, 2));
  await waitFor(() => got.records.length >= 5, { what: "2 appended entries" });
  await writeJournal(dir.path, [wide(6), ...plain(7, 2)]);
  await waitFor(() => got.records.length >= 8, { what: "entries after a rotation" });
  const files = [...Deno.readDirSync(dir.path)].map((e) => e.name);
  assert.equal(files.length, 2, `one archived file and the active one: ${files}`);
  await reader.close();
  await got.done;
  assert.deepEqual(
    got.records.map((r) => decoder.decode(r.message).split(" ").at(-1)),
    ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8"],
  );
  assert.deepEqual(got.records.map((r) => r.seqnum), [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.equal(reader.stats.lost, 0);
});

Deno.test("a reader started after a cursor repeats nothing and skips nothing", async () => {
  await using dir = await tempDir();
  await writeJournal(dir.path, plain(1, 10));
  let cursor: string | undefined;
  {
    await using first = new SystemdJournalReader({ directory: dir.path });
    for await (const batch of first) {
      // Take 4 of the batch, as if the rest had not reached reclog's journal.
      cursor = batch.records[3]!.cursor;
      break;
    }
  }
  await writeJournal(dir.path, plain(11, 2));
  await using second = new SystemdJournalReader({ directory: dir.path, afterCursor: cursor });
  const got = collect(second);
  await waitFor(() => got.records.length >= 8, { what: "entries 5 to 12" });
  await writeJournal(dir.path, plain(13, 1));
  await waitFor(() => got.records.length >= 9, { what: "entry 13" });
  await second.close();
  await got.done;
  assert.deepEqual(got.records.map((r) => r.seqnum), [5, 6, 7, 8, 9, 10, 11, 12, 13]);
  assert.equal(second.cursor, got.records.at(-1)!.cursor);
  assert.deepEqual(got.batches.flatMap((b) => b.gaps), []);
});

Deno.test("entries vacuumed while stopped are reported as a gap, and the entry after them is kept", async () => {
  await using dir = await tempDir();
  // 1-4 end up in an archived file (the rotation comes before entry 5).
  await writeJournal(dir.path, [...plain(1, 3), wide(4), ...plain(5, 3)]);
  const shown = await journalctlJson(dir.path);
  const cursor2 = shown[1]!.__CURSOR as string;
  const archived = [...Deno.readDirSync(dir.path)].map((e) => e.name).filter((n) =>
    n.includes("@")
  );
  assert.equal(archived.length, 1);
  await Deno.remove(`${dir.path}/${archived[0]}`); // what --vacuum-files does
  await using reader = new SystemdJournalReader({ directory: dir.path, afterCursor: cursor2 });
  const got = collect(reader);
  await waitFor(() => got.records.length >= 3, { what: "entries 5 to 7" });
  await reader.close();
  await got.done;
  // journalctl 252's --after-cursor would have skipped m5 too.
  assert.deepEqual(got.records.map((r) => r.seqnum), [5, 6, 7]);
  assert.deepEqual(got.text(0).split(" ").at(-1), "m5");
  const gaps = got.batches.flatMap((b) => b.gaps);
  assert.deepEqual(gaps.map((g) => [g.from, g.to, g.count]), [[3, 4, 2]]);
  assert.equal(gaps[0]!.seqnumId, got.records[0]!.seqnumId);
  assert.equal(reader.stats.lost, 2);
});

Deno.test("a cursor from an earlier boot continues through the rest of that boot and the next", async () => {
  await using dir = await tempDir();
  const other = "fedcba9876543210fedcba9876543210";
  await writeJournal(dir.path, [
    ...plain(1, 3),
    ...[4, 5].map((i) => entry(i, { MESSAGE: `m${i}` }, other)),
  ]);
  const cursor1 = (await journalctlJson(dir.path))[0]!.__CURSOR as string;
  await using reader = new SystemdJournalReader({ directory: dir.path, afterCursor: cursor1 });
  const got = collect(reader);
  await waitFor(() => got.records.length >= 4, { what: "entries 2 to 5" });
  await reader.close();
  await got.done;
  assert.deepEqual(got.records.map((r) => r.seqnum), [2, 3, 4, 5]);
});

Deno.test("matches and a priority filter select like journalctl, and report no gaps", async () => {
  await using dir = await tempDir();
  const written: ExportEntry[] = [];
  for (let i = 0; i < 16; i++) {
    written.push(entry(i, {
      PRIORITY: String(i % 8),
      SYSLOG_IDENTIFIER: i % 2 === 0 ? "even" : "odd",
      MESSAGE: `m${i}`,
    }));
  }
  await writeJournal(dir.path, written);
  const want = await journalctlJson(dir.path, ["--priority=warning", "SYSLOG_IDENTIFIER=even"]);
  assert.deepEqual(want.map((e) => e.MESSAGE), ["m0", "m2", "m4", "m8", "m10", "m12"]);
  await using reader = new SystemdJournalReader({
    directory: dir.path,
    matches: ["SYSLOG_IDENTIFIER=even"],
    priority: "warning",
  });
  const got = collect(reader);
  await waitFor(() => got.records.length >= want.length, { what: "6 entries" });
  await writeJournal(dir.path, [
    entry(16, { PRIORITY: "2", SYSLOG_IDENTIFIER: "even", MESSAGE: "m16" }),
  ]);
  await waitFor(() => got.records.length >= want.length + 1, { what: "m16" });
  await reader.close();
  await got.done;
  assert.deepEqual(
    got.records.slice(0, want.length).map((r) => r.cursor),
    want.map((e) => e.__CURSOR),
  );
  assert.equal(got.text(6).split(" ").at(-1), "m16");
  assert.deepEqual(got.batches.flatMap((b) => b.gaps), []);
});

Deno.test("journalctl failing (no such directory yet) is restarted until the journal appears", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/later`;
  await using reader = new SystemdJournalReader({ directory: path, restartDelayMs: 50 });
  const got = collect(reader);
  await waitFor(() => reader.stats.restarts >= 2, { what: "two restarts" });
  await Deno.mkdir(path);
  await writeJournal(path, plain(1, 2));
  await waitFor(() => got.records.length >= 2, { what: "2 entries" });
  await reader.close();
  await got.done;
  assert.deepEqual(got.records.map((r) => r.seqnum), [1, 2]);
});

Deno.test("a journalctl that dies mid-stream is restarted after the last entry: no repeats", async () => {
  await using dir = await tempDir();
  await writeJournal(dir.path, plain(1, 5));
  // A journalctl that exits after 3 entries the first time, then is the real one.
  const marker = `${dir.path}/once`;
  const script = `${dir.path}/journalctl`;
  await Deno.writeTextFile(
    script,
    `#!/bin/bash\nif [ ! -e ${marker} ]; then\n  touch ${marker}\n  args=(); for a in "$@"; do [ "$a" = --follow ] || args+=("$a"); done\n  journalctl "\${args[@]}" | head -n 3; exit 1\nfi\nexec journalctl "$@"\n`,
  );
  await Deno.chmod(script, 0o755);
  await using reader = new SystemdJournalReader({
    directory: dir.path,
    journalctl: script,
    restartDelayMs: 20,
  });
  const got = collect(reader);
  await waitFor(() => got.records.length >= 5, { what: "5 entries" });
  await writeJournal(dir.path, plain(6, 1));
  await waitFor(() => got.records.length >= 6, { what: "6 entries" });
  await reader.close();
  await got.done;
  assert.deepEqual(got.records.map((r) => r.seqnum), [1, 2, 3, 4, 5, 6]);
  assert.equal(reader.stats.restarts, 1);
});

Deno.test("lines that are too long or not entries are counted and skipped, the rest handed on", async () => {
  await using dir = await tempDir();
  const script = `${dir.path}/journalctl`;
  const good = (i: number) => `{"__CURSOR":"s=ab;i=${i}","MESSAGE":"m${i}"}`;
  // 3 MB without a newline for a while, then one; garbage; a non-entry; good lines between.
  await Deno.writeTextFile(
    script,
    `#!/bin/sh\necho '${good(1)}'\nhead -c 3000000 /dev/zero | tr '\\0' x\necho\necho '${
      good(2)
    }'\necho 'not json'\necho '{"MESSAGE":"no cursor"}'\necho '{"__CURSOR":"c","X":[1,256]}'\necho '${
      good(3)
    }'\nexec sleep 30\n`,
  );
  await Deno.chmod(script, 0o755);
  await using reader = new SystemdJournalReader({
    journalctl: script,
    output: "json",
    maxLineBytes: 4096,
  });
  const got = collect(reader);
  await waitFor(() => got.records.length >= 3, { what: "3 good entries" });
  await reader.close();
  await got.done;
  assert.deepEqual(got.records.map((r) => r.cursor), ["s=ab;i=1", "s=ab;i=2", "s=ab;i=3"]);
  assert.deepEqual(got.records.map((r) => r.seqnum), [1, 2, 3]);
  assert.equal(reader.stats.oversize, 1);
  assert.equal(reader.stats.malformed, 3);
});

Deno.test("an over-long message is cut to maxBytes and counted", async () => {
  await using dir = await tempDir();
  await writeJournal(dir.path, [entry(0, { SYSLOG_IDENTIFIER: "big", MESSAGE: "é".repeat(3000) })]);
  await using reader = new SystemdJournalReader({
    directory: dir.path,
    format: { maxBytes: 2001 },
  });
  const got = collect(reader);
  await waitFor(() => got.records.length >= 1, { what: "1 entry" });
  await reader.close();
  await got.done;
  const message = got.records[0]!.message;
  assert.equal(message.length, 2000, "cut on a character boundary");
  assert.ok(got.text(0).endsWith("éé"));
  assert.equal(reader.stats.truncated, 1);
});

Deno.test("close() is safe twice, an aborted signal stops the reader, options are checked", async () => {
  await using dir = await tempDir();
  await writeJournal(dir.path, plain(1, 2));
  const controller = new AbortController();
  const reader = new SystemdJournalReader({ directory: dir.path, signal: controller.signal });
  const got = collect(reader);
  await waitFor(() => got.records.length >= 2, { what: "2 entries" });
  controller.abort();
  await got.done;
  await reader.close();
  await reader.close();
  assert.throws(() => reader[Symbol.asyncIterator](), /only once/);
  assert.throws(
    () => new SystemdJournalReader({ matches: ["-b"] }),
    /Cannot use journal match '-b'/,
  );
  assert.throws(
    () => new SystemdJournalReader({ priority: "loud" }),
    /Cannot use journal priority 'loud'/,
  );
  const unused = new SystemdJournalReader({ directory: dir.path, afterCursor: "s=a;i=1" });
  assert.deepEqual(unused.args().slice(0, 2), [`--directory=${dir.path}`, "--follow"]);
  assert.ok(unused.args().includes("--cursor=s=a;i=1"));
  assert.ok(
    unused.args().includes("--no-tail"),
    "--follow alone would show 10 entries from the cursor",
  );
  await unused.close();
});
