/**
 * Real journal files for tests: journal export format piped into
 * `systemd-journal-remote` makes them, `journalctl --directory` reads them.
 */

import assert from "node:assert/strict";
import { type JournalEntry, parseEntryLine } from "../lib/framing/journal_entry.ts";
import { runProgram } from "./helpers.ts";

const encoder = new TextEncoder();

/** systemd-journal-remote is installed outside PATH. */
export function journalRemote(): string {
  for (
    const path of ["/usr/lib/systemd/systemd-journal-remote", "/lib/systemd/systemd-journal-remote"]
  ) {
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // not here
    }
  }
  throw new Error(
    "'systemd-journal-remote' is required by this test but not installed: run 'apt-get install -y systemd-journal-remote' (or .ci/run, which installs it)",
  );
}

export type ExportValue = string | Uint8Array;
/** One entry to write: fields in order; a repeated field is an array. */
export type ExportEntry = Record<string, ExportValue | ExportValue[]>;

export const BOOT = "0123456789abcdef0123456789abcdef";
export const T0 = 1_796_197_841_123_456; // 2026-12-02T07:50:41.123456Z

/** Journal export format: text fields `KEY=value\n`, others `KEY\n<u64 LE>bytes\n`. */
export function exportFormat(entries: ExportEntry[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const entry of entries) {
    for (const [key, field] of Object.entries(entry)) {
      for (const value of Array.isArray(field) ? field : [field]) {
        if (typeof value === "string" && !value.includes("\n")) {
          parts.push(encoder.encode(`${key}=${value}\n`));
        } else {
          const bytes = typeof value === "string" ? encoder.encode(value) : value;
          const length = new Uint8Array(8);
          new DataView(length.buffer).setBigUint64(0, BigInt(bytes.length), true);
          parts.push(encoder.encode(`${key}\n`), length, bytes, encoder.encode("\n"));
        }
      }
    }
    parts.push(encoder.encode("\n"));
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** Appends entries to DIR/FILE (creating it) through systemd-journal-remote. */
export async function writeJournal(dir: string, entries: ExportEntry[], file = "x.journal") {
  const result = await runProgram(journalRemote(), [
    `--output=${dir}/${file}`,
    "--split-mode=none",
    "-",
  ], { stdin: exportFormat(entries) });
  assert.equal(result.code, 0, result.stderr);
}

/** An entry with the fields every journald entry has, number `i` of the test. */
export function entry(i: number, fields: ExportEntry, boot = BOOT): ExportEntry {
  return {
    __REALTIME_TIMESTAMP: String(T0 + i * 1_000_001),
    __MONOTONIC_TIMESTAMP: String(1000 + i),
    _BOOT_ID: boot,
    ...fields,
  };
}

/** Plain numbered entries `m<i>`. */
export function plain(from: number, count: number, extra: ExportEntry = {}): ExportEntry[] {
  return Array.from(
    { length: count },
    (_, k) => entry(from + k, { MESSAGE: `m${from + k}`, ...extra }),
  );
}

/**
 * An entry with 300 distinct field names: journal files have room for about
 * 250, so systemd-journal-remote rotates before the next entry (the archived
 * file keeps the sequence number id, the new one continues the numbering,
 * as journald's rotation does).
 */
export function wide(i: number): ExportEntry {
  const fields: ExportEntry = { MESSAGE: `m${i}` };
  for (let k = 0; k < 300; k++) fields[`WIDE_${i}_${k}`] = "x";
  return entry(i, fields);
}

/** `journalctl --directory=DIR -o json --all`, parsed. */
export async function journalctlJson(dir: string, extra: string[] = []): Promise<JournalEntry[]> {
  const result = await runProgram("journalctl", [
    `--directory=${dir}`,
    "--merge",
    "--output=json",
    "--all",
    "--no-pager",
    ...extra,
  ]);
  assert.equal(result.code, 0, result.stderr);
  return result.stdout.split("\n").filter((l) => l !== "").map((l) =>
    parseEntryLine(encoder.encode(l))
  );
}
