/**
 * systemd journal entries, as `journalctl --output=json --all` prints them,
 * turned into syslog messages: the JSON line parser (peer bytes: validated)
 * and the RFC 5424 formatter.
 *
 * What `journalctl -o json --all` (systemd 252) prints, one line an entry:
 * a JSON object whose values are a string (a field that is printable UTF-8,
 * newlines and tabs included), an array of byte numbers (any other field:
 * binary, invalid UTF-8, control bytes), or, for a field that occurs more
 * than once in the entry, an array of such values. `null` stands for a field
 * over 4096 bytes only without `--all`. systemd 252 prints no `__SEQNUM`; the
 * cursor carries the sequence number (`s=<seqnum id>;i=<seqnum, hex>;...`).
 *
 * The RFC 5424 formatter and its field mapping: `./journal_syslog.ts`
 * (re-exported here).
 *
 * @module
 */

import { readJsonObject } from "../util/json.ts";

/** One value of a journal field in journalctl's JSON: text, or bytes. */
export type JournalValue = string | number[];

/** A field of an entry: one value, several (a repeated field), or `null` (too long, without `--all`). */
export type JournalFieldValue = JournalValue | JournalValue[] | null;

/** A journal entry as journalctl's JSON gives it. */
export type JournalEntry = Record<string, JournalFieldValue>;

/**
 * A line that is not a journal entry in journalctl's JSON form: not JSON, not
 * an object, a value of another type, or no `__CURSOR`.
 *
 * @example Tell a bad line from other failures
 * ```ts
 * import { JournalLineError, parseEntryLine } from "./journal_entry.ts";
 * try {
 *   parseEntryLine(new TextEncoder().encode("[1]"));
 * } catch (error) {
 *   console.log(error instanceof JournalLineError); // true
 * }
 * ```
 */
export class JournalLineError extends Error {
  /** Makes the error; `message` says what was wrong. */
  constructor(message: string) {
    super(message);
    this.name = "JournalLineError";
  }
}

const decoder = new TextDecoder();

function isByteArray(value: unknown[]): value is number[] {
  for (let i = 0; i < value.length; i++) {
    const b = value[i];
    if (typeof b !== "number" || !(b >= 0 && b <= 255) || (b | 0) !== b) return false;
  }
  return true;
}

function isValue(value: unknown): boolean {
  return typeof value === "string" || (Array.isArray(value) && isByteArray(value));
}

/**
 * Parses one line of `journalctl --output=json` (without its newline) and
 * checks its shape: an object with a string `__CURSOR` whose every value is
 * a string, an array of byte numbers (0–255), an array of those, or `null`.
 * Throws {@linkcode JournalLineError} otherwise, and nothing else.
 *
 * @example Parse a line
 * ```ts
 * import { parseEntryLine } from "./journal_entry.ts";
 * const line = new TextEncoder().encode('{"__CURSOR":"s=a;i=1","MESSAGE":[104,105]}');
 * const entry = parseEntryLine(line);
 * console.log(entry.MESSAGE); // [104, 105]
 * ```
 */
export function parseEntryLine(line: Uint8Array): JournalEntry {
  const entry = readJsonObject(decoder.decode(line));
  if (entry === "not JSON") throw new JournalLineError("not JSON");
  if (typeof entry === "string") throw new JournalLineError("not a JSON object");
  for (const key in entry) {
    const value = entry[key];
    if (value === null || isValue(value)) continue;
    if (Array.isArray(value) && value.length > 0 && value.every(isValue)) continue;
    throw new JournalLineError(`field ${JSON.stringify(key.slice(0, 64))} has an unexpected type`);
  }
  if (typeof entry.__CURSOR !== "string") throw new JournalLineError("no __CURSOR");
  return entry as JournalEntry;
}

/** Where an entry is in the journal, from its cursor. */
export interface CursorPosition {
  /** The sequence number id (`s=`): numbers are comparable only within one id. */
  seqnumId: string;
  /** The entry's sequence number (`i=`, hex in the cursor). */
  seqnum: number;
}

/**
 * Reads the sequence number id and number out of a journal cursor
 * (`s=<id>;i=<hex>;b=...`), or `undefined` when it has none.
 *
 * @example Read a cursor
 * ```ts
 * import { cursorPosition } from "./journal_entry.ts";
 * console.log(cursorPosition("s=ab12;i=1f;b=00;m=1;t=2;x=3")); // { seqnumId: "ab12", seqnum: 31 }
 * ```
 */
export function cursorPosition(cursor: string): CursorPosition | undefined {
  // journalctl's own order, `s=...;i=...;` and no other s= or i= part: read in place.
  const semi = cursor.indexOf(";");
  if (
    semi > 2 && cursor.startsWith("s=") && cursor.startsWith("i=", semi + 1) &&
    cursor.indexOf(";s=", semi) === -1
  ) {
    let end = cursor.indexOf(";", semi + 1);
    if (end === -1) end = cursor.length;
    let seqnum = 0;
    let ok = end - semi - 3 >= 1 && end - semi - 3 <= 13 && cursor.indexOf(";i=", end) === -1;
    for (let i = semi + 3; i < end && ok; i++) {
      const c = cursor.charCodeAt(i);
      const digit = c <= 0x39 ? c - 0x30 : (c | 0x20) - 0x57;
      ok = (c >= 0x30 && c <= 0x39) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x66);
      seqnum = seqnum * 16 + digit;
    }
    if (ok) return { seqnumId: cursor.slice(2, semi), seqnum };
  }
  let seqnumId: string | undefined;
  let seqnum: number | undefined;
  for (const part of cursor.split(";")) {
    if (part.startsWith("s=")) seqnumId = part.slice(2);
    else if (part.startsWith("i=") && /^[0-9a-fA-F]{1,13}$/.test(part.slice(2))) {
      seqnum = parseInt(part.slice(2), 16);
    }
  }
  if (!seqnumId || seqnum === undefined) return undefined;
  return { seqnumId, seqnum };
}

export { type JournalFormat, type SyslogFormatOptions, SyslogFormatter } from "./journal_syslog.ts";
