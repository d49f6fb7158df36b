import assert from "node:assert/strict";
import { LineSplitStream, LineSplitter } from "../lib/framing/lines.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function bytes(text: string): Uint8Array {
  // Latin-1 so "\xff" is the byte 0xFF (telnet IAC), not its UTF-8 form.
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

function text(lines: Uint8Array[]): string[] {
  return lines.map((line) => decoder.decode(line));
}

function splitAll(chunks: Uint8Array[], splitter = new LineSplitter()): string[] {
  return text([...chunks.flatMap((chunk) => splitter.push(chunk)), ...splitter.flush()]);
}

Deno.test("line framing: lines across chunks, last partial line on flush", () => {
  assert.deepEqual(
    splitAll([encoder.encode("one\ntw"), encoder.encode("o\n\nthr"), encoder.encode("ee")]),
    ["one", "two", "", "three"],
  );
  assert.deepEqual(splitAll([encoder.encode("a\n")]), ["a"]);
  assert.deepEqual(splitAll([]), []);
});

Deno.test("line framing: telnet CR LF, CR NUL and IAC sequences", () => {
  const input = [
    bytes("\xff\xfd\x03\xff\xfb\x01hello\r\n"),
    bytes("wor\xff"), // IAC split across chunks
    bytes("\xfb\x18ld\r"), // CR LF split across chunks
    bytes("\nsub\xff\xfa\x18\x01\xff\xf0neg\r\n"),
    bytes("cr\r\x00only\r\n"),
    bytes("esc\xff\xffaped\xff\xf1\n"), // IAC IAC is a 0xFF byte; IAC NOP dropped
  ];
  const lines = (() => {
    const splitter = new LineSplitter();
    return [...input.flatMap((chunk) => splitter.push(chunk)), ...splitter.flush()];
  })();
  assert.deepEqual(
    lines.map((line) => String.fromCharCode(...line)),
    ["hello", "world", "subneg", "cr\ronly", "esc\xffaped"],
  );
});

Deno.test("line framing: telnet off keeps bytes as they are", () => {
  const splitter = new LineSplitter({ telnet: false });
  const lines = [...splitter.push(bytes("a\r\n\xff\xfbb\n")), ...splitter.flush()];
  assert.deepEqual(lines.map((line) => String.fromCharCode(...line)), ["a\r", "\xff\xfbb"]);
});

Deno.test("line framing: over-long lines are split into pieces, never dropped", () => {
  const long = "x".repeat(25);
  assert.deepEqual(
    splitAll([encoder.encode(`${long}\nshort\n`)], new LineSplitter({ maxLine: 10 })),
    ["x".repeat(10), "x".repeat(10), "x".repeat(5), "short"],
  );
  // Arriving a byte at a time: the splitter holds at most maxLine + 1 bytes.
  const splitter = new LineSplitter({ maxLine: 10 });
  const out: Uint8Array[] = [];
  for (const byte of encoder.encode(`${long}\r\nend`)) {
    out.push(...splitter.push(Uint8Array.of(byte)));
    assert.ok(splitter.pendingBytes <= 11);
  }
  out.push(...splitter.flush());
  assert.deepEqual(text(out), ["x".repeat(10), "x".repeat(10), "x".repeat(5), "end"]);
  // A line of exactly maxLine bytes followed by CR LF stays one line.
  assert.deepEqual(
    splitAll(
      [encoder.encode("y".repeat(10) + "\r"), encoder.encode("\n")],
      new LineSplitter({
        maxLine: 10,
      }),
    ),
    ["y".repeat(10)],
  );
});

Deno.test("line framing: pieces are cut on UTF-8 character boundaries", () => {
  const line = "ab" + "é".repeat(10); // 2 + 20 bytes
  const pieces = splitAll([encoder.encode(line + "\n")], new LineSplitter({ maxLine: 7 }));
  assert.equal(pieces.join(""), line);
  for (const piece of pieces) {
    assert.ok(encoder.encode(piece).length <= 7);
    assert.ok(!piece.includes("\ufffd"), `piece ${JSON.stringify(piece)} cut a character`);
  }
});

Deno.test("line framing: random chunking gives the same lines as one chunk", () => {
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const lines = Array.from(
    { length: 300 },
    (_, i) => `${i}:` + "z".repeat(Math.floor(random() * 200)),
  );
  const whole = encoder.encode(lines.join("\r\n") + "\r\n");
  for (let round = 0; round < 5; round++) {
    const chunks: Uint8Array[] = [];
    for (let at = 0; at < whole.length;) {
      const size = 1 + Math.floor(random() * 64);
      chunks.push(whole.slice(at, at + size));
      at += size;
    }
    assert.deepEqual(splitAll(chunks, new LineSplitter({ maxLine: 1000 })), lines);
  }
});

Deno.test("line framing: LineSplitStream emits batches of lines", async () => {
  const stream = ReadableStream.from([encoder.encode("a\nb"), encoder.encode("c\nd\n"), bytes("e")])
    .pipeThrough(new LineSplitStream());
  const batches: string[][] = [];
  for await (const batch of stream) batches.push(text(batch));
  assert.deepEqual(batches, [["a"], ["bc", "d"], ["e"]]);
});
