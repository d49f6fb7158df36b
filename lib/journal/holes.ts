/**
 * Holes in the journal's numbering: sequence numbers that stand for
 * messages lost before they reached the journal (systemd journal entries
 * vacuumed away before serve read them). A client's cursor reports a hole
 * as an `L` frame covering its numbers, so the loss reaches every client
 * with its count; with a spool, a hole is kept beside the segment after it
 * (`<first seq>.gap`) so a restart continues the numbering across it.
 *
 * @module
 */

/** Numbers `from..to` that stand for lost messages. */
export interface JournalHole {
  /** First number of the hole. */
  from: number;
  /** Last number of the hole. */
  to: number;
  /** When the loss was noticed, ms since the epoch. */
  time: number;
  /** What the clients' `L` frame says. */
  reason: string;
}

/**
 * The hole holding `seq`, if any (`holes` ordered by `from`).
 *
 * @example Find a hole
 * ```ts
 * import { findHole } from "./holes.ts";
 * const holes = [{ from: 5, to: 9, time: 0, reason: "lost at the source" }];
 * console.log(findHole(holes, 7)?.to); // 9
 * ```
 */
export function findHole(holes: readonly JournalHole[], seq: number): JournalHole | undefined {
  for (const hole of holes) {
    if (seq < hole.from) return undefined;
    if (seq <= hole.to) return hole;
  }
  return undefined;
}

/**
 * Parses a `.gap` file's text; undefined unless it is a hole ending right
 * before `nextSeq`.
 *
 * @example Read a hole back
 * ```ts
 * import { parseHole } from "./holes.ts";
 * parseHole('{"from":5,"to":9,"time":0,"reason":"x"}', 10); // the hole
 * ```
 */
export function parseHole(text: string, nextSeq: number): JournalHole | undefined {
  try {
    const { from, to, time, reason } = JSON.parse(text);
    if (
      Number.isSafeInteger(from) && Number.isSafeInteger(to) && from >= 1 && from <= to &&
      to + 1 === nextSeq && Number.isSafeInteger(time) && typeof reason === "string"
    ) {
      return { from, to, time, reason: reason.slice(0, 200) };
    }
  } catch {
    // not a hole
  }
  return undefined;
}
