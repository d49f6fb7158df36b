/**
 * The protocol module against docs/protocol.md: the resume rule against the
 * table of the server's resume rules (read from the document itself, so the
 * two cannot drift apart), and the client greeting's checks.
 */

import assert from "node:assert/strict";
import { resumeRule } from "../lib/protocol/stream_rules.ts";
import { parseClientHello } from "../lib/protocol/messages.ts";
import {
  encodeMessage,
  FrameType,
  messageFrameSize,
  ProtocolError,
} from "../lib/protocol/frame.ts";
import { FrameBatch } from "../lib/protocol/frame_batch.ts";

const JOURNAL = { epoch: "e1", first: 100, next: 200, evictedTime: 1_763_740_000_000 };

/** The rows of the "Resume rules" table: client hello → start, L frame. */
async function resumeTable(): Promise<string[][]> {
  const text = await Deno.readTextFile(new URL("../docs/protocol.md", import.meta.url));
  const lines = text.slice(text.indexOf("Resume rules (the server's side")).split("\n");
  const first = lines.findIndex((line) => line.startsWith("|"));
  const end = lines.findIndex((line, i) => i > first && !line.startsWith("|"));
  const table = lines.slice(first + 2, end).map((row) =>
    row.split("|").slice(1, -1).map((cell) => cell.trim())
  );
  return table;
}

/** For each row of the table (by its first cell), hellos it covers. */
const CASES: Record<string, Array<Parameters<typeof resumeRule>[0]>> = {
  "`live: true`": [
    { live: true },
    { live: true, resume: { epoch: "e1", next: 150 } },
    { live: true, resume: { epoch: "other", next: 5 } },
  ],
  "`oldest: true`, no resume point": [{ oldest: true }],
  "same epoch, `first <= resume.next <= next`": [
    { resume: { epoch: "e1", next: 100 } },
    { resume: { epoch: "e1", next: 150 } },
    { resume: { epoch: "e1", next: 200 } },
  ],
  "same epoch, `resume.next < first`": [
    { resume: { epoch: "e1", next: 1 } },
    { resume: { epoch: "e1", next: 99 } },
  ],
  "other epoch, or `resume.next > next`": [
    { resume: { epoch: "e0", next: 150 } },
    { resume: { epoch: "e1", next: 201 } },
    { oldest: true, resume: { epoch: "e1", next: 500 } },
  ],
};

/** The start a row names (`next`, `first`, `resume.next`) for a hello. */
function expectedStart(cell: string, next: number | undefined): number {
  const name = cell.replace(/`/g, "");
  if (name === "next") return JOURNAL.next;
  if (name === "first") return JOURNAL.first;
  if (name === "resume.next") return next!;
  throw new Error(`unknown start '${cell}' in docs/protocol.md`);
}

Deno.test("resume rule: every row of the table in docs/protocol.md", async () => {
  const table = await resumeTable();
  assert.deepEqual(table.map((row) => row[0]), Object.keys(CASES), "the table's rows");
  for (const [hello, start, lost] of table) {
    for (const request of CASES[hello!]!) {
      const what = `${hello}: ${JSON.stringify(request)}`;
      const decision = resumeRule(request, JOURNAL);
      assert.equal(decision.start, expectedStart(start!, request.resume?.next), what);
      if (lost === "none") {
        assert.equal(decision.lost, undefined, what);
      } else if (lost!.includes("unknown")) {
        assert.equal(decision.lost?.unknown, true, what);
        assert.equal(decision.lost?.count, 0, what);
      } else {
        const from = request.resume!.next;
        assert.deepEqual(decision.lost, {
          count: JOURNAL.first - from,
          from,
          to: JOURNAL.first - 1,
          toTime: JOURNAL.evictedTime,
          reason: "client fell behind the journal's retention",
        }, what);
      }
    }
  }
});

Deno.test("resume rule: no hello field at all starts at the live tail", () => {
  assert.deepEqual(resumeRule({}, JOURNAL), { start: JOURNAL.next });
});

Deno.test("resume rule: an empty journal (first = next) resumes in place", () => {
  const journal = { epoch: "e1", first: 1, next: 1 };
  assert.deepEqual(resumeRule({ resume: { epoch: "e1", next: 1 } }, journal), { start: 1 });
  assert.deepEqual(resumeRule({ oldest: true }, journal), { start: 1 });
});

Deno.test("client hello: the checks of the server", () => {
  const body = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
  const ok = parseClientHello(body({ proto: "reclog", v: 1, resume: { epoch: "e", next: 3 } }));
  assert.deepEqual(ok.resume, { epoch: "e", next: 3 });
  for (
    const [value, pattern] of [
      ["not json", /malformed JSON/],
      [[1], /not a JSON object/],
      [{ proto: "reclog", v: 2 }, /unsupported greeting/],
      [{ proto: "reclog", v: 1, live: "yes" }, /'live' is not a boolean/],
      [{ proto: "reclog", v: 1, resume: { epoch: "", next: 1 } }, /resume\.epoch/],
      [{ proto: "reclog", v: 1, resume: { epoch: "e", next: 0 } }, /resume\.next/],
    ] as const
  ) {
    const bytes = typeof value === "string" ? new TextEncoder().encode(value) : body(value);
    assert.throws(() => parseClientHello(bytes), (error: unknown) => {
      assert.ok(error instanceof ProtocolError);
      assert.match(error.message, pattern);
      return true;
    });
  }
});

Deno.test("FrameBatch: messages in place with stream, seq and time; rotations between them", () => {
  const encoder = new TextEncoder();
  const entries = [
    { seq: 1, stream: "syslog", data: "one", type: FrameType.Message },
    { seq: 2, stream: "app", data: "", type: FrameType.Rotated },
    { seq: 3, stream: "app", data: "two\n", type: FrameType.Message },
  ];
  const frames = new Uint8Array(
    entries.reduce((n, e) => n + messageFrameSize(e.stream.length, e.data.length), 0) + 5,
  );
  let offset = 0;
  for (const e of entries) {
    offset += encodeMessage(frames, offset, {
      seq: e.seq,
      time: 1000 + e.seq,
      stream: encoder.encode(e.stream),
      data: encoder.encode(e.data),
      type: e.type,
    });
  }
  frames.set([0, 0, 0, 1, FrameType.KeepAlive], offset); // control frames are skipped
  const batch = new FrameBatch(frames);
  assert.equal(batch.count, 2);
  assert.equal(new TextDecoder().decode(batch.message(1)), "two\n");
  assert.equal(batch.message(0).buffer, frames.buffer, "a view, not a copy");
  assert.deepEqual([batch.stream(0), batch.stream(1)], ["syslog", "app"]);
  assert.deepEqual([batch.seq(0), batch.seq(1)], [1, 3]);
  assert.deepEqual([batch.time(0), batch.time(1)], [1001, 1003]);
  assert.deepEqual(batch.rotations, [{ before: 1, stream: "app", seq: 2, time: 1002 }]);
});
