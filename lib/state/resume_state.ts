/**
 * The client's resume point: the server journal's epoch and the next
 * sequence number wanted, saved atomically (write, fsync, rename) only after
 * the sink took the messages.
 *
 * @module
 */

import { log } from "../util/log.ts";
import { JsonStateFile, JsonStateOwner, parseJsonObject } from "./json_state_file.ts";

/** A resume point. */
export interface ResumePoint {
  /** The server journal's epoch. */
  epoch: string;
  /** Next sequence number wanted. */
  next: number;
  /** Receive time of the last message taken, ms (for loss reports). */
  lastTime?: number;
}

/** Options for {@linkcode ResumeState}. */
export interface ResumeStateOptions {
  /**
   * Save at least this often while messages flow, ms.
   * @default {1000}
   */
  intervalMs?: number;
}

/**
 * A resume point kept in a file.
 *
 * @example Load, advance, save
 * ```ts
 * import { ResumeState } from "./resume_state.ts";
 * await using state = await ResumeState.open("/var/lib/reclog/vps.state");
 * state.advance({ epoch: "e", next: 42 });
 * await state.save();
 * ```
 */
export class ResumeState extends JsonStateOwner {
  #point: ResumePoint | undefined;
  #rejected: ResumePoint | undefined;

  private constructor(path: string, point: ResumePoint | undefined, options: ResumeStateOptions) {
    super(path, {
      what: "--state",
      category: "pull",
      intervalMs: options.intervalMs ?? 1000,
      saved: point && JSON.stringify(point),
    });
    this.#point = point;
  }

  /**
   * Reads the state file. Absent: no resume point yet. Present but not a
   * valid resume point (not JSON, wrong fields, out-of-range numbers): a
   * warning is logged and it is treated as absent (the next save replaces
   * it). Unreadable (a directory, no permission): a clear error.
   */
  static async open(path: string, options: ResumeStateOptions = {}): Promise<ResumeState> {
    const text = await JsonStateFile.read(path, "--state");
    const point = text === undefined ? undefined : parseResumePoint(text);
    if (text !== undefined && !point) {
      log("pull").warn("state file {path} is not a valid reclog resume point; starting afresh", {
        path,
      });
    }
    return new ResumeState(path, point, options);
  }

  /** The current resume point. */
  get point(): ResumePoint | undefined {
    return this.#point;
  }

  /** Moves the resume point (after the sink took the messages). */
  advance(point: ResumePoint): void {
    this.#point = point;
  }

  /** The resume point to write, or undefined for none (or an invalid one, logged once). */
  protected override render(): string | undefined {
    const point = this.#point;
    if (!point || point === this.#rejected) return undefined;
    if (!isResumePoint(point)) {
      // Never write what the next start could not read back.
      log("pull").error("not saving an invalid resume point to --state {path}: {point}", {
        path: this.path,
        point: JSON.stringify(point) ?? String(point),
      });
      this.#rejected = point;
      return undefined;
    }
    return JSON.stringify(point);
  }
}

/** Longest epoch id accepted from a state file. */
const MAX_EPOCH = 256;
/** Latest time a `Date` can hold, ms. */
const MAX_TIME = 8.64e15;

/**
 * Whether `value` is a valid resume point: `epoch` a non-empty string of at
 * most 256 characters, `next` a safe integer ≥ 1, and `lastTime`, if
 * present, a time in ms that a `Date` can hold.
 *
 * @example Check a parsed value
 * ```ts
 * import { isResumePoint } from "./resume_state.ts";
 * isResumePoint({ epoch: "e", next: 42 }); // true
 * isResumePoint({ epoch: 12345, next: 42 }); // false
 * ```
 */
export function isResumePoint(value: unknown): value is ResumePoint {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const { epoch, next, lastTime } = value as Record<string, unknown>;
  return typeof epoch === "string" && epoch.length > 0 && epoch.length <= MAX_EPOCH &&
    Number.isSafeInteger(next) && (next as number) >= 1 &&
    (lastTime === undefined || isTime(lastTime));
}

function isTime(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value) && value >= 0 && value <= MAX_TIME;
}

/**
 * Parses a state file's text: the resume point it holds, or undefined if it
 * holds none that is valid ({@linkcode isResumePoint}). Never throws.
 *
 * @example Parse a state file
 * ```ts
 * import { parseResumePoint } from "./resume_state.ts";
 * parseResumePoint('{"epoch":"e","next":42}\n'); // { epoch: "e", next: 42 }
 * parseResumePoint("garbage"); // undefined
 * ```
 */
export function parseResumePoint(text: string): ResumePoint | undefined {
  const parsed = parseJsonObject(text);
  if (!isResumePoint(parsed)) return undefined;
  const point: ResumePoint = { epoch: parsed.epoch, next: parsed.next };
  if (parsed.lastTime !== undefined) point.lastTime = parsed.lastTime;
  return point;
}
