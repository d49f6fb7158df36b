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
 * Field mapping of {@linkcode SyslogFormatter} (format `rfc5424`):
 *
 * | RFC 5424 | from | when absent or invalid |
 * | --- | --- | --- |
 * | PRI | `SYSLOG_FACILITY` (0–23) × 8 + `PRIORITY` (0–7) | facility 1 (user), severity 6 (info) |
 * | VERSION | `1` | |
 * | TIMESTAMP | `__REALTIME_TIMESTAMP`, µs, UTC: `2026-12-02T07:50:41.123456Z` | `-` |
 * | HOSTNAME | `_HOSTNAME`, ≤ 255 | {@linkcode SyslogFormatOptions.hostname}, else `-` |
 * | APP-NAME | `SYSLOG_IDENTIFIER`, else `_COMM`, ≤ 48 | `-` |
 * | PROCID | `_PID`, else `SYSLOG_PID`, ≤ 128 | `-` |
 * | MSGID | `-` | |
 * | STRUCTURED-DATA | `-`, or `[journal@32473 NAME="value" ...]` with {@linkcode SyslogFormatOptions.sdFields} | `-` |
 * | MSG | `MESSAGE`, byte for byte (binary, multi-line, no BOM added) | empty, and no space before it |
 *
 * In HOSTNAME, APP-NAME and PROCID each byte outside printable US-ASCII
 * (33–126) becomes `_` (a UTF-8 character becomes one `_` per byte), and the
 * value is cut to the field's maximum. Of a repeated field the first value is
 * used (all of them in structured data).
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
const encoder = new TextEncoder();

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

/** Every value of a field (one for a plain field, none when absent). */
function allValues(field: JournalFieldValue | undefined): JournalValue[] {
  if (field === undefined || field === null) return [];
  if (typeof field === "string") return [field];
  if (field.length === 0 || typeof field[0] === "number") return [field as number[]];
  return field as JournalValue[];
}

function firstValue(field: JournalFieldValue | undefined): JournalValue | undefined {
  if (field === undefined || field === null) return undefined;
  if (typeof field === "string") return field;
  if (field.length === 0 || typeof field[0] === "number") return field as number[];
  return field[0] as JournalValue;
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

/** How an entry becomes a message: see the module doc for the field mapping. */
export type JournalFormat = "rfc5424" | "json";

/** Options for {@linkcode SyslogFormatter}. */
export interface SyslogFormatOptions {
  /**
   * `rfc5424`: a syslog message (module doc); `json`: the entry's JSON line
   * as journalctl printed it, every field included.
   * @default {"rfc5424"}
   */
  format?: JournalFormat;
  /**
   * Longest message, bytes (at least 1024). A longer RFC 5424 message has
   * its MSG cut (on a UTF-8 character boundary when the cut falls inside
   * one), or its structured data left out (`-`) if that alone is too long,
   * and is counted in {@linkcode SyslogFormatter.truncated}; a longer JSON line cannot be
   * cut and is dropped, counted in {@linkcode SyslogFormatter.dropped}.
   * @default {65536}
   */
  maxBytes?: number;
  /**
   * Fields to put in structured data, `[<sdId> NAME="value" ...]`, one
   * parameter per value (repeated fields repeat it). Names must be 1–32
   * characters of `A-Z`, `a-z`, `0-9`, `_`. Values are UTF-8 (invalid bytes
   * become U+FFFD), with `"`, `\` and `]` escaped by a backslash.
   * @default {[]}
   */
  sdFields?: string[];
  /**
   * The SD-ID of that element (`name@<private enterprise number>`).
   * @default {"journal@32473"}
   */
  sdId?: string;
  /**
   * HOSTNAME for entries without `_HOSTNAME` (e.g. this machine's name).
   * @default {"-"}
   */
  hostname?: string;
}

const PRINTABLE_MIN = 33;
const PRINTABLE_MAX = 126;
const UNDERSCORE = 0x5f;
const DASH = 0x2d;
const SPACE = 0x20;

/** A byte buffer that grows, written from the front. */
class ByteWriter {
  buf = new Uint8Array(4096);
  length = 0;

  reserve(extra: number): void {
    const need = this.length + extra;
    if (need <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < need) size *= 2;
    const bigger = new Uint8Array(size);
    bigger.set(this.buf.subarray(0, this.length));
    this.buf = bigger;
  }

  byte(b: number): void {
    this.reserve(1);
    this.buf[this.length++] = b;
  }

  ascii(text: string): void {
    this.reserve(text.length);
    for (let i = 0; i < text.length; i++) this.buf[this.length++] = text.charCodeAt(i);
  }

  utf8(text: string): void {
    this.reserve(text.length * 3);
    this.length += encoder.encodeInto(text, this.buf.subarray(this.length)).written;
  }

  bytes(bytes: Uint8Array | number[]): void {
    this.reserve(bytes.length);
    this.buf.set(bytes, this.length);
    this.length += bytes.length;
  }
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, "0");
}

/** The PRI of an entry without `SYSLOG_FACILITY` / `PRIORITY`: user.info. */
const DEFAULT_FACILITY = 1;
const DEFAULT_SEVERITY = 6;

/** A value of a small integer field (`PRIORITY`, `SYSLOG_FACILITY`) in range, else `fallback`. */
function smallInt(entry: JournalEntry, name: string, max: number, fallback: number): number {
  const value = firstValue(entry[name]);
  if (typeof value !== "string" || value.length === 0 || value.length > 2) return fallback;
  let n = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return fallback;
    n = n * 10 + c;
  }
  return n <= max ? n : fallback;
}

/**
 * Turns journal entries into syslog messages (or JSON lines), into one
 * buffer that a batch of messages shares: {@linkcode SyslogFormatter.append}
 * adds one, {@linkcode SyslogFormatter.take} hands out the batch.
 *
 * @example Format one entry
 * ```ts
 * import { SyslogFormatter } from "./journal_entry.ts";
 * const formatter = new SyslogFormatter();
 * const message = formatter.format({
 *   __CURSOR: "s=a;i=1",
 *   __REALTIME_TIMESTAMP: "1796197841123456",
 *   PRIORITY: "3",
 *   _HOSTNAME: "vps1",
 *   SYSLOG_IDENTIFIER: "nginx",
 *   _PID: "42",
 *   MESSAGE: "hello",
 * });
 * console.log(new TextDecoder().decode(message));
 * // <11>1 2026-12-02T07:50:41.123456Z vps1 nginx 42 - - hello
 * ```
 */
export class SyslogFormatter {
  /** The format in use. */
  readonly mode: JournalFormat;
  /** Longest message, bytes. */
  readonly maxBytes: number;
  /** Messages whose MSG was cut to {@linkcode SyslogFormatOptions.maxBytes}. */
  truncated = 0;
  /** JSON lines dropped for being longer than {@linkcode SyslogFormatOptions.maxBytes}. */
  dropped = 0;
  readonly #sdFields: string[];
  readonly #sdId: string;
  readonly #hostname: string;
  #out = new ByteWriter();
  readonly #ends: number[] = [];
  #second = -1;
  #secondText = "";

  /** Makes a formatter; see {@linkcode SyslogFormatOptions}. */
  constructor(options: SyslogFormatOptions = {}) {
    this.mode = options.format ?? "rfc5424";
    if (this.mode !== "rfc5424" && this.mode !== "json") {
      throw new RangeError(`Cannot use journal format '${this.mode}': use rfc5424 or json`);
    }
    this.maxBytes = options.maxBytes ?? 65_536;
    if (!Number.isSafeInteger(this.maxBytes) || this.maxBytes < 1024) {
      throw new RangeError(`maxBytes must be an integer of at least 1024, got ${this.maxBytes}`);
    }
    this.#sdFields = options.sdFields ?? [];
    for (const name of this.#sdFields) {
      if (!/^[A-Za-z0-9_]{1,32}$/.test(name)) {
        throw new RangeError(
          `Cannot put journal field '${name}' in structured data: use 1-32 of A-Z a-z 0-9 _`,
        );
      }
    }
    this.#sdId = options.sdId ?? "journal@32473";
    if (!/^[!#-\\^-~]{1,32}$/.test(this.#sdId) || this.#sdId.includes("=")) {
      throw new RangeError(
        `Cannot use SD-ID '${this.#sdId}': 1-32 printable ASCII, no = ] " or space`,
      );
    }
    this.#hostname = options.hostname ?? "-";
  }

  /**
   * Formats one entry into the pending batch; `line` is the entry's JSON line
   * (used by the `json` format). Returns false if the entry was dropped.
   */
  append(entry: JournalEntry, line?: Uint8Array): boolean {
    const out = this.#out;
    if (this.mode === "json") {
      const bytes = line ?? encoder.encode(JSON.stringify(entry));
      if (bytes.length > this.maxBytes) {
        this.dropped++;
        return false;
      }
      out.bytes(bytes);
      this.#ends.push(out.length);
      return true;
    }
    const start = out.length;
    const facility = smallInt(entry, "SYSLOG_FACILITY", 23, DEFAULT_FACILITY);
    const severity = smallInt(entry, "PRIORITY", 7, DEFAULT_SEVERITY);
    out.ascii(`<${facility * 8 + severity}>1 `);
    this.#timestamp(firstValue(entry.__REALTIME_TIMESTAMP));
    out.byte(SPACE);
    this.#headerField(firstValue(entry._HOSTNAME), 255, this.#hostname);
    out.byte(SPACE);
    this.#headerField(
      firstValue(entry.SYSLOG_IDENTIFIER) ?? firstValue(entry._COMM),
      48,
      "-",
    );
    out.byte(SPACE);
    this.#headerField(firstValue(entry._PID) ?? firstValue(entry.SYSLOG_PID), 128, "-");
    out.ascii(" - ");
    const sdStart = out.length;
    this.#structuredData(entry);
    if (out.length - start > this.maxBytes - 1) {
      // Structured data cannot be cut: leave it out.
      out.length = sdStart;
      out.byte(DASH);
      this.truncated++;
    }
    const message = firstValue(entry.MESSAGE);
    if (message !== undefined && message.length > 0) {
      out.byte(SPACE);
      const msgStart = out.length;
      if (typeof message === "string") out.utf8(message);
      else out.bytes(message);
      if (out.length - start > this.maxBytes) {
        let cut = Math.max(msgStart, start + this.maxBytes);
        // Back off to a UTF-8 character boundary (at most 3 continuation bytes).
        for (let i = 0; i < 3 && cut > msgStart && (out.buf[cut]! & 0xc0) === 0x80; i++) cut--;
        out.length = cut;
        this.truncated++;
      }
    }
    this.#ends.push(out.length);
    return true;
  }

  /**
   * Hands out the messages appended since the last call, as views into one
   * buffer (valid until the call after the next one), and starts a new batch.
   */
  take(): Uint8Array[] {
    const buf = this.#out.buf;
    const messages = new Array<Uint8Array>(this.#ends.length);
    let start = 0;
    for (let i = 0; i < this.#ends.length; i++) {
      const end = this.#ends[i]!;
      messages[i] = buf.subarray(start, end);
      start = end;
    }
    this.#ends.length = 0;
    // A fresh buffer: the views handed out stay valid while the caller uses them.
    this.#out = new ByteWriter();
    this.#out.buf = new Uint8Array(Math.max(4096, Math.min(buf.length, 1 << 20)));
    return messages;
  }

  /** Formats one entry on its own (a copy). */
  format(entry: JournalEntry, line?: Uint8Array): Uint8Array {
    if (this.#ends.length > 0) {
      throw new Error("format() while a batch is pending: take() it first");
    }
    if (!this.append(entry, line)) return new Uint8Array(0);
    return this.take()[0]!.slice();
  }

  #timestamp(value: JournalValue | undefined): void {
    const out = this.#out;
    if (typeof value !== "string" || !/^[0-9]{1,16}$/.test(value)) return out.byte(DASH);
    const us = Number(value);
    if (!Number.isSafeInteger(us)) return out.byte(DASH);
    const second = Math.floor(us / 1e6);
    if (second !== this.#second) {
      const date = new Date(second * 1000);
      const year = date.getUTCFullYear();
      if (year > 9999) return out.byte(DASH);
      this.#second = second;
      this.#secondText = `${pad(year, 4)}-${pad(date.getUTCMonth() + 1, 2)}-${
        pad(date.getUTCDate(), 2)
      }T${pad(date.getUTCHours(), 2)}:${pad(date.getUTCMinutes(), 2)}:${
        pad(date.getUTCSeconds(), 2)
      }.`;
    }
    out.ascii(this.#secondText);
    out.ascii(pad(us % 1e6, 6));
    out.byte(0x5a); // Z
  }

  #headerField(value: JournalValue | undefined, max: number, fallback: string): void {
    const out = this.#out;
    if (value === undefined || value.length === 0) return out.ascii(fallback);
    const start = out.length;
    if (typeof value === "string") out.utf8(value);
    else out.bytes(value);
    if (out.length - start > max) out.length = start + max;
    const buf = out.buf;
    for (let i = start; i < out.length; i++) {
      const b = buf[i]!;
      if (b < PRINTABLE_MIN || b > PRINTABLE_MAX) buf[i] = UNDERSCORE;
    }
  }

  #structuredData(entry: JournalEntry): void {
    const out = this.#out;
    let open = false;
    for (const name of this.#sdFields) {
      for (const value of allValues(entry[name])) {
        if (!open) {
          out.byte(0x5b); // [
          out.ascii(this.#sdId);
          open = true;
        }
        out.byte(SPACE);
        out.ascii(name);
        out.ascii('="');
        const text = typeof value === "string" ? value : decoder.decode(Uint8Array.from(value));
        out.utf8(/["\\\]]/.test(text) ? text.replace(/["\\\]]/g, "\\$&") : text);
        out.byte(0x22); // "
      }
    }
    if (open) out.byte(0x5d); // ]
    else out.byte(DASH);
  }
}
