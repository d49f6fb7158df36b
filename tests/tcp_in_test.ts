/**
 * The seed's second socat variant without an ssh tunnel: lines from nc and
 * `reclog send` into `serve --tcp-in` on the VPS, and `pull --mirror` writing
 * them to a file at home.
 */

import assert from "node:assert/strict";
import { makeCerts, readOrEmpty, runProgram, startReclog, tempDir, waitFor } from "./helpers.ts";
import { sendUdp, startPull, startServe } from "./relay.ts";

Deno.test("serve --tcp-in + pull --mirror: lines from nc and reclog send land in DIR/tcp", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const served = await startServe(certs, { args: ["--tcp-in", "127.0.0.1:0"] });
  await using serve = served.process;
  const tcpIn = await serve.waitForListening("tcp-in");
  const mirror = `${dir.path}/mirror`;
  await using _pull = await startPull(certs, served.port, {
    to: null,
    args: ["--live", "--mirror", mirror],
  });

  const ncLines = Array.from({ length: 200 }, (_, i) => `nc line ${i} ${"n".repeat(i * 7)}`);
  const nc = await runProgram("nc", ["-N", "127.0.0.1", String(tcpIn)], {
    stdin: ncLines.join("\r\n") + "\r\n", // telnet-style line ends become LF
  });
  assert.equal(nc.code, 0, nc.stderr);
  const sendLines = Array.from({ length: 200 }, (_, i) => `send line ${i}`);
  {
    await using send = startReclog([
      "send",
      `127.0.0.1:${tcpIn}`,
      "--",
      "sh",
      "-c",
      `
      i=0; while [ $i -lt 200 ]; do echo "send line $i"; i=$((i+1)); done; printf 'no newline at end'`,
    ]);
    assert.equal((await send.wait(30_000)).code, 0, send.stderr);
  }
  await sendUdp(served.udpPort, ["<13>Nov 21 10:00:00 vps app: a syslog line"]);

  const expected = ncLines.length + sendLines.length + 1;
  await waitFor(
    async () => (await readOrEmpty(`${mirror}/tcp`)).split("\n").length > expected,
    { what: () => `${expected} lines in ${mirror}/tcp` },
  );
  const lines = (await readOrEmpty(`${mirror}/tcp`)).trimEnd().split("\n");
  const odd = lines.filter((l) => !ncLines.includes(l) && !sendLines.includes(l));
  assert.deepEqual(odd.map((l) => l.slice(0, 40) + ` (${l.length})`), ["no newline at end (17)"]);
  assert.deepEqual(lines.filter((l) => l.startsWith("nc ")), ncLines);
  assert.deepEqual(lines.filter((l) => l.startsWith("send ")), sendLines);
  assert.ok(lines.includes("no newline at end"));
  await waitFor(async () => (await readOrEmpty(`${mirror}/syslog`)).length > 0, {
    what: "the syslog stream's mirror file",
  });
  assert.equal(
    await readOrEmpty(`${mirror}/syslog`),
    "<13>Nov 21 10:00:00 vps app: a syslog line\n",
  );
});
