/**
 * Batched UDP (recvmmsg/sendmmsg through glibc) and its portable fallback,
 * and UDP inputs that share a port on two addresses (127.0.0.1:P, [::1]:P):
 * each must find its own socket descriptor.
 */

import assert from "node:assert/strict";
import { findUdpSocket, getIntOption, libc } from "../lib/ffi/libc.ts";
import { UdpSource } from "../lib/sources/udp.ts";
import { eachMessage } from "../lib/sources/batches.ts";
import { DatagramBatch } from "../lib/ffi/udp_batch.ts";
import { waitFor } from "./helpers.ts";

const SO_RCVBUF = 8;
const encoder = new TextEncoder();
const decoder = new TextDecoder();
// Loaded once for the whole file (the sanitizer counts a library loaded inside a test).
libc();

/** A port free on both 127.0.0.1 and ::1 (bounded retries). */
function portFreeOnBoth(): number {
  for (let attempt = 0; attempt < 50; attempt++) {
    const v4 = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    const port = (v4.addr as Deno.NetAddr).port;
    try {
      const v6 = Deno.listenDatagram({ transport: "udp", hostname: "::1", port });
      v6.close();
      return port;
    } catch {
      // taken on ::1: try another
    } finally {
      v4.close();
    }
  }
  throw new Error("no UDP port free on both 127.0.0.1 and ::1 in 50 attempts");
}

/** Sends `messages` from a socket of `hostname`'s family, through sendmmsg when it can. */
async function sendBurst(hostname: string, port: number, messages: string[]): Promise<void> {
  const conn = Deno.listenDatagram({
    transport: "udp",
    hostname: hostname.includes(":") ? "::1" : "127.0.0.1",
    port: 0,
  });
  try {
    for (const message of messages) {
      await conn.send(encoder.encode(message), { transport: "udp", hostname, port });
    }
  } finally {
    conn.close();
  }
}

Deno.test("UDP inputs on 127.0.0.1:P and [::1]:P each get their own socket, receive buffer and batched receive", async () => {
  const lib = libc();
  assert.ok(lib, "glibc must load on this Linux machine");
  const port = portFreeOnBoth();
  const got = { v4: [] as string[], v6: [] as string[] };
  await using v4 = new UdpSource({
    host: "127.0.0.1",
    port,
    onBatch: eachMessage((buf, start, end) =>
      got.v4.push(decoder.decode(buf.subarray(start, end)))
    ),
  });
  await using v6 = new UdpSource({
    host: "::1",
    port,
    onBatch: eachMessage((buf, start, end) =>
      got.v6.push(decoder.decode(buf.subarray(start, end)))
    ),
  });
  await v4.listen();
  await v6.listen();

  assert.ok(v4.fd >= 0 && v6.fd >= 0, `descriptors found: ${v4.fd}, ${v6.fd}`);
  assert.notEqual(v4.fd, v6.fd, "each input must drain its own socket");
  // Both sockets got the larger buffer, not one of them twice.
  const plain = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const defaultBuffer = getIntOption(
    lib,
    findUdpSocket(lib, plain.addr as Deno.NetAddr),
    SO_RCVBUF,
  );
  plain.close();
  for (const source of [v4, v6]) {
    const actual = getIntOption(lib, source.fd, SO_RCVBUF);
    assert.equal(actual, source.receiveBufferBytes);
    assert.ok(actual > defaultBuffer, `SO_RCVBUF ${actual} > default ${defaultBuffer}`);
  }

  // Bursts to both, each through its own batched path.
  const count = 400;
  const v4Messages = Array.from({ length: count }, (_, i) => `v4 ${i}`);
  const v6Messages = Array.from({ length: count }, (_, i) => `v6 ${i}`);
  await Promise.all([sendBurst("127.0.0.1", port, v4Messages), sendBurst("::1", port, v6Messages)]);
  await waitFor(() => got.v4.length + got.v6.length >= 2 * count, {
    timeoutMs: 10_000,
    what: () => `${2 * count} datagrams; got ${got.v4.length} + ${got.v6.length}`,
  });
  assert.deepEqual(got.v4, v4Messages);
  assert.deepEqual(got.v6, v6Messages);
  assert.equal(v4.received, count);
  assert.equal(v6.received, count);
});

Deno.test("a UDP burst is received with recvmmsg and sent with sendmmsg, many datagrams per call", async () => {
  const lib = libc();
  assert.ok(lib, "glibc must load on this Linux machine");
  const got: string[] = [];
  await using source = new UdpSource({
    host: "127.0.0.1",
    port: 0,
    onBatch: eachMessage((buf, start, end) => got.push(decoder.decode(buf.subarray(start, end)))),
  });
  const address = await source.listen();

  const sender = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  try {
    const fd = findUdpSocket(lib, sender.addr as Deno.NetAddr);
    assert.ok(fd >= 0);
    const batch = new DatagramBatch(lib, fd, {
      count: 256,
      slotBytes: 256,
      to: { host: "127.0.0.1", port: address.port },
    });
    const total = 2048;
    const lengths = new Uint32Array(256);
    const sent: string[] = [];
    for (let done = 0; done < total; done += 256) {
      for (let i = 0; i < 256; i++) {
        const message = `burst ${done + i} ${"x".repeat((done + i) % 50)}`;
        sent.push(message);
        lengths[i] = encoder.encodeInto(message, batch.slot(i)).written;
      }
      // Synchronous: the whole burst is queued before the source runs again.
      assert.equal(batch.send(lengths, 256), 256, "the kernel took every datagram");
    }
    assert.equal(batch.datagrams, total);
    assert.ok(
      batch.datagrams / batch.calls > 1,
      `sendmmsg moved ${batch.datagrams} datagrams in ${batch.calls} calls`,
    );

    await waitFor(() => got.length >= total, {
      timeoutMs: 10_000,
      what: () => `${total} datagrams; got ${got.length}`,
    });
    assert.deepEqual(got, sent);
    const { calls, datagrams } = source.batchStats;
    assert.ok(calls > 0, "recvmmsg was used");
    assert.ok(datagrams / calls > 1, `recvmmsg returned ${datagrams} datagrams in ${calls} calls`);
    assert.equal(source.singleReceives + datagrams, total);
    assert.ok(source.singleReceives < total / 2, `${source.singleReceives} single receives`);
  } finally {
    sender.close();
  }
});

Deno.test("with batching off, every datagram of a burst still arrives, one receive at a time", async () => {
  const got: string[] = [];
  await using source = new UdpSource({
    host: "127.0.0.1",
    port: 0,
    batch: false,
    onBatch: eachMessage((buf, start, end) => got.push(decoder.decode(buf.subarray(start, end)))),
  });
  const address = await source.listen();
  const messages = Array.from({ length: 1000 }, (_, i) => `fallback ${i}`);
  await sendBurst("127.0.0.1", address.port, messages);
  await waitFor(() => got.length >= messages.length, {
    timeoutMs: 10_000,
    what: () => `${messages.length} datagrams; got ${got.length}`,
  });
  assert.deepEqual(got, messages);
  assert.deepEqual(source.batchStats, { calls: 0, datagrams: 0 });
  assert.equal(source.singleReceives, messages.length);
});

Deno.test("an error thrown while receiving closes that UDP input with a log line, not the process", async () => {
  let calls = 0;
  await using source = new UdpSource({
    host: "127.0.0.1",
    port: 0,
    onBatch: eachMessage(() => {
      calls++;
      throw new Error("poison");
    }),
  });
  const address = await source.listen();
  await sendBurst("127.0.0.1", address.port, ["one", "two"]);
  await waitFor(() => calls >= 1, { timeoutMs: 5_000, what: "the first datagram" });
  // The input stopped (no second callback); close() resolves instead of rethrowing.
  await source.close();
  assert.equal(calls, 1);
});
