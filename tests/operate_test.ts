/**
 * Running it for real: metrics, many upstreams in one pull, and a graceful
 * stop under load with a spool.
 */

import assert from "node:assert/strict";
import {
  freePort,
  makeCerts,
  readOrEmpty,
  runProgram,
  startReclog,
  tempDir,
  waitFor,
} from "./helpers.ts";
import { indices, numbered, sendTcp, sendUdp, startPull, startServe } from "./relay.ts";

/** A strict reading of the Prometheus text format; returns series → value. */
function parsePrometheus(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  const declared = new Map<string, string>();
  const name = "[a-zA-Z_:][a-zA-Z0-9_:]*";
  const label = `[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*"`;
  const sample = new RegExp(
    `^(${name})(\\{${label}(?:,${label})*\\})? (-?[0-9.]+(?:e[+-]?[0-9]+)?|NaN|[+-]Inf)$`,
  );
  assert.ok(text.endsWith("\n"), "ends with a newline");
  for (const line of text.slice(0, -1).split("\n")) {
    let match;
    if ((match = line.match(new RegExp(`^# HELP (${name}) .*$`)))) continue;
    if ((match = line.match(new RegExp(`^# TYPE (${name}) (counter|gauge)$`)))) {
      assert.ok(!declared.has(match[1]!), `TYPE of ${match[1]} given once`);
      declared.set(match[1]!, match[2]!);
      continue;
    }
    match = line.match(sample);
    assert.ok(match, `a valid sample line: ${JSON.stringify(line)}`);
    assert.ok(declared.has(match[1]!), `${match[1]} declared before its samples`);
    const series = match[1]! + (match[2] ?? "");
    assert.ok(!samples.has(series), `${series} once`);
    samples.set(series, Number(match[3]));
  }
  return samples;
}

async function scrape(port: number): Promise<Map<string, number>> {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  return parsePrometheus(await response.text());
}

Deno.test("--metrics: Prometheus text format whose counters match what was sent and received", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const served = await startServe(certs, { tcp: true, args: ["--metrics", "127.0.0.1:0"] });
  await using serve = served.process;
  const serveMetrics = await serve.waitForListening("metrics");
  await using pull = await startPull(certs, served.port, {
    args: ["--live", "--metrics", "127.0.0.1:0"],
  });
  const pullMetrics = await pull.waitForListening("metrics");

  await sendUdp(served.udpPort, numbered("met", 0, 100));
  await sendTcp(served.tcpPort!, numbered("met", 100, 50));
  await waitFor(() => indices(pull.stdout, "met").length === 150, { what: "150 messages" });
  const bytesIn = numbered("met", 0, 150).reduce((n, m) => n + m.length, 0);

  const server = await scrape(serveMetrics);
  assert.equal(server.get('reclog_input_messages_total{input="syslog-in 127.0.0.1:0"}'), 100);
  assert.equal(server.get('reclog_input_messages_total{input="syslog-in tcp://127.0.0.1:0"}'), 50);
  assert.equal(
    (server.get('reclog_input_bytes_total{input="syslog-in 127.0.0.1:0"}') ?? 0) +
      (server.get('reclog_input_bytes_total{input="syslog-in tcp://127.0.0.1:0"}') ?? 0),
    bytesIn,
  );
  assert.equal(server.get("reclog_journal_entries"), 150);
  assert.equal(server.get("reclog_journal_next_seq"), 151);
  assert.equal(server.get("reclog_clients_connected"), 1);
  const sent = [...server].filter(([k]) => k.startsWith("reclog_client_messages_total{"));
  assert.deepEqual(sent.map(([, v]) => v), [150]);
  assert.equal(server.get('reclog_udp_receive_drops{input="syslog-in 127.0.0.1:0"}'), 0);

  const client = await scrape(pullMetrics);
  const upstream = `upstream="127.0.0.1:${served.port}"`;
  assert.equal(client.get(`reclog_pull_messages_total{${upstream}}`), 150);
  assert.equal(client.get(`reclog_pull_connected{${upstream}}`), 1);
  assert.equal(client.get(`reclog_pull_lost_messages_total{${upstream}}`), 0);
  const health = await fetch(`http://127.0.0.1:${pullMetrics}/healthz`);
  assert.equal(health.status, 200);
  assert.equal(await health.text(), "ok\n");

  // A refused client shows up by reason.
  const refused = await runProgram("sh", [
    "-c",
    `openssl s_client -connect 127.0.0.1:${served.port} -servername localhost -CAfile ${certs.ca} </dev/null`,
  ]);
  assert.doesNotMatch(refused.stdout, /<14>met/);
  await waitFor(
    async () =>
      (await scrape(serveMetrics)).get('reclog_tls_refusals_total{reason="no_certificate"}') === 1,
    { what: "one refusal counted as no_certificate" },
  );
});

Deno.test("pull --config: two upstreams, one of them down: the other flows, the status file names the down one", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const served = await startServe(certs);
  await using _serve = served.process;
  const downPort = freePort();
  const config = `${dir.path}/pull.json`;
  const status = `${dir.path}/status`;
  const base = {
    cert: certs.clientCert,
    key: certs.clientKey,
    ca: certs.ca,
    serverName: "localhost",
  };
  await Deno.writeTextFile(
    config,
    JSON.stringify({
      statusFile: status,
      upstreams: [
        {
          name: "alive",
          server: `127.0.0.1:${served.port}`,
          mirror: `${dir.path}/alive`,
          state: `${dir.path}/alive.state`,
          ...base,
        },
        {
          name: "down",
          server: `127.0.0.1:${downPort}`,
          mirror: `${dir.path}/down`,
          state: `${dir.path}/down.state`,
          ...base,
        },
      ],
    }),
  );
  await using pull = startReclog(["pull", "--config", config]);
  await pull.waitForStderr(/connected to alive/);
  await sendUdp(served.udpPort, ["<14>through the live upstream"]);
  await waitFor(
    async () =>
      (await readOrEmpty(`${dir.path}/alive/syslog`)) === "<14>through the live upstream\n",
    { what: "the message from the live upstream" },
  );
  await waitFor(async () => /^disconnected from down since \S+$/m.test(await readOrEmpty(status)), {
    what: () => `the status file to name the down upstream: ${Deno.readTextFileSync(status)}`,
  });
  assert.doesNotMatch(await readOrEmpty(status), /alive/);
  pull.kill("SIGTERM");
  assert.equal((await pull.wait()).code, 0);
});

Deno.test("pull --config errors name the file and the upstream", async () => {
  await using dir = await tempDir();
  const config = `${dir.path}/bad.json`;
  await Deno.writeTextFile(config, JSON.stringify({ upstreams: [{ server: "x:1", cert: "a" }] }));
  await using pull = startReclog(["pull", "--config", config]);
  assert.equal((await pull.wait()).code, 2);
  assert.match(pull.stderr, /--config '.*bad\.json', upstreams\[0\]: "key" is required/);
});

Deno.test("SIGTERM under load with --spool: after a restart the client has every accepted message once", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const spool = `${dir.path}/spool`;
  const first = await startServe(certs, { tcp: true, args: ["--spool", spool] });
  const port = first.port;
  await using pull = await startPull(certs, port, { args: ["--state", `${dir.path}/state`] });
  const sending = sendTcp(first.tcpPort!, numbered("term", 0, 100_000)).catch(() => {});
  await waitFor(() => indices(pull.stdout, "term").length > 10_000, { what: "ingest under way" });
  first.process.kill("SIGTERM");
  assert.equal((await first.process.wait(5000)).code, 0, "exit 0 within 5 s");
  await first.process[Symbol.asyncDispose]();
  await sending;
  const second = await startServe(certs, { args: ["--spool", spool], port });
  await using _second = second.process;
  const restored = await second.process.waitForStderr(/next seq (\d+)/);
  const accepted = Number(restored[1]) - 1;
  await waitFor(() => indices(pull.stdout, "term").length >= accepted, {
    timeoutMs: 30_000,
    what: () => `${accepted} messages (have ${indices(pull.stdout, "term").length})`,
  });
  assert.deepEqual(
    indices(pull.stdout, "term"),
    Array.from({ length: accepted }, (_, i) => i),
    "every accepted message once, in order",
  );
});
