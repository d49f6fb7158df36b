/**
 * Property tests (fast-check) of what reads peer bytes: FrameSplitter +
 * FrameReader, and pull's checks of the server hello, `L` frames and
 * sequence numbers. The property everywhere: no error escapes but
 * ProtocolError, and nothing malformed is emitted.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  encodeControl,
  encodeMessage,
  FrameReader,
  FrameSplitter,
  FrameType,
  isEntry,
  MESSAGE_HEADER_BYTES,
  messageFrameSize,
  ProtocolError,
} from "../lib/protocol/frame.ts";
import { MAX_EPOCH_LENGTH, parseLostReport, parseServerHello } from "../lib/protocol/messages.ts";
import { acceptSequence, expectedAfterLost } from "../lib/protocol/stream_rules.ts";

const RUNS = { numRuns: 300 };
const MAX_FRAME = 4096;

/** One frame as read: its bytes, and for entries the decoded fields. */
interface ReadFrame {
  type: number;
  bytes: number[];
  seq?: number;
  time?: number;
  stream?: number[];
  data?: number[];
}

/**
 * Feeds `chunks` through a splitter and reads every frame, checking each
 * emitted frame lies within its buffer and each entry within its frame.
 * Returns the frames and the ProtocolError that ended the stream, if any;
 * any other error escapes (and fails the property).
 */
function readAll(chunks: Uint8Array[]): { frames: ReadFrame[]; error?: ProtocolError } {
  const splitter = new FrameSplitter({ maxFrame: MAX_FRAME });
  const frame = new FrameReader(new Uint8Array(0));
  const frames: ReadFrame[] = [];
  try {
    for (const chunk of chunks) {
      const whole = splitter.push(chunk);
      frame.reset(whole);
      while (frame.next()) {
        assert.ok(frame.start < frame.end && frame.end <= whole.length, "frame within buffer");
        assert.ok(frame.end - frame.start >= 5, "a frame has LENGTH and TYPE");
        assert.ok(frame.end - frame.start <= MAX_FRAME, "frame within the limit");
        const read: ReadFrame = {
          type: frame.type,
          bytes: [...whole.subarray(frame.start, frame.end)],
        };
        if (isEntry(frame.type)) {
          assert.ok(frame.end - frame.start >= MESSAGE_HEADER_BYTES, "entry holds its header");
          assert.equal(frame.streamStart, frame.start + MESSAGE_HEADER_BYTES);
          assert.ok(frame.streamStart <= frame.dataStart && frame.dataStart <= frame.end);
          assert.ok(Number.isSafeInteger(frame.seq) && frame.seq >= 0, "safe seq");
          assert.ok(Number.isSafeInteger(frame.time) && frame.time >= 0, "safe time");
          const data = frame.data();
          assert.equal(data.length, frame.end - frame.dataStart);
          assert.ok(data.byteOffset + data.length <= whole.byteOffset + whole.length);
          read.seq = frame.seq;
          read.time = frame.time;
          read.stream = [...whole.subarray(frame.streamStart, frame.dataStart)];
          read.data = [...data];
        }
        frames.push(read);
      }
    }
  } catch (error) {
    if (error instanceof ProtocolError) return { frames, error };
    throw error;
  }
  return { frames };
}

/** Cuts `bytes` at the given (sorted, deduplicated) offsets. */
function cut(bytes: Uint8Array, offsets: number[]): Uint8Array[] {
  const points = [...new Set(offsets.map((o) => o % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let last = 0;
  for (const point of points) {
    chunks.push(bytes.slice(last, point));
    last = point;
  }
  chunks.push(bytes.slice(last));
  return chunks;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** A valid frame: a message, a rotation, or a control frame. */
const validFrame: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.record({
    seq: fc.maxSafeNat(),
    time: fc.maxSafeNat(),
    stream: fc.uint8Array({ maxLength: 40 }),
    data: fc.uint8Array({ maxLength: 300 }),
    rotated: fc.boolean(),
  }).map(({ seq, time, stream, data, rotated }) => {
    const frame = new Uint8Array(messageFrameSize(stream.length, data.length));
    const type = rotated ? FrameType.Rotated : FrameType.Message;
    encodeMessage(frame, 0, { seq, time, stream, data, type });
    return frame;
  }),
  fc.constantFrom(FrameType.Hello, FrameType.KeepAlive, FrameType.Lost, FrameType.Close).chain(
    (type) => fc.string({ maxLength: 200 }).map((body) => encodeControl(type, body)),
  ),
);

const validStream = fc.array(validFrame, { minLength: 1, maxLength: 12 });

Deno.test("frame reader: arbitrary bytes, arbitrarily split, give only ProtocolError and well-formed frames", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 600 }),
      fc.array(fc.nat(), { maxLength: 8 }),
      (bytes, offsets) => {
        readAll(cut(bytes, offsets));
      },
    ),
    RUNS,
  );
});

Deno.test("frame reader: any split of a valid frame stream gives the same frames, no error", () => {
  fc.assert(
    fc.property(validStream, fc.array(fc.nat(), { maxLength: 10 }), (frames, offsets) => {
      const bytes = concat(frames);
      const whole = readAll([bytes]);
      const split = readAll(cut(bytes, offsets));
      assert.equal(whole.error, undefined);
      assert.equal(split.error, undefined);
      assert.deepEqual(split.frames, whole.frames);
      assert.deepEqual(whole.frames.map((f) => f.bytes), frames.map((f) => [...f]));
    }),
    RUNS,
  );
});

Deno.test("frame reader: every valid message reads back its seq, time, stream and data", () => {
  fc.assert(
    fc.property(
      fc.maxSafeNat(),
      fc.maxSafeNat(),
      fc.uint8Array({ maxLength: 255 }),
      fc.uint8Array({ maxLength: 500 }),
      (seq, time, stream, data) => {
        const frame = new Uint8Array(messageFrameSize(stream.length, data.length));
        encodeMessage(frame, 0, { seq, time, stream, data });
        const { frames, error } = readAll([frame]);
        assert.equal(error, undefined);
        assert.deepEqual(frames[0], {
          type: FrameType.Message,
          bytes: [...frame],
          seq,
          time,
          stream: [...stream],
          data: [...data],
        });
      },
    ),
    RUNS,
  );
});

/** A mutation of a byte array: overwrite bytes, truncate, insert or delete. */
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({
    kind: fc.constant("set" as const),
    at: fc.nat(),
    value: fc.integer({ min: 0, max: 255 }),
  }),
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant("insert" as const),
    at: fc.nat(),
    bytes: fc.uint8Array({ maxLength: 8 }),
  }),
  fc.record({
    kind: fc.constant("delete" as const),
    at: fc.nat(),
    count: fc.integer({ min: 1, max: 8 }),
  }),
);

type Mutation =
  | { kind: "set"; at: number; value: number }
  | { kind: "truncate"; at: number }
  | { kind: "insert"; at: number; bytes: Uint8Array }
  | { kind: "delete"; at: number; count: number };

function mutate(bytes: Uint8Array, mutations: Mutation[]): Uint8Array {
  let out = bytes;
  for (const m of mutations) {
    const at = m.at % (out.length + 1);
    if (m.kind === "set") {
      if (out.length === 0) continue;
      out = out.slice();
      out[at % out.length] = m.value;
    } else if (m.kind === "truncate") {
      out = out.slice(0, at);
    } else if (m.kind === "insert") {
      out = concat([out.subarray(0, at), m.bytes, out.subarray(at)]);
    } else {
      out = concat([out.subarray(0, at), out.subarray(at + m.count)]);
    }
  }
  return out;
}

Deno.test("frame reader: mutated valid frames give only ProtocolError, and every message lies within its frame", () => {
  fc.assert(
    fc.property(
      validStream,
      fc.array(mutation, { minLength: 1, maxLength: 4 }),
      fc.array(fc.nat(), { maxLength: 6 }),
      (frames, mutations, offsets) => {
        readAll(cut(mutate(concat(frames), mutations), offsets));
      },
    ),
    RUNS,
  );
});

Deno.test("frame reader: a header field forced out of range (short entry, long stream name, seq ≥ 2^53) is refused", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 1, maxLength: 50 }),
      fc.constantFrom("short", "stream", "seq"),
      (data, how) => {
        const frame = new Uint8Array(messageFrameSize(3, data.length));
        encodeMessage(frame, 0, { seq: 1, time: 1, stream: new Uint8Array(3), data });
        const view = new DataView(frame.buffer);
        let bytes = frame;
        if (how === "short") {
          const length = MESSAGE_HEADER_BYTES - 4 - 1 - (data[0]! % (MESSAGE_HEADER_BYTES - 5));
          bytes = frame.slice(0, 4 + length);
          new DataView(bytes.buffer).setUint32(0, length);
        } else if (how === "stream") {
          frame[21] = 3 + data.length + 1 + (data[0]! % 100);
          if (frame[21]! > 255) frame[21] = 255;
        } else {
          view.setUint32(5, 0x20_0000 + data[0]!);
        }
        const { frames, error } = readAll([bytes]);
        assert.ok(error instanceof ProtocolError, `no error for ${how}`);
        assert.equal(frames.length, 0);
      },
    ),
    RUNS,
  );
});

// Pull's checks of what the server says.

const validHello = fc.record({
  epoch: fc.stringMatching(/^[\x21-\x7e]{1,128}$/),
  first: fc.maxSafeNat(),
  extra: fc.maxSafeNat(),
  startIn: fc.double({ min: 0, max: 1, noNaN: true }),
  maxFrame: fc.integer({ min: MESSAGE_HEADER_BYTES, max: 2 ** 31 }),
  keepAliveMs: fc.maxSafeNat(),
}).map(({ epoch, first, extra, startIn, maxFrame, keepAliveMs }) => {
  const next = Math.min(Number.MAX_SAFE_INTEGER, first + extra);
  const start = Math.floor(first + (next - first) * startIn);
  return { proto: "reclog", v: 1, epoch, first, next, start, maxFrame, keepAliveMs };
});

/** JSON values shaped like a hello, with any field replaced by any JSON value. */
const helloLike = fc.tuple(
  validHello,
  fc.dictionary(
    fc.constantFrom("proto", "v", "epoch", "first", "next", "start", "maxFrame", "keepAliveMs"),
    fc.oneof(
      fc.jsonValue(),
      fc.constantFrom(-1, 1.5, 2 ** 53, 2 ** 63, Number.MAX_SAFE_INTEGER, "", "x".repeat(129)),
    ),
  ),
).map(([hello, changes]) => ({ ...hello, ...changes }));

function assertValidHello(hello: ReturnType<typeof parseServerHello>): void {
  assert.equal(hello.proto, "reclog");
  assert.equal(hello.v, 1);
  assert.ok(typeof hello.epoch === "string" && hello.epoch.length >= 1);
  assert.ok(hello.epoch.length <= MAX_EPOCH_LENGTH && /^[\x21-\x7e]+$/.test(hello.epoch));
  for (const field of ["first", "next", "start", "maxFrame", "keepAliveMs"] as const) {
    assert.ok(Number.isSafeInteger(hello[field]) && hello[field] >= 0, field);
  }
  assert.ok(hello.first <= hello.next && hello.start <= hello.next);
}

Deno.test("server hello: arbitrary JSON gives a ProtocolError or a hello whose every field is valid", () => {
  fc.assert(
    fc.property(fc.oneof(fc.jsonValue(), helloLike), (value) => {
      let hello;
      try {
        hello = parseServerHello(value);
      } catch (error) {
        assert.ok(error instanceof ProtocolError, String(error));
        return;
      }
      assertValidHello(hello);
    }),
    { numRuns: 500 },
  );
});

Deno.test("server hello: every valid hello is accepted as it is", () => {
  fc.assert(
    fc.property(validHello, (value) => {
      assert.deepEqual(parseServerHello(JSON.parse(JSON.stringify(value))), value);
    }),
    RUNS,
  );
});

Deno.test("lost report: arbitrary JSON gives a ProtocolError or a consistent report", () => {
  const lostLike = fc.record({
    count: fc.oneof(fc.nat(), fc.jsonValue()),
    from: fc.oneof(fc.nat(), fc.jsonValue()),
    to: fc.oneof(fc.nat(), fc.jsonValue()),
    unknown: fc.oneof(fc.boolean(), fc.jsonValue()),
    toTime: fc.oneof(fc.nat(), fc.jsonValue()),
    reason: fc.oneof(fc.string(), fc.jsonValue()),
  }, { requiredKeys: [] });
  fc.assert(
    fc.property(fc.oneof(fc.jsonValue(), lostLike), (value) => {
      let report;
      try {
        report = parseLostReport(value);
      } catch (error) {
        assert.ok(error instanceof ProtocolError, String(error));
        return;
      }
      assert.equal(typeof report.reason, "string");
      if (report.unknown) {
        assert.equal(report.count, 0);
      } else {
        assert.ok(Number.isSafeInteger(report.from) && report.from! >= 1);
        assert.equal(report.count, report.to! - report.from! + 1);
      }
    }),
    { numRuns: 500 },
  );
});

Deno.test("sequence rule: what is accepted is consecutive from the start, except across an announced gap", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 1000 }),
      fc.array(
        fc.oneof(
          fc.record({ seq: fc.integer({ min: 0, max: 1100 }) }),
          fc.record({
            lost: fc.record({ from: fc.integer({ min: 1, max: 1100 }), span: fc.nat(50) }),
          }),
        ),
        { maxLength: 40 },
      ),
      (start, events) => {
        let expected = start;
        let last = start - 1;
        for (const event of events) {
          try {
            if ("seq" in event) {
              const next = acceptSequence(expected, event.seq, false);
              assert.equal(event.seq, last + 1, "only the next number is accepted");
              last = event.seq;
              expected = next;
            } else {
              const { from, span } = event.lost;
              const report = { count: span + 1, from, to: from + span, reason: "x" };
              const next = expectedAfterLost(expected, report);
              assert.ok(from <= expected && next === from + span + 1 && next >= expected);
              last = next - 1;
              expected = next;
            }
          } catch (error) {
            assert.ok(error instanceof ProtocolError, String(error));
            break; // the connection ends at the first violation
          }
          assert.equal(expected, last + 1);
        }
      },
    ),
    RUNS,
  );
});
