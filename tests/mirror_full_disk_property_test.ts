/**
 * MirrorSink against a real full tmpfs, driven the way `pull` drives it:
 * random batches of three streams (two of lines, one of file bytes with
 * rotations), a disk with a random few bytes free, retries from the
 * in-memory resume point, crashes that restart from a saved point that lags
 * behind, and space that returns. Every file must end up holding exactly
 * what was sent, once.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { encodeMessage, FrameType, messageFrameSize } from "../lib/protocol/frame.ts";
import { MirrorSink } from "../lib/sinks/mirror.ts";
import { FrameBatch } from "../lib/protocol/frame_batch.ts";
import { runProgram, tempDir } from "./helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const STREAMS = ["syslog", "tcp", "app"] as const;
const T0 = Date.UTC(2026, 0, 1);

interface Entry {
  seq: number;
  stream: (typeof STREAMS)[number];
  rotated: boolean;
  data: Uint8Array;
}

/** The entries as pull hands them to its sink: a batch over their frames. */
function encode(entries: Entry[]): FrameBatch {
  return new FrameBatch(encodeFrames(entries));
}

function encodeFrames(entries: Entry[]): Uint8Array {
  let size = 0;
  for (const e of entries) size += messageFrameSize(e.stream.length, e.data.length);
  const buf = new Uint8Array(size);
  let offset = 0;
  for (const e of entries) {
    offset += encodeMessage(buf, offset, {
      seq: e.seq,
      time: T0 + e.seq * 1000,
      stream: encoder.encode(e.stream),
      data: e.data,
      type: e.rotated ? FrameType.Rotated : FrameType.Message,
    });
  }
  return buf;
}

function stamp(time: number): string {
  return new Date(time).toISOString().replace(/[-:T]/g, "").slice(0, 14);
}

/** The files a mirror of `entries` holds, by name. */
function expected(entries: Entry[]): Record<string, string> {
  const files: Record<string, string> = {};
  for (const e of entries) {
    if (e.rotated) {
      files[`${e.stream}.${stamp(T0 + e.seq * 1000)}`] = files[e.stream] ?? "";
      delete files[e.stream];
      continue;
    }
    files[e.stream] = (files[e.stream] ?? "") + decoder.decode(e.data) +
      (e.stream === "app" ? "" : "\n");
  }
  return files;
}

async function actual(dir: string): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  for await (const entry of Deno.readDir(dir)) {
    if (entry.name.startsWith(".")) continue;
    files[entry.name] = await Deno.readTextFile(`${dir}/${entry.name}`);
  }
  return files;
}

/** Fills the file system until ENOSPC, then frees `free` bytes of the filler. */
async function fillLeaving(path: string, free: number): Promise<void> {
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  const chunk = new Uint8Array(4096).fill(0x66);
  let size = 0;
  for (let i = 0; i < 1000; i++) {
    try {
      size += await file.write(chunk);
    } catch (error) {
      if (!/No space left/i.test(String(error))) throw error;
      await file.truncate(Math.max(0, size - free));
      return;
    }
  }
  throw new Error(`${path}: the file system did not fill up`);
}

const scenario = fc.record({
  entries: fc.array(
    fc.record({
      stream: fc.constantFrom(...STREAMS),
      length: fc.integer({ min: 0, max: 400 }),
      rotated: fc.boolean().map((b) => b && Math.random() < 0.3),
    }),
    { minLength: 1, maxLength: 80 },
  ),
  batches: fc.array(fc.integer({ min: 1, max: 20 }), { minLength: 1, maxLength: 8 }),
  free: fc.integer({ min: 0, max: 12_000 }),
  /** Per failure: retry in the same process, or crash and restart. */
  onFailure: fc.array(fc.constantFrom("retry", "crash"), { minLength: 1, maxLength: 6 }),
  /** Per resolved write: whether pull saved its resume point then. */
  saves: fc.array(fc.boolean(), { minLength: 1, maxLength: 6 }),
  failuresBeforeSpace: fc.integer({ min: 1, max: 4 }),
});

Deno.test("MirrorSink on a full tmpfs: retries, crashes and lagging resume points leave every byte once", async () => {
  await using dir = await tempDir();
  const disk = `${dir.path}/disk`;
  await Deno.mkdir(disk);
  const mount = await runProgram("mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", disk]);
  assert.equal(mount.code, 0, `mount tmpfs: ${mount.stderr}`);
  let run = 0;
  try {
    await fc.assert(
      fc.asyncProperty(scenario, async (s) => {
        const mirror = `${disk}/m${run++}`;
        const filler = `${disk}/filler`;
        const entries: Entry[] = s.entries.map((e, i) => ({
          seq: i + 1,
          stream: e.stream,
          rotated: e.rotated && e.stream === "app",
          data: e.rotated && e.stream === "app"
            ? new Uint8Array(0)
            : encoder.encode(`${i + 1}:${"x".repeat(e.length)}${e.stream === "app" ? "\n" : ""}`),
        }));
        await Deno.mkdir(mirror);
        await fillLeaving(filler, s.free);
        let sink = new MirrorSink(mirror);
        sink.begin("epoch-1");
        let point = 1; // pull's resume point in memory
        let saved = 1; // the one in its --state file
        let failures = 0;
        let writes = 0;
        let full = true;
        try {
          for (let step = 0; point <= entries.length && step < 500; step++) {
            const size = s.batches[step % s.batches.length]!;
            const batch = entries.slice(point - 1, point - 1 + size);
            try {
              await sink.write(encode(batch));
              point = batch.at(-1)!.seq + 1;
              if (s.saves[writes++ % s.saves.length]) saved = point;
            } catch (error) {
              assert.match(String(error), /no space left on device/);
              const action = s.onFailure[failures++ % s.onFailure.length];
              if (full && failures >= s.failuresBeforeSpace) {
                await Deno.remove(filler);
                full = false;
              }
              if (action === "crash") {
                await sink.close();
                sink = new MirrorSink(mirror);
                sink.begin("epoch-1");
                point = saved;
              }
            }
          }
          assert.equal(point, entries.length + 1, "every entry delivered");
          // A last crash: the restart redelivers from the saved point.
          await sink.close();
          sink = new MirrorSink(mirror);
          sink.begin("epoch-1");
          await sink.write(encode(entries.slice(saved - 1)));
          assert.deepEqual(await actual(mirror), expected(entries));
        } finally {
          await sink.close();
          await Deno.remove(filler).catch(() => {});
          await Deno.remove(mirror, { recursive: true });
        }
      }),
      { numRuns: 150 },
    );
  } finally {
    const umount = await runProgram("umount", [disk]);
    assert.equal(umount.code, 0, `umount: ${umount.stderr}`);
  }
});

Deno.test("MirrorSink: any sidecar content is survived, names outside DIR are never touched", async () => {
  await using dir = await tempDir();
  const outside = `${dir.path}/outside`;
  await Deno.writeTextFile(outside, "keep me\n");
  const names = fc.constantFrom("syslog", "tcp", "../outside", "__proto__", "", ".x", "a/b");
  const record = fc.record({
    seq: fc.oneof(fc.integer(), fc.double(), fc.string(), fc.constant(2 ** 60)),
    size: fc.oneof(fc.integer({ min: -5, max: 50 }), fc.double(), fc.string()),
    epoch: fc.oneof(fc.string(), fc.integer(), fc.constant("e-prop")),
    rotating: fc.oneof(fc.constant(undefined), fc.string(), fc.constantFrom("../outside", "x")),
  }, { requiredKeys: [] });
  const sidecar = fc.oneof(
    fc.dictionary(names, fc.oneof(record, fc.jsonValue())).map((v) => JSON.stringify(v)),
    fc.json(),
    fc.string(),
    fc.uint8Array({ maxLength: 200 }).map((b) => new TextDecoder().decode(b)),
  );
  let run = 0;
  await fc.assert(
    fc.asyncProperty(sidecar, async (text) => {
      const mirror = `${dir.path}/m${run++}`;
      await Deno.mkdir(mirror);
      await Deno.writeTextFile(`${mirror}/syslog`, "old line\n");
      await Deno.writeTextFile(`${mirror}/.reclog-mirror.json`, text);
      const sink = new MirrorSink(mirror);
      try {
        sink.begin("e-other");
        await sink.write(
          encode([{ seq: 1, stream: "syslog", rotated: false, data: encoder.encode("hello") }]),
        );
        assert.ok((await Deno.readTextFile(`${mirror}/syslog`)).endsWith("hello\n"));
        assert.equal(await Deno.readTextFile(outside), "keep me\n");
        // The sidecar written back is a valid one that names the stream.
        const saved = JSON.parse(await Deno.readTextFile(`${mirror}/.reclog-mirror.json`));
        assert.equal(saved.syslog.seq, 1);
      } finally {
        await sink.close();
        await Deno.remove(mirror, { recursive: true });
      }
    }),
    { numRuns: 300 },
  );
});
