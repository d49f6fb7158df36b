/**
 * `--status-file FILE`: one line `OK` while all is well, otherwise one line
 * for each problem, rewritten atomically on every change, so a monitoring
 * system (SNMP pass_persist, Nagios, a Prometheus textfile collector) can
 * read it, as fetchlogs' status file could be.
 *
 * @module
 */

import { describeFsError } from "../util/errors.ts";
import { log } from "../util/log.ts";
import { writeFileAtomic } from "../state/atomic_file.ts";

/**
 * Problems by key, written to a file on every change.
 *
 * @example Report a disconnect, then its end
 * ```ts
 * import { StatusFile } from "./status_file.ts";
 * const status = new StatusFile("/run/reclog/status");
 * status.set("connection", "disconnected from vps:6514 since 2026-11-21T10:00:00Z");
 * status.set("connection", undefined); // back to OK
 * await status.flush();
 * ```
 */
export class StatusFile {
  /** The status file written. */
  readonly path: string;
  readonly #problems = new Map<string, string>();
  #writing: Promise<void> = Promise.resolve();
  #written: string | undefined;

  /**
   * Starts writing `OK` to `path` at once (asynchronously; see
   * {@linkcode StatusFile.flush}). Write errors are logged, never thrown.
   */
  constructor(path: string) {
    this.path = path;
    this.#write();
  }

  /** Sets (or, with undefined, clears) the problem under `key`. */
  set(key: string, problem: string | undefined): void {
    if (problem === undefined ? !this.#problems.has(key) : this.#problems.get(key) === problem) {
      return;
    }
    if (problem === undefined) this.#problems.delete(key);
    else this.#problems.set(key, problem);
    this.#write();
  }

  /** Waits for pending writes. */
  flush(): Promise<void> {
    return this.#writing;
  }

  #write(): void {
    this.#writing = this.#writing.then(async () => {
      const text = this.#problems.size === 0
        ? "OK\n"
        : [...this.#problems.values()].join("\n") + "\n";
      if (text === this.#written) return;
      try {
        await writeFileAtomic(this.path, text, { mode: 0o644 });
        this.#written = text;
      } catch (error) {
        log("status").error("cannot write --status-file {path}: {error}", {
          path: this.path,
          error: describeFsError(error),
        });
      }
    });
  }
}
