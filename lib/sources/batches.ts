/**
 * The batches sources hand on, with the one piece of per-batch metadata a
 * sink may want beyond {@linkcode MessageBatch}: the sender's address
 * (`peer`), set by network sources (a TCP connection, a UDP datagram's
 * sender) and read by the line file sink's `--peer` prefix.
 *
 * @module
 */

import { type BatchHandler, type MessageBatch, RangeBatch } from "../batch.ts";
import type { MessageCallback } from "../framing/syslog.ts";
import { formatHostPort } from "../util/address.ts";

/** A batch that may say who sent it. */
export interface PeerBatch extends MessageBatch {
  /** The sender, `HOST:PORT` (IPv6 in brackets), where the source knows it. */
  readonly peer?: string;
}

/**
 * A {@linkcode RangeBatch} from one sender.
 *
 * @example A batch from a connection
 * ```ts
 * import { PeerRangeBatch } from "./batches.ts";
 * const batch = new PeerRangeBatch(16, "127.0.0.1:40000");
 * batch.reset(new TextEncoder().encode("a\n"));
 * batch.push(0, 1);
 * console.log(batch.peer, batch.count);
 * ```
 */
export class PeerRangeBatch extends RangeBatch implements PeerBatch {
  /** The sender, if known. */
  peer: string | undefined;

  /** Makes an empty batch with room for `capacity` ranges. */
  constructor(capacity = 64, peer?: string) {
    super(capacity);
    this.peer = peer;
  }
}

/**
 * A batch over a list of views (what a line splitter returns), from one sender.
 *
 * @example Two lines
 * ```ts
 * import { ListBatch } from "./batches.ts";
 * const encoder = new TextEncoder();
 * const batch = new ListBatch([encoder.encode("one"), encoder.encode("two")]);
 * console.log(batch.count); // 2
 * ```
 */
export class ListBatch implements PeerBatch {
  /** The messages. */
  messages: readonly Uint8Array[];
  /** The sender, if known. */
  peer: string | undefined;

  /** Makes a batch of `messages`. */
  constructor(messages: readonly Uint8Array[] = [], peer?: string) {
    this.messages = messages;
    this.peer = peer;
  }

  /** Number of messages. */
  get count(): number {
    return this.messages.length;
  }

  /** The bytes of message `i`. */
  message(i: number): Uint8Array {
    return this.messages[i]!;
  }
}

/**
 * A {@linkcode BatchHandler} that calls `onMessage` for each message of a
 * batch (for code that thinks in messages; sources hand on batches).
 *
 * @example Print each message's length
 * ```ts
 * import { eachMessage } from "./batches.ts";
 * const onBatch = eachMessage((buf, start, end) => console.log(end - start));
 * ```
 */
export function eachMessage(onMessage: MessageCallback): BatchHandler {
  return (batch) => {
    for (let i = 0; i < batch.count; i++) {
      const message = batch.message(i);
      onMessage(message, 0, message.length);
    }
  };
}

/**
 * A sender's address as `HOST:PORT` for log lines and `peer`: IPv6 in
 * brackets, an IPv4 sender on a dual-stack socket (`::ffff:10.0.0.1`) as
 * plain IPv4.
 *
 * @example Format a mapped address
 * ```ts
 * import { formatPeer } from "./batches.ts";
 * formatPeer({ hostname: "::ffff:10.0.0.1", port: 514 }); // "10.0.0.1:514"
 * ```
 */
export function formatPeer(addr: { hostname?: string; port?: number }): string {
  const host = addr.hostname;
  if (host === undefined) return "unknown address";
  const plain = host.startsWith("::ffff:") && host.includes(".") ? host.slice(7) : host;
  return formatHostPort({ host: plain, port: addr.port ?? 0 });
}
