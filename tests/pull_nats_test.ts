/**
 * `pull --from nats://` against a real nats-server (started here on a free
 * loopback port): serve → JetStream → two durables → two mirrors, each
 * message once per durable, in order; two pulls sharing a durable split the
 * messages and together get every one; a pull SIGKILLed mid-flow and started
 * again resumes from its durable with nothing lost and duplicates within one
 * batch; a gap in an origin's numbers is reported as a loss; usage errors
 * exit 2 with one line.
 */

import assert from "node:assert/strict";
import { AckPolicy, DeliverPolicy, jetstreamManager } from "@nats-io/jetstream";
import { JetStreamSink } from "../lib/sinks/nats.ts";
import { connectNats } from "../lib/transport/nats_connect.ts";
import { NatsServer } from "../lib/transport/nats_server.ts";
import { RelpServer } from "../lib/transport/relp_server.ts";
import { makeCerts, readOrEmpty, runReclog, startReclog, tempDir, waitFor } from "./helpers.ts";
import { numbered, sendTcp, startServe } from "./relay.ts";
import { publishAll, SeqBatch } from "./nats_helpers_test.ts";

/** The batch size of pull's JetStream source: what a SIGKILL may send twice. */
const BATCH = 256;

function listing(path: string): string {
  const out: string[] = [];
  const walk = (p: string) => {
    for (const e of Deno.readDirSync(p)) {
      if (e.isDirectory && e.name !== "nats") walk(`${p}/${e.name}`);
      else out.push(`${p}/${e.name}`);
    }
  };
  walk(path);
  return out.join(" ");
}

function pullArgs(url: string, durable: string, ...extra: string[]): string[] {
  return ["pull", "--from", url, "--nats-stream", "LOGS", "--durable", durable, ...extra];
}

async function fileLines(path: string): Promise<string[]> {
  return (await readOrEmpty(path)).split("\n").filter((line) => line !== "");
}

/** The numbers of `<13>message N` lines. */
function numbers(text: string): number[] {
  return [...text.matchAll(/message (\d+)/g)].map((m) => Number(m[1]));
}

/** Makes the durable before any pull does, with a short ack_wait (a restart waits for it). */
async function addDurable(url: string, durable: string, ackWaitMs: number): Promise<void> {
  const nc = await connectNats({ servers: [url] });
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.consumers.add("LOGS", {
      durable_name: durable,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: ackWaitMs * 1e6,
      max_ack_pending: 8192,
    });
  } finally {
    await nc.close();
  }
}

Deno.test({
  name: "pull --from nats: serve → JetStream → two durables → two mirrors, once each, in order",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using dir = await tempDir();
    const certs = await makeCerts(dir.path);
    await using nats = await NatsServer.start({ dir: `${dir.path}/nats` });
    const served = await startServe(certs, {
      tcp: true,
      args: ["--publish", nats.url, "--nats-stream", "LOGS", "--nats-create"],
    });
    await using serve = served.process;
    await serve.waitForStderr(/publishing to /);
    const texts = numbered("nats", 0, 3000);
    await sendTcp(served.tcpPort!, texts.slice(0, 1500));
    const status = `${dir.path}/status`;
    await using a = startReclog(
      pullArgs(nats.url, "a", "--mirror", `${dir.path}/a`, "--status-file", status),
    );
    await using b = startReclog(pullArgs(nats.url, "b", "--mirror", `${dir.path}/b`));
    await a.waitForStderr(/reading nats:/);
    await b.waitForStderr(/reading nats:/);
    await sendTcp(served.tcpPort!, texts.slice(1500));
    const host = Deno.hostname().replace(/[^A-Za-z0-9._-]/g, "_");
    for (const name of ["a", "b"]) {
      const path = `${dir.path}/${name}/${host}/syslog`;
      await waitFor(async () => (await fileLines(path)).length >= texts.length, {
        what: () => `${texts.length} lines in ${path}: ${listing(dir.path)}\n${a.stderr}`,
        timeoutMs: 60_000,
      });
      assert.deepEqual(await fileLines(path), texts, `mirror ${name}`);
    }
    assert.equal((await Deno.readTextFile(status)).trim(), "OK");
    for (const pull of [a, b]) {
      pull.kill("SIGTERM");
      assert.equal((await pull.wait()).code, 0, pull.stderr);
      assert.doesNotMatch(pull.stderr, /lost/);
    }
    serve.kill("SIGTERM");
    assert.equal((await serve.wait()).code, 0, serve.stderr);
  },
});

Deno.test({
  name: "pull --from nats: two pulls on one durable split the messages, together all of them",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using dir = await tempDir();
    await using nats = await NatsServer.start({ dir: `${dir.path}/nats` });
    await using sink = new JetStreamSink({
      servers: [nats.url],
      stream: "LOGS",
      host: "web1",
      createStream: {},
    });
    await sink.write(new SeqBatch(0, 1));
    await using one = startReclog(pullArgs(nats.url, "shared", "--to", "-"));
    await one.waitForStderr(/reading nats:/);
    await using two = startReclog(pullArgs(nats.url, "shared", "--to", "-"));
    await two.waitForStderr(/reading nats:/);
    const total = 20_000;
    await publishAll(sink, total, 500);
    await waitFor(() => new Set([...numbers(one.stdout), ...numbers(two.stdout)]).size >= total, {
      what: `${total} messages over both pulls`,
      timeoutMs: 90_000,
    });
    const got = [...numbers(one.stdout), ...numbers(two.stdout)];
    assert.equal(new Set(got).size, total);
    const [n1, n2] = [numbers(one.stdout).length, numbers(two.stdout).length];
    console.log(`shared durable: ${n1} + ${n2} messages, ${got.length - total} twice`);
    assert.ok(n1 > 0 && n2 > 0, `one pull got nothing (${n1} + ${n2})`);
    assert.equal(got.length, total, "no message twice without a crash");
    // Each in order within what it got.
    for (const pull of [one, two]) {
      const seen = numbers(pull.stdout);
      assert.ok(seen.every((n, i) => i === 0 || n > seen[i - 1]!), "in order");
      pull.kill("SIGTERM");
      assert.equal((await pull.wait()).code, 0, pull.stderr);
    }
  },
});

Deno.test({
  name: `pull --from nats SIGKILLed mid-flow and restarted: nothing lost, duplicates <= ${BATCH}`,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using dir = await tempDir();
    await using nats = await NatsServer.start({ dir: `${dir.path}/nats` });
    await using sink = new JetStreamSink({
      servers: [nats.url],
      stream: "LOGS",
      host: "web1",
      createStream: {},
    });
    const total = 40_000;
    await publishAll(sink, total, 1000);
    await addDurable(nats.url, "home", 3000);
    const metricsPort = (await import("../lib/transport/nats_server.ts")).freePort();
    let first: string;
    {
      await using pull = startReclog(pullArgs(nats.url, "home", "--to", "-"));
      await waitFor(() => numbers(pull.stdout).length >= total / 4, {
        what: "a quarter of the messages before the kill",
        timeoutMs: 60_000,
      });
      pull.kill("SIGKILL");
      await pull.wait();
      first = pull.stdout;
    }
    const before = numbers(first);
    assert.ok(before.length < total, `all ${total} came before the kill`);
    assert.deepEqual(before, [...before.keys()], "in order before the kill");
    await using again = startReclog(
      pullArgs(nats.url, "home", "--to", "-", "--metrics", `127.0.0.1:${metricsPort}`),
    );
    await waitFor(() => new Set([...before, ...numbers(again.stdout)]).size >= total, {
      what: `all ${total} messages after the restart`,
      timeoutMs: 90_000,
    });
    const after = numbers(again.stdout);
    assert.equal(new Set([...before, ...after]).size, total, "nothing lost");
    const duplicates = before.length + after.length - total;
    console.log(
      `killed after ${before.length} messages; restarted at ${
        after[0]
      }; ${duplicates} duplicates (bound ${BATCH})`,
    );
    assert.ok(duplicates <= BATCH, `${duplicates} duplicates`);
    assert.ok(after.every((n, i) => i === 0 || n === after[i - 1]! + 1), "in order after restart");
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.match(metrics, /reclog_pull_connected\{upstream="nats:LOGS\/home"\} 1/);
    assert.match(
      metrics,
      new RegExp(`reclog_pull_messages_total\\{upstream="nats:LOGS/home"\\} ${after.length}`),
    );
    again.kill("SIGTERM");
    assert.equal((await again.wait()).code, 0, again.stderr);
  },
});

Deno.test({
  name:
    `pull --from nats --to relp:// (a slow receiver) SIGKILLed mid-batch: nothing lost, duplicates <= ${BATCH}`,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using dir = await tempDir();
    await using nats = await NatsServer.start({ dir: `${dir.path}/nats` });
    await using sink = new JetStreamSink({
      servers: [nats.url],
      stream: "LOGS",
      host: "web1",
      createStream: {},
    });
    const total = 20_000;
    await publishAll(sink, total, 1000);
    await addDurable(nats.url, "home", 3000);
    const taken: number[] = [];
    const decoder = new TextDecoder();
    // Slow: each transaction waits a little, so the kill lands inside a sink write.
    const server = new RelpServer({
      port: 0,
      onBatch: async (messages) => {
        await new Promise((resolve) => setTimeout(resolve, 1));
        for (const m of messages) taken.push(...numbers(decoder.decode(m)));
      },
    });
    const port = (await server.listen()).port;
    try {
      const to = `relp://127.0.0.1:${port}`;
      let atKill = 0;
      {
        await using pull = startReclog(pullArgs(nats.url, "home", "--to", to));
        await waitFor(() => taken.length >= total / 4, {
          what: "a quarter of the messages before the kill",
          timeoutMs: 60_000,
        });
        pull.kill("SIGKILL");
        await pull.wait();
        atKill = taken.length;
      }
      await using again = startReclog(pullArgs(nats.url, "home", "--to", to));
      await waitFor(() => new Set(taken).size >= total, {
        what: () => `all ${total} after the restart (${new Set(taken).size}):\n${again.stderr}`,
        timeoutMs: 90_000,
      });
      const duplicates = taken.length - total;
      console.log(
        `relp: killed after ${atKill} taken; ${duplicates} duplicates (bound ${BATCH})`,
      );
      assert.equal(new Set(taken).size, total, "nothing lost");
      assert.ok(duplicates <= BATCH, `${duplicates} duplicates`);
      again.kill("SIGTERM");
      assert.equal((await again.wait()).code, 0, again.stderr);
    } finally {
      await server.close();
    }
  },
});

Deno.test({
  name: "pull --from nats: a gap in an origin's numbers is reported lost, as a server's L frame",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using dir = await tempDir();
    await using nats = await NatsServer.start({ dir: `${dir.path}/nats` });
    await using sink = new JetStreamSink({
      servers: [nats.url],
      stream: "LOGS",
      host: "web1",
      createStream: {},
    });
    await sink.write(new SeqBatch(1, 100));
    await sink.write(new SeqBatch(150, 200)); // 100..149 never published (a journal that dropped them)
    const status = `${dir.path}/status`;
    await using pull = startReclog(
      pullArgs(nats.url, "home", "--mirror", `${dir.path}/m`, "--status-file", status),
    );
    const path = `${dir.path}/m/web1/syslog`;
    await waitFor(async () => numbers(await readOrEmpty(path)).includes(198), {
      what: `message 198 in ${path}`,
      timeoutMs: 30_000,
    });
    const text = await readOrEmpty(path);
    assert.match(text, /reclog: 50 messages from web1 lost \(seq 100\.\.149\)/);
    assert.match(pull.stderr, /50 messages from web1 lost/);
    await waitFor(async () => /lost/.test(await readOrEmpty(status)), { what: "lost in status" });
    pull.kill("SIGTERM");
    assert.equal((await pull.wait()).code, 0, pull.stderr);
  },
});

Deno.test({
  name:
    "pull --from nats --mirror: a followed file rotated on the server is rotated at home, no loss",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using dir = await tempDir();
    const certs = await makeCerts(dir.path);
    await using nats = await NatsServer.start({ dir: `${dir.path}/nats` });
    const log = `${dir.path}/app.log`;
    const old = numbered("old", 0, 200).join("\n") + "\n";
    const current = numbered("new", 0, 200).join("\n") + "\n";
    await Deno.writeTextFile(log, "");
    const served = await startServe(certs, {
      args: [
        ...["--publish", nats.url, "--nats-stream", "LOGS", "--nats-create"],
        ...["--file", `${log}=app`, "--rotated", `${log}.*`],
      ],
    });
    await using serve = served.process;
    await serve.waitForStderr(/publishing to /);
    await using pull = startReclog(pullArgs(nats.url, "home", "--mirror", `${dir.path}/m`));
    const home = `${dir.path}/m/${Deno.hostname().replace(/[^A-Za-z0-9._-]/g, "_")}`;
    await Deno.writeTextFile(log, old, { append: true });
    await waitFor(async () => (await readOrEmpty(`${home}/app`)) === old, {
      what: () => `${home}/app to hold the first 200 lines: ${listing(dir.path)}\n${pull.stderr}`,
      timeoutMs: 30_000,
    });
    await Deno.rename(log, `${log}.1`);
    await Deno.writeTextFile(log, current);
    const rotatedCopy = async () => {
      for await (const entry of Deno.readDir(home)) {
        if (/^app\.\d{14}/.test(entry.name)) return await readOrEmpty(`${home}/${entry.name}`);
      }
      return undefined;
    };
    await waitFor(async () => (await readOrEmpty(`${home}/app`)) === current, {
      what: () => `${home}/app to hold the new file: ${listing(home)}\n${pull.stderr}`,
      timeoutMs: 30_000,
    });
    assert.equal(await rotatedCopy(), old);
    assert.doesNotMatch(pull.stderr, /lost/);
    pull.kill("SIGTERM");
    assert.equal((await pull.wait()).code, 0, pull.stderr);
    serve.kill("SIGTERM");
    assert.equal((await serve.wait()).code, 0, serve.stderr);
  },
});

Deno.test({
  name:
    "pull --from nats: status file and metrics follow the NATS connection; no loss across an outage",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using dir = await tempDir();
    await using nats = await NatsServer.start({ dir: `${dir.path}/nats` });
    await using sink = new JetStreamSink({
      servers: [nats.url],
      stream: "LOGS",
      host: "web1",
      createStream: {},
    });
    await sink.write(new SeqBatch(0, 1000));
    const status = `${dir.path}/status`;
    const metricsPort = (await import("../lib/transport/nats_server.ts")).freePort();
    await using pull = startReclog(
      pullArgs(nats.url, "home", "--to", "-", "--status-file", status),
    );
    await using watched = startReclog(
      pullArgs(nats.url, "other", "--to", "-", "--metrics", `127.0.0.1:${metricsPort}`),
    );
    const connected = async () =>
      /reclog_pull_connected\{upstream="nats:LOGS\/other"\} 1/.test(
        await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text(),
      );
    await waitFor(() => numbers(pull.stdout).length >= 1000, { what: "1000 before the outage" });
    await waitFor(connected, { what: "connected 1" });
    assert.equal((await readOrEmpty(status)).trim(), "OK");
    await nats.kill();
    await waitFor(async () => /disconnected from nats:/.test(await readOrEmpty(status)), {
      what: "the status file to say disconnected",
    });
    assert.equal(await connected(), false);
    const health = await fetch(`http://127.0.0.1:${metricsPort}/healthz`);
    await health.body?.cancel();
    assert.equal(health.status, 503);
    await nats.restart();
    await waitFor(async () => (await readOrEmpty(status)).trim() === "OK", {
      what: () => `the status file to say OK again; stderr:\n${pull.stderr}`,
      timeoutMs: 30_000,
    });
    await waitFor(connected, { what: "connected 1 again", timeoutMs: 30_000 });
    await sink.write(new SeqBatch(1000, 2000));
    await waitFor(() => new Set(numbers(pull.stdout)).size >= 2000, {
      what: "2000 after the outage",
      timeoutMs: 30_000,
    });
    assert.equal(new Set(numbers(pull.stdout)).size, 2000);
    for (const p of [pull, watched]) {
      p.kill("SIGTERM");
      assert.equal((await p.wait()).code, 0, p.stderr);
    }
  },
});

Deno.test({
  name:
    "pull --from nats --to relp://: a receiver that goes away is retried, NATS kept, nothing lost",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using dir = await tempDir();
    await using nats = await NatsServer.start({ dir: `${dir.path}/nats` });
    await using sink = new JetStreamSink({
      servers: [nats.url],
      stream: "LOGS",
      host: "web1",
      createStream: {},
    });
    const taken: number[] = [];
    const decoder = new TextDecoder();
    const receiver = (port: number) =>
      new RelpServer({
        port,
        onBatch: (messages) => {
          for (const m of messages) taken.push(...numbers(decoder.decode(m)));
          return Promise.resolve();
        },
      });
    let server = receiver(0);
    const port = (await server.listen()).port;
    await using pull = startReclog(pullArgs(nats.url, "home", "--to", `relp://127.0.0.1:${port}`));
    await sink.write(new SeqBatch(0, 1000));
    await waitFor(() => taken.length >= 1000, { what: "1000 before the receiver stops" });
    await server.close();
    await sink.write(new SeqBatch(1000, 2000));
    await pull.waitForStderr(/retrying in \d+ ms, holding the connection/, 30_000);
    server = receiver(port);
    await server.listen();
    try {
      await waitFor(() => new Set(taken).size >= 2000, {
        what: () =>
          `2000 after the receiver is back (${new Set(taken).size}); stderr:\n${pull.stderr}`,
        timeoutMs: 60_000,
      });
      assert.doesNotMatch(pull.stderr, /connection lost/);
      console.log(`receiver away and back: 2000 messages, ${taken.length - 2000} twice`);
      pull.kill("SIGTERM");
      assert.equal((await pull.wait()).code, 0, pull.stderr);
    } finally {
      await server.close();
    }
  },
});

Deno.test("pull --from nats: usage errors exit 2 with one line", async () => {
  const cases: [string[], RegExp][] = [
    [["pull", "--from", "nats://127.0.0.1:4222", "--durable", "d"], /needs --nats-stream/],
    [["pull", "--from", "nats://127.0.0.1:4222", "--nats-stream", "LOGS"], /needs --durable/],
    [[...pullArgs("nats://127.0.0.1:4222", "d"), "--state", "x"], /--state does not apply/],
    [[...pullArgs("nats://127.0.0.1:4222", "d"), "--server", "h:1"], /--server does not apply/],
    [[...pullArgs("http://127.0.0.1:4222", "d")], /--from: not a NATS server URL/],
    [[...pullArgs("nats://127.0.0.1:4222", "d a")], /--durable 'd a'/],
    [["pull", "--durable", "d"], /--durable needs --from/],
  ];
  for (const [args, pattern] of cases) {
    const result = await runReclog(args);
    assert.equal(result.code, 2, `${args.join(" ")}: ${result.stderr}`);
    assert.match(result.stderr, pattern);
    assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
  }
});
