/**
 * The unix datagram sink (`pull --to unix:///dev/log`): syslog into a unix
 * datagram socket such as `/dev/log`, one datagram a message.
 *
 * @module
 */

import { ALL_TAKEN, type MessageBatch, type Sink, SinkError } from "../batch.ts";
import type { WriteReport } from "../batch.ts";
import { errorMessage } from "../util/errors.ts";

/** The first size tried for a message too large for the socket, bytes. */
const MAX_TRY = 65_536;

/**
 * Syslog over a unix datagram socket. `write` resolves once the socket took
 * every datagram; one too large for it is cut until it fits (halving from
 * 64 KiB) and counted in {@linkcode UnixSink.truncated}, never refused.
 *
 * @example Write into the local syslog
 * ```ts
 * import { UnixSink } from "./unix.ts";
 * await using sink = new UnixSink("/dev/log");
 * ```
 */
export class UnixSink implements Sink {
  /** `unix://PATH`. */
  readonly description: string;
  readonly #target: Deno.UnixAddr;
  #conn: Deno.DatagramConn | undefined;
  #dir: string | undefined;
  #truncated = 0;

  /** Sends to the socket at `path`; our own socket is bound on the first write. */
  constructor(path: string) {
    this.#target = { transport: "unixpacket", path };
    this.description = `unix://${path}`;
  }

  /** Messages cut to fit the socket so far. */
  get truncated(): number {
    return this.#truncated;
  }

  /** Sends every message of `batch`; rejects with a {@linkcode SinkError} saying how many went. */
  async write(batch: MessageBatch): Promise<WriteReport> {
    if (!this.#conn) {
      this.#dir = await Deno.makeTempDir({ prefix: "reclog-" });
      this.#conn = Deno.listenDatagram({ transport: "unixpacket", path: `${this.#dir}/sock` });
    }
    for (let i = 0; i < batch.count; i++) {
      let message = batch.message(i);
      for (let cut = false;;) {
        try {
          await this.#conn.send(message, this.#target);
          if (cut) this.#truncated++;
          break;
        } catch (error) {
          if (!/Message too long|os error 90\b/i.test(errorMessage(error)) || message.length < 2) {
            throw new SinkError(`${this.description}: ${errorMessage(error)}`, i, { cause: error });
          }
          message = message.subarray(0, Math.min(MAX_TRY, message.length >> 1));
          cut = true;
        }
      }
    }
    return ALL_TAKEN;
  }

  /** Closes the socket and removes our own; safe to call twice. */
  async close(): Promise<void> {
    this.#conn?.close();
    this.#conn = undefined;
    if (this.#dir) await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
    this.#dir = undefined;
  }

  /** Closes, like {@linkcode UnixSink.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
