/**
 * `splitLines` (lib/framing/lines.ts) and the line reader of `reclog play`
 * (lib/tlog/line_reader.ts): numbering, CR LF, the last line without a line
 * end, the line-length limit, errors naming the input, following a file
 * that grows and is truncated.
 *
 * @module
 */

import assert from "node:assert/strict";
import { splitLines } from "../lib/framing/lines.ts";
import { type ByteReader, type Line, readLines } from "../lib/tlog/line_reader.ts";
import { tempDir, waitFor } from "./helpers.ts";

const encoder = new TextEncoder();

/** A reader handing out `chunks` one by one. */
function chunked(...chunks: string[]): ByteReader {
  const queue = chunks.map((chunk) => encoder.encode(chunk));
  return {
    read(buffer) {
      const next = queue.shift();
      if (!next) return Promise.resolve(null);
      buffer.set(next);
      return Promise.resolve(next.length);
    },
  };
}

async function all(lines: AsyncIterable<Line>): Promise<Line[]> {
  const result: Line[] = [];
  for await (const line of lines) result.push(line);
  return result;
}

Deno.test("splitLines: reports each complete line and where the rest starts", () => {
  const bytes = encoder.encode("one\n\ntwo\nthr");
  const spans: [number, number][] = [];
  assert.equal(splitLines(bytes, (start, end) => spans.push([start, end])), 9);
  assert.deepEqual(spans, [[0, 3], [4, 4], [5, 8]]);
  assert.equal(splitLines(encoder.encode("none"), () => assert.fail("no line")), 0);
  assert.equal(splitLines(encoder.encode("a\n"), () => {}), 2);
});

Deno.test("readLines: numbered lines across chunks, CR LF, empty and last partial lines", async () => {
  const lines = await all(
    readLines(chunked("a\r\nb", "c\n\nGrü", "ße\nlast\r"), { name: "stdin" }),
  );
  assert.deepEqual(lines, [
    { text: "a", number: 1 },
    { text: "bc", number: 2 },
    { text: "", number: 3 },
    { text: "Grüße", number: 4 },
    { text: "last", number: 5 },
  ]);
});

Deno.test("readLines: an over-long line and a failing read name the input", async () => {
  const long = readLines(chunked("ok\n", "x".repeat(20), "y\n"), {
    name: "'a.log'",
    maxLineBytes: 16,
  });
  await assert.rejects(all(long), /^Error: 'a\.log' line 2: longer than 16 bytes, not a tlog log$/);
  const failing: ByteReader = { read: () => Promise.reject(new Deno.errors.PermissionDenied("x")) };
  await assert.rejects(
    all(readLines(failing, { name: "'b.log'" })),
    /^Error: Cannot read 'b\.log': permission denied$/,
  );
});

Deno.test("readLines: follows a growing file, starts over when it is truncated, stops on abort", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/live.log`;
  await Deno.writeTextFile(path, "one\ntw");
  using file = await Deno.open(path);
  const controller = new AbortController();
  const seen: string[] = [];
  const done = (async () => {
    const follow = { signal: controller.signal, pollMs: 10 };
    for await (const line of readLines(file, { name: "'live.log'", follow })) seen.push(line.text);
  })();
  await waitFor(() => seen.length === 1, { what: "the first line" });
  await Deno.writeTextFile(path, "o\n", { append: true });
  await waitFor(() => seen.length === 2, { what: "the completed second line" });
  await Deno.writeTextFile(path, "new\n");
  await waitFor(() => seen.length === 3, { what: "the line after the truncation" });
  controller.abort();
  await done;
  assert.deepEqual(seen, ["one", "two", "new"]);
});
