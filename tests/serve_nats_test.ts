/**
 * `serve --publish` against a real nats-server (started here on a free
 * loopback port): messages sent to serve's TCP syslog input arrive in the
 * JetStream stream once each, in order, with `Nats-Msg-Id` EPOCH:SEQ; serve
 * SIGKILLed and restarted with --spool continues its publish point (and
 * JetStream drops what it publishes again), so the stream holds no duplicates.
 */

import assert from "node:assert/strict";
import { jetstreamManager } from "@nats-io/jetstream";
import { connectNats } from "../lib/transport/nats_connect.ts";
import { NatsServer } from "../lib/transport/nats_server.ts";
import { makeCerts, tempDir, waitFor } from "./helpers.ts";
import { numbered, sendTcp, startServe } from "./relay.ts";

interface Stored {
  id: string;
  seq: number;
  text: string;
}

async function streamContents(url: string): Promise<Stored[]> {
  const nc = await connectNats({ servers: [url] });
  try {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info("LOGS");
    const out: Stored[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq && seq > 0; seq++) {
      const m = await jsm.streams.getMessage("LOGS", { seq });
      if (!m) continue;
      out.push({
        id: m.header.get("Nats-Msg-Id"),
        seq: Number(m.header.get("Reclog-Seq")),
        text: m.string(),
      });
    }
    return out;
  } finally {
    await nc.close();
  }
}

async function streamCount(url: string): Promise<number> {
  const nc = await connectNats({ servers: [url] });
  try {
    return (await (await jetstreamManager(nc)).streams.info("LOGS")).state.messages;
  } catch {
    return 0;
  } finally {
    await nc.close();
  }
}

function publishArgs(url: string, spool?: string): string[] {
  return [
    "--publish",
    url,
    "--nats-stream",
    "LOGS",
    "--nats-create",
    ...(spool ? ["--spool", spool] : []),
  ];
}

function check(stored: Stored[], texts: string[]): void {
  assert.equal(stored.length, texts.length);
  const epoch = stored[0]!.id.split(":")[0]!;
  stored.forEach((m, i) => {
    assert.equal(m.seq, i + 1);
    assert.equal(m.id, `${epoch}:${i + 1}`);
    assert.equal(m.text, texts[i]);
  });
}

Deno.test({
  name: "serve --publish: 2,000 messages over TCP reach JetStream once each, in order",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using dir = await tempDir();
    const certs = await makeCerts(dir.path);
    await using nats = await NatsServer.start({ dir: `${dir.path}/nats` });
    const served = await startServe(certs, { tcp: true, args: publishArgs(nats.url) });
    await using serve = served.process;
    await serve.waitForStderr(/publishing to /);
    const texts = numbered("nats", 0, 2000);
    await sendTcp(served.tcpPort!, texts);
    await waitFor(async () => (await streamCount(nats.url)) >= 2000, {
      what: "2000 messages in the stream",
      timeoutMs: 30_000,
    });
    check(await streamContents(nats.url), texts);
    serve.kill("SIGTERM");
    assert.equal((await serve.wait()).code, 0, serve.stderr);
  },
});

Deno.test({
  name: "serve --publish --spool: SIGKILLed and restarted, the stream holds each message once",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using dir = await tempDir();
    const certs = await makeCerts(dir.path);
    await using nats = await NatsServer.start({ dir: `${dir.path}/nats` });
    const spool = `${dir.path}/spool`;
    const texts = numbered("nats", 0, 2000);
    {
      const served = await startServe(certs, { tcp: true, args: publishArgs(nats.url, spool) });
      await using serve = served.process;
      await serve.waitForStderr(/publishing to /);
      await sendTcp(served.tcpPort!, texts.slice(0, 1000));
      await waitFor(async () => (await streamCount(nats.url)) >= 1000, {
        what: "1000 messages in the stream",
        timeoutMs: 30_000,
      });
      // Let the publish point be saved once, then kill: what follows it is published again.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      serve.kill("SIGKILL");
      await serve.wait();
    }
    const state = JSON.parse(await Deno.readTextFile(`${spool}/nats-publish.json`));
    assert.equal(state.next, 1001);
    // A publish point saved behind (as after a kill right after publishing) is harmless too.
    await Deno.writeTextFile(
      `${spool}/nats-publish.json`,
      JSON.stringify({ epoch: state.epoch, next: 900 }),
    );
    const served = await startServe(certs, { tcp: true, args: publishArgs(nats.url, spool) });
    await using serve = served.process;
    await serve.waitForStderr(/publishing to /);
    await sendTcp(served.tcpPort!, texts.slice(1000));
    await waitFor(async () => (await streamCount(nats.url)) >= 2000, {
      what: "2000 messages in the stream",
      timeoutMs: 30_000,
    });
    await new Promise((resolve) => setTimeout(resolve, 500));
    const stored = await streamContents(nats.url);
    check(stored, texts);
    assert.equal(stored[0]!.id.split(":")[0], state.epoch);
    serve.kill("SIGTERM");
    assert.equal((await serve.wait()).code, 0, serve.stderr);
    const after = JSON.parse(await Deno.readTextFile(`${spool}/nats-publish.json`));
    assert.deepEqual(after, { epoch: state.epoch, next: 2001 });
  },
});
