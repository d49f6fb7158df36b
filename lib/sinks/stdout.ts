/**
 * The standard output sink (`pull --to -`): one message a line.
 *
 * @module
 */

import { ALL_TAKEN, type MessageBatch, type Sink, type WriteReport } from "../batch.ts";
import { Rfc6587Encoder } from "../framing/octet_counting.ts";
import { writeAll } from "./write_all.ts";

/**
 * Standard output, a message a line, one write a batch; `write` resolves
 * once the batch is written.
 *
 * @example Print what arrives
 * ```ts
 * import { StdoutSink } from "./stdout.ts";
 * await using sink = new StdoutSink();
 * ```
 */
export class StdoutSink implements Sink {
  /** Always `stdout`. */
  readonly description = "stdout";
  readonly #encoder = new Rfc6587Encoder({ framing: "lf" });

  /** Writes each message of `batch` and a newline. */
  async write(batch: MessageBatch): Promise<WriteReport> {
    const bytes = this.#encoder.encode(batch);
    if (bytes.length > 0) await writeAll(Deno.stdout, bytes);
    return ALL_TAKEN;
  }

  /** Nothing to close (standard output stays open); safe to call twice. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  /** Closes, like {@linkcode StdoutSink.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
