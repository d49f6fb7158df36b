/**
 * The types of `SystemdJournalReader` (`./systemd_journal.ts`):
 * what it hands on, its counters and its options.
 *
 * @module
 */

import type { SyslogFormatOptions } from "../framing/journal_entry.ts";

/** One journal entry handed on. */
export interface JournalRecord {
  /** The entry's cursor (`__CURSOR`): save it after the message is kept, resume after it. */
  cursor: string;
  /** The sequence number id (`s=` of the cursor), or "" if the cursor has none. */
  seqnumId: string;
  /** The sequence number (`i=` of the cursor), or -1 if the cursor has none. */
  seqnum: number;
  /** The formatted message (a view into the batch's buffer). */
  message: Uint8Array;
}

/** Entries that were in the journal but are gone: numbers `from` to `to`, inclusive. */
export interface JournalGap {
  /** Their sequence number id. */
  seqnumId: string;
  /** First number missing. */
  from: number;
  /** Last number missing. */
  to: number;
  /** How many: `to - from + 1`. */
  count: number;
}

/** What one step of the reader hands on. */
export interface JournalBatch {
  /** The entries, oldest first (possibly none when only gaps are reported). */
  records: JournalRecord[];
  /** Gaps noticed before or between these entries. */
  gaps: JournalGap[];
  /**
   * The cursor of the last entry read so far, these included (also past
   * entries the formatter dropped, so they are not read again): what to save
   * once the records are kept.
   */
  cursor: string | undefined;
}

/** Counters of a reader. */
export interface JournalReaderStats {
  /** Entries handed on. */
  entries: number;
  /** Entries missing, summed over the gaps. */
  lost: number;
  /** Lines that were not journal entries (skipped). */
  malformed: number;
  /**
   * JSON lines longer than {@linkcode SystemdJournalReaderOptions.maxLineBytes}
   * (skipped), or, with the export output, values cut to it (entry kept).
   */
  oversize: number;
  /** Messages cut to the formatter's maxBytes. */
  truncated: number;
  /** JSON lines dropped for their length (format json). */
  dropped: number;
  /** Times journalctl was restarted. */
  restarts: number;
}

/** Options for `SystemdJournalReader`. */
export interface SystemdJournalReaderOptions {
  /** A directory of journal files (`--directory`); without it the local journal. */
  directory?: string;
  /**
   * journalctl matches, `FIELD=value` (field: `A-Z`, `0-9`, `_`), or `+` between
   * groups for OR, e.g. `["_SYSTEMD_UNIT=nginx.service"]`.
   * @default {[]}
   */
  matches?: string[];
  /** journalctl `--priority`: `warning`, `0..4`, `err..crit`. */
  priority?: string;
  /** Continue after this entry (a saved {@linkcode JournalRecord.cursor}). */
  afterCursor?: string;
  /**
   * Without a cursor: read from the oldest entry (`start`) or only what comes
   * next (`end`).
   * @default {"start"}
   */
  from?: "start" | "end";
  /** How entries become messages. */
  format?: SyslogFormatOptions;
  /**
   * What journalctl prints: `export` (about 3x faster in 252, rfc5424 only;
   * an over-long value is cut, not skipped) or `json` (needed for the json format).
   * @default {"export" for rfc5424, "json" for json}
   */
  output?: "export" | "json";
  /**
   * Report sequence-number gaps.
   * @default {true without matches and priority, false with them}
   */
  detectGaps?: boolean;
  /**
   * Longest JSON line read, bytes; a longer one is skipped and counted.
   * @default {1048576}
   */
  maxLineBytes?: number;
  /**
   * The journalctl program.
   * @default {"journalctl"}
   */
  journalctl?: string;
  /**
   * First wait before restarting journalctl, ms; doubles up to 5 s.
   * @default {200}
   */
  restartDelayMs?: number;
  /** Called each time journalctl was started (its output is read next). */
  onStart?: () => void;
  /** Called when journalctl cannot be run (then retried with back-off). */
  onError?: (error: Error) => void;
  /** Stops the reader. */
  signal?: AbortSignal;
}
