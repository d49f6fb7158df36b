/**
 * Properties of the journal JSON line parser and the RFC 5424 formatter on
 * arbitrary bytes and arbitrary entries.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  cursorPosition,
  type JournalEntry,
  JournalLineError,
  parseEntryLine,
  SyslogFormatter,
} from "../lib/framing/journal_entry.ts";
import { ExportParser, JournalExportError } from "../lib/framing/journal_export.ts";
import { SystemdJournalReader } from "../lib/sources/systemd_journal.ts";
import { isJournalCursor, parseCursorFile } from "../lib/state/journal_cursor.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const value = fc.oneof(
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 40 }),
);
const field = fc.oneof(
  { weight: 4, arbitrary: value },
  { weight: 1, arbitrary: fc.array(value, { minLength: 2, maxLength: 3 }) },
);
const entryArb: fc.Arbitrary<JournalEntry> = fc.record({
  __CURSOR: fc.string({ maxLength: 60 }),
  __REALTIME_TIMESTAMP: fc.oneof(
    fc.bigInt({ min: 0n, max: 2n ** 64n }).map(String),
    fc.string({ maxLength: 20 }),
  ),
  PRIORITY: fc.oneof(fc.integer({ min: -1, max: 12 }).map(String), fc.string({ maxLength: 3 })),
  SYSLOG_FACILITY: fc.oneof(fc.integer({ min: -1, max: 30 }).map(String), value),
  _HOSTNAME: field,
  SYSLOG_IDENTIFIER: field,
  _COMM: field,
  _PID: field,
  MESSAGE: field,
  EXTRA: field,
}, { requiredKeys: ["__CURSOR"] });

function bytesOf(v: JournalEntry[string] | undefined): Uint8Array | undefined {
  if (v === undefined || v === null) return undefined;
  const first = typeof v === "string" || v.length === 0 || typeof v[0] === "number" ? v : v[0]!;
  return typeof first === "string" ? encoder.encode(first) : Uint8Array.from(first as number[]);
}

const HEADER =
  /^<(\d{1,3})>1 (-|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) ([!-~]{1,255}) ([!-~]{1,48}) ([!-~]{1,128}) - (-|\[journal@32473(?: [A-Za-z0-9_]{1,32}="(?:[^"\\\]]|\\.)*")+\])/;

Deno.test("property: parseEntryLine on arbitrary bytes throws only JournalLineError", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      try {
        const entry = parseEntryLine(bytes);
        assert.equal(typeof entry.__CURSOR, "string");
      } catch (error) {
        assert.ok(error instanceof JournalLineError, String(error));
      }
    }),
    { numRuns: 500 },
  );
});

Deno.test("property: an entry's JSON line parses back to it; mutated lines parse or throw JournalLineError", () => {
  fc.assert(
    fc.property(
      entryArb,
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
      (entry, mutations) => {
        const line = encoder.encode(JSON.stringify(entry));
        assert.deepEqual(parseEntryLine(line), entry);
        const mutated = line.slice();
        for (const [at, byte] of mutations) {
          if (mutated.length > 0) mutated[at % mutated.length] = byte;
        }
        try {
          const parsed = parseEntryLine(mutated);
          for (const v of Object.values(parsed)) {
            assert.ok(
              v === null || typeof v === "string" || Array.isArray(v),
              "only strings, byte arrays, arrays of them",
            );
          }
        } catch (error) {
          assert.ok(error instanceof JournalLineError, String(error));
        }
      },
    ),
    { numRuns: 400 },
  );
});

Deno.test("property: every formatted entry is a valid RFC 5424 header and MESSAGE's bytes (or a prefix)", () => {
  const formatter = new SyslogFormatter({ maxBytes: 1024, sdFields: ["EXTRA"] });
  fc.assert(
    fc.property(fc.array(entryArb, { minLength: 1, maxLength: 5 }), (entries) => {
      for (const entry of entries) assert.equal(formatter.append(entry), true);
      const messages = formatter.take();
      assert.equal(messages.length, entries.length);
      for (let i = 0; i < entries.length; i++) {
        const message = messages[i]!;
        assert.ok(message.length <= 1024);
        // Header and SD are ASCII or UTF-8; read them as text (latin1 keeps bytes 1:1).
        const text = Array.from(message, (b) => String.fromCharCode(b)).join("");
        const match = HEADER.exec(text);
        assert.ok(match, `not RFC 5424: ${JSON.stringify(text.slice(0, 120))}`);
        assert.ok(Number(match[1]) <= 191);
        const rest = message.subarray(match[0].length);
        const msg = bytesOf(entries[i]!.MESSAGE);
        if (msg === undefined || msg.length === 0) {
          assert.equal(rest.length, 0);
        } else {
          assert.equal(rest[0], 0x20);
          const got = rest.subarray(1);
          assert.ok(got.length <= msg.length);
          assert.deepEqual(got, msg.subarray(0, got.length));
          if (got.length < msg.length) assert.equal(message.length > 1024 - 4, true);
        }
      }
    }),
    { numRuns: 300 },
  );
});

Deno.test("property: PRI and TIMESTAMP follow PRIORITY, SYSLOG_FACILITY and __REALTIME_TIMESTAMP", () => {
  const formatter = new SyslogFormatter();
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 7 }),
      fc.integer({ min: 0, max: 23 }),
      fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
      (severity, facility, us) => {
        const message = decoder.decode(formatter.format({
          __CURSOR: "c",
          PRIORITY: String(severity),
          SYSLOG_FACILITY: String(facility),
          __REALTIME_TIMESTAMP: String(us),
        }));
        const iso = new Date(Math.floor(us / 1000)).toISOString(); // ms precision
        const year = Number(iso.slice(0, 4));
        const stamp = year <= 9999 && !iso.startsWith("+")
          ? `${iso.slice(0, 19)}.${String(us % 1e6).padStart(6, "0")}Z`
          : "-";
        assert.equal(message, `<${facility * 8 + severity}>1 ${stamp} - - - - -`);
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("property: cursorPosition reads s= and i= (hex) from any cursor, never throws", () => {
  fc.assert(
    fc.property(
      fc.string({ maxLength: 40 }),
      fc.hexaString({ minLength: 1, maxLength: 32 }),
      fc.integer({ min: 1, max: 2 ** 40 }),
      (junk, id, seqnum) => {
        cursorPosition(junk);
        assert.deepEqual(
          cursorPosition(`s=${id};i=${seqnum.toString(16)};b=${junk.replace(/;/g, "")}`),
          { seqnumId: id, seqnum },
        );
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("property: the reader splits journalctl's output into entries however the pipe cuts it; bad and over-long lines are counted, never handed on", async () => {
  const dir = await Deno.makeTempDir({ prefix: "reclog-test-" });
  try {
    const lineArb = fc.oneof(
      { weight: 6, arbitrary: entryArb.map((e) => ({ kind: "entry" as const, e })) },
      {
        weight: 1,
        arbitrary: fc.uint8Array({ minLength: 1, maxLength: 60 }).map((b) => ({
          kind: "bytes" as const,
          b,
        })),
      },
      {
        weight: 1,
        arbitrary: fc.integer({ min: 8300, max: 20_000 }).map((n) => ({
          kind: "long" as const,
          n,
        })),
      },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(lineArb, { minLength: 1, maxLength: 30 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        async (lines, cuts) => {
          const parts: Uint8Array[] = [];
          const want: string[] = [];
          let seq = 0;
          for (const line of lines) {
            if (line.kind === "entry") {
              const e = { ...line.e, __CURSOR: `s=ab;i=${(++seq).toString(16)}` };
              parts.push(encoder.encode(JSON.stringify(e)));
              want.push(e.__CURSOR);
            } else if (line.kind === "bytes") {
              parts.push(line.b.map((b) => (b === 0x0a ? 0x20 : b)));
            } else {
              parts.push(
                encoder.encode(`{"__CURSOR":"s=ab;i=0","MESSAGE":"${"x".repeat(line.n)}"}`),
              );
            }
            parts.push(new Uint8Array([0x0a]));
          }
          const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
          let at = 0;
          for (const p of parts) {
            all.set(p, at);
            at += p.length;
          }
          const points = [...new Set(cuts.map((c) => c % all.length))].sort((a, b) => a - b);
          let script = "#!/bin/sh\n";
          let from = 0;
          for (const [k, point] of [...points, all.length].entries()) {
            await Deno.writeFile(`${dir}/c${k}`, all.subarray(from, point));
            script += `cat ${dir}/c${k}\nsleep 0.005\n`;
            from = point;
          }
          script += "exec sleep 30\n";
          await Deno.writeTextFile(`${dir}/journalctl`, script);
          await Deno.chmod(`${dir}/journalctl`, 0o755);
          const reader = new SystemdJournalReader({
            journalctl: `${dir}/journalctl`,
            output: "json",
            maxLineBytes: 8192, // above any entryArb line (~5 KB at most)
            detectGaps: false,
          });
          const got: string[] = [];
          const done = (async () => {
            for await (const batch of reader) {
              for (const r of batch.records) {
                assert.ok(r.message.length > 0);
                got.push(r.cursor);
              }
            }
          })();
          const bad = lines.filter((l) => l.kind !== "entry").length;
          const deadline = Date.now() + 5000;
          while (
            got.length + reader.stats.malformed + reader.stats.oversize < lines.length &&
            Date.now() < deadline
          ) {
            await new Promise((resolve) => setTimeout(resolve, 5));
          }
          await reader.close();
          await done;
          // A "bytes" line may happen to be a valid entry; then it is handed on too.
          const extra = got.filter((c) => !want.includes(c)).length;
          assert.deepEqual(got.filter((c) => want.includes(c)), want);
          assert.equal(reader.stats.malformed + reader.stats.oversize + extra, bad);
          assert.equal(reader.stats.oversize, lines.filter((l) => l.kind === "long").length);
        },
      ),
      { numRuns: 25 },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("property: a cursor file is read back exactly as written; any other text is refused, never thrown", () => {
  const hex = (n: number) =>
    fc.hexaString({ minLength: n, maxLength: n }).map((s) => s.toLowerCase());
  const cursorArb = fc.tuple(
    hex(32),
    fc.bigInt({ min: 1n, max: 2n ** 64n - 1n }),
    hex(32),
    hex(8),
    hex(13),
    hex(16),
  )
    .map(([s, i, b, m, t, x]) => `s=${s};i=${i.toString(16)};b=${b};m=${m};t=${t};x=${x}`);
  fc.assert(
    fc.property(cursorArb, fc.string({ maxLength: 40 }), fc.string(), (cursor, source, junk) => {
      assert.equal(isJournalCursor(cursor), true);
      assert.equal(parseCursorFile(JSON.stringify({ version: 1, source, cursor }) + "\n"), cursor);
      const parsed = parseCursorFile(junk);
      assert.ok(parsed === null || isJournalCursor(parsed));
      // A cut or a changed character of the cursor is refused.
      const body = JSON.stringify({ version: 1, cursor });
      const cut = body.slice(0, body.length - 1 - (junk.length % (cursor.length - 5)));
      assert.equal(parseCursorFile(cut), null);
      assert.equal(parseCursorFile(JSON.stringify({ version: 1, cursor: cursor + "g" })), null);
    }),
    { numRuns: 300 },
  );
});

const exportKey = fc.constantFrom(
  "MESSAGE",
  "PRIORITY",
  "_HOSTNAME",
  "SYSLOG_IDENTIFIER",
  "X_1",
  "a",
);
const exportValue = fc.oneof(
  fc.string({ unit: "grapheme", maxLength: 30 }).filter((s) => !s.includes("\n")),
  fc.uint8Array({ maxLength: 30 }),
);
const exportEntryArb = fc.tuple(
  fc.string({ maxLength: 30 }).filter((s) => !s.includes("\n")),
  fc.array(fc.tuple(exportKey, exportValue), { maxLength: 8 }),
);

/** Export format of [cursor, fields], and the entry the parser should give. */
function exportOf([cursor, fields]: [string, [string, string | Uint8Array][]]) {
  const parts: Uint8Array[] = [encoder.encode(`__CURSOR=${cursor}\n`)];
  const want: Record<string, unknown> = { __CURSOR: cursor };
  const repeated = new Set<string>();
  for (const [key, value] of fields) {
    let v: string | number[];
    if (typeof value === "string") {
      parts.push(encoder.encode(`${key}=${value}\n`));
      v = value;
    } else {
      const length = new Uint8Array(8);
      new DataView(length.buffer).setUint32(0, value.length, true);
      parts.push(encoder.encode(`${key}\n`), length, value, encoder.encode("\n"));
      v = Array.from(value);
    }
    if (!(key in want)) want[key] = v;
    else if (repeated.has(key)) (want[key] as unknown[]).push(v);
    else {
      want[key] = [want[key], v];
      repeated.add(key);
    }
  }
  parts.push(encoder.encode("\n"));
  return { parts, want };
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

Deno.test("property: the export parser gives every entry however the stream is cut, repeated fields as arrays, binary as bytes", () => {
  fc.assert(
    fc.property(
      fc.array(exportEntryArb, { minLength: 1, maxLength: 6 }),
      fc.array(fc.nat(), { maxLength: 8 }),
      (entries, cuts) => {
        const made = entries.map(exportOf);
        const all = concat(made.flatMap((m) => m.parts));
        const points = [...new Set(cuts.map((c) => c % all.length)), all.length].sort((a, b) =>
          a - b
        );
        const parser = new ExportParser();
        const got: JournalEntry[] = [];
        let from = 0;
        for (const point of points) {
          parser.push(all.subarray(from, point), (e) => got.push(e));
          from = point;
        }
        assert.deepEqual(got, made.map((m) => m.want));
        assert.equal(parser.inEntry, false);
      },
    ),
    { numRuns: 400 },
  );
});

Deno.test("property: the export parser on arbitrary or mutated bytes throws only JournalExportError, and keeps at most maxFieldBytes of a value", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 300 }),
      fc.array(exportEntryArb, { minLength: 1, maxLength: 4 }),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
      (junk, entries, mutations) => {
        for (const bytes of [junk, concat(entries.map(exportOf).flatMap((m) => m.parts))]) {
          const mutated = bytes.slice();
          for (const [at, byte] of mutations) {
            if (mutated.length > 0) mutated[at % mutated.length] = byte;
          }
          const parser = new ExportParser({ maxFieldBytes: 16 });
          try {
            parser.push(mutated, (e) => {
              assert.equal(typeof e.__CURSOR, "string");
              for (const v of Object.values(e)) {
                const values = (Array.isArray(v) && typeof v[0] !== "number" ? v : [v]) as (
                  | string
                  | number[]
                )[];
                for (const one of values) {
                  const length = typeof one === "string" ? encoder.encode(one).length : one.length;
                  assert.ok(length <= 16 * 3, "a value kept to maxFieldBytes (U+FFFD may widen)");
                }
              }
            });
          } catch (error) {
            assert.ok(error instanceof JournalExportError, String(error));
          }
        }
      },
    ),
    { numRuns: 400 },
  );
});
