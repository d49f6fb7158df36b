/**
 * `serve --syslog-in relp://` end to end: a real rsyslog (imtcp in, omrelp
 * out) → serve --spool → pull → stdout, 5,000 messages, with serve
 * SIGKILLed mid-flow and restarted: every message arrives (serve acknowledges
 * only what is in its spool file), duplicates bounded by omrelp's window.
 */

import assert from "node:assert/strict";
import {
  type CertPaths,
  freePort,
  makeCerts,
  requirePeer,
  type Running,
  startReclog,
  startRsyslog,
  tempDir,
  waitFor,
} from "./helpers.ts";
import { startPull } from "./relay.ts";

const WINDOW = 128;

function startServe(
  certs: CertPaths,
  args: string[],
  port = 0,
): Promise<{ process: Running; port: number }> {
  const process = startReclog([
    "serve",
    "--cert",
    certs.serverCert,
    "--key",
    certs.serverKey,
    "--ca",
    certs.ca,
    "--listen",
    `127.0.0.1:${port}`,
    ...args,
  ]);
  return process.waitForListening("mTLS").then((port) => ({ process, port }));
}

/** Numbers of the messages pull printed, in order. */
function received(pull: Running): number[] {
  return [...pull.stdout.matchAll(/relptest: n=(\d+)/g)].map((m) => Number(m[1]));
}

Deno.test("rsyslog omrelp → serve --spool (relp in) → pull: 5,000 messages across a SIGKILL of serve, none lost", async () => {
  requirePeer(`../lib/${Deno.build.arch}-linux-gnu/rsyslog/omrelp.so`);
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const relpPort = freePort();
  const tcpPort = freePort();
  const args = ["--syslog-in", `relp://127.0.0.1:${relpPort}`, "--spool", `${dir.path}/spool`];
  let serve = await startServe(certs, args);
  const port = serve.port;
  await serve.process.waitForListening("syslog-in relp");
  await using _rsyslog = await startRsyslog({
    dir: `${dir.path}/rsyslog`,
    readyTcpPort: tcpPort,
    rules: `module(load="imtcp")
module(load="omrelp")
input(type="imtcp" address="127.0.0.1" port="${tcpPort}")
if $programname == "relptest" then {
  action(type="omrelp" target="127.0.0.1" port="${relpPort}" timeout="5" windowSize="${WINDOW}"
         action.resumeRetryCount="-1" action.resumeInterval="1"
         queue.type="LinkedList" queue.size="100000")
}
`,
  });
  await using pull = await startPull(certs, port, {
    to: "-",
    args: ["--state", `${dir.path}/pull.state`],
  });
  const encoder = new TextEncoder();
  const feed = async (from: number, to: number) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: tcpPort });
    try {
      for (let i = from; i <= to; i += 100) {
        const lines = [];
        for (let n = i; n < i + 100 && n <= to; n++) {
          lines.push(`<13>Dec  2 10:00:00 vps relptest: n=${n}\n`);
        }
        const bytes = encoder.encode(lines.join(""));
        let done = 0;
        while (done < bytes.length) done += await conn.write(bytes.subarray(done));
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    } finally {
      conn.close();
    }
  };
  const feeding = feed(1, 5000);
  await waitFor(() => received(pull).length >= 1500, { what: "1,500 messages through" });
  serve.process.kill("SIGKILL");
  await serve.process.wait();
  await serve.process[Symbol.asyncDispose]();
  await new Promise((resolve) => setTimeout(resolve, 500));
  serve = await startServe(certs, args, port);
  await using _serve = serve.process;
  await feeding;
  await waitFor(() => new Set(received(pull)).size >= 5000, {
    what: () => `5,000 distinct messages, have ${new Set(received(pull)).size}`,
    timeoutMs: 60_000,
  });
  const all = received(pull);
  const distinct = new Set(all);
  for (let n = 1; n <= 5000; n++) assert.ok(distinct.has(n), `message ${n} arrived`);
  const duplicates = all.length - distinct.size;
  console.log(`relp across SIGKILL: ${distinct.size} unique, ${duplicates} duplicates`);
  assert.ok(duplicates <= WINDOW, `${duplicates} duplicates, more than omrelp's window`);
});
