/**
 * The pull sinks on the Sink contract: what a receiver gets, and what a sink
 * cuts instead of stalling.
 */

import assert from "node:assert/strict";
import { RangeBatch } from "../lib/batch.ts";
import { UdpSink } from "../lib/sinks/udp.ts";
import { TcpSink } from "../lib/sinks/tcp.ts";
import { Rfc6587Encoder } from "../lib/framing/octet_counting.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function batchOf(messages: Uint8Array[]): RangeBatch {
  const size = messages.reduce((n, m) => n + m.length, 0);
  const buf = new Uint8Array(size);
  const batch = new RangeBatch(messages.length);
  batch.reset(buf);
  let offset = 0;
  for (const m of messages) {
    buf.set(m, offset);
    batch.push(offset, offset += m.length);
  }
  return batch;
}

Deno.test({
  name:
    "UdpSink: a message too large for a datagram is cut to 65,507 bytes and counted, all sent in order",
  sanitizeResources: false, // libc, loaded once for sendmmsg, stays loaded
}, async () => {
  const receiver = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  using _ = { [Symbol.dispose]: () => receiver.close() };
  const { port } = receiver.addr as Deno.NetAddr;
  await using sink = new UdpSink({ host: "127.0.0.1", port });
  const big = new Uint8Array(70_000).fill(0x78);
  const middle = new Uint8Array(9000).fill(0x79); // over a sendmmsg slot, under the limit
  const report = await sink.write(
    batchOf([encoder.encode("<13>one"), big, middle, encoder.encode("<13>two")]),
  );
  assert.deepEqual(report.refused, []);
  assert.equal(sink.truncated, 1);
  const got: number[] = [];
  for (let i = 0; i < 4; i++) got.push((await receiver.receive())[0].length);
  assert.deepEqual(got, [7, 65_507, 9000, 7]);
});

Deno.test("TcpSink: octet counting, one batch in one write; an empty message is left out and counted", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  await using sink = new TcpSink({ host: "127.0.0.1", port: listener.addr.port });
  const written = sink.write(batchOf([encoder.encode("<13>a b"), encoder.encode("")]));
  using conn = await listener.accept();
  const report = await written;
  assert.equal(report.refused.length, 0);
  const buf = new Uint8Array(64);
  const n = await conn.read(buf);
  assert.equal(decoder.decode(buf.subarray(0, n!)), "7 <13>a b");
  assert.equal(sink.empty, 1);
});

Deno.test("Rfc6587Encoder: LF framing is a message a line", () => {
  const bytes = new Rfc6587Encoder({ framing: "lf", initialBytes: 4 }).encode(
    batchOf([encoder.encode("first"), encoder.encode("second")]),
  );
  assert.equal(decoder.decode(bytes), "first\nsecond\n");
});
