/**
 * The state files reclog keeps: `pull --state` (resume point) and
 * `serve --file-state` (file checkpoints). Relative paths, atomic replacement,
 * and loaders that take any bytes on disk without crashing or returning an
 * invalid point (invalid content is logged and treated as missing; an
 * unreadable path is a clear error).
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { writeFileAtomic } from "../lib/state/atomic_file.ts";
import {
  FileCheckpoints,
  isFilePosition,
  parseCheckpoints,
} from "../lib/state/file_checkpoints.ts";
import { isResumePoint, parseResumePoint, ResumeState } from "../lib/state/resume_state.ts";
import { makeCerts, serveArgv, startReclog, tempDir, waitFor } from "./helpers.ts";
import { sendUdp } from "./relay.ts";

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    out.push(entry.isDirectory ? `${entry.name}/` : entry.name);
  }
  return out.sort();
}

Deno.test("relative --state and --file-state paths create no stray directories and hold valid content", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const work = `${dir.path}/work`;
  await Deno.mkdir(work);
  await Deno.writeTextFile(`${work}/app.log`, "first line\n");
  await using serve = startReclog([
    ...serveArgv(certs),
    "--syslog-in",
    "127.0.0.1:0",
    "--file",
    "app.log=app",
    "--from-start",
    "--file-state",
    "files.json",
  ], { cwd: work });
  const udpPort = await serve.waitForListening("syslog-in udp");
  const port = await serve.waitForListening("mTLS");
  await using pull = startReclog([
    "pull",
    "--server",
    `127.0.0.1:${port}`,
    "--server-name",
    "localhost",
    "--cert",
    certs.clientCert,
    "--key",
    certs.clientKey,
    "--ca",
    certs.ca,
    "--to",
    "-",
    "--state",
    "pull.state",
  ], { cwd: work });
  await pull.waitForStderr(/connected to /);
  await sendUdp(udpPort, ["<13>Jan  1 00:00:00 host app: over udp"]);
  await waitFor(() => pull.stdout.includes("over udp") && pull.stdout.includes("first line"), {
    timeoutMs: 15_000,
    what: () => `both messages at pull; stdout: ${pull.stdout}`,
  });
  pull.kill("SIGTERM");
  assert.equal((await pull.wait()).code, 0, pull.stderr);
  serve.kill("SIGTERM");
  assert.equal((await serve.wait()).code, 0, serve.stderr);

  // Only the files themselves: no `pull.stat/`, `files.jso/`, no temporary files.
  assert.deepEqual(await names(work), ["app.log", "files.json", "pull.state"]);
  const point = JSON.parse(await Deno.readTextFile(`${work}/pull.state`));
  assert.ok(isResumePoint(point), JSON.stringify(point));
  assert.ok(point.next >= 3, `two messages taken, next ${point.next}`);
  const checkpoints = JSON.parse(await Deno.readTextFile(`${work}/files.json`));
  assert.deepEqual(Object.keys(checkpoints), ["app"]);
  assert.ok(isFilePosition(checkpoints.app));
  assert.equal(checkpoints.app.offset, "first line\n".length);
});

Deno.test("concurrent atomic writes of one file all succeed and leave no temporary file", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/state.json`;
  const contents = Array.from({ length: 20 }, (_, i) => `{"writer":${i}}\n`);
  await Promise.all(contents.map((text) => writeFileAtomic(path, text, { sync: true })));
  assert.ok(contents.includes(await Deno.readTextFile(path)));
  assert.deepEqual(await names(dir.path), ["state.json"]);
  assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
});

Deno.test("a state path that cannot be read is a clear error, not a crash", async () => {
  await using dir = await tempDir();
  await Deno.mkdir(`${dir.path}/pull.state`);
  await assert.rejects(
    () => ResumeState.open(`${dir.path}/pull.state`),
    /Cannot read --state '.*pull\.state': /,
  );
  await assert.rejects(
    () => FileCheckpoints.open(`${dir.path}/pull.state`, () => ({})),
    /Cannot read file checkpoints '.*pull\.state': /,
  );
});

const validPoint = fc.record(
  {
    epoch: fc.string({ minLength: 1, maxLength: 40 }),
    next: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    lastTime: fc.integer({ min: 0, max: 4_000_000_000_000 }),
  },
  { requiredKeys: ["epoch", "next"] },
);

/** Text a state file might hold: garbage, any JSON, and mutations of valid points. */
const stateText = fc.oneof(
  fc.string(),
  fc.json(),
  fc.jsonValue().map((value) => JSON.stringify(value)),
  fc.tuple(validPoint, fc.dictionary(fc.constantFrom("epoch", "next", "lastTime"), fc.jsonValue()))
    .map(([point, overrides]) => JSON.stringify({ ...point, ...overrides })),
  fc.tuple(validPoint.map((p) => JSON.stringify(p)), fc.nat(60), fc.nat(60), fc.string())
    .map(([text, at, cut, insert]) => text.slice(0, at) + insert + text.slice(at + cut)),
);

Deno.test("the resume point parser takes any text: a valid point or none, never a throw", () => {
  fc.assert(
    fc.property(stateText, (text) => {
      const point = parseResumePoint(text);
      if (point !== undefined) {
        assert.ok(isResumePoint(point), JSON.stringify(point));
        assert.doesNotThrow(() => new Date(point.lastTime ?? 0).toISOString());
      }
    }),
    { numRuns: 500 },
  );
  fc.assert(
    fc.property(validPoint, (point) => {
      assert.deepEqual(parseResumePoint(JSON.stringify(point) + "\n"), point);
    }),
    { numRuns: 200 },
  );
  for (const bad of ['{"epoch":12345,"next":1}', '{"epoch":"e","next":9223372036854776000}']) {
    assert.equal(parseResumePoint(bad), undefined, bad);
  }
});

Deno.test("ResumeState.open on any state file content starts from a valid point or afresh", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/pull.state`;
  await fc.assert(
    fc.asyncProperty(stateText, async (text) => {
      await Deno.writeTextFile(path, text);
      const state = await ResumeState.open(path, { intervalMs: 60_000 });
      try {
        const point = state.point;
        assert.ok(point === undefined || isResumePoint(point), JSON.stringify(point));
      } finally {
        await state.close();
      }
    }),
    { numRuns: 150 },
  );
});

const validPosition = fc.record({
  dev: fc.nat(),
  ino: fc.nat(),
  offset: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
});

const checkpointText = fc.oneof(
  fc.string(),
  fc.json(),
  fc.dictionary(fc.string(), fc.jsonValue()).map((value) => JSON.stringify(value)),
  fc.dictionary(fc.string({ maxLength: 10 }), validPosition).map((value) => JSON.stringify(value)),
  fc.tuple(
    fc.dictionary(fc.string({ maxLength: 10 }), validPosition).map((v) => JSON.stringify(v)),
    fc.nat(80),
    fc.nat(20),
    fc.string(),
  ).map(([text, at, cut, insert]) => text.slice(0, at) + insert + text.slice(at + cut)),
  fc.constantFrom("null", "5", "[]", '{"__proto__":{"dev":1,"ino":2,"offset":3}}', '{"a":null}'),
);

Deno.test("the checkpoint parser takes any text: valid positions only, never a throw", () => {
  fc.assert(
    fc.property(checkpointText, (text) => {
      const parsed = parseCheckpoints(text);
      if (parsed === undefined) return;
      for (const position of parsed.valid.values()) assert.ok(isFilePosition(position));
    }),
    { numRuns: 500 },
  );
  fc.assert(
    fc.property(fc.dictionary(fc.string({ maxLength: 10 }), validPosition), (positions) => {
      const parsed = parseCheckpoints(JSON.stringify(positions));
      assert.deepEqual(Object.fromEntries(parsed!.valid), { ...positions });
      assert.deepEqual(parsed!.invalid, []);
    }),
    { numRuns: 200 },
  );
});

Deno.test("FileCheckpoints.open on any checkpoint file content gives valid positions or none", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/files.json`;
  await fc.assert(
    fc.asyncProperty(checkpointText, fc.string({ maxLength: 10 }), async (text, name) => {
      await Deno.writeTextFile(path, text);
      const checkpoints = await FileCheckpoints.open(path, () => ({}), { intervalMs: 60_000 });
      try {
        for (const key of [name, "__proto__", "a", "messages"]) {
          const position = checkpoints.get(key);
          assert.ok(position === undefined || isFilePosition(position), JSON.stringify(position));
        }
      } finally {
        await checkpoints.close();
      }
      // What it saves back is itself a valid checkpoint file.
      const saved = parseCheckpoints(await Deno.readTextFile(path));
      if (text.trim() !== "" && saved === undefined) {
        assert.equal(parseCheckpoints(text), undefined);
      }
    }),
    { numRuns: 150 },
  );
});
