/**
 * `pull --mirror` on a full disk keeps its exactly-once promise: a real tmpfs
 * filled by a filler file while lines flow, pull killed with SIGKILL and
 * restarted while the disk is full, then space returns, and every mirror file
 * holds every line once, in order, none torn.
 */

import assert from "node:assert/strict";
import { makeCerts, readOrEmpty, type Running, runProgram, tempDir, waitFor } from "./helpers.ts";
import { startPull, startServe } from "./relay.ts";

const LINES = 3000;
const encoder = new TextEncoder();

/** The numbered lines of one stream, without newlines. */
function linesOf(tag: string, from: number, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `<14>${tag} m${from + i} ${"x".repeat(17)}`);
}

/**
 * Sends newline-terminated lines over one TCP connection kept open for the
 * whole run: lines sent over different connections have no order between
 * them, so one connection per stream keeps the expected order well-defined.
 */
class LineConnection implements Disposable {
  #conn: Deno.TcpConn | undefined;
  constructor(readonly port: number) {}
  async send(lines: string[]): Promise<void> {
    this.#conn ??= await Deno.connect({ hostname: "127.0.0.1", port: this.port });
    const bytes = encoder.encode(lines.join("\n") + "\n");
    let offset = 0;
    while (offset < bytes.length) offset += await this.#conn.write(bytes.subarray(offset));
  }
  [Symbol.dispose](): void {
    this.#conn?.close();
  }
}

/** Fills the file system holding `path` with one file; returns the bytes written. */
async function fill(path: string, limit: number): Promise<number> {
  using file = await Deno.open(path, { write: true, create: true });
  const chunk = new Uint8Array(4096).fill(0x66);
  let size = 0;
  for (let i = 0; i <= limit / 512; i++) {
    try {
      size += await file.write(chunk);
    } catch (error) {
      if (/No space left/i.test(String(error))) return size;
      throw error;
    }
  }
  throw new Error(`${path}: the file system did not fill up after ${size} bytes`);
}

/** What is wrong with a mirror file, against the lines it should hold. */
function audit(text: string, wanted: string[]): Record<string, number> {
  const lines = text.split("\n");
  const torn = lines.pop() === "" ? 0 : 1; // the last piece has no newline: torn
  const want = new Set(wanted);
  const seen = new Map<string, number>();
  let foreign = 0;
  let outOfOrder = 0;
  let last = -1;
  for (const line of lines) {
    if (!want.has(line)) {
      foreign++;
      continue;
    }
    seen.set(line, (seen.get(line) ?? 0) + 1);
    const index = Number(/ m(\d+) /.exec(line)![1]);
    if (index <= last) outOfOrder++;
    last = index;
  }
  let duplicates = 0;
  for (const count of seen.values()) duplicates += count - 1;
  return {
    lines: lines.length,
    unique: seen.size,
    duplicates,
    missing: wanted.length - seen.size,
    torn: torn + foreign,
    outOfOrder,
  };
}

async function mounted<T>(size: string, body: (dir: string) => Promise<T>): Promise<T> {
  await using dir = await tempDir();
  const mount = `${dir.path}/disk`;
  await Deno.mkdir(mount);
  const result = await runProgram("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", mount]);
  assert.equal(result.code, 0, `mount tmpfs: ${result.stderr}`);
  try {
    return await body(dir.path);
  } finally {
    const umount = await runProgram("umount", [mount]);
    assert.equal(umount.code, 0, `umount: ${umount.stderr}`);
  }
}

/** When the test kills pull with SIGKILL and starts it again. */
type Crash = "while full" | "after space returned";

/**
 * serve → pull --mirror DIR on a tmpfs; a third of the lines goes in, a filler
 * takes the rest of the disk, most of the rest is sent and meets the full
 * disk; pull is killed and restarted (while the disk is full, or once space
 * returned and the resume point moved past everything); the last lines come
 * after the restart.
 */
async function fullDiskRun(
  root: string,
  streams: Array<"tcp" | "syslog">,
  crash: Crash,
): Promise<Record<string, Record<string, number>>> {
  const certs = await makeCerts(root);
  const mirror = `${root}/disk/mirror`;
  const status = `${root}/status`;
  const state = `${root}/pull.state`;
  const served = await startServe(certs, {
    tcp: true,
    args: ["--tcp-in", "127.0.0.1:0"],
  });
  await using serve = served.process;
  const tcpIn = await serve.waitForListening("tcp-in");
  using tcpLines = new LineConnection(tcpIn);
  using syslogLines = new LineConnection(served.tcpPort!);
  const pullArgs = ["--mirror", mirror, "--state", state, "--status-file", status];
  const tag = (stream: string) => `full-${stream}`;
  const want = Object.fromEntries(streams.map((s) => [s, linesOf(tag(s), 0, LINES)]));
  const send = async (from: number, count: number) => {
    // Interleaved in chunks, so batches carry both streams.
    for (let at = from; at < from + count; at += 250) {
      const n = Math.min(250, from + count - at);
      for (const stream of streams) {
        const lines = want[stream]!.slice(at, at + n);
        await (stream === "tcp" ? tcpLines : syslogLines).send(lines);
      }
    }
  };
  const mirrored = async (upTo: number) => {
    for (const stream of streams) {
      const text = await readOrEmpty(`${mirror}/${stream}`);
      if (!text.includes(`${want[stream]![upTo - 1]}\n`)) return false;
    }
    return true;
  };
  let statusText = "";
  const statusIs = async (pattern: RegExp) => pattern.test(statusText = await readOrEmpty(status));
  const fullProblem = new RegExp(`${mirror.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}.*no space left`);
  const restart = async () => {
    pull.kill("SIGKILL");
    await pull.wait();
    await pull[Symbol.asyncDispose]();
    pull = await startPull(certs, served.port, { to: null, args: pullArgs });
  };

  let pull: Running = await startPull(certs, served.port, { to: null, args: pullArgs });
  try {
    const first = 1000;
    const beforeLast = LINES - 100;
    await send(0, first);
    await waitFor(() => mirrored(first), { what: `${first} lines mirrored`, timeoutMs: 20_000 });
    await fill(`${root}/disk/filler`, 1 << 20);
    await send(first, beforeLast - first);
    // While full: the status file and the log name the mirror that cannot be written.
    await waitFor(() => statusIs(fullProblem), {
      what: () => `the status file to name the full mirror: ${statusText}`,
      timeoutMs: 20_000,
    });
    await pull.waitForStderr(fullProblem);
    if (crash === "while full") {
      await restart();
      await pull.waitForStderr(fullProblem, 20_000);
    }
    await Deno.remove(`${root}/disk/filler`);
    await waitFor(() => mirrored(beforeLast), {
      what: () => `${beforeLast} lines mirrored once space returned; status: ${statusText}`,
      timeoutMs: 60_000,
    });
    if (crash === "after space returned") {
      // The resume point is saved past every line sent: a restart must not lose any.
      const sent = streams.length * beforeLast;
      await waitFor(async () => {
        try {
          return JSON.parse(await Deno.readTextFile(state)).next > sent;
        } catch {
          return false;
        }
      }, { what: () => `the resume point past seq ${sent}`, timeoutMs: 20_000 });
      await restart();
    }
    await send(beforeLast, LINES - beforeLast);
    await waitFor(async () => await mirrored(LINES) && await statusIs(/^OK\n$/), {
      what: () => `every line mirrored and status OK; status: ${statusText}`,
      timeoutMs: 60_000,
    });
    const result: Record<string, Record<string, number>> = {};
    for (const stream of streams) {
      result[stream] = audit(await Deno.readTextFile(`${mirror}/${stream}`), want[stream]!);
    }
    return result;
  } finally {
    await pull[Symbol.asyncDispose]();
  }
}

const clean = {
  lines: LINES,
  unique: LINES,
  duplicates: 0,
  missing: 0,
  torn: 0,
  outOfOrder: 0,
};

Deno.test("pull --mirror on a full disk, killed and restarted while full: each line once, none torn", async () => {
  const result = await mounted("256k", (root) => fullDiskRun(root, ["tcp"], "while full"));
  assert.deepEqual(result, { tcp: clean });
});

Deno.test("pull --mirror after a full disk, killed once space returned: the restart cuts no line", async () => {
  const result = await mounted(
    "256k",
    (root) => fullDiskRun(root, ["tcp"], "after space returned"),
  );
  assert.deepEqual(result, { tcp: clean });
});

Deno.test("pull --mirror on a full disk with two streams: neither file gets another's retry twice", async () => {
  const result = await mounted(
    "512k",
    (root) => fullDiskRun(root, ["tcp", "syslog"], "while full"),
  );
  assert.deepEqual(result, { tcp: clean, syslog: clean });
});
