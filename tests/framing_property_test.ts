/**
 * Property tests of the two stream framers that read bytes from peers:
 * RFC 6587 syslog deframing (`--syslog-in tcp://`) and line framing
 * (`--tcp-in`, `listen`). Arbitrary bytes never throw and never yield a
 * message over the maximum; how a stream is cut into reads never changes
 * the messages; a valid stream gives back exactly what was framed.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { SyslogFramer } from "../lib/framing/syslog.ts";
import { LineSplitter } from "../lib/framing/lines.ts";

const encoder = new TextEncoder();

/** `bytes` cut at `cuts` (any numbers, folded into range), as fresh copies. */
function split(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let from = 0;
  for (const point of [...points, bytes.length]) {
    chunks.push(bytes.slice(from, point));
    from = point;
  }
  return chunks;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function deframe(chunks: Uint8Array[], maxLength: number): { messages: number[][]; cut: number } {
  const framer = new SyslogFramer({ maxLength });
  const messages: number[][] = [];
  const onMessage = (buf: Uint8Array, start: number, end: number) => {
    assert.ok(start >= 0 && start <= end && end <= buf.length, `bounds ${start}..${end}`);
    messages.push([...buf.subarray(start, end)]);
  };
  for (const chunk of chunks) framer.push(chunk, onMessage);
  framer.flush(onMessage);
  return { messages, cut: framer.truncated };
}

function lines(chunks: Uint8Array[], maxLine: number, telnet: boolean): number[][] {
  const splitter = new LineSplitter({ maxLine, telnet });
  const out: number[][] = [];
  for (const chunk of chunks) for (const line of splitter.push(chunk)) out.push([...line]);
  for (const line of splitter.flush()) out.push([...line]);
  return out;
}

/** Bytes rich in the framers' special bytes (digits, SP, LF, CR, NUL, IAC...). */
const peerBytes = fc.oneof(
  fc.uint8Array({ maxLength: 300 }),
  fc.array(
    fc.constantFrom(
      0x30,
      0x31,
      0x35,
      0x39,
      0x20,
      0x0a,
      0x0d,
      0x00,
      0xff,
      0xfb,
      0xfa,
      0xf0,
      0x3c,
      0x61,
    ),
    { maxLength: 300 },
  ).map((a) => new Uint8Array(a)),
);
const cuts = fc.array(fc.nat(), { maxLength: 12 });

Deno.test("RFC 6587 deframer: arbitrary bytes in arbitrary reads never throw nor yield a message over maxLength", () => {
  fc.assert(
    fc.property(peerBytes, cuts, fc.integer({ min: 1, max: 64 }), (bytes, at, maxLength) => {
      const { messages } = deframe(split(bytes, at), maxLength);
      for (const message of messages) assert.ok(message.length <= maxLength, `${message.length}`);
    }),
    // Found by this property: digits carried to the end of the stream were flushed whole.
    { numRuns: 500, examples: [[Uint8Array.from([0x30, 0x30]), [], 1]] },
  );
});

Deno.test("RFC 6587 deframer: how the stream is cut into reads never changes the messages", () => {
  fc.assert(
    fc.property(peerBytes, cuts, fc.integer({ min: 1, max: 64 }), (bytes, at, maxLength) => {
      assert.deepEqual(deframe(split(bytes, at), maxLength), deframe([bytes.slice()], maxLength));
    }),
    { numRuns: 500 },
  );
});

/** A message and how it is framed: octet counting (any bytes) or a newline. */
const framedMessage = fc.oneof(
  fc.uint8Array({ maxLength: 40 }).map((m) => ({
    message: m,
    framed: concat([encoder.encode(`${m.length} `), m]),
  })),
  // Newline framing: no LF inside, and not starting with a digit (that would be a count).
  fc.uint8Array({ minLength: 1, maxLength: 40 })
    .filter((m) => !m.includes(0x0a) && !(m[0]! >= 0x30 && m[0]! <= 0x39))
    .map((m) => ({ message: m, framed: concat([m, new Uint8Array([0x0a])]) })),
);

Deno.test("RFC 6587 deframer: a valid stream in arbitrary reads gives back every message", () => {
  fc.assert(
    fc.property(fc.array(framedMessage, { maxLength: 30 }), cuts, (framed, at) => {
      const stream = concat(framed.map((f) => f.framed));
      const expected = framed.map((f) => [...f.message]);
      assert.deepEqual(deframe(split(stream, at), 64), { messages: expected, cut: 0 });
    }),
    { numRuns: 500 },
  );
});

Deno.test("line framer: arbitrary bytes in arbitrary reads never throw nor yield a line over maxLine", () => {
  fc.assert(
    fc.property(
      peerBytes,
      cuts,
      fc.integer({ min: 1, max: 64 }),
      fc.boolean(),
      (bytes, at, maxLine, telnet) => {
        for (const line of lines(split(bytes, at), maxLine, telnet)) {
          assert.ok(line.length <= maxLine, `${line.length} > ${maxLine}`);
        }
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("line framer: how the stream is cut into reads never changes the lines", () => {
  fc.assert(
    fc.property(
      peerBytes,
      cuts,
      fc.integer({ min: 1, max: 64 }),
      fc.boolean(),
      (bytes, at, maxLine, telnet) => {
        assert.deepEqual(
          lines(split(bytes, at), maxLine, telnet),
          lines([bytes.slice()], maxLine, telnet),
        );
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("line framer: LF or CR LF terminated lines in arbitrary reads come back exactly", () => {
  const line = fc.uint8Array({ maxLength: 48 }).map((l) =>
    l.filter((b) => b !== 0x0a && b !== 0x0d && b !== 0x00 && b !== 0xff)
  );
  fc.assert(
    fc.property(fc.array(line, { maxLength: 30 }), fc.boolean(), cuts, (input, crlf, at) => {
      const end = encoder.encode(crlf ? "\r\n" : "\n");
      const stream = concat(input.flatMap((l) => [l, end]));
      assert.deepEqual(lines(split(stream, at), 48, true), input.map((l) => [...l]));
    }),
    { numRuns: 500 },
  );
});
