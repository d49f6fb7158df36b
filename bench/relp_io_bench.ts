/**
 * RELP throughput of reclog's RELP input and sink (the Source/Sink parts serve and pull
 * use), beside rsyslog, COUNT × 200-byte messages over loopback:
 * 1. rsyslog omrelp → {@linkcode RelpSource} (reclog's RELP input; rsyslog fed over imtcp),
 * 2. {@linkcode RelpSink} (reclog's RELP sink, batches of 1,000) → rsyslog imrelp → file.
 * rsyslog's own omrelp → imrelp chain is in bench/relp_bench.ts. Prints one line per path
 * in relp_bench.ts's format (`deno task bench` reads both).
 *
 * Run: `deno run --allow-all bench/relp_io_bench.ts [COUNT]`
 *
 * @module
 */

import { RelpSource } from "../lib/sources/relp.ts";
import { RelpSink } from "../lib/sinks/relp.ts";
import type { MessageBatch } from "../lib/batch.ts";
import { freePort, startRsyslog, tempDir, waitFor } from "../tests/helpers.ts";

const SIZE = 200;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Message `i`: an RFC 3164 line padded to SIZE bytes, with `msg-NNNNNNN` in it. */
function message(i: number): Uint8Array {
  const head = `<13>Jan  1 00:00:00 vps relptest: msg-${String(i).padStart(7, "0")} `;
  return encoder.encode(head + "x".repeat(SIZE - head.length));
}

/** The message number in `bytes`, or -1. */
function numberOf(bytes: Uint8Array): number {
  const text = decoder.decode(bytes.subarray(0, 60));
  const at = text.indexOf("msg-");
  return at < 0 ? -1 : Number(text.slice(at + 4, at + 11));
}

function report(name: string, count: number, ms: number, seen: Uint8Array, dups: number): void {
  const unique = seen.reduce((a, v) => a + v, 0);
  const rate = Math.round(count / (ms / 1000));
  console.log(
    `${name.padEnd(44)} ${String(rate).padStart(8)} msg/s  (${
      (ms / 1000).toFixed(2)
    } s; ${unique}/${count} unique, ${dups} duplicates)`,
  );
}

/** Writes `count` newline-terminated messages to rsyslog's imtcp. */
async function feed(port: number, count: number): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    for (let b = 0; b < count; b += 10_000) {
      const n = Math.min(count, b + 10_000) - b;
      const out = new Uint8Array(n * (SIZE + 1));
      for (let k = 0; k < n; k++) {
        out.set(message(b + k), k * (SIZE + 1));
        out[k * (SIZE + 1) + SIZE] = 0x0a;
      }
      let done = 0;
      while (done < out.length) done += await conn.write(out.subarray(done));
    }
  } finally {
    conn.close();
  }
}

/** rsyslog omrelp → reclog's RelpSource. */
async function omrelpToSource(count: number): Promise<void> {
  await using dir = await tempDir();
  const seen = new Uint8Array(count);
  let dups = 0;
  let received = 0;
  await using source = new RelpSource({
    host: "127.0.0.1",
    port: 0,
    onBatch: (batch) => {
      for (let i = 0; i < batch.count; i++) {
        const n = numberOf(batch.message(i));
        if (n < 0 || n >= count) continue;
        if (seen[n]) dups++;
        else {
          seen[n] = 1;
          received++;
        }
      }
    },
  });
  const addr = await source.listen();
  const tcpPort = freePort();
  await using _rsyslog = await startRsyslog({
    dir: dir.path,
    readyTcpPort: tcpPort,
    rules: `module(load="imtcp")
module(load="omrelp")
input(type="imtcp" address="127.0.0.1" port="${tcpPort}")
if $programname == "relptest" then {
  action(type="omrelp" target="127.0.0.1" port="${addr.port}"
         action.resumeRetryCount="-1" action.resumeInterval="1"
         queue.type="LinkedList" queue.size="${count + 10_000}")
}
`,
  });
  const started = performance.now();
  await feed(tcpPort, count);
  await waitFor(() => received >= count, {
    timeoutMs: 300_000,
    intervalMs: 5,
    what: () => `${count} at the RELP source (have ${received})`,
  });
  report("rsyslog omrelp → reclog RelpSource", count, performance.now() - started, seen, dups);
}

/** A batch of messages `from` .. `from + n - 1`. */
function batchOf(all: Uint8Array[], from: number, n: number): MessageBatch {
  return { count: n, message: (i) => all[from + i]! };
}

/** reclog's RelpSink → rsyslog imrelp → file. */
async function sinkToImrelp(count: number): Promise<void> {
  await using dir = await tempDir();
  const relpPort = freePort();
  const file = `${dir.path}/out.log`;
  await using _rsyslog = await startRsyslog({
    dir: dir.path,
    readyTcpPort: relpPort,
    rules: `module(load="imrelp")
input(type="imrelp" address="127.0.0.1" port="${relpPort}" ruleset="relp")
template(name="raw" type="string" string="%rawmsg%\\n")
ruleset(name="relp") { action(type="omfile" file="${file}" template="raw") }
`,
  });
  const all = Array.from({ length: count }, (_, i) => message(i));
  await using sink = new RelpSink({ host: "127.0.0.1", port: relpPort });
  const started = performance.now();
  for (let b = 0; b < count; b += 1_000) {
    const n = Math.min(1_000, count - b);
    let from = 0;
    for (let attempt = 0; from < n; attempt++) {
      try {
        await sink.write(batchOf(all, b + from, n - from));
        from = n;
      } catch (error) {
        const taken = (error as { taken?: number }).taken ?? 0;
        from += taken;
        if (attempt > 20) throw error;
      }
    }
  }
  const acked = performance.now();
  const size = async () => (await Deno.stat(file).catch(() => ({ size: 0 }))).size;
  await waitFor(async () => (await size()) >= count * (SIZE + 1), {
    timeoutMs: 300_000,
    intervalMs: 20,
    what: () => `${count} lines in ${file}`,
  });
  const end = performance.now();
  const seen = new Uint8Array(count);
  let dups = 0;
  const text = await Deno.readFile(file);
  for (let at = 0; at < text.length;) {
    const nl = text.indexOf(0x0a, at);
    const n = numberOf(text.subarray(at, nl < 0 ? text.length : nl));
    if (n >= 0 && n < count) {
      if (seen[n]) dups++;
      else seen[n] = 1;
    }
    at = nl < 0 ? text.length : nl + 1;
  }
  report("reclog RelpSink → rsyslog imrelp (acked)", count, acked - started, seen, dups);
  report("reclog RelpSink → rsyslog imrelp → file", count, end - started, seen, dups);
}

if (import.meta.main) {
  const count = Number(Deno.args[0] ?? 200_000);
  console.log(`RELP input/sink bench: ${count} × ${SIZE}-byte messages, loopback`);
  await omrelpToSource(count);
  await sinkToImrelp(count);
}
