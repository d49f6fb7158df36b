/**
 * The bench's load generator: paced syslog messages ({@linkcode template})
 * to a loopback UDP port (batches through `sendmmsg`) or over one TCP
 * connection with RFC 6587 octet counting, at a given rate for a given
 * time, then it stops by itself and prints one JSON line with what it sent.
 *
 * Pacing: every ~1 ms timer tick it sends what is due by then
 * (`rate * elapsed - sent`), so timer jitter makes batches bigger instead of
 * the rate lower. If it cannot keep up it says so (`achievedRate`).
 *
 * ```sh
 * deno run -A bench/load_gen.ts --to udp://127.0.0.1:5140 --rate 50000 --seconds 5
 * deno run -A bench/load_gen.ts --to tcp://127.0.0.1:5141 --rate 0 --count 1000000
 * ```
 *
 * `--rate 0` sends as fast as it can (with `--count`). Only loopback targets
 * are accepted.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { bytesOf, findUdpSocket, libc, libcError } from "../lib/ffi/libc.ts";
import { DatagramBatch } from "../lib/ffi/udp_batch.ts";
import { sleep } from "../lib/util/sleep.ts";
import { monotonicMicros } from "./clock.ts";
import { MAX_SEQ, stamp, template } from "./message.ts";

/** What to send. */
export interface LoadOptions {
  /** `udp` or `tcp` (octet counting, one connection). */
  transport: "udp" | "tcp";
  host: string;
  port: number;
  /** Messages per second; 0: as fast as possible. */
  rate: number;
  /** How long to send (the generator stops after this even if behind). */
  seconds: number;
  /** At most this many messages (default rate * seconds). */
  count?: number;
  /** The first sequence number is `seqBase + 1`. */
  seqBase: number;
  /** Message size in bytes. @default {200} */
  size?: number;
}

/** What was sent. */
export interface LoadResult {
  transport: "udp" | "tcp";
  rate: number;
  sent: number;
  /** Datagrams the kernel refused (UDP). */
  failed: number;
  firstSeq: number;
  lastSeq: number;
  seconds: number;
  achievedRate: number;
  /** Largest backlog (messages due but not yet sent) seen at a tick. */
  maxBehind: number;
}

const BATCH = 1024;
const SOL_SOCKET = 1;
const SO_SNDBUF = 7;
const SO_SNDBUFFORCE = 32;
/** Full-send-buffer waits (1 ms each) in a row before the rest of a batch counts as failed. */
const MAX_STALLS = 100;

function isLoopback(host: string): boolean {
  return /^127\.\d+\.\d+\.\d+$/.test(host) || host === "localhost";
}

/**
 * A UDP socket of Deno's with lib/ffi's `sendmmsg` batch on it: sends
 * `count` stamped messages starting at `first`, re-stamping and re-sending
 * what a full send buffer did not take; returns how many the kernel took.
 */
function udpSender(
  host: string,
  port: number,
  message: Uint8Array,
): { send: (first: number, count: number) => Promise<number>; close: () => void } {
  const lib = libc();
  if (!lib) throw new Error(`load_gen: UDP needs glibc for sendmmsg (${libcError()})`);
  const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const fd = findUdpSocket(lib, socket.addr as Deno.NetAddr);
  if (fd < 0) {
    socket.close();
    throw new Error("load_gen: cannot find the UDP socket's descriptor");
  }
  const size = new Int32Array([4 << 20]);
  if (lib.symbols.setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, bytesOf(size), 4) !== 0) {
    lib.symbols.setsockopt(fd, SOL_SOCKET, SO_SNDBUF, bytesOf(size), 4);
  }
  const batch = new DatagramBatch(lib, fd, {
    count: BATCH,
    slotBytes: message.length,
    to: { host, port },
  });
  for (let i = 0; i < BATCH; i++) batch.slot(i).set(message);
  const lengths = new Uint32Array(BATCH).fill(message.length);
  const send = async (first: number, count: number): Promise<number> => {
    let done = 0;
    let stalls = 0;
    while (done < count && stalls <= MAX_STALLS) {
      const now = monotonicMicros();
      for (let i = 0; i < count - done; i++) stamp(batch.slot(i), 0, first + done + i, now);
      const n = batch.send(lengths, count - done);
      done += n;
      if (n > 0) stalls = 0;
      else if (++stalls <= MAX_STALLS) await sleep(1);
    }
    return done;
  };
  return { send, close: () => socket.close() };
}

/** Sends the load; resolves when done. */
export async function generate(options: LoadOptions): Promise<LoadResult> {
  if (!isLoopback(options.host)) {
    throw new Error(`load_gen: refusing non-loopback target ${options.host}`);
  }
  const size = options.size ?? 200;
  const message = template(size);
  const total = options.count ??
    (options.rate > 0 ? Math.round(options.rate * options.seconds) : Infinity);
  if (!Number.isFinite(total)) throw new Error("load_gen: --rate 0 needs --count");
  if (options.seqBase + total > MAX_SEQ) throw new Error("load_gen: sequence numbers overflow");

  let sendBatch: (first: number, count: number) => Promise<number>;
  let close: () => void;
  if (options.transport === "udp") {
    ({ send: sendBatch, close } = udpSender(options.host, options.port, message));
  } else {
    const conn = await Deno.connect({ hostname: options.host, port: options.port });
    conn.setNoDelay(true);
    const head = new TextEncoder().encode(`${size} `);
    const framed = head.length + size;
    const buf = new Uint8Array(BATCH * framed);
    for (let i = 0; i < BATCH; i++) {
      buf.set(head, i * framed);
      buf.set(message, i * framed + head.length);
    }
    sendBatch = async (first, count) => {
      const now = monotonicMicros();
      for (let i = 0; i < count; i++) stamp(buf, i * framed + head.length, first + i, now);
      const bytes = buf.subarray(0, count * framed);
      let offset = 0;
      while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
      return count;
    };
    close = () => conn.close();
  }

  let sent = 0;
  let failed = 0;
  let maxBehind = 0;
  const start = monotonicMicros();
  const limit = options.seconds * 1_000_000;
  try {
    while (sent + failed < total) {
      const elapsed = monotonicMicros() - start;
      if (elapsed >= limit) break;
      const due = options.rate > 0
        ? Math.min(total, Math.floor(options.rate * elapsed / 1_000_000))
        : Math.min(total, sent + failed + BATCH * 16);
      maxBehind = Math.max(maxBehind, due - sent - failed);
      while (sent + failed < due) {
        const count = Math.min(BATCH, due - sent - failed);
        const ok = await sendBatch(options.seqBase + sent + failed + 1, count);
        sent += ok;
        failed += count - ok;
      }
      if (options.rate > 0) await sleep(1);
    }
  } finally {
    close();
  }
  const seconds = (monotonicMicros() - start) / 1_000_000;
  return {
    transport: options.transport,
    rate: options.rate,
    sent,
    failed,
    firstSeq: options.seqBase + 1,
    lastSeq: options.seqBase + sent + failed,
    seconds,
    achievedRate: Math.round(sent / Math.max(seconds, 1e-6)),
    maxBehind,
  };
}

function parseTarget(value: string): { transport: "udp" | "tcp"; host: string; port: number } {
  const match = value.match(/^(udp|tcp):\/\/([^:/]+):(\d+)$/);
  if (!match) throw new Error(`load_gen: --to '${value}': expected udp://HOST:PORT or tcp://...`);
  return { transport: match[1] as "udp" | "tcp", host: match[2]!, port: Number(match[3]) };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      to: { type: "string" },
      rate: { type: "string", default: "10000" },
      seconds: { type: "string", default: "5" },
      count: { type: "string" },
      "seq-base": { type: "string", default: "0" },
      size: { type: "string", default: "200" },
    },
  });
  if (!values.to) {
    console.error(
      "usage: load_gen.ts --to udp://127.0.0.1:PORT|tcp://... [--rate N] [--seconds S]",
    );
    Deno.exit(2);
  }
  const result = await generate({
    ...parseTarget(values.to),
    rate: Number(values.rate),
    seconds: Number(values.seconds),
    count: values.count === undefined ? undefined : Number(values.count),
    seqBase: Number(values["seq-base"]),
    size: Number(values.size),
  });
  console.log(JSON.stringify(result));
}
