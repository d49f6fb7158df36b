/**
 * RELP throughput: 200,000 × 200-byte messages through
 * 1. RelpClient → RelpServer (both in this process, loopback),
 * 2. rsyslog omrelp → RelpServer (rsyslog fed over imtcp),
 * 3. rsyslog omrelp → rsyslog imrelp → file (rsyslog's own chain, for comparison).
 * Prints messages/s and whether every message arrived exactly once.
 *
 * Run: `deno run --allow-all bench/relp_bench.ts [COUNT]`
 *
 * @module
 */

import { RelpClient } from "../lib/transport/relp_client.ts";
import { RelpServer } from "../lib/transport/relp_server.ts";
import { freePort, type Running, startRsyslog, tempDir, waitFor } from "../tests/helpers.ts";

const COUNT = Number(Deno.args[0] ?? 200_000);
const SIZE = 200;
const encoder = new TextEncoder();

/** Message `i`: an RFC 3164 line padded to SIZE bytes, with `msg-NNNNNNN` in it. */
function message(i: number): Uint8Array {
  const head = `<13>Jan  1 00:00:00 vps relptest: msg-${String(i).padStart(7, "0")} `;
  return encoder.encode(head + "x".repeat(SIZE - head.length));
}

/** Checks each message number appears exactly once in the taken batches. */
function exactlyOnce(taken: Uint8Array[], count: number): { unique: number; dups: number } {
  const seen = new Uint8Array(count);
  let dups = 0;
  let unique = 0;
  const decoder = new TextDecoder();
  for (const m of taken) {
    const text = decoder.decode(m);
    const at = text.indexOf("msg-");
    const n = Number(text.slice(at + 4, at + 11));
    if (seen[n]) dups++;
    else {
      seen[n] = 1;
      unique++;
    }
  }
  return { unique, dups };
}

function report(name: string, ms: number, unique: number, dups: number): void {
  const rate = Math.round(COUNT / (ms / 1000));
  console.log(
    `${name.padEnd(44)} ${String(rate).padStart(8)} msg/s  (${
      (ms / 1000).toFixed(2)
    } s; ${unique}/${COUNT} unique, ${dups} duplicates)`,
  );
}

async function clientToServer(): Promise<void> {
  const taken: Uint8Array[] = [];
  const server = new RelpServer({
    port: 0,
    onBatch: (messages) => {
      for (const m of messages) taken.push(m);
      return Promise.resolve();
    },
  });
  const addr = await server.listen();
  const client = new RelpClient({ host: "127.0.0.1", port: addr.port });
  const all: Uint8Array[] = [];
  for (let i = 0; i < COUNT; i++) all.push(message(i));
  await client.connect();
  const started = performance.now();
  // batches of 1,000, up to 4 in flight (as a sink draining a journal would)
  const inFlight: Promise<void>[] = [];
  for (let b = 0; b < COUNT; b += 1_000) {
    inFlight.push(client.send(all.slice(b, b + 1_000)));
    if (inFlight.length >= 4) await inFlight.shift();
  }
  await Promise.all(inFlight);
  const ms = performance.now() - started;
  await client.close();
  await server.close();
  const { unique, dups } = exactlyOnce(taken, COUNT);
  report("RelpClient → RelpServer", ms, unique, dups);
}

/** Writes COUNT lines to rsyslog's imtcp. */
async function feed(port: number): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    for (let b = 0; b < COUNT; b += 10_000) {
      const parts: Uint8Array[] = [];
      for (let i = b; i < Math.min(COUNT, b + 10_000); i++) parts.push(message(i));
      const out = new Uint8Array(parts.length * (SIZE + 1));
      parts.forEach((p, k) => {
        out.set(p, k * (SIZE + 1));
        out[k * (SIZE + 1) + SIZE] = 0x0a;
      });
      let done = 0;
      while (done < out.length) done += await conn.write(out.subarray(done));
    }
  } finally {
    conn.close();
  }
}

function omrelpRules(tcpPort: number, relpPort: number): string {
  return `module(load="imtcp")
module(load="omrelp")
input(type="imtcp" address="127.0.0.1" port="${tcpPort}")
if $programname == "relptest" then {
  action(type="omrelp" target="127.0.0.1" port="${relpPort}"
         action.resumeRetryCount="-1" action.resumeInterval="1"
         queue.type="LinkedList" queue.size="${COUNT + 10_000}")
}
`;
}

async function omrelpToServer(): Promise<void> {
  await using dir = await tempDir();
  const taken: Uint8Array[] = [];
  let first = 0;
  const server = new RelpServer({
    port: 0,
    onBatch: (messages) => {
      if (first === 0) first = performance.now();
      for (const m of messages) taken.push(m);
      return Promise.resolve();
    },
  });
  const addr = await server.listen();
  const tcpPort = freePort();
  await using _rsyslog = await startRsyslog({
    dir: dir.path,
    readyTcpPort: tcpPort,
    rules: omrelpRules(tcpPort, addr.port),
  });
  const started = performance.now();
  await feed(tcpPort);
  await waitFor(() => taken.length >= COUNT, {
    timeoutMs: 300_000,
    what: () => `${COUNT} at the RELP server (have ${taken.length})`,
  });
  const end = performance.now();
  await new Promise((resolve) => setTimeout(resolve, 300));
  await server.close();
  const { unique, dups } = exactlyOnce(taken, COUNT);
  report("rsyslog omrelp → RelpServer (feed start)", end - started, unique, dups);
  report("rsyslog omrelp → RelpServer (first receipt)", end - first, unique, dups);
}

async function omrelpToImrelp(): Promise<void> {
  await using dir = await tempDir();
  const relpPort = freePort();
  const file = `${dir.path}/home.log`;
  let home: Running | undefined;
  await using homeDir = await tempDir();
  home = await startRsyslog({
    dir: homeDir.path,
    readyTcpPort: relpPort,
    rules: `module(load="imrelp")
input(type="imrelp" address="127.0.0.1" port="${relpPort}" ruleset="relp")
template(name="raw" type="string" string="%rawmsg%\\n")
ruleset(name="relp") { action(type="omfile" file="${file}" template="raw") }
`,
  });
  const tcpPort = freePort();
  await using _vps = await startRsyslog({
    dir: dir.path,
    readyTcpPort: tcpPort,
    rules: omrelpRules(tcpPort, relpPort),
  });
  try {
    const started = performance.now();
    await feed(tcpPort);
    // lines are longer than SIZE (omrelp forwards with RSYSLOG_ForwardFormat): count LFs
    const lf = async (): Promise<number> => {
      const bytes = await Deno.readFile(file).catch(() => new Uint8Array(0));
      let n = 0;
      for (let i = bytes.indexOf(0x0a); i >= 0; i = bytes.indexOf(0x0a, i + 1)) n++;
      return n;
    };
    await waitFor(async () => (await lf()) >= COUNT, {
      timeoutMs: 300_000,
      intervalMs: 200,
      what: () => `${COUNT} lines in ${file}`,
    });
    const end = performance.now();
    const text = await Deno.readTextFile(file);
    const lines = text.split("\n").filter((l) => l !== "").map((l) => encoder.encode(l));
    const { unique, dups } = exactlyOnce(lines, COUNT);
    report("rsyslog omrelp → rsyslog imrelp → file", end - started, unique, dups);
  } finally {
    await home[Symbol.asyncDispose]();
    home = undefined;
  }
}

console.log(`RELP bench: ${COUNT} × ${SIZE}-byte messages, loopback`);
await clientToServer();
await omrelpToServer();
await omrelpToImrelp();
