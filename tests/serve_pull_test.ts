/**
 * End-to-end tests of `serve` and `pull` over real sockets on loopback,
 * against real peers: logger (util-linux) and rsyslog.
 */

import assert from "node:assert/strict";
import {
  freePort,
  makeCerts,
  readOrEmpty,
  runProgram,
  runReclog,
  startRsyslog,
  tempDir,
  waitFor,
} from "./helpers.ts";
import { sendUdp, startPull, startServe } from "./relay.ts";

Deno.test("logger → serve → two pulls → rsyslog: byte-exact, in order, non-ASCII kept", async () => {
  await using dir = await tempDir();
  // Certificates made by reclog certs itself, as a user would.
  const certDir = `${dir.path}/pki`;
  const init = await runReclog([
    "certs",
    "init",
    "--dir",
    certDir,
    "--server-name",
    "localhost",
    "--ip",
    "127.0.0.1",
  ]);
  assert.equal(init.code, 0, init.stderr);
  const client = await runReclog(["certs", "client", "home", "--dir", certDir]);
  assert.equal(client.code, 0, client.stderr);
  const certs = {
    ca: `${certDir}/ca.pem`,
    caKey: `${certDir}/ca.key`,
    serverCert: `${certDir}/server.pem`,
    serverKey: `${certDir}/server.key`,
    clientCert: `${certDir}/home.pem`,
    clientKey: `${certDir}/home.key`,
    caIssued: { certPem: "", keyPem: "" },
  };

  const portA = freePort("udp");
  const portB = freePort("udp");
  await using _rsyslog = await startRsyslog({
    dir: `${dir.path}/rsyslog`,
    rules: `
module(load="imudp")
template(name="raw" type="string" string="%rawmsg%\\n")
input(type="imudp" address="127.0.0.1" port="${portA}" ruleset="a")
input(type="imudp" address="127.0.0.1" port="${portB}" ruleset="b")
ruleset(name="a") { action(type="omfile" file="${dir.path}/a.log" template="raw") }
ruleset(name="b") { action(type="omfile" file="${dir.path}/b.log" template="raw") }
`,
    readyUdpPort: portB,
  });

  const serve = await startServe(certs);
  await using _serve = serve.process;
  await using _pullA = await startPull(certs, serve.port, { to: `udp://127.0.0.1:${portA}` });
  await using _pullB = await startPull(certs, serve.port, { to: `udp://127.0.0.1:${portB}` });
  await serve.process.waitForStderr(/connected[\s\S]*connected/);

  const texts = [
    "plain ascii message 1",
    "non-ASCII: Grüße aus Köln, 日本語, emoji 🚀",
    "message 3 with   spaces  and\ttab",
  ];
  for (const text of texts) {
    const out = await runProgram("logger", [
      "--rfc3164",
      "-n",
      "127.0.0.1",
      "-P",
      String(serve.udpPort),
      "-d",
      "-t",
      "reclogtest",
      text,
    ]);
    assert.equal(out.code, 0, out.stderr);
    const out5424 = await runProgram("logger", [
      "--rfc5424",
      "-n",
      "127.0.0.1",
      "-P",
      String(serve.udpPort),
      "-d",
      "-t",
      "reclogtest",
      text,
    ]);
    assert.equal(out5424.code, 0, out5424.stderr);
  }
  for (const file of ["a.log", "b.log"]) {
    await waitFor(
      async () => (await readOrEmpty(`${dir.path}/${file}`)).split("\n").length > texts.length * 2,
      { what: `six messages in ${file}` },
    );
    const lines = (await readOrEmpty(`${dir.path}/${file}`)).trimEnd().split("\n");
    assert.equal(lines.length, texts.length * 2);
    texts.forEach((text, i) => {
      assert.match(lines[2 * i]!, /^<13>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ reclogtest: /);
      assert.ok(lines[2 * i]!.endsWith(`reclogtest: ${text}`), lines[2 * i]);
      assert.match(lines[2 * i + 1]!, /^<13>1 \d{4}-\d\d-\d\dT\S+ \S+ reclogtest /);
      assert.ok(lines[2 * i + 1]!.endsWith(` ${text}`), lines[2 * i + 1]);
    });
  }
});

Deno.test("bytes survive exactly: invalid UTF-8 and NUL, many messages in order", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const served = await startServe(certs);
  await using _serve = served.process;
  await using pull = await startPull(certs, served.port, { to: "-" });
  const messages: Uint8Array[] = [];
  for (let i = 0; i < 500; i++) {
    messages.push(
      new Uint8Array([...new TextEncoder().encode(`<14>msg ${i} `), 0xff, 0xfe, 0x00, 0x41]),
    );
  }
  await sendUdp(served.udpPort, messages);
  const expected = new Uint8Array(messages.reduce((n, m) => n + m.length + 1, 0));
  let offset = 0;
  for (const m of messages) {
    expected.set(m, offset);
    expected[offset + m.length] = 0x0a;
    offset += m.length + 1;
  }
  const received = () => {
    const all = new Uint8Array(pull.stdoutBytes.reduce((n, c) => n + c.length, 0));
    let o = 0;
    for (const c of pull.stdoutBytes) {
      all.set(c, o);
      o += c.length;
    }
    return all;
  };
  await waitFor(() => received().length >= expected.length, {
    what: () => `${expected.length} bytes on pull's stdout (have ${received().length})`,
  });
  assert.deepEqual(received(), expected);
});

Deno.test("TCP syslog input (octet counting and newline framing) reaches pull over a TCP sink", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const rsyslogPort = freePort("tcp");
  await using _rsyslog = await startRsyslog({
    dir: `${dir.path}/rsyslog`,
    rules: `
module(load="imtcp")
template(name="raw" type="string" string="%rawmsg%\\n")
input(type="imtcp" address="127.0.0.1" port="${rsyslogPort}" ruleset="a")
ruleset(name="a") { action(type="omfile" file="${dir.path}/tcp.log" template="raw") }
`,
    readyTcpPort: rsyslogPort,
  });
  const served = await startServe(certs, { tcp: true });
  await using _serve = served.process;
  await using _pull = await startPull(certs, served.port, { to: `tcp://127.0.0.1:${rsyslogPort}` });
  // logger -T uses octet counting; a raw connection uses newline framing.
  for (let i = 0; i < 3; i++) {
    const out = await runProgram("logger", [
      "--rfc3164",
      "-T",
      "-n",
      "127.0.0.1",
      "-P",
      String(served.tcpPort),
      "-t",
      "tcptest",
      `octet counted ${i}`,
    ]);
    assert.equal(out.code, 0, out.stderr);
  }
  {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port: served.tcpPort! });
    await conn.write(
      new TextEncoder().encode(
        "<13>Nov 21 10:00:00 host nl: newline 1\n<13>Nov 21 10:00:00 host nl: newline 2\n",
      ),
    );
  }
  await waitFor(
    async () => (await readOrEmpty(`${dir.path}/tcp.log`)).trimEnd().split("\n").length >= 5,
    { what: () => `five lines in tcp.log: ${Deno.readTextFileSync(`${dir.path}/tcp.log`)}` },
  );
  const lines = (await readOrEmpty(`${dir.path}/tcp.log`)).trimEnd().split("\n");
  assert.deepEqual(lines.slice(0, 3).map((l) => l.replace(/^.*tcptest: /, "")), [
    "octet counted 0",
    "octet counted 1",
    "octet counted 2",
  ]);
  assert.deepEqual(lines.slice(3), [
    "<13>Nov 21 10:00:00 host nl: newline 1",
    "<13>Nov 21 10:00:00 host nl: newline 2",
  ]);
});

Deno.test("serve killed and restarted: pull reconnects by itself and messages flow again", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const first = await startServe(certs);
  const port = first.port;
  await using pull = await startPull(certs, port, { to: "-" });
  await sendUdp(first.udpPort, ["<14>before restart"]);
  await waitFor(() => pull.stdout.includes("<14>before restart\n"), { what: "first message" });
  first.process.kill("SIGKILL");
  await first.process.wait();
  await pull.waitForStderr(/reconnecting in/);
  const second = await startServe(certs, { port });
  await using _second = second.process;
  await pull.waitForStderr(/connected to [\s\S]*connected to /, 20_000);
  await sendUdp(second.udpPort, ["<14>after restart"]);
  await waitFor(() => pull.stdout.includes("<14>after restart\n"), {
    what: "message after restart",
  });
  await first.process[Symbol.asyncDispose]();
});

Deno.test("SIGTERM stops serve and pull promptly with exit code 0", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const served = await startServe(certs);
  await using serve = served.process;
  await using pull = await startPull(certs, served.port);
  pull.kill("SIGTERM");
  assert.equal((await pull.wait(5000)).code, 0, pull.stderr);
  serve.kill("SIGINT");
  assert.equal((await serve.wait(5000)).code, 0, serve.stderr);
});
