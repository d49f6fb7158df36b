/**
 * The journal and its spool: sequence numbers, cursors, eviction with exact
 * loss reports, restart continuity and torn-record recovery.
 */

import assert from "node:assert/strict";
import { FrameReader } from "../lib/protocol/frame.ts";
import { Journal } from "../lib/journal/journal.ts";
import { tempDir } from "./helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const STREAM = encoder.encode("syslog");

function drain(journal: Journal, from: number): { seqs: number[]; texts: string[]; lost: number } {
  const cursor = journal.cursor(from);
  const seqs: number[] = [];
  const texts: string[] = [];
  let lost = 0;
  for (let read = cursor.read(); read; read = cursor.read()) {
    if (read.kind === "lost") {
      lost += read.count;
      continue;
    }
    const frame = new FrameReader(read.bytes);
    while (frame.next()) {
      seqs.push(frame.seq);
      texts.push(decoder.decode(frame.data()));
    }
  }
  return { seqs, texts, lost };
}

Deno.test("journal: consecutive sequence numbers, cursors read everything once", () => {
  const journal = new Journal({ maxBytes: 1 << 20, segmentBytes: 64 * 1024 });
  for (let i = 0; i < 5000; i++) journal.append(STREAM, encoder.encode(`message ${i}`));
  const { seqs, texts, lost } = drain(journal, 1);
  assert.equal(lost, 0);
  assert.deepEqual(seqs, Array.from({ length: 5000 }, (_, i) => i + 1));
  assert.equal(texts[4999], "message 4999");
  // A cursor from the middle starts exactly there, even inside a segment.
  const middle = drain(journal, 2500);
  assert.equal(middle.seqs[0], 2500);
  assert.equal(middle.seqs.length, 2501);
});

Deno.test("journal: eviction beyond the bound gives an exact lost count", () => {
  const journal = new Journal({ maxBytes: 256 * 1024, segmentBytes: 64 * 1024 });
  const payload = new Uint8Array(200).fill(0x41);
  for (let i = 0; i < 10_000; i++) journal.append(STREAM, payload);
  assert.ok(journal.bytes <= 256 * 1024 + 64 * 1024, `memory ${journal.bytes}`);
  const { seqs, lost } = drain(journal, 1);
  assert.equal(lost, journal.firstSeq - 1);
  assert.equal(lost + seqs.length, 10_000);
  assert.equal(seqs[0], journal.firstSeq);
});

Deno.test("journal: a cursor keeps up with appends to the open segment", () => {
  const journal = new Journal({ maxBytes: 1 << 20 });
  const cursor = journal.cursor(journal.nextSeq);
  let seen = 0;
  for (let round = 0; round < 50; round++) {
    for (let i = 0; i < 37; i++) journal.append(STREAM, encoder.encode(`r${round} m${i}`));
    for (let read = cursor.read(); read; read = cursor.read()) {
      assert.equal(read.kind, "frames");
      const frame = new FrameReader((read as { bytes: Uint8Array }).bytes);
      while (frame.next()) assert.equal(frame.seq, ++seen);
    }
  }
  assert.equal(seen, 50 * 37);
});

Deno.test("spool: a reopened journal continues the epoch and sequence numbers", async () => {
  await using dir = await tempDir();
  let epoch: string;
  {
    using journal = await Journal.open({ spoolDir: dir.path, maxBytes: 128 * 1024 });
    epoch = journal.epoch;
    for (let i = 0; i < 3000; i++) journal.append(STREAM, encoder.encode(`before ${i}`));
  }
  using journal = await Journal.open({ spoolDir: dir.path, maxBytes: 128 * 1024 });
  assert.equal(journal.epoch, epoch);
  assert.equal(journal.nextSeq, 3001);
  journal.append(STREAM, encoder.encode("after"));
  const { seqs, texts } = drain(journal, 1);
  assert.deepEqual(seqs, Array.from({ length: 3001 }, (_, i) => i + 1));
  assert.equal(texts[0], "before 0");
  assert.equal(texts[3000], "after");
});

Deno.test("spool: a torn last record is cut, reported, and never delivered", async () => {
  await using dir = await tempDir();
  {
    using journal = await Journal.open({ spoolDir: dir.path });
    for (let i = 0; i < 10; i++) journal.append(STREAM, encoder.encode(`whole ${i}`));
  }
  const segment = [...Deno.readDirSync(dir.path)].find((e) => e.name.endsWith(".seg"))!.name;
  const path = `${dir.path}/${segment}`;
  const size = Deno.statSync(path).size;
  // A crash in the middle of the 11th record: its header and part of its body.
  const torn = new Uint8Array(40);
  new DataView(torn.buffer).setUint32(0, 100);
  torn[4] = 0x4d;
  Deno.writeFileSync(path, torn, { append: true });
  using journal = await Journal.open({ spoolDir: dir.path });
  assert.equal(Deno.statSync(path).size, size);
  assert.equal(journal.nextSeq, 11);
  const { texts } = drain(journal, 1);
  assert.deepEqual(texts, Array.from({ length: 10 }, (_, i) => `whole ${i}`));
});
