/**
 * RELP output (rsyslog's `imrelp` receives from it): pull's
 * `--to relp://HOST:PORT`.
 *
 * Delivery guarantee: {@linkcode RelpSink.write} resolves only when the
 * receiver acknowledged (`rsp 200`) every message it sent. When it rejects,
 * the {@linkcode SinkError}'s `taken` is the acknowledged prefix of the
 * batch: the caller moves its resume point past those only and writes the
 * rest again (`batch` from index `taken`), with a back-off of its choosing.
 * Messages after `taken` may have arrived too (their answers were lost with
 * the connection), so a resend duplicates at most `window` messages.
 *
 * A failure here is the sink's, not the server's: the caller keeps its
 * connection to the reclog server (it stops reading, back-pressure) and
 * retries the sink; the next `write` opens a new RELP session (one attempt,
 * bounded by `timeoutMs`). Log lines should name {@linkcode RelpSink.description}.
 *
 * A message longer than `maxMessage` (keep it at most the receiver's
 * `maxDataSize`) is never sent as is, so it cannot make the receiver drop the
 * session and stall what follows: it is refused (in
 * {@linkcode WriteReport.refused}, with a reason) or, with
 * `tooLarge: "cut"`, cut to `maxMessage` bytes (as rsyslog does with
 * `maxMessageSize`) and counted in {@linkcode RelpSink.truncated}.
 *
 * @module
 */

import {
  ALL_TAKEN,
  type MessageBatch,
  type Refusal,
  type Sink,
  SinkError,
  type WriteReport,
} from "../batch.ts";
import { RELP_DEFAULT_MAX_DATA } from "../framing/relp.ts";
import { RelpClient, RelpSendError } from "../transport/relp_client.ts";
import { formatHostPort } from "../util/address.ts";
import { errorMessage } from "../util/errors.ts";

export type { MessageBatch, Refusal, Sink, WriteReport } from "../batch.ts";
export { SinkError } from "../batch.ts";

/** Options for {@linkcode RelpSink}. */
export interface RelpSinkOptions {
  /** The receiver's host (name or address). */
  host: string;
  /** The receiver's TCP port. */
  port: number;
  /**
   * Most messages sent and not yet acknowledged (also the bound on
   * duplicates after a failure).
   * @default {1024}
   */
  window?: number;
  /**
   * Bound on connecting plus the `open` handshake, on waiting for the oldest
   * answer, and on the `close` handshake, ms.
   * @default {10000}
   */
  timeoutMs?: number;
  /**
   * Longest message sent, bytes: at most the receiver's limit (imrelp's
   * `maxDataSize`, by default rsyslog's `maxMessageSize`).
   * @default {131072}
   */
  maxMessage?: number;
  /**
   * What happens to a longer message: `"refuse"` reports it in
   * {@linkcode WriteReport.refused} and does not send it; `"cut"` sends its
   * first `maxMessage` bytes and counts it in {@linkcode RelpSink.truncated}.
   * @default {"refuse"}
   */
  tooLarge?: "refuse" | "cut";
  /**
   * Aborts the sink: the session is dropped without the `close` handshake,
   * writes in flight reject (with their acknowledged prefix), later writes reject.
   */
  signal?: AbortSignal;
}

/**
 * A {@linkcode SinkError} of a RELP write that also lists the messages of the
 * acknowledged prefix that were refused (too large): the caller reports them
 * as it would a {@linkcode WriteReport}'s, then resends from `taken`.
 *
 * @example Report refusals of the prefix, resend the rest
 * ```ts
 * import { RelpSinkError } from "./relp.ts";
 * const error = new RelpSinkError("relp://127.0.0.1:2514: connection reset", 5, [
 *   { index: 2, reason: "too large" },
 * ]);
 * for (const { index, reason } of error.refused) console.log(index, reason);
 * console.log(`resend from ${error.taken}`);
 * ```
 */
export class RelpSinkError extends SinkError {
  /** Always `"RelpSinkError"`. */
  override name = "RelpSinkError";
  /** Messages before `taken` that were refused (never sent). */
  readonly refused: readonly Refusal[];

  /** Makes the error. */
  constructor(
    message: string,
    taken: number,
    refused: readonly Refusal[] = [],
    options?: ErrorOptions,
  ) {
    super(message, taken, options);
    this.refused = refused;
  }
}

/**
 * A sink that hands batches to a RELP receiver and resolves once they were
 * acknowledged.
 *
 * @example Write to rsyslog's imrelp, resending the unacknowledged rest
 * ```ts
 * import { RangeBatch, SinkError } from "../batch.ts";
 * import { RelpSink } from "./relp.ts";
 * await using sink = new RelpSink({ host: "127.0.0.1", port: 2514 });
 * const buf = new TextEncoder().encode("<13>Jan  1 00:00:00 vps app: hi");
 * const batch = new RangeBatch(1);
 * batch.reset(buf);
 * batch.push(0, buf.length);
 * try {
 *   await sink.write(batch);
 * } catch (error) {
 *   if (!(error instanceof SinkError)) throw error;
 *   console.log(`${sink.description}: ${error.message}; resend from ${error.taken}`);
 * }
 * ```
 */
export class RelpSink implements Sink {
  /** `relp://HOST:PORT`. */
  readonly description: string;
  readonly #client: RelpClient;
  readonly #maxMessage: number;
  readonly #cut: boolean;
  /** Messages cut to `maxMessage` so far (`tooLarge: "cut"`); counted by the sink, read-only. */
  truncated = 0;
  /** Messages refused as too large so far (`tooLarge: "refuse"`); read-only. */
  refused = 0;
  /** Writes that failed so far; read-only. */
  failures = 0;
  /** Messages the receiver acknowledged so far; read-only. */
  acknowledged = 0;
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort = () => void this.#client.abort();

  /** Makes the sink; it connects on the first write. */
  constructor(options: RelpSinkOptions) {
    this.description = `relp://${formatHostPort(options)}`;
    this.#maxMessage = Math.max(1, options.maxMessage ?? RELP_DEFAULT_MAX_DATA);
    this.#cut = (options.tooLarge ?? "refuse") === "cut";
    this.#client = new RelpClient({
      host: options.host,
      port: options.port,
      window: options.window,
      timeoutMs: options.timeoutMs,
      maxMessage: this.#maxMessage,
    });
    this.#signal = options.signal;
    this.#signal?.addEventListener("abort", this.#onAbort, { once: true });
    if (this.#signal?.aborted) this.#onAbort();
  }

  /** True while a RELP session is open (for a "sink up" metric). */
  get connected(): boolean {
    return this.#client.connected;
  }

  /**
   * Sends the batch; resolves when every message sent was acknowledged, with
   * the ones refused. Rejects with a {@linkcode RelpSinkError} whose `taken`
   * is the acknowledged prefix when the session broke or could not be opened.
   */
  async write(batch: MessageBatch): Promise<WriteReport> {
    const max = this.#maxMessage;
    const messages: Uint8Array[] = [];
    /** Batch index of each message sent. */
    const indexes: number[] = [];
    const refused: Refusal[] = [];
    for (let i = 0; i < batch.count; i++) {
      const message = batch.message(i);
      if (message.length <= max) {
        messages.push(message);
        indexes.push(i);
      } else if (this.#cut) {
        messages.push(message.subarray(0, max));
        indexes.push(i);
        this.truncated++;
      } else {
        refused.push({
          index: i,
          reason:
            `too large for ${this.description} (${message.length} bytes, the limit is ${max})`,
        });
        this.refused++;
      }
    }
    try {
      await this.#client.send(messages);
    } catch (error) {
      this.failures++;
      const acked = error instanceof RelpSendError ? error.acked : 0;
      this.acknowledged += acked;
      const taken = acked >= messages.length ? batch.count : indexes[acked]!;
      throw new RelpSinkError(
        `${this.description}: ${sinkReason(error, this.description)}`,
        taken,
        refused.filter((refusal) => refusal.index < taken),
        { cause: error },
      );
    }
    this.acknowledged += messages.length;
    return refused.length === 0 ? ALL_TAKEN : { refused };
  }

  /** Waits for writes in flight, closes the RELP session; safe twice. */
  close(): Promise<void> {
    this.#signal?.removeEventListener("abort", this.#onAbort);
    return this.#client.close();
  }

  /** Same as {@linkcode RelpSink.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** The error's text without a leading `relp://HOST:PORT: ` (it is added once). */
function sinkReason(error: unknown, description: string): string {
  const text = errorMessage(error);
  return text.startsWith(`${description}: `) ? text.slice(description.length + 2) : text;
}
