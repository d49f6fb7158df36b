/**
 * RFC 6587 deframing: octet counting and newline framing, split anywhere,
 * with a maximum length.
 */

import assert from "node:assert/strict";
import { SyslogFramer, syslogFramingStream } from "../lib/framing/syslog.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function deframe(
  chunks: Uint8Array[],
  maxLength = 1024,
): { messages: string[]; truncated: number } {
  const framer = new SyslogFramer({ maxLength });
  const messages: string[] = [];
  const onMessage = (buf: Uint8Array, start: number, end: number) =>
    messages.push(decoder.decode(buf.subarray(start, end)));
  for (const chunk of chunks) framer.push(chunk, onMessage);
  framer.flush(onMessage);
  return { messages, truncated: framer.truncated };
}

function splitEvery(bytes: Uint8Array, size: number): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.slice(i, i + size));
  return chunks;
}

Deno.test("framing: octet counting and newline framing mixed, split at every size", () => {
  const expected = ["<13>first", "<13>second with 12 digits 123", "<14>newline framed", "<13>last"];
  const wire = encoder.encode(
    `9 <13>first29 <13>second with 12 digits 123<14>newline framed\n8 <13>last`,
  );
  for (let size = 1; size <= wire.length; size++) {
    assert.deepEqual(deframe(splitEvery(wire, size)).messages, expected, `chunk size ${size}`);
  }
});

Deno.test("framing: a final message without newline is delivered at the end", () => {
  assert.deepEqual(deframe([encoder.encode("<13>a\n<13>b")]).messages, ["<13>a", "<13>b"]);
});

Deno.test("framing: over-long messages are cut to the limit and counted, the next one survives", () => {
  const long = "x".repeat(100);
  for (const size of [1, 7, 64, 1000]) {
    const counted = deframe(splitEvery(encoder.encode(`100 ${long}5 <13>a`), size), 10);
    assert.deepEqual(counted.messages, ["x".repeat(10), "<13>a"], `octet, chunk ${size}`);
    assert.equal(counted.truncated, 1);
    const lines = deframe(splitEvery(encoder.encode(`<13>${long}\n<13>b\n`), size), 10);
    assert.deepEqual(lines.messages, [`<13>${"x".repeat(6)}`, "<13>b"], `newline, chunk ${size}`);
    assert.equal(lines.truncated, 1);
  }
});

Deno.test("framing: as a TransformStream, batches of messages per chunk", async () => {
  const input = ReadableStream.from([encoder.encode("4 <1>a4 <1>b"), encoder.encode("\n<1>c\n")]);
  const batches: string[][] = [];
  for await (const batch of input.pipeThrough(syslogFramingStream())) {
    batches.push(batch.map((m) => decoder.decode(m)));
  }
  assert.deepEqual(batches, [["<1>a", "<1>b"], ["<1>c"]]);
});
