// Shared parts of the JetStream tests (no tests here): a journal-like batch,
// publishing with retry from taken, collecting what a source hands on.
import nodeAssert from "node:assert/strict";
import { jetstreamManager } from "@nats-io/jetstream";
import type { MessageBatch } from "../lib/batch.ts";
import { SinkError } from "../lib/batch.ts";
import type { JetStreamSink } from "../lib/sinks/nats.ts";
import type { JetStreamBatch } from "../lib/sources/nats.ts";
import { connectNats } from "../lib/transport/nats_connect.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Messages `from..to-1` as a journal would hand them on. */
export class SeqBatch implements MessageBatch {
  constructor(readonly from: number, readonly to: number) {}
  get count(): number {
    return this.to - this.from;
  }
  message(i: number): Uint8Array {
    return encoder.encode(`<13>message ${this.from + i}`);
  }
  stream(i: number): string {
    return (this.from + i) % 2 === 0 ? "syslog" : "file:/var/log/app.log";
  }
  seq(i: number): number {
    return this.from + i;
  }
  time(i: number): number {
    return 1_700_000_000_000 + this.from + i;
  }
}

/** Publishes 0..total-1 in batches like serve's journal would: on SinkError, again from taken. */
export async function publishAll(
  sink: JetStreamSink,
  total: number,
  batchSize: number,
  onProgress?: (acked: number) => Promise<void> | void,
  deadlineMs = 90_000,
): Promise<{ retries: number }> {
  const deadline = Date.now() + deadlineMs;
  let acked = 0;
  let retries = 0;
  while (acked < total) {
    nodeAssert.ok(Date.now() < deadline, `publishing stuck at ${acked} of ${total}`);
    const batch = new SeqBatch(acked, Math.min(total, acked + batchSize));
    try {
      await sink.write(batch);
      acked = batch.to;
    } catch (error) {
      nodeAssert.ok(error instanceof SinkError, String(error));
      acked += error.taken;
      retries++;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await onProgress?.(acked);
  }
  return { retries };
}

/** What a source handed on: one entry a message. */
export interface Received {
  seq: number;
  text: string;
  stream: string;
  time: number;
  host: string;
}

export function collect(into: Received[]): (batch: MessageBatch) => void {
  return (b) => {
    const batch = b as JetStreamBatch;
    for (let i = 0; i < batch.count; i++) {
      into.push({
        seq: batch.seq(i),
        text: decoder.decode(batch.message(i)),
        stream: batch.stream(i),
        time: batch.time(i),
        host: batch.host(i),
      });
    }
  };
}

export async function waitFor(what: string, ok: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export async function streamMessages(servers: string[], stream: string): Promise<number> {
  const nc = await connectNats({ servers });
  try {
    const jsm = await jetstreamManager(nc);
    return (await jsm.streams.info(stream)).state.messages;
  } finally {
    await nc.close();
  }
}
