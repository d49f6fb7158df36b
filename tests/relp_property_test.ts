/**
 * Property tests of the RELP parser (lib/framing/relp.ts) and of RelpServer on
 * peer bytes: arbitrary bytes, arbitrary splits of valid streams, mutations.
 * Properties: nothing but RelpFrameError escapes, every frame emitted is
 * well-formed and re-encodes to exactly the bytes it was parsed from, and
 * the split of the input never changes the frames.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  encodeRelpFrame,
  parseRelpOffers,
  parseRelpResponse,
  RELP_MAX_TXNR,
  RelpFrameError,
  RelpFrameParser,
} from "../lib/framing/relp.ts";
import { RelpServer } from "../lib/transport/relp_server.ts";
import { RelpClient } from "../lib/transport/relp_client.ts";

const MAX_DATA = 300;

interface Frame {
  txnr: number;
  command: string;
  data: Uint8Array;
}

/** Parses `input` cut at `cuts`; returns the frames and the error, if any. */
function parse(
  input: Uint8Array,
  cuts: number[] = [],
): { frames: Frame[]; error?: RelpFrameError } {
  const parser = new RelpFrameParser({ maxData: MAX_DATA });
  const frames: Frame[] = [];
  const points = [...new Set(cuts.map((c) => c % (input.length + 1)))].sort((a, b) => a - b);
  let from = 0;
  try {
    for (const to of [...points, input.length]) {
      parser.push(input.subarray(from, to), (txnr, command, data) => {
        frames.push({ txnr, command, data: data.slice() });
      });
      from = to;
    }
  } catch (error) {
    if (!(error instanceof RelpFrameError)) throw error;
    return { frames, error };
  }
  return { frames };
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** Every frame is well-formed, and their encodings are a prefix of `input`. */
function assertWellFormed(frames: Frame[], input: Uint8Array): void {
  const encoded = concat(frames.map((f) => {
    assert.ok(Number.isInteger(f.txnr) && f.txnr >= 0 && f.txnr <= RELP_MAX_TXNR);
    assert.match(f.command, /^[a-z]{1,32}$/);
    assert.ok(f.data.length <= MAX_DATA);
    return encodeRelpFrame(f.txnr, f.command, f.data);
  }));
  assert.ok(encoded.length <= input.length);
  assert.deepEqual(encoded, input.subarray(0, encoded.length));
}

const frameArb = fc.record({
  txnr: fc.integer({ min: 0, max: RELP_MAX_TXNR }),
  command: fc.stringMatching(/^[a-z]{1,32}$/),
  data: fc.uint8Array({ maxLength: MAX_DATA }),
});

/** A byte string made of RELP-ish pieces, so random input reaches deep states. */
const nearRelpArb = fc.array(
  fc.oneof(
    fc.uint8Array({ maxLength: 20 }),
    fc.constantFrom(
      ..." \n0123456789syslogrspopenclose".split("").map((c) => new TextEncoder().encode(c)),
    ),
    frameArb.map((f) => encodeRelpFrame(f.txnr, f.command, f.data)),
  ),
  { maxLength: 12 },
).map(concat);

Deno.test("RelpFrameParser on arbitrary bytes: only RelpFrameError escapes, frames are well-formed", () => {
  fc.assert(
    fc.property(
      fc.oneof(fc.uint8Array({ maxLength: 600 }), nearRelpArb),
      fc.array(fc.nat(), { maxLength: 8 }),
      (input, cuts) => {
        const { frames } = parse(input, cuts);
        assertWellFormed(frames, input);
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("RelpFrameParser: any split of a valid frame stream gives the same frames", () => {
  fc.assert(
    fc.property(
      fc.array(frameArb, { minLength: 1, maxLength: 10 }),
      fc.array(fc.nat(), { maxLength: 20 }),
      (frames, cuts) => {
        const input = concat(frames.map((f) => encodeRelpFrame(f.txnr, f.command, f.data)));
        const whole = parse(input);
        const split = parse(input, cuts);
        assert.equal(whole.error, undefined);
        assert.equal(split.error, undefined);
        assert.deepEqual(split.frames, frames);
        assert.deepEqual(whole.frames, frames);
      },
    ),
    { numRuns: 400 },
  );
});

Deno.test("RelpFrameParser with oversize truncate: any split of a stream with over-long frames gives each frame cut to maxData, with its DATALEN", () => {
  const limit = 40;
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          txnr: fc.integer({ min: 0, max: RELP_MAX_TXNR }),
          command: fc.stringMatching(/^[a-z]{1,32}$/),
          data: fc.uint8Array({ maxLength: 200 }),
        }),
        { minLength: 1, maxLength: 10 },
      ),
      fc.array(fc.nat(), { maxLength: 20 }),
      (frames, cuts) => {
        const input = concat(frames.map((f) => encodeRelpFrame(f.txnr, f.command, f.data)));
        const parser = new RelpFrameParser({ maxData: limit, oversize: "truncate" });
        const seen: { txnr: number; command: string; data: Uint8Array; datalen: number }[] = [];
        const points = [...new Set(cuts.map((c) => c % (input.length + 1)))].sort((a, b) => a - b);
        let from = 0;
        for (const to of [...points, input.length]) {
          parser.push(input.subarray(from, to), (txnr, command, data, datalen) => {
            seen.push({ txnr, command, data: data.slice(), datalen });
          });
          from = to;
        }
        assert.ok(parser.idle);
        assert.deepEqual(
          seen,
          frames.map((f) => ({
            txnr: f.txnr,
            command: f.command,
            data: f.data.slice(0, limit),
            datalen: f.data.length,
          })),
        );
      },
    ),
    { numRuns: 400 },
  );
});

Deno.test("RelpFrameParser: a mutated valid stream gives the frames before the damage and a RelpFrameError or well-formed frames", () => {
  fc.assert(
    fc.property(
      fc.array(frameArb, { minLength: 1, maxLength: 6 }),
      fc.nat(),
      fc.constantFrom("flip", "insert", "delete", "truncate"),
      fc.integer({ min: 0, max: 255 }),
      fc.array(fc.nat(), { maxLength: 6 }),
      (frames, where, how, byte, cuts) => {
        const encoded = frames.map((f) => encodeRelpFrame(f.txnr, f.command, f.data));
        const input = concat(encoded);
        const at = where % input.length;
        let mutated: Uint8Array;
        if (how === "flip") {
          mutated = input.slice();
          mutated[at] = mutated[at] === byte ? byte ^ 1 : byte;
        } else if (how === "insert") {
          mutated = concat([input.subarray(0, at), Uint8Array.of(byte), input.subarray(at)]);
        } else if (how === "delete") {
          mutated = concat([input.subarray(0, at), input.subarray(at + 1)]);
        } else {
          mutated = input.subarray(0, at);
        }
        const { frames: got } = parse(mutated, cuts);
        assertWellFormed(got, mutated);
        // frames wholly before the damaged byte come out unchanged
        let end = 0;
        let intact = 0;
        for (const frame of encoded) {
          end += frame.length;
          if (end > at) break;
          intact++;
        }
        assert.ok(got.length >= intact, `${got.length} frames, ${intact} intact before byte ${at}`);
        assert.deepEqual(got.slice(0, intact), frames.slice(0, intact));
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("parseRelpResponse and parseRelpOffers never throw on arbitrary bytes", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (data) => {
      const rsp = parseRelpResponse(data);
      assert.ok(rsp.code === -1 || (rsp.code >= 0 && rsp.code <= 999));
      assert.ok(rsp.text.length <= 80 + 3);
      const offers = parseRelpOffers(data);
      assert.ok(offers.size <= 64);
    }),
    { numRuns: 500 },
  );
});

Deno.test("RelpServer fed arbitrary bytes after open never crashes, takes only whole frames, and serves the next client", async () => {
  const taken: Uint8Array[] = [];
  const server = new RelpServer({
    port: 0,
    maxFrame: MAX_DATA,
    onBatch: (messages) => {
      taken.push(...messages);
      return Promise.resolve();
    },
  });
  const addr = await server.listen();
  const open = new TextEncoder().encode("1 open 30 relp_version=0\ncommands=syslog\n");
  try {
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.uint8Array({ maxLength: 400 }), nearRelpArb), async (bytes) => {
        taken.length = 0;
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: addr.port });
        try {
          await conn.write(concat([open, bytes]));
          conn.closeWrite();
          const buffer = new Uint8Array(65536);
          const deadline = Date.now() + 5_000;
          while (Date.now() < deadline && (await conn.read(buffer).catch(() => null)) !== null) {
            // drain until the server closes
          }
        } finally {
          conn.close();
        }
        // what was taken is exactly the syslog frames the parser accepts in order
        const expected = parse(concat([open, bytes])).frames;
        let due = 1;
        const syslog: Uint8Array[] = [];
        for (const frame of expected) {
          if (frame.txnr !== due) break;
          due++;
          if (frame.txnr === 1) continue; // the open
          if (frame.command !== "syslog") break;
          syslog.push(frame.data);
        }
        assert.ok(taken.length <= syslog.length);
        assert.deepEqual(taken.map((m) => m.slice()), syslog.slice(0, taken.length));
      }),
      { numRuns: 100 },
    );
    const client = new RelpClient({ host: "127.0.0.1", port: addr.port });
    taken.length = 0;
    await client.send([new TextEncoder().encode("still serving")]);
    await client.close();
    assert.equal(new TextDecoder().decode(taken[0]), "still serving");
  } finally {
    await server.close();
  }
});
