/**
 * The journal export format as `journalctl --output=export` prints it, parsed
 * incrementally (any cut of the stream), into the same {@linkcode JournalEntry}
 * shape `parseEntryLine` gives for `--output=json`: journalctl prints export
 * about three times faster than JSON (systemd 252), and binary fields come
 * as raw bytes.
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

/** Options for {@linkcode ExportParser}. */
export interface ExportParserOptions {
  /**
   * Longest value kept, bytes; the rest of a longer one is skipped.
   * @default {1048576}
   */
  maxFieldBytes?: number;
}

/**
 * Where the parser is: in a field's name, its text value, its binary
 * value's 8-byte length, its binary value, or at the newline after that.
 */
type ParserState = "key" | "text" | "length" | "data" | "dataEnd";

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

function validKey(key: Uint8Array, length: number): boolean {
  if (length === 0) return false;
  for (let i = 0; i < length; i++) {
    const c = key[i]!;
    const ok = (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x5f ||
      (c >= 0x61 && c <= 0x7a);
    if (!ok) return false;
  }
  return true;
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
  #state: ParserState = "key";
  readonly #key = new Uint8Array(MAX_KEY);
  #keyLength = 0;
  #value = new Uint8Array(1024);
  #valueLength = 0;
  #valueSeen = 0;
  readonly #lengthBytes = new Uint8Array(8);
  #lengthHave = 0;
  #remaining = 0;
  #entry: JournalEntry = {};
  #repeated = new Set<string>();
  #fields = 0;
  readonly #names = new Map<number, string>();
  #name = "";

  /** Makes a parser; see {@linkcode ExportParserOptions}. */
  constructor(options: ExportParserOptions = {}) {
    this.#max = options.maxFieldBytes ?? 1 << 20;
    if (!Number.isSafeInteger(this.#max) || this.#max < 1) {
      throw new RangeError(`maxFieldBytes must be a positive integer, got ${this.#max}`);
    }
  }

  /** Whether an entry is partly read (the stream ended inside one if so). */
  get inEntry(): boolean {
    return this.#fields > 0 || this.#state !== "key" || this.#keyLength > 0;
  }

  /** Forgets a partly read entry (after an error, or a new journalctl). */
  reset(): void {
    this.#state = "key";
    this.#keyLength = 0;
    this.#valueLength = 0;
    this.#valueSeen = 0;
    this.#lengthHave = 0;
    this.#entry = {};
    this.#repeated = new Set();
    this.#fields = 0;
  }

  /**
   * Parses `chunk`, calling `onEntry` for each entry it completes (the
   * entry is the caller's). Throws {@linkcode JournalExportError} on bad
   * framing, and nothing else (but what `onEntry` throws).
   */
  push(chunk: Uint8Array, onEntry: (entry: JournalEntry) => void): void {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      switch (this.#state) {
        case "key": {
          let j = i;
          while (j < n && chunk[j] !== LF && chunk[j] !== EQUALS) j++;
          if (this.#keyLength + (j - i) > MAX_KEY) {
            throw new JournalExportError("field name too long");
          }
          this.#key.set(chunk.subarray(i, j), this.#keyLength);
          this.#keyLength += j - i;
          if (j === n) return;
          i = j + 1;
          if (chunk[j] === EQUALS) {
            this.#name = this.#keyName();
            this.#state = "text";
          } else if (this.#keyLength === 0) {
            this.#endEntry(onEntry);
          } else {
            this.#name = this.#keyName();
            this.#state = "length";
            this.#lengthHave = 0;
          }
          break;
        }
        case "text": {
          const j = chunk.indexOf(LF, i);
          if (j !== -1 && this.#valueLength === 0 && j - i <= this.#max) {
            // The whole value is in this chunk (the usual case): no copy.
            this.#addField(text(chunk, i, j));
            i = j + 1;
            break;
          }
          const end = j === -1 ? n : j;
          this.#keep(chunk, i, end);
          if (j === -1) return;
          this.#endField(true);
          i = j + 1;
          break;
        }
        case "length": {
          const take = Math.min(8 - this.#lengthHave, n - i);
          this.#lengthBytes.set(chunk.subarray(i, i + take), this.#lengthHave);
          this.#lengthHave += take;
          i += take;
          if (this.#lengthHave === 8) {
            const view = new DataView(this.#lengthBytes.buffer);
            const length = view.getUint32(0, true) + view.getUint32(4, true) * 2 ** 32;
            if (!Number.isSafeInteger(length)) {
              throw new JournalExportError("field length too large");
            }
            this.#remaining = length;
            this.#state = length === 0 ? "dataEnd" : "data";
          }
          break;
        }
        case "data": {
          const take = Math.min(this.#remaining, n - i);
          this.#keep(chunk, i, i + take);
          this.#remaining -= take;
          i += take;
          if (this.#remaining === 0) this.#state = "dataEnd";
          break;
        }
        default: { // "dataEnd"
          if (chunk[i] !== LF) throw new JournalExportError("binary field not ended by a newline");
          this.#endField(false);
          i++;
        }
      }
    }
  }

  #keep(chunk: Uint8Array, start: number, end: number): void {
    const room = this.#max - this.#valueLength;
    const take = Math.min(room, end - start);
    this.#valueSeen += end - start;
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

  #endField(isText: boolean): void {
    const bytes = this.#value.subarray(0, this.#valueLength);
    if (this.#valueSeen > this.#valueLength) this.truncated++;
    this.#addField(isText ? text(bytes, 0, bytes.length) : Array.from(bytes));
  }

  /** The field name read, as a string (cached: entries repeat the same few). */
  #keyName(): string {
    const key = this.#key;
    const length = this.#keyLength;
    let hash = length;
    for (let i = 0; i < length; i++) hash = (hash * 31 + key[i]!) | 0;
    const cached = this.#names.get(hash);
    if (cached !== undefined && cached.length === length) {
      let same = true;
      for (let i = 0; i < length && same; i++) same = cached.charCodeAt(i) === key[i];
      if (same) return cached;
    }
    if (!validKey(key, length)) throw new JournalExportError("bad field name");
    const name = String.fromCharCode.apply(null, key.subarray(0, length) as unknown as number[]);
    if (this.#names.size < 4096) this.#names.set(hash, name);
    return name;
  }

  #addField(value: JournalValue): void {
    const key = this.#name;
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
    this.#fields++;
    this.#keyLength = 0;
    this.#valueLength = 0;
    this.#valueSeen = 0;
    this.#state = "key";
  }

  #endEntry(onEntry: (entry: JournalEntry) => void): void {
    const entry = this.#entry;
    const empty = this.#fields === 0;
    this.#entry = {};
    this.#repeated = new Set();
    this.#fields = 0;
    if (empty) return; // blank lines between entries
    if (typeof entry.__CURSOR !== "string") throw new JournalExportError("entry without __CURSOR");
    onEntry(entry);
  }
}
