/**
 * The UDP sink (`pull --to udp://HOST:PORT`): syslog over UDP, one datagram
 * a message, in order.
 *
 * UDP has no acknowledgement. For a receiver on this machine (a loopback
 * destination) the kernel tells more, through /proc/net/udp: the sink paces
 * itself by the receiver's queue so a catch-up does not overrun it, sends
 * again the datagrams around a drop its kernel counted (and counts them in
 * {@linkcode UdpSink.dropped}), and while no socket is bound to the port
 * (the receiver is down) rejects with a {@linkcode SinkError} whose `taken`
 * counts only the datagrams the receiver is known to have read (a write
 * waits up to a second for the receiver to read its batch; copies of what is
 * still unread then are sent again when the receiver comes back). For a
 * remote receiver none of this is known: a datagram lost on the way or in
 * its queue is lost silently.
 *
 * @module
 */

import { ALL_TAKEN, type MessageBatch, type Sink, SinkError } from "../batch.ts";
import type { WriteReport } from "../batch.ts";
import { formatHostPort } from "../util/address.ts";
import { errorMessage } from "../util/errors.ts";
import { sleep } from "../util/sleep.ts";
import { findUdpSocket, libc } from "../ffi/libc.ts";
import { DatagramBatch, sockaddrIn } from "../ffi/udp_batch.ts";
import { isLoopback, LocalUdpReceiver } from "./udp_receiver.ts";

/** Datagrams per `sendmmsg` call. */
const BATCH = 128;
/** Bytes of a `sendmmsg` slot; a longer message goes out on its own. */
const SLOT = 8192;
/** Largest UDP payload over IPv4 (65535 - 20 - 8) and IPv6 (65535 - 8). */
const MAX_DATAGRAM_V4 = 65_507;
const MAX_DATAGRAM_V6 = 65_527;

/** Least bytes the pacing lets wait in the receiver's queue. */
const MIN_QUEUE = 16 * 1024;
/** Kernel bytes a queued datagram takes beyond its payload (loopback: 1280 for 200 bytes). */
const OVERHEAD = 1280;
/**
 * How long to wait at the end of a batch for the receiver's queue to empty,
 * ms (what is still unread then is kept and sent again should the receiver
 * go away with it), and how long a full queue that does not move (a
 * receiver that stopped reading) is waited for before the write fails, ms.
 */
const DRAIN_MS = 1000;
const STALL_MS = 5000;
/** Most unread datagrams kept to send again after the receiver went away with them. */
const MAX_PENDING = 4096;
/** Sends of the same chunk when the receiver's kernel keeps dropping. */
const MAX_RESENDS = 3;

/** Options for {@linkcode UdpSink}. */
export interface UdpSinkOptions {
  /** Destination host. */
  host: string;
  /** Destination port. */
  port: number;
  /**
   * Pace by the receiver's queue when the destination is loopback.
   * @default {true}
   */
  pace?: boolean;
}

/**
 * Syslog over UDP. A batch goes out with `sendmmsg` (up to 128 datagrams
 * per system call) where glibc is at hand and the destination is an IPv4
 * literal; otherwise, or for what the kernel did not take at once, one
 * awaited send a message. A message too large for a datagram is cut to the
 * largest one (65,507 bytes over IPv4) and counted in
 * {@linkcode UdpSink.truncated}. To a remote receiver, `write` resolves once
 * the kernel took every datagram; to a loopback one, once the receiver read
 * them (see the module documentation).
 *
 * @example Re-inject into the local syslog
 * ```ts
 * import { UdpSink } from "./udp.ts";
 * await using sink = new UdpSink({ host: "127.0.0.1", port: 514 });
 * ```
 */
export class UdpSink implements Sink {
  /** `udp://HOST:PORT`. */
  readonly description: string;
  readonly #addr: Deno.NetAddr;
  readonly #maxDatagram: number;
  #conn: Deno.DatagramConn | undefined;
  #batch: DatagramBatch | undefined;
  readonly #lengths = new Uint32Array(BATCH);
  readonly #pace: boolean;
  #receiver: LocalUdpReceiver | undefined;
  #limit = 0;
  #drops: number | undefined;
  /** Messages before this index of the batch being sent went to the kernel. */
  #done = 0;
  #truncated = 0;
  #dropped = 0;
  /** Copies of datagrams sent by earlier writes and not known read. */
  #pending: Uint8Array[] = [];
  #wentDown = false;

  /** Sends to `to`; the socket is opened on the first write. */
  constructor(to: UdpSinkOptions) {
    this.#addr = { transport: "udp", hostname: to.host, port: to.port };
    this.#maxDatagram = to.host.includes(":") ? MAX_DATAGRAM_V6 : MAX_DATAGRAM_V4;
    this.description = `udp://${formatHostPort(to)}`;
    this.#pace = (to.pace ?? true) && isLoopback(to.host);
  }

  /** Messages cut to the largest datagram so far. */
  get truncated(): number {
    return this.#truncated;
  }

  /** Datagrams the (loopback) receiver's kernel dropped so far, by its drop counter. */
  get dropped(): number {
    return this.#dropped;
  }

  #open(): Deno.DatagramConn {
    const conn = Deno.listenDatagram({
      transport: "udp",
      hostname: this.#addr.hostname.includes(":") ? "::" : "0.0.0.0",
      port: 0,
    });
    const lib = libc();
    if (this.#pace && lib) {
      this.#receiver = new LocalUdpReceiver(this.#addr.port);
      this.#limit = Math.max(MIN_QUEUE, this.#receiver.defaultBuffer / 2);
    }
    const to = sockaddrIn(this.#addr.hostname, this.#addr.port);
    const fd = lib && to ? findUdpSocket(lib, conn.addr as Deno.NetAddr) : -1;
    if (lib && fd >= 0) {
      try {
        this.#batch = new DatagramBatch(lib, fd, {
          count: BATCH,
          slotBytes: SLOT,
          to: { host: this.#addr.hostname, port: this.#addr.port },
        });
      } catch {
        this.#batch = undefined; // no pointer access: the portable path
      }
    }
    return conn;
  }

  /** Sends every message of `batch`; rejects with a {@linkcode SinkError} saying how many went. */
  async write(batch: MessageBatch): Promise<WriteReport> {
    const conn = this.#conn ??= this.#open();
    if (this.#receiver) return await this.#writePaced(conn, batch);
    this.#done = 0;
    try {
      await this.#send(conn, batch, 0, batch.count, batch.count);
    } catch (error) {
      throw new SinkError(`${this.description}: ${errorMessage(error)}`, this.#done, {
        cause: error,
      });
    }
    return ALL_TAKEN;
  }

  /**
   * To a loopback receiver: chunks that fit the room left in its queue, a
   * chunk sent again when its kernel counted drops during it, and at the end
   * a wait (at most {@linkcode DRAIN_MS}) until it read everything.
   */
  async #writePaced(conn: Deno.DatagramConn, batch: MessageBatch): Promise<WriteReport> {
    const receiver = this.#receiver!;
    /** Messages before `confirmed` were read by the receiver (its queue was empty after). */
    let confirmed = 0;
    let next = 0;
    let chunkStart = 0;
    let resends = 0;
    let high = 0;
    let drainStart = 0;
    let lastQueued = -1;
    let movedAt = Date.now();
    for (;;) {
      const state = receiver.read();
      if (!state) {
        this.#receiver = undefined; // /proc unreadable: as to a remote receiver
        return await this.write(new Rest(batch, confirmed));
      }
      if (!state.present) {
        this.#wentDown = true;
        throw new SinkError(
          `${this.description}: nobody listens on UDP port ${receiver.port} (receiver down)`,
          confirmed,
        );
      }
      if (this.#drops === undefined || state.drops < this.#drops) this.#drops = state.drops;
      if (state.drops > this.#drops) {
        this.#dropped += state.drops - this.#drops;
        this.#drops = state.drops;
        this.#limit = Math.max(MIN_QUEUE, this.#limit / 2);
        if (resends < MAX_RESENDS) {
          resends++;
          next = chunkStart;
          drainStart = 0;
        }
      }
      if (state.queued === 0) {
        confirmed = next;
        this.#pending = [];
      }
      if (this.#wentDown) {
        // Back up: first what an earlier write left unread in the queue it lost.
        this.#wentDown = false;
        const copies = new Copies(this.#pending);
        if (copies.count > 0) await this.#send(conn, copies, 0, copies.count, copies.count);
        continue;
      }
      const now = Date.now();
      if (state.queued !== lastQueued || state.queued === 0) {
        [lastQueued, movedAt] = [state.queued, now];
      }
      if (next < batch.count && now - movedAt > STALL_MS) {
        throw new SinkError(
          `${this.description}: the receiver stopped reading (${state.queued} bytes wait in its queue)`,
          confirmed,
        );
      }
      if (next >= batch.count) {
        drainStart ||= now;
        if (state.queued === 0) return ALL_TAKEN;
        // A live trickle (a short batch) does not wait for the receiver: the copies cover it.
        if (batch.count < BATCH || now - drainStart > DRAIN_MS) {
          // Not read yet: keep copies, sent again if the receiver goes away with them.
          for (let i = confirmed; i < batch.count && this.#pending.length < MAX_PENDING; i++) {
            this.#pending.push(batch.message(i).slice(0, this.#maxDatagram));
          }
          return ALL_TAKEN;
        }
        await sleep(1);
        continue;
      }
      let room = this.#limit - state.queued;
      let end = next;
      while (end < batch.count && end - next < BATCH) {
        const cost = Math.min(batch.message(end).length, this.#maxDatagram) + OVERHEAD;
        if (cost > room && !(end === next && state.queued === 0)) break;
        room -= cost;
        end++;
      }
      if (end === next) {
        await sleep(1);
        continue;
      }
      if (end > high) resends = 0;
      chunkStart = next;
      this.#done = next;
      try {
        await this.#send(conn, batch, next, end, high);
      } catch (error) {
        throw new SinkError(`${this.description}: ${errorMessage(error)}`, confirmed, {
          cause: error,
        });
      }
      high = Math.max(high, end);
      next = end;
    }
  }

  /**
   * Sends `batch[from, to)` in order, `sendmmsg` where it can; moves
   * `#done` past what surely went. Cuts are counted for indexes from `counted`.
   */
  async #send(
    conn: Deno.DatagramConn,
    batch: MessageBatch,
    from: number,
    to: number,
    counted: number,
  ): Promise<void> {
    const slots = this.#batch;
    let n = 0;
    const flush = async () => {
      const sent = slots!.send(this.#lengths, n);
      // What the kernel did not take now goes the portable (waiting) way.
      for (let k = sent; k < n; k++) {
        await conn.send(slots!.slot(k).subarray(0, this.#lengths[k]!), this.#addr);
      }
      n = 0;
    };
    for (let i = from; i < to; i++) {
      let message = batch.message(i);
      if (message.length > this.#maxDatagram) {
        message = message.subarray(0, this.#maxDatagram);
        if (i >= counted) this.#truncated++;
      }
      if (slots && message.length <= SLOT) {
        slots.slot(n).set(message);
        this.#lengths[n++] = message.length;
        if (n === BATCH) {
          await flush();
          this.#done = i + 1;
        }
      } else {
        if (n > 0) await flush();
        this.#done = i;
        await conn.send(message, this.#addr);
        this.#done = i + 1;
      }
    }
    if (n > 0) await flush();
    this.#done = to;
  }

  /** Closes the socket; safe to call twice. */
  close(): Promise<void> {
    this.#conn?.close();
    this.#conn = undefined;
    this.#batch = undefined;
    return Promise.resolve();
  }

  /** Closes, like {@linkcode UdpSink.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** The messages of a batch from `from` on. */
class Rest implements MessageBatch {
  readonly count: number;
  constructor(readonly batch: MessageBatch, readonly from: number) {
    this.count = batch.count - from;
  }
  message(i: number): Uint8Array {
    return this.batch.message(i + this.from);
  }
}

/** A batch of copied messages. */
class Copies implements MessageBatch {
  constructor(readonly messages: Uint8Array[]) {}
  get count(): number {
    return this.messages.length;
  }
  message(i: number): Uint8Array {
    return this.messages[i]!;
  }
}
