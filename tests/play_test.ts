/**
 * `reclog play`: recordings made by the real `tlog-rec` are played back byte
 * for byte (bare, inside syslog lines, from stdin, while growing), with their
 * timing, and compared with `tlog-play`; several recordings, gaps and
 * malformed lines give clear errors. Also unit tests of `lib/tlog/tlog.ts`.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  decodeTlogMessage,
  findTlogMessage,
  TlogFormatError,
  type TlogMessage,
  type TlogRecord,
} from "../lib/tlog/tlog.ts";
import { describeSequenceCheck, MessageSequence, recordingKey } from "../lib/tlog/recording.ts";
import { startPull, startServe } from "./relay.ts";
import {
  makeCerts,
  readOrEmpty,
  reclogArgv,
  requirePeer,
  runProgram,
  runReclog,
  startProgram,
  startReclog,
  tempDir,
  waitFor,
} from "./helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// ---------------------------------------------------------------------------
// Helpers

/** A finished tlog-rec recording: its log lines and the bytes the command wrote. */
interface Recording {
  lines: string[];
  /** What the command wrote (tlog-rec passes it through to its stdout). */
  output: Uint8Array;
  rec: string;
}

/** Records `sh -c script` with the real tlog-rec (no terminal: it records the pipe). */
async function record(script: string, extra: string[] = []): Promise<Recording> {
  await using dir = await tempDir();
  const path = `${dir.path}/rec.log`;
  const out = await new Deno.Command(requirePeer("tlog-rec"), {
    args: ["--writer=file", `--file-path=${path}`, ...extra, "--", "sh", "-c", script],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, `tlog-rec failed: ${decoder.decode(out.stderr)}`);
  const lines = (await Deno.readTextFile(path)).split("\n").filter((line) => line !== "");
  assert.ok(lines.length > 0, "tlog-rec wrote no messages");
  return { lines, output: out.stdout, rec: JSON.parse(lines[0]!).rec };
}

const memo = new Map<string, Promise<Recording>>();
/** {@linkcode record}, once per script and flags. */
function recorded(script: string, extra: string[] = []): Promise<Recording> {
  const key = JSON.stringify([script, extra]);
  if (!memo.has(key)) memo.set(key, record(script, extra));
  return memo.get(key)!;
}

/** Text, colour escapes, UTF-8, invalid UTF-8 and NUL, in one message. */
const MIXED =
  "printf 'plain text\\n'; printf '\\033[1;31mred\\033[0m and \\033[42mgreen\\033[0m\\n'; " +
  "printf 'UTF-8: h\\303\\251, \\342\\202\\254, \\360\\237\\230\\200\\n'; printf '\\377\\376\\000'; " +
  "printf 'cut \\303 mid\\200\\201\\n'; printf '\\177end\\n'";
/** Enough output for several 256-byte messages, binary across them. */
const LONG =
  "i=0; while [ $i -lt 40 ]; do printf 'line %02d \\303\\251\\342\\202\\254 \\377\\n' $i; " +
  "i=$((i+1)); done";

function concat(chunks: Uint8Array[]): Uint8Array {
  const data = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    data.set(chunk, offset);
    offset += chunk.length;
  }
  return data;
}

function show(bytes: Uint8Array): string {
  return JSON.stringify(String.fromCharCode(...bytes.slice(0, 400)));
}

function assertBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  assert.ok(
    actual.length === expected.length && actual.every((byte, i) => byte === expected[i]),
    `${what}: bytes differ\n  actual:   ${show(actual)}\n  expected: ${show(expected)}`,
  );
}

/** Runs reclog play to its end; returns the exit code, raw stdout and stderr. */
async function play(
  args: string[],
): Promise<{ code: number; stdout: Uint8Array; stderr: string }> {
  await using running = startReclog(["play", ...args]);
  const status = await running.wait(20_000);
  return { code: status.code, stdout: concat(running.stdoutBytes), stderr: running.stderr };
}

async function writeLog(dir: string, name: string, lines: string[]): Promise<string> {
  const path = `${dir}/${name}`;
  await Deno.writeTextFile(path, lines.map((line) => `${line}\n`).join(""));
  return path;
}

/** A synthetic tlog message line. */
function tlogLine(fields: Partial<TlogMessage> & { id: number; timing: string }): string {
  return JSON.stringify({
    ver: "2.3",
    host: "box",
    rec: "synthetic-1",
    user: "alice",
    term: "xterm",
    session: 7,
    pos: 0,
    time: 1700000000,
    in_txt: "",
    in_bin: [],
    out_txt: "",
    out_bin: [],
    ...fields,
  });
}

function outputOf(records: TlogRecord[]): string {
  return decoder.decode(concat(records.flatMap((r) => r.kind === "output" ? [r.bytes] : [])));
}

// ---------------------------------------------------------------------------
// lib/tlog/tlog.ts

Deno.test("tlog: timing reassembles text, binary, input and windows in order", () => {
  const records = decodeTlogMessage({
    host: "h",
    user: "u",
    session: 1,
    id: 1,
    pos: 0,
    timing: "=80x24>3]2/3+20<2[1/1>2=100x30",
    in_txt: "ls\uFFFD",
    in_bin: [0xc3],
    // 😀 is one character (two UTF-16 units); \uFFFD\uFFFD stand for 3 bytes.
    out_txt: "a\u00e9\u{1F600}\uFFFD\uFFFD\u0000\n",
    out_bin: [0xff, 0xe2, 0x82],
  });
  assert.deepEqual(records.map((r) => r.kind), [
    "window",
    "output",
    "output",
    "delay",
    "input",
    "input",
    "output",
    "window",
  ]);
  const bytes = concat(records.flatMap((r) => r.kind === "output" ? [r.bytes] : []));
  assertBytes(
    bytes,
    Uint8Array.from([0x61, 0xc3, 0xa9, 0xf0, 0x9f, 0x98, 0x80, 0xff, 0xe2, 0x82, 0x00, 0x0a]),
    "decoded output",
  );
  assert.deepEqual(records[0], { kind: "window", columns: 80, rows: 24 });
  assert.deepEqual(records[3], { kind: "delay", ms: 20 });
  assert.equal(decoder.decode((records[4] as { bytes: Uint8Array }).bytes), "ls");
});

Deno.test("tlog: a timing that does not fit its data is refused", () => {
  const base = { host: "h", user: "u", session: 1, id: 1, pos: 0, in_txt: "", in_bin: [] };
  const bad = (timing: string, out_txt: string, out_bin: number[] = []) =>
    assert.throws(
      () => decodeTlogMessage({ ...base, timing, out_txt, out_bin }),
      TlogFormatError,
    );
  bad(">5", "abc");
  bad(">2", "abc");
  bad("]1/2", "\uFFFD", [255]);
  bad(">1x", "a");
  bad("]1", "\uFFFD", [255]);
  bad("=80/24", "");
  assert.equal(outputOf(decodeTlogMessage({ ...base, timing: "", out_txt: "", out_bin: [] })), "");
});

Deno.test("tlog: messages are found bare or after a syslog header; foreign lines are not", () => {
  const json = tlogLine({ id: 1, timing: ">2", out_txt: "hi" });
  assert.equal(findTlogMessage(json)?.out_txt, "hi");
  const syslog = `<14>Nov 21 10:00:00 host tlog-rec-session[123]: ${json}`;
  assert.equal(findTlogMessage(syslog)?.id, 1);
  assert.equal(findTlogMessage(`2024-01-01T00:00:00+00:00 host tlog[1]: {x ${json}`)?.id, 1);
  assert.equal(findTlogMessage("<13>Nov 21 10:00:00 host sshd[9]: Accepted key {abc}"), undefined);
  assert.equal(findTlogMessage("   "), undefined);
  assert.throws(() => findTlogMessage(json.slice(0, -5)), /not valid JSON/);
  assert.throws(() => findTlogMessage('{"a":1}'), /no "host" field|no "timing"/);
  assert.throws(() => findTlogMessage(tlogLine({ id: 0, timing: "" })), /"id"/);
  assert.throws(() => findTlogMessage(tlogLine({ id: 1, timing: "", out_bin: [256] })), /out_bin/);
  assert.equal(recordingKey({ host: "h", session: 4294967295, rec: "r" }), "h r");
});

Deno.test("tlog: the message sequence names gaps and disorder", () => {
  const sequence = new MessageSequence();
  assert.deepEqual(sequence.check({ id: 1, pos: 0 }), { kind: "next" });
  assert.deepEqual(sequence.check({ id: 2, pos: 5 }), { kind: "next" });
  const gap = sequence.check({ id: 5, pos: 9 });
  assert.deepEqual(gap, { kind: "gap", firstMissing: 3, lastMissing: 4 });
  assert.equal(describeSequenceCheck(gap, 5), "messages 3-4 are missing (id 5 follows id 2)");
  assert.equal(sequence.check({ id: 4, pos: 9 }).kind, "out-of-order");
  assert.equal(sequence.check({ id: 6, pos: 1 }).kind, "pos-backwards");
  assert.equal(
    describeSequenceCheck(new MessageSequence().check({ id: 3, pos: 0 }), 3),
    "messages 1-2 are missing (the recording starts at id 3)",
  );
});

// ---------------------------------------------------------------------------
// Playback of real recordings

Deno.test("play: a tlog-rec recording plays back exactly the bytes the command wrote", async () => {
  const mixed = await recorded(MIXED);
  const direct = await new Deno.Command("sh", { args: ["-c", MIXED], stdout: "piped" }).output();
  assertBytes(mixed.output, direct.stdout, "tlog-rec passes the command's output through");
  const long = await recorded(LONG, ["--payload=256"]);
  assert.ok(long.lines.length >= 3, `expected several messages, got ${long.lines.length}`);
  await using dir = await tempDir();
  for (const [name, recording] of [["mixed", mixed], ["long", long]] as const) {
    const path = await writeLog(dir.path, `${name}.log`, recording.lines);
    const result = await play(["--speed", "1000", path]);
    assert.equal(result.code, 0, result.stderr);
    assertBytes(result.stdout, recording.output, `reclog play ${name}`);
  }
});

Deno.test("play: the output matches tlog-play's (less its terminal restore)", async () => {
  let script: string;
  try {
    script = requirePeer("script");
  } catch {
    throw new Error("'script' is required by this test: run 'apt-get install -y bsdutils'");
  }
  requirePeer("tlog-play");
  await using dir = await tempDir();
  for (
    const [name, recording] of [["mixed", await recorded(MIXED)], [
      "long",
      await recorded(LONG, ["--payload=256"]),
    ]] as const
  ) {
    const path = await writeLog(dir.path, `${name}.log`, recording.lines);
    // tlog-play needs a terminal; under `script` it puts it in raw mode, so LF stays LF.
    await using tlogPlay = startProgram(script, [
      "-qec",
      `tlog-play --reader=file --file-path=${path}`,
      "/dev/null",
    ]);
    const status = await tlogPlay.wait(15_000);
    assert.equal(status.code, 0, tlogPlay.stderr);
    let theirs = concat(tlogPlay.stdoutBytes);
    // deno-lint-ignore no-control-regex
    const restore = /\x1b\[0m\x1b\[\?25h\r?\n\0?$/.exec(String.fromCharCode(...theirs.slice(-16)));
    assert.ok(
      restore,
      `tlog-play's output ends in its restore sequence: ${show(theirs.slice(-16))}`,
    );
    theirs = theirs.slice(0, theirs.length - restore[0].length);
    const ours = await play(["--speed", "1000", path]);
    assertBytes(ours.stdout, theirs, `${name}: reclog play vs tlog-play`);
  }
});

Deno.test("play: the recording inside syslog lines plays back identically", async () => {
  const recording = await recorded(LONG, ["--payload=256"]);
  await using dir = await tempDir();
  const lines = recording.lines.flatMap((line, i) => [
    `<86>Nov 21 10:00:0${i % 10} host sshd[99]: session opened for user alice {uid=1000}`,
    `<14>Nov 21 10:00:0${i % 10} host tlog-rec-session[123]: ${line}`,
  ]);
  const path = await writeLog(dir.path, "syslog.log", lines);
  const result = await play(["--speed", "1000", path]);
  assert.equal(result.code, 0, result.stderr);
  assertBytes(result.stdout, recording.output, "syslog-embedded playback");
});

Deno.test("play: stdin, whole or streamed with --session, plays the same", async () => {
  const recording = await recorded(LONG, ["--payload=256"]);
  const input = recording.lines.map((line) => `${line}\n`).join("");
  const whole = await runReclog(["play", "--speed", "1000"], { stdin: input });
  assert.equal(whole.code, 0, whole.stderr);
  assert.equal(whole.stdout, decoder.decode(recording.output));
  const streamed = await runReclog(["play", "--speed", "1000", "--session", recording.rec, "-"], {
    stdin: input,
  });
  assert.equal(streamed.code, 0, streamed.stderr);
  assert.equal(streamed.stdout, decoder.decode(recording.output));
});

Deno.test("play: the recorded timing is kept within 50 ms at --speed 1", async () => {
  const recording = await recorded("echo a; sleep 1; echo b; sleep 2; echo c");
  const message = findTlogMessage(recording.lines[0]!)!;
  // Recorded moments of the three outputs, from the timing (e.g. ">2+1002>2+2001>2").
  const expected: number[] = [];
  let at = 0;
  for (const line of recording.lines) {
    const m = findTlogMessage(line)!;
    at = Math.max(at, m.pos);
    for (const record of decodeTlogMessage(m)) {
      if (record.kind === "delay") at += record.ms;
      if (record.kind === "output") expected.push(at);
    }
  }
  assert.equal(expected.length, 3, `timing ${message.timing}`);
  await using dir = await tempDir();
  const path = await writeLog(dir.path, "timed.log", recording.lines);
  const child = new Deno.Command(Deno.execPath(), {
    args: reclogArgv(["play", "--speed", "1", path]),
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const arrivals: { at: number; text: string }[] = [];
  const [, stderr, status] = await Promise.all([
    (async () => {
      for await (const chunk of child.stdout) {
        arrivals.push({ at: performance.now(), text: decoder.decode(chunk) });
      }
    })(),
    new Response(child.stderr).text(),
    child.status,
  ]);
  assert.equal(status.code, 0, stderr);
  assert.equal(arrivals.map((a) => a.text).join(""), "a\nb\nc\n");
  const when = (text: string) => arrivals.find((a) => a.text.includes(text))!.at;
  const gaps = [when("b") - when("a"), when("c") - when("b")];
  const errors = gaps.map((gap, i) => gap - (expected[i + 1]! - expected[i]!));
  console.log(
    `timing: recorded gaps ${expected[1]! - expected[0]!}, ${expected[2]! - expected[1]!} ms; ` +
      `played ${gaps.map((g) => g.toFixed(1)).join(", ")} ms; error ${
        errors.map((e) => e.toFixed(1)).join(", ")
      } ms`,
  );
  for (const error of errors) assert.ok(Math.abs(error) <= 50, `timing off by ${error} ms`);
});

Deno.test("play: --skip-idle shortens long pauses, --speed scales", async () => {
  await using dir = await tempDir();
  const path = await writeLog(dir.path, "idle.log", [
    tlogLine({ id: 1, timing: ">2+5000>2+400>2", out_txt: "a\nb\nc\n" }),
  ]);
  const started = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: reclogArgv(["play", "--skip-idle", "0.3", "--speed", "2", path]),
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const arrivals: { at: number; text: string }[] = [];
  for await (const chunk of child.stdout) {
    arrivals.push({ at: performance.now(), text: decoder.decode(chunk) });
  }
  assert.equal((await child.status).code, 0);
  assert.equal(arrivals.map((a) => a.text).join(""), "a\nb\nc\n");
  const when = (text: string) => arrivals.find((a) => a.text.includes(text))!.at;
  // 5000 ms shortened to 300, then halved: 150 ms; 400 -> 300 -> 150 ms.
  const gaps = [when("b") - when("a"), when("c") - when("b")];
  // Unshortened they would be 2500 and 200 ms; allow a loaded machine some slack.
  for (const gap of gaps) assert.ok(gap < 1_000, `gaps ${gaps}`);
  assert.ok(when("c") - when("a") > 200, `gaps ${gaps}`);
  assert.ok(performance.now() - started < 4_000);
});

// ---------------------------------------------------------------------------
// Several recordings, gaps, malformed input

Deno.test("play: two interleaved recordings are listed, --session picks one", async () => {
  const one = await recorded(LONG, ["--payload=256"]);
  const two = await recorded(MIXED);
  const three = await record("printf 'third\\n'");
  await using dir = await tempDir();
  const lines: string[] = [];
  for (let i = 0; i < Math.max(one.lines.length, three.lines.length); i++) {
    if (one.lines[i]) lines.push(one.lines[i]!);
    if (three.lines[i]) lines.push(three.lines[i]!);
  }
  const path = await writeLog(dir.path, "two.log", lines);
  const listed = await play([path]);
  assert.equal(listed.code, 2);
  assert.equal(listed.stdout.length, 0);
  assert.match(listed.stderr, /'.*two\.log' holds 2 recordings; choose one with --session/);
  assert.ok(listed.stderr.includes(one.rec) && listed.stderr.includes(three.rec), listed.stderr);
  assert.match(
    listed.stderr,
    new RegExp(`${one.rec}\\s+\\S+\\s+\\d{4}-\\d\\d-\\d\\d [\\d:]+\\s+${one.lines.length}\\n`),
  );

  const chosen = await play(["--speed", "1000", "--session", three.rec, path]);
  assert.equal(chosen.code, 0, chosen.stderr);
  assertBytes(chosen.stdout, three.output, "--session picks the second recording");
  const host = JSON.parse(one.lines[0]!).host;
  const first = await play(["--speed", "1000", "--session", one.rec, "--host", host, path]);
  assert.equal(first.code, 0, first.stderr);
  assertBytes(first.stdout, one.output, "--session picks the first recording");

  const none = await play(["--session", two.rec, path]);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /no recording in .* matches --session/);
});

Deno.test("play: a missing message is an error naming the gap; --lax marks it", async () => {
  const recording = await recorded(LONG, ["--payload=256"]);
  await using dir = await tempDir();
  const lines = recording.lines.filter((_, i) => i !== 1);
  const path = await writeLog(dir.path, "gap.log", lines);
  const strict = await play(["--speed", "1000", path]);
  assert.equal(strict.code, 1);
  assert.equal(strict.stdout.length, 0, "nothing is played before the gap is found");
  assert.match(
    strict.stderr,
    /^reclog play: '.*gap\.log' line 2: recording \S+: message 2 is missing \(id 3 follows id 1\)\n$/,
  );

  const lax = await play(["--speed", "1000", "--lax", path]);
  assert.equal(lax.code, 0, lax.stderr);
  const text = decoder.decode(lax.stdout);
  assert.match(text, /\r\n\[reclog play: message 2 is missing \(id 3 follows id 1\)\]\r\n/);
  assert.match(lax.stderr, /message 2 is missing/);
  const expected = decoder.decode(concat(
    lines.map((line) =>
      concat(
        decodeTlogMessage(findTlogMessage(line)!).flatMap((r) =>
          r.kind === "output" ? [r.bytes] : []
        ),
      )
    ),
  ));
  assert.equal(text.replace(/\r\n\[reclog play: [^\]]*\]\r\n/, ""), expected);

  const swapped = [recording.lines[0]!, recording.lines[2]!, recording.lines[1]!];
  const disorder = await play([await writeLog(dir.path, "swap.log", swapped)]);
  assert.equal(disorder.code, 1);
  assert.match(disorder.stderr, /line 2: .*message 2 is missing/);
});

Deno.test("play: errors name the file and line; --lax skips a malformed line", async () => {
  await using dir = await tempDir();
  const missing = await runReclog(["play", `${dir.path}/x.log`]);
  assert.equal(missing.code, 2);
  assert.equal(missing.stderr, `reclog play: Cannot read '${dir.path}/x.log': file not found\n`);

  const path = await writeLog(dir.path, "bad.log", [
    tlogLine({ id: 1, timing: ">3", out_txt: "one" }),
    '{"ver":"2.3","host":"box","timing":">2","out_txt":"tw',
    tlogLine({ id: 2, timing: ">5", out_txt: "three" }),
  ]);
  const strict = await runReclog(["play", path]);
  assert.equal(strict.code, 1);
  assert.match(strict.stderr, /^reclog play: '.*bad\.log' line 2: not valid JSON \(.*\)\n$/);
  assert.equal(strict.stdout, "");
  const lax = await runReclog(["play", "--lax", path]);
  assert.equal(lax.code, 0, lax.stderr);
  assert.equal(lax.stdout, "onethree");
  assert.match(lax.stderr, /bad\.log' line 2: not valid JSON .*line skipped \(--lax\)/);

  const empty = await runReclog(["play", await writeLog(dir.path, "empty.log", [])]);
  assert.equal(empty.code, 1);
  assert.match(empty.stderr, /empty\.log' holds no tlog messages/);

  for (const args of [["--speed", "0"], ["--speed", "fast"], ["--skip-idle", "-1"], ["--bogus"]]) {
    const result = await runReclog(["play", ...args, path]);
    assert.equal(result.code, 2, `${args}: ${result.stderr}`);
    assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
  }
  const help = await runReclog(["play", "--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Usage: reclog play \[FILE\|-\]/);
  for (const flag of ["--session", "--host", "--speed", "--follow", "--skip-idle", "--lax"]) {
    assert.ok(help.stdout.includes(flag), flag);
  }
});

Deno.test("play: terminal size changes are reported on stderr, not played", async () => {
  await using dir = await tempDir();
  const path = await writeLog(dir.path, "window.log", [
    tlogLine({ id: 1, timing: "=80x24>3=80x24+10=120x40>3", out_txt: "ab\ncd\n" }),
  ]);
  const result = await runReclog(["play", path]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout, "ab\ncd\n");
  const reports = result.stderr.trim().split("\n");
  assert.equal(reports.length, 2, result.stderr);
  assert.match(reports[0]!, /recorded terminal is 80x24 .*from 00:00:00\.000/);
  assert.match(reports[1]!, /recorded terminal is 120x40 .*from 00:00:00\.010.*cannot resize/);
});

Deno.test("play: --follow plays what is appended and stops on SIGTERM", async () => {
  const recording = await recorded(LONG, ["--payload=256"]);
  const outputs = recording.lines.map((line) =>
    concat(
      decodeTlogMessage(findTlogMessage(line)!).flatMap((r) =>
        r.kind === "output" ? [r.bytes] : []
      ),
    )
  );
  await using dir = await tempDir();
  const path = await writeLog(dir.path, "live.log", recording.lines.slice(0, 1));
  await using running = startReclog(["play", "--follow", "--speed", "1000", path]);
  const received = () => concat(running.stdoutBytes);
  await waitFor(() => received().length >= outputs[0]!.length, {
    what: () => `the first message played; stderr: ${running.stderr}`,
  });
  // The rest, the last line in two writes (a line is only played once whole).
  const rest = recording.lines.slice(1).map((line) => `${line}\n`).join("");
  const file = await Deno.open(path, { append: true });
  try {
    await file.write(encoder.encode(rest.slice(0, -40)));
    await new Promise((resolve) => setTimeout(resolve, 150));
    await file.write(encoder.encode(rest.slice(-40)));
  } finally {
    file.close();
  }
  await waitFor(() => received().length >= recording.output.length, {
    what: () => `all messages played; got ${received().length} of ${recording.output.length}`,
  });
  assert.equal(running.exited, undefined, "still following");
  running.kill("SIGTERM");
  const status = await running.wait();
  assert.equal(status.code, 0, running.stderr);
  assertBytes(received(), recording.output, "followed playback");
});

Deno.test("play: a recording relayed by logger → serve → pull --mirror plays back identically", async () => {
  const recording = await recorded(MIXED);
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const served = await startServe(certs);
  await using _serve = served.process;
  const mirror = `${dir.path}/home`;
  await using _pull = await startPull(certs, served.port, {
    to: null,
    args: ["--live", "--mirror", mirror],
  });
  // The recording goes through syslog as tlog's syslog writer sends it: one
  // message per JSON record, tagged tlog-rec-session.
  for (const line of recording.lines) {
    const out = await runProgram("logger", [
      "--rfc3164",
      "-n",
      "127.0.0.1",
      "-P",
      String(served.udpPort),
      "-d",
      "--size",
      "65536",
      "-t",
      "tlog-rec-session",
      line,
    ]);
    assert.equal(out.code, 0, out.stderr);
  }
  const file = `${mirror}/syslog`;
  await waitFor(
    async () => (await readOrEmpty(file)).split("\n").length > recording.lines.length,
    { what: `${recording.lines.length} relayed records in ${file}` },
  );
  assert.match(
    await readOrEmpty(file),
    /^<13>\w{3} [ \d]\d \d\d:\d\d:\d\d \S+ tlog-rec-session: \{/,
  );
  const played = await play(["--speed", "1000", file]);
  assert.equal(played.code, 0, played.stderr);
  assertBytes(played.stdout, recording.output, "relayed recording");
});
