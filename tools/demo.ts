/**
 * `deno task demo`: the main job on a throwaway default. Makes certificates
 * in a temporary folder, starts `serve` and `pull` on loopback, sends a few
 * syslog messages into the server, shows them arriving at the pull side, and
 * stops both.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { LineSplitStream } from "../lib/framing/lines.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const decoder = new TextDecoder();

function reclog(args: string[], _background = false) {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-q", "-P=reclog", `--config=${ROOT}deno.json`, `${ROOT}main.ts`, ...args],
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
    env: { NO_COLOR: "1" },
  }).spawn();
}

/** Reads a child's stream line by line, calling `onLine` for each. */
async function collect(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void) {
  for await (const lines of stream.pipeThrough(new LineSplitStream({ telnet: false }))) {
    for (const line of lines) onLine(decoder.decode(line));
  }
}

async function waitFor<T>(what: string, probe: () => T | undefined, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`demo: timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const dir = await Deno.makeTempDir({ prefix: "reclog-demo-" });
try {
  console.log(`1. Certificates in ${dir} (reclog certs init + client):`);
  for (
    const args of [
      ["certs", "init", "--dir", dir, "--server-name", "localhost", "--ip", "127.0.0.1"],
      ["certs", "client", "home", "--dir", dir],
    ]
  ) {
    const out = await reclog(args).output();
    if (!out.success) {
      throw new Error(`reclog ${args.join(" ")} failed:\n${decoder.decode(out.stderr)}`);
    }
  }
  console.log("   ca.pem ca.key server.pem server.key home.pem home.key\n");

  console.log("2. reclog serve (syslog UDP in on 127.0.0.1, mTLS out on 127.0.0.1):");
  const serveLines: string[] = [];
  const serve = reclog([
    "serve",
    ...["--cert", `${dir}/server.pem`, "--key", `${dir}/server.key`, "--ca", `${dir}/ca.pem`],
    ...["--listen", "127.0.0.1:0", "--syslog-in", "127.0.0.1:0"],
  ], true);
  const serveDone = Promise.all([
    collect(serve.stderr, (line) => {
      serveLines.push(line);
      console.log(`   [serve] ${line}`);
    }),
    collect(serve.stdout, () => {}),
  ]);
  const portOf = (label: string) => () => {
    for (const line of serveLines) {
      const match = line.match(new RegExp(`${label} listening on \\S*:(\\d+)`));
      if (match) return Number(match[1]);
    }
    return undefined;
  };
  const udpPort = await waitFor("serve's syslog input", portOf("syslog-in udp"));
  const tlsPort = await waitFor("serve's mTLS listener", portOf("mTLS"));

  console.log("\n3. reclog pull (connects out, writes each message to stdout here):");
  const pullLines: string[] = [];
  const received: string[] = [];
  const pull = reclog([
    "pull",
    ...["--server", `127.0.0.1:${tlsPort}`, "--server-name", "localhost"],
    ...["--cert", `${dir}/home.pem`, "--key", `${dir}/home.key`, "--ca", `${dir}/ca.pem`],
    ...["--to", "-", "--live"],
  ], true);
  const pullDone = Promise.all([
    collect(pull.stderr, (line) => {
      pullLines.push(line);
      console.log(`   [pull]  ${line}`);
    }),
    collect(pull.stdout, (line) => {
      received.push(line);
      console.log(`   [pull → stdout] ${line}`);
    }),
  ]);
  await waitFor(
    "pull to connect",
    () => pullLines.some((l) => l.includes("connected to")) || undefined,
  );

  console.log("\n4. Three syslog messages into serve's UDP input (as rsyslog would forward them):");
  const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const host = Deno.hostname();
  const messages = [
    `<13>${stamp()} ${host} demo[${Deno.pid}]: hello from the VPS`,
    `<12>1 ${new Date().toISOString()} ${host} demo ${Deno.pid} - - RFC 5424 works too, Grüße ✓`,
    `<11>${stamp()} ${host} sshd[42]: error: this is what you would watch for`,
  ];
  for (const message of messages) {
    console.log(`   [send]  ${message}`);
    await socket.send(new TextEncoder().encode(message), {
      transport: "udp",
      hostname: "127.0.0.1",
      port: udpPort,
    });
  }
  socket.close();
  await waitFor(
    "the messages at the pull side",
    () => received.length >= messages.length || undefined,
  );

  console.log("\n5. Stopping both (SIGTERM):");
  pull.kill("SIGTERM");
  serve.kill("SIGTERM");
  const [pullStatus, serveStatus] = await Promise.all([pull.status, serve.status]);
  await Promise.all([pullDone, serveDone]);
  const exact = messages.every((m, i) => received[i] === m);
  console.log(
    `\nDone: ${received.length}/${messages.length} messages arrived ${
      exact ? "byte for byte, in order" : "BUT DIFFERED"
    }; exit codes: pull ${pullStatus.code}, serve ${serveStatus.code}.`,
  );
  if (!exact || pullStatus.code !== 0 || serveStatus.code !== 0) Deno.exitCode = 1;
} finally {
  await Deno.remove(dir, { recursive: true });
}

function stamp(): string {
  const d = new Date();
  const month = d.toLocaleString("en-US", { month: "short", timeZone: "UTC" });
  const time = d.toISOString().slice(11, 19);
  return `${month} ${String(d.getUTCDate()).padStart(2, " ")} ${time}`;
}
