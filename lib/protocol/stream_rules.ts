/**
 * The rules of a reclog stream (docs/protocol.md): where the server starts a
 * client (the resume rule), and which sequence numbers the client accepts.
 *
 * @module
 */

import type { LostReport } from "./messages.ts";
import { ProtocolError } from "./frame.ts";

/**
 * The sequence rule of a connection (docs/protocol.md): the next journal
 * entry must carry `expected` (the hello's `start` at first), or, right
 * after an `L` frame of unknown extent (`gapAllowed`), any higher number.
 * Returns the number the entry after `seq` must carry; throws
 * {@linkcode ProtocolError} for a repeated, decreasing or skipping number,
 * or one that leaves no safe integer after it.
 *
 * @example Walk a stream
 * ```ts
 * import { acceptSequence } from "./stream_rules.ts";
 * let expected = 5;
 * expected = acceptSequence(expected, 5, false); // 6
 * expected = acceptSequence(expected, 6, false); // 7
 * // acceptSequence(expected, 9, false) throws: 7 and 8 were skipped
 * ```
 */
export function acceptSequence(expected: number, seq: number, gapAllowed: boolean): number {
  if (seq !== expected && !(gapAllowed && seq > expected)) {
    throw new ProtocolError(
      seq < expected
        ? `sequence number ${seq} repeated or going back (expected ${expected})`
        : `sequence number ${seq} skips from ${expected} without an 'L' frame`,
    );
  }
  if (seq >= Number.MAX_SAFE_INTEGER) {
    throw new ProtocolError(`sequence number ${seq} leaves no safe integer after it`);
  }
  return seq + 1;
}

/**
 * The sequence number expected after a checked `L` frame (see
 * {@linkcode parseLostReport}) when `expected` was: one past its `to`.
 * The lost range must reach the stream's position: `from <= expected <=
 * to + 1`; else it announces a gap that is not there, or is in the past
 * ({@linkcode ProtocolError}). A report of unknown extent changes nothing.
 *
 * @example After a loss of 5..7
 * ```ts
 * import { expectedAfterLost } from "./stream_rules.ts";
 * expectedAfterLost(5, { count: 3, from: 5, to: 7, reason: "fell behind" }); // 8
 * ```
 */
export function expectedAfterLost(expected: number, report: LostReport): number {
  if (report.unknown || report.from === undefined || report.to === undefined) return expected;
  if (report.from > expected || report.to + 1 < expected) {
    throw new ProtocolError(
      `'L' frame for seq ${report.from}..${report.to} does not meet the stream at seq ${expected}`,
    );
  }
  return report.to + 1;
}

/** What the server knows of its journal when a client greets. */
export interface JournalPosition {
  /** The journal's epoch. */
  epoch: string;
  /** Oldest sequence number held. */
  first: number;
  /** Sequence number the next message will get. */
  next: number;
  /** Receive time of the newest message dropped from the journal, ms (0 or absent: none known). */
  evictedTime?: number;
}

/** What a client asked for in its greeting (see `ClientHello`). */
export interface ResumeRequest {
  /** The client's resume point. */
  resume?: { epoch: string; next: number };
  /** Start at the live tail (wins over `resume`). */
  live?: boolean;
  /** Without `resume`: start at the oldest message held. */
  oldest?: boolean;
}

/** Where a client's stream starts, and the `L` frame it gets first, if any. */
export interface ResumeDecision {
  /** The first sequence number the client will be sent (the hello's `start`). */
  start: number;
  /** The report of the `L` frame sent before any entry. */
  lost?: LostReport;
}

/**
 * The resume rule (the table in docs/protocol.md): given the client's
 * greeting and the journal's position, where its stream starts and what
 * loss it is told of first.
 *
 * | client hello                               | start         | `L` frame first            |
 * | ------------------------------------------ | ------------- | -------------------------- |
 * | `live: true` (or nothing)                  | `next`        | none                       |
 * | `oldest: true`, no resume point            | `first`       | none                       |
 * | same epoch, `first <= resume.next <= next` | `resume.next` | none                       |
 * | same epoch, `resume.next < first`          | `first`       | `from: resume.next, to: first - 1` |
 * | other epoch, or `resume.next > next`       | `first`       | `unknown: true`            |
 *
 * @example A client that fell behind the retention
 * ```ts
 * import { resumeRule } from "./stream_rules.ts";
 * const { start, lost } = resumeRule(
 *   { resume: { epoch: "e1", next: 5 } },
 *   { epoch: "e1", first: 10, next: 20 },
 * );
 * console.log(start, lost?.count); // 10 5
 * ```
 */
export function resumeRule(request: ResumeRequest, journal: JournalPosition): ResumeDecision {
  const { resume } = request;
  if (!resume || request.live) {
    return { start: request.oldest && !resume ? journal.first : journal.next };
  }
  if (resume.epoch !== journal.epoch) {
    return { start: journal.first, lost: unknownLoss("the server's journal was restarted") };
  }
  if (resume.next > journal.next) {
    return { start: journal.first, lost: unknownLoss("resume point is ahead of the journal") };
  }
  if (resume.next >= journal.first) return { start: resume.next };
  const to = journal.first - 1;
  return {
    start: journal.first,
    lost: {
      count: to - resume.next + 1,
      from: resume.next,
      to,
      ...(journal.evictedTime ? { toTime: journal.evictedTime } : {}),
      reason: BEHIND_REASON,
    },
  };
}

/** The reason of an `L` frame for messages the journal dropped before the client read them. */
export const BEHIND_REASON = "client fell behind the journal's retention";

function unknownLoss(reason: string): LostReport {
  return { count: 0, unknown: true, reason };
}
