/**
 * The options of the `Journal` (`./journal.ts`), kept apart to
 * keep that file short.
 *
 * @module
 */

/** Options for `Journal`. */
export interface JournalOptions {
  /**
   * Bytes of messages kept in memory; beyond it the oldest segments are
   * dropped (or, with a spool, kept on disk only).
   * @default {64 MiB}
   */
  maxBytes?: number;
  /**
   * Size of one segment (the unit of eviction and of a client write).
   * @default {min(1 MiB, maxBytes / 4), at least 64 KiB}
   */
  segmentBytes?: number;
  /**
   * The journal's epoch id (names one journal's life).
   * @default {a random id}
   */
  epoch?: string;
  /**
   * First sequence number (a restarted spool continues its own).
   * @default {1}
   */
  firstSeq?: number;
}

/** Options for `Journal.open`. */
export interface JournalOpenOptions extends JournalOptions {
  /**
   * Keep segments in this directory, so a restart continues the journal.
   * @default {none: memory only}
   */
  spoolDir?: string;
  /**
   * Bytes of segments kept on disk with a spool.
   * @default {1 GiB}
   */
  spoolBytes?: number;
  /**
   * While the spool cannot be written (a full disk, a file size limit), how
   * often to try again, ms. Also how often `journal.json` records how far
   * the numbering went.
   * @default {2000}
   */
  spoolRetryMs?: number;
}
