/**
 * Recordings in a tlog log: which recording a message belongs to (host plus
 * `rec` id, or the audit session), the `--session`/`--host` choice, and the
 * check that one recording's messages come in order and without holes. Pure:
 * no I/O.
 *
 * @module
 */

import type { TlogMessage } from "./tlog.ts";

/**
 * The key that tells recordings apart in a log holding several: host plus
 * `rec` (or the audit `session` for formats before `rec` existed).
 *
 * @example Group messages by recording
 * ```ts
 * import { recordingKey } from "./recording.ts";
 * recordingKey({ host: "vm", rec: "abc", session: 1 }); // "vm abc"
 * ```
 */
export function recordingKey(message: Pick<TlogMessage, "host" | "rec" | "session">): string {
  return `${message.host} ${recordingId(message)}`;
}

/**
 * The id users pick a recording by: `rec` if present, else the audit session.
 *
 * @example Name a recording
 * ```ts
 * import { recordingId } from "./recording.ts";
 * recordingId({ rec: "abc", session: 4294967295 }); // "abc"
 * ```
 */
export function recordingId(message: Pick<TlogMessage, "rec" | "session">): string {
  return message.rec ?? String(message.session);
}

/**
 * Options for {@linkcode matchesRecording}: the `--session` and `--host` choice.
 *
 * @example Choose by host only
 * ```ts
 * import type { RecordingFilter } from "./recording.ts";
 * const filter: RecordingFilter = { host: "db1" };
 * ```
 */
export interface RecordingFilter {
  /**
   * A recording id (`rec`) or audit session number the message must have.
   * @default {undefined}
   */
  session?: string;
  /**
   * The host the message must come from.
   * @default {undefined}
   */
  host?: string;
}

/**
 * Whether a message belongs to the recording(s) a `--session`/`--host` choice names.
 *
 * @example Filter by session
 * ```ts
 * import { matchesRecording } from "./recording.ts";
 * matchesRecording({ host: "vm", rec: "abc", session: 7 }, { session: "7" }); // true
 * ```
 */
export function matchesRecording(
  message: Pick<TlogMessage, "host" | "rec" | "session">,
  filter: RecordingFilter,
): boolean {
  if (filter.host !== undefined && message.host !== filter.host) return false;
  if (filter.session === undefined) return true;
  return message.rec === filter.session || String(message.session) === filter.session;
}

/**
 * What {@linkcode MessageSequence.check} found about the next message.
 *
 * @example React to a gap
 * ```ts
 * import { MessageSequence, type SequenceCheck } from "./recording.ts";
 * const check: SequenceCheck = new MessageSequence().check({ id: 2, pos: 0 });
 * if (check.kind === "gap") console.log(check.firstMissing); // 1
 * ```
 */
export type SequenceCheck =
  | { kind: "next" }
  | { kind: "gap"; firstMissing: number; lastMissing: number }
  | { kind: "out-of-order"; id: number; after: number }
  | { kind: "pos-backwards"; pos: number; after: number };

/**
 * Checks that one recording's messages come in order without holes: ids
 * counting up by one from 1, and `pos` never going back.
 *
 * @example Find a missing message
 * ```ts
 * import { MessageSequence } from "./recording.ts";
 * const sequence = new MessageSequence();
 * sequence.check({ id: 1, pos: 0 }); // { kind: "next" }
 * sequence.check({ id: 3, pos: 10 }); // { kind: "gap", firstMissing: 2, lastMissing: 2 }
 * ```
 */
export class MessageSequence {
  #lastId = 0;
  #lastPos = -1;

  /**
   * Checks the next message; a gap or `next` moves on past it, an
   * out-of-order one is left out (the caller skips it).
   */
  check(message: Pick<TlogMessage, "id" | "pos">): SequenceCheck {
    if (message.id <= this.#lastId) {
      return { kind: "out-of-order", id: message.id, after: this.#lastId };
    }
    if (message.pos < this.#lastPos) {
      return { kind: "pos-backwards", pos: message.pos, after: this.#lastPos };
    }
    const expected = this.#lastId + 1;
    this.#lastId = message.id;
    this.#lastPos = message.pos;
    if (message.id === expected) return { kind: "next" };
    return { kind: "gap", firstMissing: expected, lastMissing: message.id - 1 };
  }
}

/**
 * Describes a {@linkcode SequenceCheck} other than `next` in words.
 *
 * @example Describe a gap
 * ```ts
 * import { describeSequenceCheck } from "./recording.ts";
 * describeSequenceCheck({ kind: "gap", firstMissing: 2, lastMissing: 4 }, 5);
 * // "messages 2-4 are missing (id 5 follows id 1)"
 * ```
 */
export function describeSequenceCheck(check: SequenceCheck, id: number): string {
  switch (check.kind) {
    case "next":
      return `message ${id} is in order`;
    case "gap": {
      const count = check.lastMissing - check.firstMissing + 1;
      const which = count === 1
        ? `message ${check.firstMissing} is`
        : `messages ${check.firstMissing}-${check.lastMissing} are`;
      return check.firstMissing === 1
        ? `${which} missing (the recording starts at id ${id})`
        : `${which} missing (id ${id} follows id ${check.firstMissing - 1})`;
    }
    case "out-of-order":
      return `message ${check.id} is out of order or repeated (it comes after id ${check.after})`;
    case "pos-backwards":
      return `message ${id} goes back in time (pos ${check.pos} ms after ${check.after} ms)`;
  }
}
