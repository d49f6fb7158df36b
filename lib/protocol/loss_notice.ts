/**
 * The loss notice `pull` writes into its sink when the server reports lost
 * messages (an `L` frame, docs/protocol.md): its wording, and a batch of one
 * RFC 5424 syslog message carrying it.
 *
 * @module
 */

import type { MessageBatch } from "../batch.ts";
import type { LostReport } from "./messages.ts";
import { printable } from "./peer_text.ts";

/** Longest loss reason copied into the notice, characters. */
const MAX_REASON = 200;

const encoder = new TextEncoder();

/**
 * The notice's text: how many messages from `server` were lost (or that an
 * unknown number may be), between the receive time of the last message
 * handed on (`since`, ms; 0: unknown) and the report's `toTime`, and why
 * (the server's reason, control characters replaced, cut to 200 characters).
 *
 * @example
 * ```ts
 * import { lossText } from "./loss_notice.ts";
 * lossText("vps:6514", { count: 3, from: 5, to: 7, reason: "fell behind" }, 0);
 * // "reclog: 3 messages from vps:6514 lost (seq 5..7) between an unknown time and now (fell behind)"
 * ```
 */
export function lossText(server: string, report: LostReport, since: number): string {
  const from = since ? new Date(since).toISOString() : "an unknown time";
  const until = report.toTime ? new Date(report.toTime).toISOString() : "now";
  const reason = printable(report.reason, MAX_REASON);
  return report.unknown
    ? `reclog: an unknown number of messages from ${server} may be lost since ${from} (${reason})`
    : `reclog: ${report.count} messages from ${server} lost (seq ${report.from}..${report.to}) between ${from} and ${until} (${reason})`;
}

/**
 * A batch of one RFC 5424 syslog warning from reclog itself (`<12>`, app
 * `reclog`), in the `syslog` stream, with no sequence number: a mirror never
 * skips it as already written.
 *
 * @example
 * ```ts
 * import { NoticeBatch } from "./loss_notice.ts";
 * const batch = new NoticeBatch("reclog: 3 messages lost");
 * console.log(batch.count, batch.stream()); // 1 "syslog"
 * ```
 */
export class NoticeBatch implements MessageBatch {
  /** Always 1. */
  readonly count = 1;
  readonly #line: Uint8Array;
  readonly #time = Date.now();

  /** Makes the syslog line for `text`, stamped now. */
  constructor(text: string) {
    const stamp = new Date(this.#time).toISOString();
    this.#line = encoder.encode(`<12>1 ${stamp} ${Deno.hostname()} reclog - - - ${text}`);
  }

  /** The syslog line. */
  message(): Uint8Array {
    return this.#line;
  }

  /** Always `syslog`. */
  stream(): string {
    return "syslog";
  }

  /** When it was made, ms since the epoch. */
  time(): number {
    return this.#time;
  }
}
