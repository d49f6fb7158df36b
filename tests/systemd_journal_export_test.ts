/**
 * The rfc5424 fast path (export output → only the mapped fields as bytes →
 * `SyslogFormatter.appendRaw`) makes the same messages as the entry path
 * (`ExportParser` entries or journalctl's JSON → `SyslogFormatter.append`):
 * as a property on arbitrary entries cut anywhere, and on real journal files.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { type JournalEntry, SyslogFormatter } from "../lib/framing/journal_entry.ts";
import { ExportParser } from "../lib/framing/journal_export.ts";
import { RawJournalEntry } from "../lib/framing/journal_raw.ts";
import { type JournalRecord, SystemdJournalReader } from "../lib/sources/systemd_journal.ts";
import { tempDir, waitFor } from "./helpers.ts";
import { entry, type ExportEntry, exportFormat, writeJournal } from "./systemd_journal_fixture.ts";

const KEYS = [
  "__CURSOR",
  "__REALTIME_TIMESTAMP",
  "PRIORITY",
  "SYSLOG_FACILITY",
  "_HOSTNAME",
  "SYSLOG_IDENTIFIER",
  "_COMM",
  "_PID",
  "SYSLOG_PID",
  "MESSAGE",
  "EXTRA",
  "OTHER_FIELD",
];
const textValue = fc.oneof(
  fc.string({ unit: "grapheme", maxLength: 30 }),
  fc.integer({ min: -1, max: 200 }).map(String),
  fc.bigInt({ min: 0n, max: 2n ** 60n }).map(String),
  fc.constant(""),
);
const valueArb = fc.oneof(
  { weight: 4, arbitrary: textValue },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ maxLength: 1500 }) }, // past maxBytes 1024
);
const entryArb = fc.tuple(
  fc.string({ minLength: 1, maxLength: 40 }).filter((s) => !s.includes("\n")),
  fc.array(fc.tuple(fc.constantFrom(...KEYS.slice(1)), valueArb), { maxLength: 14 }),
).map(([cursor, fields]) => {
  const e: ExportEntry = { __CURSOR: cursor };
  for (const [key, value] of fields) {
    const old = e[key];
    e[key] = old === undefined ? value : [...(Array.isArray(old) ? old : [old]), value];
  }
  return e;
});

function messagesOf(formatter: SyslogFormatter): Uint8Array[] {
  return formatter.take().map((m) => m.slice());
}

Deno.test("property: appendRaw on export bytes cut anywhere gives append's message of the parsed entry, byte for byte", () => {
  const options = [
    { maxBytes: 1024, hostname: "here" },
    { maxBytes: 1024, sdFields: ["EXTRA", "_PID", "EXTRA"] },
    { sdFields: ["MESSAGE", "OTHER_FIELD"] },
  ];
  fc.assert(
    fc.property(
      fc.array(entryArb, { minLength: 1, maxLength: 5 }),
      fc.array(fc.nat(), { maxLength: 6 }),
      fc.constantFrom(...options),
      (entries, cuts, option) => {
        const bytes = exportFormat(entries);
        const points = [...new Set(cuts.map((c) => c % bytes.length)), bytes.length]
          .sort((a, b) => a - b);
        const slow = new SyslogFormatter(option);
        const parsed: JournalEntry[] = [];
        const fast = new SyslogFormatter(option);
        const cursors: (string | undefined)[] = [];
        const raw = new RawJournalEntry(option.sdFields ?? [], (e) => {
          cursors.push(e.cursor());
          assert.equal(fast.appendRaw(e), true);
        });
        const entryParser = new ExportParser({ maxFieldBytes: 1200 });
        const rawParser = new ExportParser({ maxFieldBytes: 1200, handler: raw });
        let from = 0;
        for (const point of points) {
          // Each chunk its own copy, overwritten after use (as the reader's read buffer is).
          const chunk = bytes.slice(from, point);
          entryParser.push(chunk, (e) => parsed.push(e));
          rawParser.push(chunk);
          chunk.fill(0x41);
          from = point;
        }
        for (const e of parsed) assert.equal(slow.append(e), true);
        assert.deepEqual(messagesOf(fast), messagesOf(slow));
        assert.deepEqual(cursors, parsed.map((e) => e.__CURSOR));
        assert.equal(fast.truncated, slow.truncated);
        assert.equal(rawParser.inEntry, false);
      },
    ),
    { numRuns: 400 },
  );
});

Deno.test("real journal files: the export output (fast path) and the JSON output give the same messages", async () => {
  await using dir = await tempDir();
  const written: ExportEntry[] = [];
  const binary = new Uint8Array([0x62, 0xff, 0x00, 0xfe, 0x0a, 0x41]);
  for (let i = 0; i < 300; i++) {
    written.push(entry(i, {
      PRIORITY: String(i % 9),
      SYSLOG_FACILITY: String(i % 25),
      _HOSTNAME: i % 7 === 0 ? "host with space" : "vps1",
      ...(i % 5 === 0 ? { _COMM: `comm${i}` } : { SYSLOG_IDENTIFIER: `app${i % 3}ü` }),
      ...(i % 4 === 0 ? { SYSLOG_PID: String(i) } : { _PID: String(1000 + i) }),
      EXTRA: i % 6 === 0 ? ["one", 'two "]\\'] : `x${i}`,
      MESSAGE: i % 11 === 0
        ? binary
        : i % 13 === 0
        ? `multi\nline ${i}\n`
        : i % 17 === 0
        ? "é".repeat(900)
        : `message ${i}`,
    }));
  }
  await writeJournal(dir.path, written);
  const read = async (output: "export" | "json") => {
    await using reader = new SystemdJournalReader({
      directory: dir.path,
      output,
      format: { sdFields: ["EXTRA", "_PID"], maxBytes: 1500, hostname: "fallback" },
    });
    const records: JournalRecord[] = [];
    const done = (async () => {
      for await (const batch of reader) {
        for (const r of batch.records) records.push({ ...r, message: r.message.slice() });
      }
    })();
    await waitFor(() => records.length >= written.length, { what: `${output}: 300 entries` });
    await reader.close();
    await done;
    return { records, stats: reader.stats };
  };
  const fast = await read("export");
  const slow = await read("json");
  assert.equal(fast.records.length, written.length);
  assert.deepEqual(fast.records, slow.records);
  assert.equal(fast.stats.truncated, slow.stats.truncated);
  assert.ok(fast.stats.truncated > 0, "some messages were cut to maxBytes");
});
