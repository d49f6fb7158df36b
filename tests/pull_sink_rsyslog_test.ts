/**
 * pull's sinks against a real home rsyslog (issue 13, pull side): RELP with
 * a restarted receiver, a TCP receiver down (a sink failure keeps the server
 * connection), an empty message over TCP, an over-long message over UDP, a
 * UDP catch-up into a default imudp, a UDP receiver down for 6 s, and `--to`
 * checked at start.
 */

import assert from "node:assert/strict";
import {
  freePort,
  makeCerts,
  readOrEmpty,
  type Running,
  runReclog,
  startRsyslog,
  tempDir,
  waitFor,
} from "./helpers.ts";
import { indices, numbered, sendTcp, sendUdp, startPull, startServe } from "./relay.ts";
import { udpDrops } from "../lib/ops/metrics.ts";

const RAW = `template(name="raw" type="string" string="%rawmsg%\\n")`;

/** A home rsyslog receiving on `kind` at `port` into `file`, its main queue direct. */
function home(dir: string, kind: "imudp" | "imtcp" | "imrelp", port: number, file: string) {
  return startRsyslog({
    dir,
    ...(kind === "imudp" ? { readyUdpPort: port } : { readyTcpPort: port }),
    rules: `main_queue(queue.type="Direct")
module(load="${kind}")
${RAW}
input(type="${kind}" address="127.0.0.1" port="${port}" ruleset="home")
ruleset(name="home") { action(type="omfile" file="${file}" template="raw") }
`,
  });
}

/** Unique and duplicate counts of `tag` messages 0..total-1 in `text`. */
function audit(text: string, tag: string, total: number) {
  const seen = new Map<number, number>();
  for (const i of indices(text, tag)) seen.set(i, (seen.get(i) ?? 0) + 1);
  let missing = 0;
  let duplicates = 0;
  for (let i = 0; i < total; i++) {
    const n = seen.get(i) ?? 0;
    if (n === 0) missing++;
    else duplicates += n - 1;
  }
  return { unique: total - missing, missing, duplicates };
}

async function unique(file: string, tag: string, total: number): Promise<number> {
  return audit(await readOrEmpty(file), tag, total).unique;
}

/** Sends `count` messages from `from` in bursts of 100, `perSecond` a second. */
async function paced(port: number, tag: string, from: number, count: number, perSecond: number) {
  for (let at = from; at < from + count; at += 100) {
    await sendTcp(port, numbered(tag, at, Math.min(100, from + count - at)));
    await new Promise((resolve) => setTimeout(resolve, 100_000 / perSecond));
  }
}

async function metricsOf(pull: Running): Promise<string> {
  const port = Number((await pull.waitForStderr(/metrics listening on \S+:(\d+)/))[1]);
  const response = await fetch(`http://127.0.0.1:${port}/metrics`);
  return await response.text();
}

Deno.test("pull --to relp:// → rsyslog imrelp restarted mid-stream: 5,000 of 5,000, server connection kept", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const port = freePort();
  const file = `${dir.path}/home.log`;
  const served = await startServe(certs, { tcp: true });
  await using _serve = served.process;
  let rsyslog = await home(`${dir.path}/r`, "imrelp", port, file);
  await using pull = await startPull(certs, served.port, {
    to: `relp://127.0.0.1:${port}`,
    args: ["--state", `${dir.path}/pull.state`],
  });
  try {
    const sender = paced(served.tcpPort!, "relp", 0, 5000, 2000);
    await waitFor(async () => await unique(file, "relp", 5000) >= 1500, { what: "1,500 first" });
    rsyslog.kill("SIGKILL");
    await rsyslog.wait();
    await new Promise((resolve) => setTimeout(resolve, 1500));
    rsyslog = await home(`${dir.path}/r`, "imrelp", port, file);
    await sender;
    await waitFor(async () => await unique(file, "relp", 5000) === 5000, {
      what: "5,000 in the home file",
      timeoutMs: 30_000,
    });
    const result = audit(await readOrEmpty(file), "relp", 5000);
    console.log(`relp, imrelp SIGKILLed and restarted: ${JSON.stringify(result)}`);
    assert.equal(result.missing, 0);
    assert.ok(result.duplicates <= 1024, `${result.duplicates} duplicates`);
    assert.match(pull.stderr, /sink relp:\/\/127\.0\.0\.1:\d+: /);
    assert.equal(pull.stderr.match(/connected to /g)?.length, 1, pull.stderr);
  } finally {
    await rsyslog[Symbol.asyncDispose]();
  }
});

Deno.test("pull --to tcp:// with the receiver down: the sink is retried, the server connection kept, status and metric name the sink", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const port = freePort();
  const file = `${dir.path}/home.log`;
  const status = `${dir.path}/status`;
  const served = await startServe(certs, { tcp: true });
  await using _serve = served.process;
  await using pull = await startPull(certs, served.port, {
    to: `tcp://127.0.0.1:${port}`,
    args: [
      "--state",
      `${dir.path}/pull.state`,
      "--status-file",
      status,
      "--metrics",
      "127.0.0.1:0",
    ],
  });
  await sendTcp(served.tcpPort!, numbered("down", 0, 1000));
  const problem = new RegExp(
    `^sink tcp://127\\.0\\.0\\.1:${port}: connection refused since \\d{4}-\\d\\d-\\d\\dT`,
    "m",
  );
  await waitFor(async () => problem.test(await readOrEmpty(status)), {
    what: "the status file to name the sink",
  });
  assert.match(await metricsOf(pull), /^reclog_pull_sink_up\{[^}]*sink="tcp:[^}]*\} 0$/m);
  await new Promise((resolve) => setTimeout(resolve, 2500));
  await using _rsyslog = await home(`${dir.path}/r`, "imtcp", port, file);
  await waitFor(async () => await unique(file, "down", 1000) === 1000, {
    what: "1,000 in the home file",
    timeoutMs: 40_000,
  });
  await waitFor(async () => (await readOrEmpty(status)) === "OK\n", { what: "status OK" });
  assert.match(await metricsOf(pull), /^reclog_pull_sink_up\{[^}]*sink="tcp:[^}]*\} 1$/m);
  assert.match(pull.stderr, new RegExp(`sink tcp://127\\.0\\.0\\.1:${port}: connection refused`));
  assert.equal(pull.stderr.match(/connected to /g)?.length, 1, pull.stderr);
  assert.doesNotMatch(pull.stderr, /reconnecting/);
});

Deno.test("pull --to tcp://: an empty message is dropped and counted; the messages after it arrive", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const port = freePort();
  const file = `${dir.path}/home.log`;
  await using _rsyslog = await home(`${dir.path}/r`, "imtcp", port, file);
  const served = await startServe(certs, { tcp: true });
  await using _serve = served.process;
  await using pull = await startPull(certs, served.port, {
    to: `tcp://127.0.0.1:${port}`,
    args: ["--state", `${dir.path}/pull.state`, "--metrics", "127.0.0.1:0"],
  });
  await sendTcp(served.tcpPort!, numbered("empty", 0, 10));
  await sendUdp(served.udpPort, [new Uint8Array(0)]);
  await new Promise((resolve) => setTimeout(resolve, 300));
  await sendTcp(served.tcpPort!, numbered("empty", 10, 990));
  await waitFor(async () => await unique(file, "empty", 1000) === 1000, {
    what: "1,000 in the home file",
  });
  const metrics = await metricsOf(pull);
  const empty = /^reclog_pull_sink_empty_total\{[^}]*\} (\d+)$/m.exec(metrics)?.[1];
  assert.equal(empty, "1", metrics); // serve journals an empty datagram; the sink left it out
  assert.match(pull.stderr, /an empty message was dropped/);
});

Deno.test("pull --to udp://: a 65,520-byte message is cut to 65,507 bytes and counted; nothing after it stalls", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const port = freePort("udp");
  const file = `${dir.path}/home.log`;
  await using _rsyslog = await home(`${dir.path}/r`, "imudp", port, file);
  const served = await startServe(certs, { tcp: true });
  await using _serve = served.process;
  await using pull = await startPull(certs, served.port, {
    to: `udp://127.0.0.1:${port}`,
    args: ["--state", `${dir.path}/pull.state`, "--metrics", "127.0.0.1:0"],
  });
  const big = `<14>big m0 ${"x".repeat(65_520 - 11)}`;
  await sendTcp(served.tcpPort!, [big, ...numbered("after", 0, 100)]);
  await waitFor(async () => await unique(file, "after", 100) === 100, {
    what: "the 100 messages after the big one",
  });
  const lines = (await readOrEmpty(file)).split("\n");
  const cut = lines.find((line) => line.startsWith("<14>big m0 "));
  assert.equal(cut?.length, 65_507);
  assert.match(await metricsOf(pull), /^reclog_pull_sink_truncated_total\{[^}]*\} 1$/m);
});

Deno.test({
  name:
    "pull --to udp:// into a default imudp: a 20,000-message catch-up arrives complete, 0 kernel drops",
  sanitizeResources: false, // libc, loaded once by udpDrops, stays loaded
}, async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const port = freePort("udp");
  const file = `${dir.path}/home.log`;
  await using _rsyslog = await home(`${dir.path}/r`, "imudp", port, file);
  const served = await startServe(certs, { tcp: true });
  await using _serve = served.process;
  const state = `${dir.path}/pull.state`;
  {
    // A first run stores a resume point; the 20,000 arrive while pull is stopped.
    await using first = await startPull(certs, served.port, { to: "-", args: ["--state", state] });
    await sendTcp(served.tcpPort!, numbered("warm", 0, 1));
    await waitFor(() => first.stdout.includes("warm m0"), { what: "the first message" });
    first.kill("SIGTERM");
    await first.wait();
  }
  await sendTcp(served.tcpPort!, numbered("catch", 0, 20_000, 100));
  const drops = udpDrops(port) ?? 0;
  const started = Date.now();
  await using _pull = await startPull(certs, served.port, {
    to: `udp://127.0.0.1:${port}`,
    args: ["--state", state],
  });
  await waitFor(async () => await unique(file, "catch", 20_000) === 20_000, {
    what: "20,000 in the home file",
    timeoutMs: 60_000,
  });
  const seconds = (Date.now() - started) / 1000;
  const kernelDrops = (udpDrops(port) ?? 0) - drops;
  console.log(`UDP catch-up: 20,000 in ${seconds.toFixed(1)} s, ${kernelDrops} kernel drops`);
  assert.equal(kernelDrops, 0);
});

Deno.test("pull --to udp://: the home receiver down for 6 s while messages flow loses nothing", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const port = freePort("udp");
  const file = `${dir.path}/home.log`;
  const status = `${dir.path}/status`;
  let rsyslog = await home(`${dir.path}/r`, "imudp", port, file);
  const served = await startServe(certs, { tcp: true });
  await using _serve = served.process;
  await using pull = await startPull(certs, served.port, {
    to: `udp://127.0.0.1:${port}`,
    args: ["--state", `${dir.path}/pull.state`, "--status-file", status],
  });
  try {
    const total = 12_000;
    const sender = paced(served.tcpPort!, "gone", 0, total, 1000);
    await waitFor(async () => await unique(file, "gone", total) >= 2000, { what: "2,000 first" });
    rsyslog.kill("SIGTERM");
    await rsyslog.wait();
    await waitFor(async () => /sink udp:\/\/.*receiver down/.test(await readOrEmpty(status)), {
      what: "the status file to say the receiver is down",
    });
    await new Promise((resolve) => setTimeout(resolve, 6000));
    rsyslog = await home(`${dir.path}/r`, "imudp", port, file);
    await sender;
    await waitFor(async () => await unique(file, "gone", total) === total, {
      what: `${total} in the home file`,
      timeoutMs: 40_000,
    });
    const result = audit(await readOrEmpty(file), "gone", total);
    console.log(`UDP receiver down 6 s: ${JSON.stringify(result)}`);
    assert.equal(result.missing, 0);
    assert.equal(pull.stderr.match(/connected to /g)?.length, 1, pull.stderr);
  } finally {
    await rsyslog[Symbol.asyncDispose]();
  }
});

Deno.test("pull --to is checked at start: an unknown host or a missing socket is one line and exit 2", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const base = [
    "pull",
    "--server",
    "127.0.0.1:1",
    "--cert",
    certs.clientCert,
    "--key",
    certs.clientKey,
    "--ca",
    certs.ca,
    "--live",
  ];
  for (
    const [to, pattern] of [
      [
        "tcp://no-such-host.invalid:514",
        /^.*--to 'tcp:\/\/no-such-host\.invalid:514': host name 'no-such-host\.invalid' not found\n$/,
      ],
      [`unix://${dir.path}/no-socket`, /^.*--to 'unix:\/\/.*no-socket': .*\n$/],
      [`unix://${dir.path}`, /^.*--to 'unix:\/\/.*': not a socket\n$/],
      ["relp://no-such-host.invalid:2514", /not found\n$/],
    ] as const
  ) {
    const result = await runReclog([...base, "--to", to]);
    assert.equal(result.code, 2, `${to}: ${result.stderr}`);
    assert.match(result.stderr, pattern);
    assert.equal(result.stderr.trimEnd().split("\n").length, 1, result.stderr);
  }
});

Deno.test("pull --to relp:// SIGKILLed mid-stream and restarted: nothing lost, duplicates within 500 + a batch + the RELP window", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const port = freePort();
  const file = `${dir.path}/home.log`;
  const state = `${dir.path}/pull.state`;
  const served = await startServe(certs, { tcp: true });
  await using _serve = served.process;
  await using _rsyslog = await home(`${dir.path}/r`, "imrelp", port, file);
  const total = 12_000;
  const args = ["--state", state];
  const first = await startPull(certs, served.port, { to: `relp://127.0.0.1:${port}`, args });
  const sender = paced(served.tcpPort!, "kill", 0, total, 4000);
  await waitFor(async () => await unique(file, "kill", total) >= 4000, { what: "4,000 first" });
  first.kill("SIGKILL");
  await first.wait();
  await first[Symbol.asyncDispose]();
  await using _second = await startPull(certs, served.port, {
    to: `relp://127.0.0.1:${port}`,
    args,
  });
  await sender;
  await waitFor(async () => await unique(file, "kill", total) === total, {
    what: `${total} in the home file`,
    timeoutMs: 30_000,
  });
  const result = audit(await readOrEmpty(file), "kill", total);
  console.log(`relp, pull SIGKILLed at 4,000 msg/s: ${JSON.stringify(result)}`);
  assert.equal(result.missing, 0);
  assert.ok(result.duplicates <= 500 + 1000 + 1024, `${result.duplicates} duplicates`);
});
