/**
 * The journal export format as `journalctl --output=export` prints it, parsed
 * incrementally (any cut of the stream): into the same {@linkcode JournalEntry}
 * shape `parseEntryLine` gives for `--output=json`, or, with an
 * {@linkcode ExportFieldHandler}, as the raw bytes of only the fields the
 * handler asks for (no strings made: what the rfc5424 path uses). journalctl
 * prints export about three times faster than JSON (systemd 252), and binary
 * fields come as raw bytes.
 *
 * Format (https://systemd.io/JOURNAL_EXPORT_FORMATS/): an entry is a list of
 * fields ended by an empty line; a field is `KEY=value\n` (printable UTF-8
 * without newline), or `KEY\n`, a 64-bit little-endian length, that many
 * bytes, `\n` (anything else). A key occurring again makes the field an
 * array of its values, as in the JSON output. Text values become strings,
 * binary values arrays of byte numbers.
 *
 * A value longer than `maxFieldBytes` keeps its first `maxFieldBytes` bytes
 * (counted in {@linkcode ExportParser.truncated}): the entry is still handed
 * on (the formatter cuts MESSAGE anyway), and nothing over-long is buffered.
 *
 * @module
 */

import type { JournalEntry, JournalValue } from "./journal_entry.ts";

/**
 * The export stream is not in the export format (a bad key, a binary field
 * without its closing newline, an entry without `__CURSOR`): the parser must
 * be {@linkcode ExportParser.reset} (and journalctl restarted) after it.
 *
 * @example Tell bad framing from other failures
 * ```ts
 * import { ExportParser, JournalExportError } from "./journal_export.ts";
 * try {
 *   new ExportParser().push(new TextEncoder().encode("bad key=1\n"), () => {});
 * } catch (error) {
 *   console.log(error instanceof JournalExportError); // true
 * }
 * ```
 */
export class JournalExportError extends Error {
  /** Makes the error; `message` says what was wrong. */
  constructor(message: string) {
    super(message);
    this.name = "JournalExportError";
  }
}

/**
 * Receives the fields of the export stream as bytes (see
 * {@linkcode ExportParserOptions.handler}).
 *
 * @example Count the MESSAGE fields
 * ```ts
 * import { type ExportFieldHandler, ExportParser } from "./journal_export.ts";
 * let messages = 0;
 * const handler: ExportFieldHandler = {
 *   fieldId: (name) => (name === "MESSAGE" ? 0 : -1),
 *   field: () => void messages++,
 *   endEntry: () => {},
 * };
 * new ExportParser({ handler }).push(new TextEncoder().encode("__CURSOR=c\nMESSAGE=hi\n\n"));
 * console.log(messages); // 1
 * ```
 */
export interface ExportFieldHandler {
  /**
   * A number for a field name (asked about once per name): at least 0 to
   * receive its values in {@linkcode ExportFieldHandler.field}, -1 to have
   * them skipped unread.
   */
  fieldId(name: string): number;
  /**
   * One value of a field asked for: `bytes[start, end)`, valid during the
   * call only; `binary`: it came in the binary form (not printable UTF-8).
   */
  field(id: number, bytes: Uint8Array, start: number, end: number, binary: boolean): void;
  /** The fields of an entry were all given (not called for blank lines between entries). */
  endEntry(): void;
}

/** Options for {@linkcode ExportParser}. */
export interface ExportParserOptions {
  /**
   * Longest value kept, bytes; the rest of a longer one is skipped.
   * @default {1048576}
   */
  maxFieldBytes?: number;
  /**
   * Receives the fields as bytes instead of entries being made (then
   * {@linkcode ExportParser.push} takes no `onEntry`, and checking for
   * `__CURSOR` is the handler's).
   */
  handler?: ExportFieldHandler;
}

// Where the parser is: in a field's name, its text value, its binary
// value's 8-byte length, its binary value, or at the newline after that.
const KEY = 0;
const TEXT = 1;
const LENGTH = 2;
const DATA = 3;
const DATA_END = 4;

const LF = 0x0a;
const EQUALS = 0x3d;
const MAX_KEY = 256;
const decoder = new TextDecoder();

/** UTF-8 text of `bytes[start, end)`; short ASCII without TextDecoder (its call costs more). */
function text(bytes: Uint8Array, start: number, end: number): string {
  if (end - start <= 64) {
    let ascii = true;
    for (let i = start; i < end && ascii; i++) ascii = bytes[i]! < 0x80;
    if (ascii) {
      return String.fromCharCode.apply(null, bytes.subarray(start, end) as unknown as number[]);
    }
  }
  return decoder.decode(bytes.subarray(start, end));
}

function validKey(key: Uint8Array, start: number, end: number): boolean {
  if (end === start) return false;
  for (let i = start; i < end; i++) {
    const c = key[i]!;
    const ok = (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x5f ||
      (c >= 0x61 && c <= 0x7a);
    if (!ok) return false;
  }
  return true;
}

/** A field name seen, and what the handler numbered it. */
interface Name {
  name: string;
  id: number;
}

/** The handler that makes {@linkcode JournalEntry}s (`push(chunk, onEntry)`). */
class EntryBuilder implements ExportFieldHandler {
  onEntry: (entry: JournalEntry) => void = () => {};
  readonly #names: string[] = [];
  readonly #ids = new Map<string, number>();
  #entry: JournalEntry = {};
  #repeated = new Set<string>();

  fieldId(name: string): number {
    let id = this.#ids.get(name);
    if (id === undefined) {
      id = this.#names.push(name) - 1;
      this.#ids.set(name, id);
    }
    return id;
  }

  field(id: number, bytes: Uint8Array, start: number, end: number, binary: boolean): void {
    const value: JournalValue = binary
      ? Array.from(bytes.subarray(start, end))
      : text(bytes, start, end);
    const key = this.#names[id]!;
    const entry = this.#entry;
    const old = entry[key];
    if (old === undefined) {
      entry[key] = value;
    } else if (this.#repeated.has(key)) {
      (old as JournalValue[]).push(value);
    } else {
      entry[key] = [old as JournalValue, value];
      this.#repeated.add(key);
    }
  }

  endEntry(): void {
    const entry = this.#entry;
    this.reset();
    if (typeof entry.__CURSOR !== "string") throw new JournalExportError("entry without __CURSOR");
    this.onEntry(entry);
  }

  reset(): void {
    this.#entry = {};
    if (this.#repeated.size > 0) this.#repeated = new Set();
  }
}

/**
 * Parses `journalctl --output=export`, chunk by chunk.
 *
 * @example Parse two entries, cut anywhere
 * ```ts
 * import { ExportParser } from "./journal_export.ts";
 * const bytes = new TextEncoder().encode("__CURSOR=s=a;i=1\nMESSAGE=hi\n\n__CURSOR=s=a;i=2\n\n");
 * const parser = new ExportParser();
 * const cursors: unknown[] = [];
 * parser.push(bytes.subarray(0, 7), (entry) => cursors.push(entry.__CURSOR));
 * parser.push(bytes.subarray(7), (entry) => cursors.push(entry.__CURSOR));
 * console.log(cursors); // ["s=a;i=1", "s=a;i=2"]
 * ```
 */
export class ExportParser {
  /** Values cut to `maxFieldBytes`. */
  truncated = 0;
  readonly #max: number;
  readonly #handler: ExportFieldHandler;
  readonly #builder: EntryBuilder | undefined;
  #state = KEY;
  readonly #key = new Uint8Array(MAX_KEY);
  #keyLength = 0;
  /** The handler's number of the field being read (-1: skipped). */
  #id = -1;
  #value = new Uint8Array(1024);
  #valueLength = 0;
  #valueSeen = 0;
  readonly #lengthBytes = new Uint8Array(8);
  readonly #lengthView = new DataView(this.#lengthBytes.buffer);
  #lengthHave = 0;
  #remaining = 0;
  #fields = 0;
  readonly #names = new Map<number, Name>();

  /** Makes a parser; see {@linkcode ExportParserOptions}. */
  constructor(options: ExportParserOptions = {}) {
    this.#max = options.maxFieldBytes ?? 1 << 20;
    if (!Number.isSafeInteger(this.#max) || this.#max < 1) {
      throw new RangeError(`maxFieldBytes must be a positive integer, got ${this.#max}`);
    }
    if (options.handler) {
      this.#handler = options.handler;
    } else {
      this.#builder = new EntryBuilder();
      this.#handler = this.#builder;
    }
  }

  /** Whether an entry is partly read (the stream ended inside one if so). */
  get inEntry(): boolean {
    return this.#fields > 0 || this.#state !== KEY || this.#keyLength > 0;
  }

  /** Forgets a partly read entry (after an error, or a new journalctl). */
  reset(): void {
    this.#state = KEY;
    this.#keyLength = 0;
    this.#valueLength = 0;
    this.#valueSeen = 0;
    this.#lengthHave = 0;
    this.#fields = 0;
    this.#builder?.reset();
  }

  /**
   * Parses `chunk`, calling `onEntry` (without a handler) for each entry it
   * completes (the entry is the caller's), or the handler for each field.
   * Throws {@linkcode JournalExportError} on bad framing, and nothing else
   * (but what `onEntry` or the handler throws).
   */
  push(chunk: Uint8Array, onEntry?: (entry: JournalEntry) => void): void {
    if (this.#builder && onEntry) this.#builder.onEntry = onEntry;
    const handler = this.#handler;
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      switch (this.#state) {
        case KEY: {
          let j = i;
          let c = 0;
          while (j < n && (c = chunk[j]!) !== LF && c !== EQUALS) j++;
          if (j === n) {
            this.#keepKey(chunk, i, j);
            return;
          }
          if (this.#keyLength > 0) {
            this.#keepKey(chunk, i, j);
            this.#id = this.#nameId(this.#key, 0, this.#keyLength);
          } else if (j > i) {
            this.#id = this.#nameId(chunk, i, j);
          } else if (c === LF) {
            this.#endEntry();
            i = j + 1;
            break;
          } else {
            throw new JournalExportError("bad field name");
          }
          this.#keyLength = 0;
          i = j + 1;
          if (c === EQUALS) {
            this.#state = TEXT;
          } else {
            this.#state = LENGTH;
            this.#lengthHave = 0;
          }
          break;
        }
        case TEXT: {
          const j = chunk.indexOf(LF, i);
          if (j !== -1 && this.#valueSeen === 0 && j - i <= this.#max) {
            // The whole value is in this chunk (the usual case): no copy.
            if (this.#id >= 0) handler.field(this.#id, chunk, i, j, false);
            this.#endField();
            i = j + 1;
            break;
          }
          const end = j === -1 ? n : j;
          this.#keep(chunk, i, end);
          if (j === -1) return;
          this.#fieldKept(false);
          i = j + 1;
          break;
        }
        case LENGTH: {
          if (this.#lengthHave === 0 && n - i >= 8) {
            this.#lengthBytes.set(chunk.subarray(i, i + 8));
            this.#lengthHave = 8;
            i += 8;
          } else {
            const take = Math.min(8 - this.#lengthHave, n - i);
            this.#lengthBytes.set(chunk.subarray(i, i + take), this.#lengthHave);
            this.#lengthHave += take;
            i += take;
          }
          if (this.#lengthHave === 8) {
            const view = this.#lengthView;
            const length = view.getUint32(0, true) + view.getUint32(4, true) * 2 ** 32;
            if (!Number.isSafeInteger(length)) {
              throw new JournalExportError("field length too large");
            }
            this.#remaining = length;
            this.#state = length === 0 ? DATA_END : DATA;
          }
          break;
        }
        case DATA: {
          const remaining = this.#remaining;
          if (
            this.#valueSeen === 0 && remaining <= n - i - 1 && remaining <= this.#max &&
            chunk[i + remaining] === LF
          ) {
            // The whole value and its newline are in this chunk: no copy.
            if (this.#id >= 0) handler.field(this.#id, chunk, i, i + remaining, true);
            this.#endField();
            i += remaining + 1;
            break;
          }
          const take = Math.min(remaining, n - i);
          this.#keep(chunk, i, i + take);
          this.#remaining -= take;
          i += take;
          if (this.#remaining === 0) this.#state = DATA_END;
          break;
        }
        default: { // DATA_END
          if (chunk[i] !== LF) throw new JournalExportError("binary field not ended by a newline");
          this.#fieldKept(true);
          i++;
        }
      }
    }
  }

  #keepKey(chunk: Uint8Array, start: number, end: number): void {
    if (this.#keyLength + (end - start) > MAX_KEY) {
      throw new JournalExportError("field name too long");
    }
    this.#key.set(chunk.subarray(start, end), this.#keyLength);
    this.#keyLength += end - start;
  }

  /** Keeps part of a value that is cut by the chunk's end (or too long). */
  #keep(chunk: Uint8Array, start: number, end: number): void {
    this.#valueSeen += end - start;
    if (this.#id < 0) return;
    const room = this.#max - this.#valueLength;
    const take = Math.min(room, end - start);
    if (take <= 0) return;
    if (this.#valueLength + take > this.#value.length) {
      let size = this.#value.length * 2;
      while (size < this.#valueLength + take) size *= 2;
      const bigger = new Uint8Array(Math.min(size, this.#max));
      bigger.set(this.#value.subarray(0, this.#valueLength));
      this.#value = bigger;
    }
    this.#value.set(chunk.subarray(start, start + take), this.#valueLength);
    this.#valueLength += take;
  }

  /** A value read in pieces is complete. */
  #fieldKept(binary: boolean): void {
    if (this.#id >= 0) {
      if (this.#valueSeen > this.#max) this.truncated++;
      this.#handler.field(this.#id, this.#value, 0, this.#valueLength, binary);
    }
    this.#endField();
  }

  #endField(): void {
    this.#fields++;
    this.#valueLength = 0;
    this.#valueSeen = 0;
    this.#state = KEY;
  }

  /** The handler's number of the field name in `bytes[start, end)` (cached: entries repeat the same few). */
  #nameId(bytes: Uint8Array, start: number, end: number): number {
    const length = end - start;
    let hash = length;
    for (let i = start; i < end; i++) hash = (hash * 31 + bytes[i]!) | 0;
    const cached = this.#names.get(hash);
    if (cached !== undefined && cached.name.length === length) {
      const name = cached.name;
      let same = true;
      for (let i = 0; i < length && same; i++) same = name.charCodeAt(i) === bytes[start + i];
      if (same) return cached.id;
    }
    if (!validKey(bytes, start, end)) throw new JournalExportError("bad field name");
    const name = String.fromCharCode.apply(null, bytes.subarray(start, end) as unknown as number[]);
    const id = this.#handler.fieldId(name);
    if (this.#names.size < 4096) this.#names.set(hash, { name, id });
    return id;
  }

  #endEntry(): void {
    const empty = this.#fields === 0;
    this.#fields = 0;
    if (empty) return; // blank lines between entries
    this.#handler.endEntry();
  }
}
