/**
 * The client's resume point: the server journal's epoch and the next
 * sequence number wanted, saved atomically (write, fsync, rename) only after
 * the sink took the messages.
 *
 * @module
 */

import { describeFsError } from "./cli.ts";
import { log } from "./log.ts";
import { writeFileAtomic } from "./atomic_file.ts";

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
export class ResumeState implements AsyncDisposable {
  /** The state file, as given to {@linkcode ResumeState.open}. */
  readonly path: string;
  #point: ResumePoint | undefined;
  #saved: ResumePoint | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #saving: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(path: string, point: ResumePoint | undefined, options: ResumeStateOptions) {
    this.path = path;
    this.#point = this.#saved = point;
    this.#timer = setInterval(() => this.save(), options.intervalMs ?? 1000);
  }

  /** Reads the state file (absent: no resume point yet). */
  static async open(path: string, options: ResumeStateOptions = {}): Promise<ResumeState> {
    let point: ResumePoint | undefined;
    try {
      const parsed = JSON.parse(await Deno.readTextFile(path));
      if (typeof parsed?.epoch === "string" && Number.isSafeInteger(parsed?.next)) {
        point = { epoch: parsed.epoch, next: parsed.next, lastTime: parsed.lastTime };
      } else {
        log("pull").warn("state file {path} is not a reclog resume point; starting afresh", {
          path,
        });
      }
    } catch (error) {
      if (error instanceof SyntaxError) {
        log("pull").warn("state file {path} is corrupt; starting afresh", { path });
      } else if (!(error instanceof Deno.errors.NotFound)) {
        throw new Error(`Cannot read --state '${path}': ${describeFsError(error)}`);
      }
    }
    const dir = path.slice(0, path.lastIndexOf("/"));
    if (dir) await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
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

  /** Writes the resume point if it changed: temp file, fsync, rename. */
  save(): Promise<void> {
    this.#saving = this.#saving.then(async () => {
      const point = this.#point;
      if (!point || point === this.#saved) return;
      try {
        await writeFileAtomic(this.path, JSON.stringify(point) + "\n", { sync: true });
        this.#saved = point;
      } catch (error) {
        log("pull").error("cannot save --state {path}: {error}", {
          path: this.path,
          error: describeFsError(error),
        });
      }
    });
    return this.#saving;
  }

  /** Saves and stops the timer; safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return await this.#saving;
    this.#closed = true;
    clearInterval(this.#timer);
    await this.save();
  }

  /** Saves and stops the timer, like {@linkcode ResumeState.close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
