/**
 * What the RELP tests share: numbered messages and their tally, and the two
 * real rsyslog peers (omrelp sending, imrelp receiving into a file).
 */

import type { MessageBatch } from "../lib/batch.ts";
import { freePort, requirePeer, type Running, startRsyslog } from "./helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** `<13>` RFC 3164 lines with a numbered body `msg-NNNNNN`, as text. */
export function numberedTexts(from: number, count: number, tag = "relptest"): string[] {
  const out: string[] = [];
  for (let i = from; i < from + count; i++) {
    out.push(`<13>Jan  1 00:00:00 vps ${tag}: msg-${String(i).padStart(6, "0")}`);
  }
  return out;
}

/** The same lines as bytes. */
export function numbered(from: number, count: number, tag = "relptest"): Uint8Array[] {
  return numberedTexts(from, count, tag).map((text) => encoder.encode(text));
}

/** Counts of each `msg-NNNNNN` in `text`. */
export function tally(text: string): Map<number, number> {
  const counts = new Map<number, number>();
  for (const match of text.matchAll(/msg-(\d{6})/g)) {
    const n = Number(match[1]);
    counts.set(n, (counts.get(n) ?? 0) + 1);
  }
  return counts;
}

/** Missing numbers of 0..count-1 and the number of duplicates. */
export function summary(
  counts: Map<number, number>,
  count: number,
): { missing: number[]; dups: number } {
  const missing: number[] = [];
  let dups = 0;
  for (let i = 0; i < count; i++) {
    const c = counts.get(i) ?? 0;
    if (c === 0) missing.push(i);
    else dups += c - 1;
  }
  return { missing, dups };
}

/** The texts of a batch (copied: the batch is valid only during the call). */
export function batchTexts(batch: MessageBatch): string[] {
  const out: string[] = [];
  for (let i = 0; i < batch.count; i++) out.push(decoder.decode(batch.message(i)));
  return out;
}

/** rsyslog A: imtcp in, omrelp (window 128, librelp's default) out to `relpPort`, retrying every second. */
export async function startOmrelp(
  dir: string,
  relpPort: number,
): Promise<{ rsyslog: Running; tcpPort: number }> {
  requirePeer(`../lib/${Deno.build.arch}-linux-gnu/rsyslog/omrelp.so`);
  const tcpPort = freePort();
  const rsyslog = await startRsyslog({
    dir,
    readyTcpPort: tcpPort,
    rules: `module(load="imtcp")
module(load="omrelp")
input(type="imtcp" address="127.0.0.1" port="${tcpPort}")
if $programname == "relptest" then {
  action(type="omrelp" target="127.0.0.1" port="${relpPort}" timeout="5" windowSize="128"
         action.resumeRetryCount="-1" action.resumeInterval="1"
         queue.type="LinkedList" queue.size="100000")
}
`,
  });
  return { rsyslog, tcpPort };
}

/** Writes numbered lines to rsyslog's imtcp. */
export async function feedTcp(port: number, from: number, count: number): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const bytes = encoder.encode(numberedTexts(from, count).map((m) => m + "\n").join(""));
    let done = 0;
    while (done < bytes.length) done += await conn.write(bytes.subarray(done));
  } finally {
    conn.close();
  }
}

/** rsyslog B: imrelp in, each message's raw text to a file, written before the ack. */
export async function startImrelp(
  dir: string,
  port: number,
  file: string,
  inputParams = "",
): Promise<Running> {
  requirePeer(`../lib/${Deno.build.arch}-linux-gnu/rsyslog/imrelp.so`);
  return await startRsyslog({
    dir,
    readyTcpPort: port,
    rules: `main_queue(queue.type="Direct")
module(load="imrelp")
input(type="imrelp" address="127.0.0.1" port="${port}" ruleset="relp" ${inputParams})
template(name="raw" type="string" string="%rawmsg%\\n")
ruleset(name="relp") { action(type="omfile" file="${file}" template="raw") }
`,
  });
}
