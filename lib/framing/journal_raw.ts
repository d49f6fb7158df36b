/**
 * The fields of one journal entry that the RFC 5424 format is made of, as
 * bytes: an {@linkcode ExportFieldHandler} that keeps only those (and the
 * structured-data fields asked for) from `journalctl --output=export`, for
 * `SyslogFormatter.appendRaw` (`./journal_syslog.ts`). No string is made
 * but the cursor's, and the other fields of the entry are skipped unread.
 *
 * @module
 */

import type { ExportFieldHandler } from "./journal_export.ts";

/** `__CURSOR`'s slot in {@linkcode RawJournalEntry.start}. */
export const RAW_CURSOR = 0;
/** `__REALTIME_TIMESTAMP`'s slot. */
export const RAW_REALTIME = 1;
/** `PRIORITY`'s slot. */
export const RAW_PRIORITY = 2;
/** `SYSLOG_FACILITY`'s slot. */
export const RAW_FACILITY = 3;
/** `_HOSTNAME`'s slot. */
export const RAW_HOSTNAME = 4;
/** `SYSLOG_IDENTIFIER`'s slot. */
export const RAW_IDENTIFIER = 5;
/** `_COMM`'s slot. */
export const RAW_COMM = 6;
/** `_PID`'s slot. */
export const RAW_PID = 7;
/** `SYSLOG_PID`'s slot. */
export const RAW_SYSLOG_PID = 8;
/** `MESSAGE`'s slot. */
export const RAW_MESSAGE = 9;

/** The field names of the slots, in slot order. */
export const RAW_FIELDS: readonly string[] = [
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
];

/**
 * One entry's mapped fields as byte ranges of {@linkcode RawJournalEntry.buf}
 * (the first value of a repeated field), and every value of the
 * structured-data fields. Give it to an `ExportParser` as its handler; at
 * each entry's end `onEntry` is called, then the entry is cleared.
 *
 * @example Read the cursor and MESSAGE of export output
 * ```ts
 * import { ExportParser } from "./journal_export.ts";
 * import { RAW_MESSAGE, RawJournalEntry } from "./journal_raw.ts";
 * const raw = new RawJournalEntry([], (entry) => {
 *   console.log(entry.cursor(), entry.end[RAW_MESSAGE] - entry.start[RAW_MESSAGE]); // "s=a;i=1" 2
 * });
 * new ExportParser({ handler: raw }).push(new TextEncoder().encode("__CURSOR=s=a;i=1\nMESSAGE=hi\n\n"));
 * ```
 */
export class RawJournalEntry implements ExportFieldHandler {
  /** The bytes of the values kept (valid during `onEntry`). */
  buf: Uint8Array = new Uint8Array(4096);
  /** Bytes of `buf` in use. */
  length = 0;
  /** Where each slot's value starts in `buf`, -1 when the entry has no such field. */
  readonly start: Int32Array = new Int32Array(RAW_FIELDS.length).fill(-1);
  /** Where each slot's value ends. */
  readonly end: Int32Array = new Int32Array(RAW_FIELDS.length);
  /** 1 where a slot's value came in the binary form (not printable UTF-8). */
  readonly binary: Uint8Array = new Uint8Array(RAW_FIELDS.length);
  /**
   * The structured-data values, four numbers each: the field's index in
   * `sdFields`, start, end, binary (1 or 0); in the order they came.
   */
  readonly sd: number[] = [];
  /** The fields kept for structured data. */
  readonly sdFields: readonly string[];
  /** Called at the end of each entry. */
  onEntry: (entry: RawJournalEntry) => void;
  readonly #slotOf: number[] = [];
  readonly #sdOf: number[] = [];
  readonly #ids = new Map<string, number>();

  /** Keeps the mapped fields and `sdFields`; `onEntry` gets each entry. */
  constructor(
    sdFields: readonly string[] = [],
    onEntry: (entry: RawJournalEntry) => void = () => {},
  ) {
    this.sdFields = sdFields;
    this.onEntry = onEntry;
  }

  /** See {@linkcode ExportFieldHandler.fieldId}. */
  fieldId(name: string): number {
    const known = this.#ids.get(name);
    if (known !== undefined) return known;
    const slot = RAW_FIELDS.indexOf(name);
    const sd = this.sdFields.indexOf(name);
    const id = slot < 0 && sd < 0 ? -1 : this.#slotOf.push(slot) - 1;
    if (id >= 0) this.#sdOf.push(sd);
    this.#ids.set(name, id);
    return id;
  }

  /** See {@linkcode ExportFieldHandler.field}. */
  field(id: number, bytes: Uint8Array, start: number, end: number, binary: boolean): void {
    const slot = this.#slotOf[id]!;
    const sd = this.#sdOf[id]!;
    const first = slot >= 0 && this.start[slot]! < 0;
    if (!first && sd < 0) return; // a repeated field: its first value is used
    const at = this.#copy(bytes, start, end);
    const to = at + (end - start);
    if (first) {
      this.start[slot] = at;
      this.end[slot] = to;
      this.binary[slot] = binary ? 1 : 0;
    }
    if (sd >= 0) this.sd.push(sd, at, to, binary ? 1 : 0);
  }

  /** See {@linkcode ExportFieldHandler.endEntry}. */
  endEntry(): void {
    try {
      this.onEntry(this);
    } finally {
      this.clear();
    }
  }

  /** Forgets the entry being read. */
  clear(): void {
    this.start.fill(-1);
    this.length = 0;
    this.sd.length = 0;
  }

  /** The entry's `__CURSOR` as text, or undefined when it has none (or a binary one). */
  cursor(): string | undefined {
    const start = this.start[RAW_CURSOR]!;
    if (start < 0 || this.binary[RAW_CURSOR] === 1) return undefined;
    const end = this.end[RAW_CURSOR]!;
    const buf = this.buf;
    for (let i = start; i < end; i++) {
      if (buf[i]! >= 0x80) return decoder.decode(buf.subarray(start, end));
    }
    return String.fromCharCode.apply(null, buf.subarray(start, end) as unknown as number[]);
  }

  /**
   * The µs of `__REALTIME_TIMESTAMP` (1–16 digits, text form), -1 when
   * absent or not that.
   */
  micros(): number {
    const from = this.start[RAW_REALTIME]!;
    const to = this.end[RAW_REALTIME]!;
    if (from < 0 || this.binary[RAW_REALTIME] === 1 || to === from || to - from > 16) return -1;
    const buf = this.buf;
    let us = 0;
    for (let i = from; i < to; i++) {
      const c = buf[i]! - 48;
      if (c < 0 || c > 9) return -1;
      us = us * 10 + c;
    }
    return Number.isSafeInteger(us) ? us : -1;
  }

  /** A slot's value as a number of 1–2 digits (text form) up to `max`, else `fallback`. */
  smallInt(slot: number, max: number, fallback: number): number {
    const from = this.start[slot]!;
    const to = this.end[slot]!;
    if (from < 0 || this.binary[slot] === 1 || to === from || to - from > 2) return fallback;
    let n = 0;
    for (let i = from; i < to; i++) {
      const c = this.buf[i]! - 48;
      if (c < 0 || c > 9) return fallback;
      n = n * 10 + c;
    }
    return n <= max ? n : fallback;
  }

  #copy(bytes: Uint8Array, start: number, end: number): number {
    const at = this.length;
    const need = at + (end - start);
    if (need > this.buf.length) {
      let size = this.buf.length * 2;
      while (size < need) size *= 2;
      const bigger = new Uint8Array(size);
      bigger.set(this.buf.subarray(0, at));
      this.buf = bigger;
    }
    const buf = this.buf;
    if (end - start <= 32) {
      for (let i = start, j = at; i < end; i++, j++) buf[j] = bytes[i]!;
    } else {
      buf.set(bytes.subarray(start, end), at);
    }
    this.length = need;
    return at;
  }
}

const decoder = new TextDecoder();
