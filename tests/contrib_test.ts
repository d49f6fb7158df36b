/**
 * Tests of contrib/: the rsyslog snippets are valid for rsyslogd and work for
 * real with reclog (forwarding through a restart of reclog,
 * filing per host, taking tlog recordings out), and the systemd units are
 * hardened, verified by systemd-analyze, and their command lines run.
 *
 * The committed files keep their real paths and ports; the tests substitute
 * temporary ones, and fail if a substituted string is no longer there.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  type CertPaths,
  freePort,
  makeCerts,
  readOrEmpty,
  reclogArgv,
  type Running,
  runProgram,
  startReclog,
  startRsyslog,
  tempDir,
  waitFor,
} from "./helpers.ts";
import { sendTcp, sendUdp, startPull, startServe } from "./relay.ts";
import { RelpSource } from "../lib/sources/relp.ts";
import { RelpClient } from "../lib/transport/relp_client.ts";

const CONTRIB = fileURLToPath(new URL("../contrib/", import.meta.url));
const decoder = new TextDecoder();

/** Replaces every `from` with `to`; fails if a `from` does not occur (the file changed). */
function substitute(text: string, pairs: Array<[string, string]>, what: string): string {
  for (const [from, to] of pairs) {
    assert.ok(text.includes(from), `${what} no longer contains ${JSON.stringify(from)}`);
    text = text.replaceAll(from, to);
  }
  return text;
}

/** A file of contrib/rsyslog with substitutions. */
async function snippet(name: string, pairs: Array<[string, string]> = []): Promise<string> {
  const text = await Deno.readTextFile(`${CONTRIB}rsyslog/${name}`);
  return substitute(text, pairs, `contrib/rsyslog/${name}`);
}

/** /var/log/ paths of the snippets, moved under `dir`. */
function logPaths(dir: string): Array<[string, string]> {
  return [["/var/log/", `${dir}/log/`]];
}

/** `rsyslogd -N1` (config check) of a config made of `body` after a global(). */
async function rsyslogCheck(dir: string, name: string, body: string): Promise<void> {
  await Deno.mkdir(`${dir}/work`, { recursive: true });
  const conf = `${dir}/${name}.conf`;
  await Deno.writeTextFile(conf, `global(workDirectory="${dir}/work")\n${body}\n`);
  const out = await runProgram("rsyslogd", ["-N1", "-f", conf]);
  assert.equal(out.code, 0, `rsyslogd -N1 refused ${name}:\n${out.stderr}${out.stdout}`);
  assert.doesNotMatch(out.stderr + out.stdout, /error|warning/i, `rsyslogd -N1 on ${name}`);
}

/** Sends one message with util-linux logger over UDP, RFC 3164, as a local program would. */
async function logger(port: number, tag: string, text: string): Promise<void> {
  const out = await runProgram("logger", [
    "--rfc3164",
    "-n",
    "127.0.0.1",
    "-P",
    String(port),
    "-d",
    "--size",
    "60000",
    "-p",
    "user.notice",
    "-t",
    tag,
    text,
  ]);
  assert.equal(out.code, 0, `logger failed: ${out.stderr}`);
}

/** Waits until the file contains every one of `texts`. */
async function waitForFile(path: string, texts: string[], timeoutMs = 15_000): Promise<string> {
  let content = "";
  await waitFor(async () => {
    content = await readOrEmpty(path);
    return texts.every((text) => content.includes(text));
  }, { timeoutMs, what: () => `${path} to contain ${JSON.stringify(texts)}; it has:\n${content}` });
  return content;
}

Deno.test("contrib/rsyslog: every snippet passes rsyslogd -N1", async () => {
  await using dir = await tempDir();
  // The VPS side alone.
  await rsyslogCheck(dir.path, "forward", await snippet("90-forward-to-reclog.conf"));
  // The tlog filter alone (it works without 10-reclog-receive.conf).
  await rsyslogCheck(
    dir.path,
    "tlog",
    await snippet("20-tlog.conf", logPaths(dir.path)),
  );
  // The home side: 10 calls 20's ruleset, so they are checked together, in
  // the order rsyslog includes /etc/rsyslog.d/*.conf.
  const port = freePort("udp");
  await rsyslogCheck(
    dir.path,
    "home",
    (await snippet("10-reclog-receive.conf", [
      ...logPaths(dir.path),
      ['port="514"', `port="${port}"`],
      ['port="2514"', `port="${freePort("tcp")}"`],
    ])) + "\n" + (await snippet("20-tlog.conf", logPaths(dir.path))),
  );
});

Deno.test(
  "contrib/rsyslog/90-forward-to-reclog.conf: logger → rsyslog omrelp → serve → pull, nothing lost or doubled while serve restarts",
  async () => {
    await using dir = await tempDir();
    const certs = await makeCerts(dir.path);
    const relpPort = freePort("tcp");
    const mtlsPort = freePort("tcp");
    const serveArgs = [
      "--syslog-in",
      `relp://127.0.0.1:${relpPort}`,
      "--spool",
      `${dir.path}/spool`,
    ];
    const startVps = async (): Promise<Running> => {
      const served = await startServe(certs, { port: mtlsPort, args: serveArgs });
      await served.process.waitForListening("syslog-in relp");
      return served.process;
    };

    const udpPort = freePort("udp");
    const seen = `${dir.path}/seen.log`;
    // The snippet in the default ruleset, as /etc/rsyslog.d/90-*.conf is, an
    // imudp input for logger, and a local file written after the forwarding
    // action: once a message is in it, it is in the forwarding queue.
    const rules = `module(load="imudp")
input(type="imudp" address="127.0.0.1" port="${udpPort}")
${await snippet("90-forward-to-reclog.conf", [['port="5142"', `port="${relpPort}"`]])}
action(type="omfile" file="${seen}" template="RSYSLOG_FileFormat")
`;

    await using serveA = await startVps();
    await using _rsyslog = await startRsyslog({
      dir: `${dir.path}/rsyslog`,
      rules,
      readyUdpPort: udpPort,
    });
    await using pull = await startPull(certs, mtlsPort, {
      args: ["--state", `${dir.path}/pull.state`],
    });

    const tag = "contribfwd";
    const texts = [
      "plain message 1",
      "non-ASCII: Grüße aus Köln, 日本語, emoji 🚀",
      'several   spaces, quotes "x" and {"json": true}',
    ];
    const hostname = Deno.hostname().split(".")[0]!;
    // What pull prints: RSYSLOG_ForwardFormat, the text exactly as logged.
    const linePattern = new RegExp(
      `^<13>\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d(?:\\.\\d+)?[+-]\\d\\d:\\d\\d (\\S+) ${tag}: (.*)$`,
      "gm",
    );
    const received = (): Array<{ host: string; text: string }> =>
      [...pull.stdout.matchAll(linePattern)].map((m) => ({ host: m[1]!, text: m[2]! }));
    const waitForTexts = (expected: string[], what: string) =>
      waitFor(() => received().length >= expected.length, {
        timeoutMs: 30_000,
        what: () => `${what}; pull printed:\n${pull.stdout}\npull stderr:\n${pull.stderr}`,
      });

    // 1. While everything runs.
    for (const text of texts) await logger(udpPort, tag, text);
    await waitForTexts(texts, "the messages through a running reclog");

    // 2. reclog serve stops (as systemd restarts it); rsyslog queues what is
    //    logged meanwhile and sends it once serve is back (action.resumeInterval).
    serveA.kill("SIGTERM");
    assert.equal((await serveA.wait()).code, 0, serveA.stderr);
    const whileDown = ["while reclog is down 1", "while reclog is down 2 äöü"];
    for (const text of whileDown) await logger(udpPort, tag, text);
    await waitForFile(seen, whileDown);
    await using _serveB = await startVps();
    const afterRestart = "after reclog restarted";
    await logger(udpPort, tag, afterRestart);
    const all = [...texts, ...whileDown, afterRestart];
    await waitForTexts(all, "the queued messages after reclog serve came back");

    // A last message, so that a late duplicate would have shown up before it.
    const last = "the last message";
    await logger(udpPort, tag, last);
    await waitFor(() => pull.stdout.includes(last), { what: "the last message" });
    const got = received();
    assert.deepEqual(
      got.map((m) => m.text),
      [...all, last],
      "every message once, in order, text unchanged",
    );
    for (const message of got) assert.equal(message.host, hostname, "the sender's host name");
  },
);

Deno.test(
  "contrib/rsyslog/90-forward-to-reclog.conf: serve --spool SIGKILLed twice while rsyslog forwards 5,000 messages over RELP, every one arrives",
  async () => {
    await using dir = await tempDir();
    const certs = await makeCerts(dir.path);
    const relpPort = freePort("tcp");
    const mtlsPort = freePort("tcp");
    const startVps = async (): Promise<Running> => {
      const served = await startServe(certs, {
        port: mtlsPort,
        args: ["--syslog-in", `relp://127.0.0.1:${relpPort}`, "--spool", `${dir.path}/spool`],
      });
      await served.process.waitForListening("syslog-in relp");
      return served.process;
    };
    const tcpPort = freePort("tcp");
    const rules = `module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="${tcpPort}")
${await snippet("90-forward-to-reclog.conf", [['port="5142"', `port="${relpPort}"`]])}
`;
    let serve = await startVps();
    await using _rsyslog = await startRsyslog({
      dir: `${dir.path}/rsyslog`,
      rules,
      readyTcpPort: tcpPort,
    });
    await using pull = await startPull(certs, mtlsPort, {
      args: ["--state", `${dir.path}/pull.state`],
    });
    try {
      const count = 5_000;
      const tally = () => {
        const counts = new Map<number, number>();
        for (const m of pull.stdout.matchAll(/fwd-(\d{6})/g)) {
          counts.set(Number(m[1]), (counts.get(Number(m[1])) ?? 0) + 1);
        }
        return counts;
      };
      const sending = (async () => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: tcpPort });
        try {
          for (let i = 0; i < count; i += 100) {
            const lines = Array.from(
              { length: 100 },
              (_, j) => `<13>Nov 21 10:00:00 vps app: fwd-${String(i + j).padStart(6, "0")}\n`,
            ).join("");
            const bytes = new TextEncoder().encode(lines);
            for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
            await new Promise((resolve) => setTimeout(resolve, 10));
          }
        } finally {
          conn.close();
        }
      })();
      for (const after of [500, 2_500]) {
        await waitFor(() => tally().size >= after, {
          timeoutMs: 30_000,
          what: () => `${after} messages through; serve stderr:\n${serve.stderr}`,
        });
        serve.kill("SIGKILL");
        await serve.wait();
        await serve[Symbol.asyncDispose]();
        serve = await startVps();
      }
      await sending;
      let through = 0;
      await waitFor(() => (through = tally().size) === count, {
        timeoutMs: 60_000,
        what: () => `all ${count} through (${through}); pull stderr:\n${pull.stderr}`,
      });
    } finally {
      await serve[Symbol.asyncDispose]();
    }
  },
);

/** A finished tlog-rec recording: its JSON messages and what the command wrote. */
async function tlogRecording(dir: string): Promise<{ lines: string[]; output: Uint8Array }> {
  const path = `${dir}/rec.log`;
  const script = "printf 'recorded on the VPS\\n'; printf '\\033[1mbold\\033[0m Grüße\\n'";
  const out = await runProgram("tlog-rec", [
    "--writer=file",
    `--file-path=${path}`,
    "--",
    "sh",
    "-c",
    script,
  ]);
  assert.equal(out.code, 0, `tlog-rec failed: ${out.stderr}`);
  const lines = (await Deno.readTextFile(path)).split("\n").filter((line) => line !== "");
  assert.ok(lines.length > 0, "tlog-rec wrote no messages");
  // runProgram decodes stdout; the script's output is valid UTF-8.
  return { lines, output: new TextEncoder().encode(out.stdout) };
}

Deno.test(
  "contrib/rsyslog/10-reclog-receive.conf + 20-tlog.conf: pull → rsyslog files per host; tlog recordings go to their own file and play back",
  async () => {
    await using dir = await tempDir();
    const certs = await makeCerts(dir.path);
    const recording = await tlogRecording(dir.path);
    const log = `${dir.path}/log`;
    const port = freePort("udp");
    // Both snippets as installed (10 before 20), then this machine's own
    // general file, as 50-default.conf writes /var/log/syslog.
    await using _rsyslog = await startRsyslog({
      dir: `${dir.path}/rsyslog`,
      rules: `${await snippet("10-reclog-receive.conf", [
        ...logPaths(dir.path),
        ['port="514"', `port="${port}"`],
        ['port="2514"', `port="${freePort("tcp")}"`],
      ])}
${await snippet("20-tlog.conf", logPaths(dir.path))}
action(type="omfile" file="${log}/syslog" template="RSYSLOG_FileFormat")
`,
      readyUdpPort: port,
    });

    const serve = await startServe(certs);
    await using _serve = serve.process;
    await using _pull = await startPull(certs, serve.port, { to: `udp://127.0.0.1:${port}` });

    const host = "vps-contrib";
    const ordinary = [
      `<13>Nov 21 10:00:00 ${host} app[7]: hello from the VPS`,
      `<11>Nov 21 10:00:01 otherhost db: error on the other host, Grüße`,
    ];
    const tlog = recording.lines.map((line, i) =>
      `<86>Nov 21 10:00:0${i % 10} ${host} tlog-rec-session[123]: ${line}`
    );
    const last = `<13>Nov 21 10:00:09 ${host} app[7]: the last message`;
    await sendUdp(serve.udpPort, [...ordinary, ...tlog, last]);

    const perHost = `${log}/remote/${host}/syslog.log`;
    const hostFile = await waitForFile(perHost, ["hello from the VPS", "the last message"]);
    await waitForFile(`${log}/remote/otherhost/syslog.log`, ["error on the other host, Grüße"]);
    const tlogFile = await waitForFile(`${log}/tlog.log`, recording.lines);
    assert.match(hostFile, new RegExp(`^\\S+ ${host} app\\[7\\]: hello from the VPS$`, "m"));
    assert.doesNotMatch(hostFile, /"ver":/, "tlog recordings stay out of the per-host file");
    assert.equal(tlogFile.trimEnd().split("\n").length, recording.lines.length);
    assert.doesNotMatch(tlogFile, /hello from the VPS/);
    // Remote messages are kept apart from this machine's own log.
    assert.doesNotMatch(await readOrEmpty(`${log}/syslog`), /hello from the VPS|"ver":/);

    // reclog play plays the recording from rsyslog's file, byte for byte.
    const play = await new Deno.Command(Deno.execPath(), {
      args: reclogArgv(["play", `${log}/tlog.log`]),
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(play.code, 0, decoder.decode(play.stderr));
    assert.deepEqual(play.stdout, recording.output, "reclog play output = what was recorded");
  },
);

Deno.test(
  "contrib/rsyslog/10-reclog-receive.conf over RELP: pull --to relp:// → imrelp; the home rsyslog SIGKILLed twice while 5,000 messages flow, all 5,000 filed, few duplicates",
  async () => {
    await using dir = await tempDir();
    const certs = await makeCerts(dir.path);
    const log = `${dir.path}/log`;
    const relpPort = freePort("tcp");
    const rules = `${await snippet("10-reclog-receive.conf", [
      ...logPaths(dir.path),
      ['port="514"', `port="${freePort("udp")}"`],
      ['port="2514"', `port="${relpPort}"`],
    ])}
${await snippet("20-tlog.conf", logPaths(dir.path))}
`;
    const home = () => startRsyslog({ dir: `${dir.path}/rsyslog`, rules, readyTcpPort: relpPort });
    let rsyslog = await home();
    try {
      const serve = await startServe(certs, { tcp: true });
      await using _serve = serve.process;
      await using pull = await startPull(certs, serve.port, {
        to: `relp://127.0.0.1:${relpPort}`,
        args: ["--state", `${dir.path}/pull.state`],
      });
      const host = "vps-relp";
      const count = 5_000;
      const messages = Array.from(
        { length: count },
        (_, i) => `<13>Nov 21 10:00:00 ${host} app[7]: relp-${String(i).padStart(6, "0")}`,
      );
      const file = `${log}/remote/${host}/syslog.log`;
      const tally = async () => {
        const counts = new Map<number, number>();
        for (const m of (await readOrEmpty(file)).matchAll(/relp-(\d{6})/g)) {
          counts.set(Number(m[1]), (counts.get(Number(m[1])) ?? 0) + 1);
        }
        return counts;
      };
      const sending = (async () => {
        for (let i = 0; i < count; i += 250) {
          await sendTcp(serve.tcpPort!, messages.slice(i, i + 250));
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      })();
      for (const after of [1_000, 3_000]) {
        await waitFor(async () => (await tally()).size >= after, {
          timeoutMs: 30_000,
          what: () => `${after} messages filed; pull stderr:\n${pull.stderr}`,
        });
        rsyslog.kill("SIGKILL");
        await rsyslog.wait();
        await rsyslog[Symbol.asyncDispose]();
        rsyslog = await home();
      }
      await sending;
      let filed = 0;
      await waitFor(async () => (filed = (await tally()).size) === count, {
        timeoutMs: 60_000,
        what: () => `all ${count} filed (${filed}); pull stderr:\n${pull.stderr}`,
      });
      const counts = await tally();
      const duplicates = [...counts.values()].reduce((sum, c) => sum + c - 1, 0);
      // At most what was in flight (pull's RELP window) at each of the two kills.
      assert.ok(duplicates <= 2 * 1_024, `${duplicates} duplicates`);
      assert.match(
        await readOrEmpty(file),
        new RegExp(`^\\S+ ${host} app\\[7\\]: relp-000000$`, "m"),
        "filed per host in RSYSLOG_FileFormat",
      );
    } finally {
      await rsyslog[Symbol.asyncDispose]();
    }
  },
);

Deno.test(
  "contrib/rsyslog/20-tlog.conf: this machine's tlog recordings go to tlog.log and not to the general file",
  async () => {
    await using dir = await tempDir();
    const log = `${dir.path}/log`;
    const port = freePort("udp");
    await using _rsyslog = await startRsyslog({
      dir: `${dir.path}/rsyslog`,
      rules: `module(load="imudp")
input(type="imudp" address="127.0.0.1" port="${port}")
${await snippet("20-tlog.conf", logPaths(dir.path))}
action(type="omfile" file="${log}/syslog" template="RSYSLOG_FileFormat")
`,
      readyUdpPort: port,
    });
    const json = (id: number) =>
      `{"ver":"2.3","host":"h","rec":"r-${id}","user":"u","term":"xterm","session":${id},"id":1,"pos":0,"timing":"","in_txt":"","in_bin":[],"out_txt":"","out_bin":[]}`;
    await logger(port, "tlog-rec-session", json(1));
    await logger(port, "tlog-rec", json(2));
    // Recognised by its text whatever the tag.
    await logger(port, "sudo", json(3));
    await logger(port, "app", "an ordinary message");
    const general = await waitForFile(`${log}/syslog`, ["an ordinary message"]);
    const tlog = await waitForFile(`${log}/tlog.log`, [json(1), json(2), json(3)]);
    assert.doesNotMatch(general, /"ver":/, "no recording in the general file");
    assert.doesNotMatch(tlog, /an ordinary message/);
    assert.match(tlog, / tlog-rec-session: \{"ver":/);
    const mode = (await Deno.stat(`${log}/tlog.log`)).mode! & 0o777;
    assert.equal(mode, 0o600, "recordings are readable by root only");
  },
);

/** A unit file's sections, each a map of key to its values (in order); continuations joined. */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  const logical = text.replace(/\\\n/g, " ").split("\n");
  for (const raw of logical) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const section = line.match(/^\[(.+)\]$/);
    if (section) {
      current = new Map();
      sections.set(section[1]!, current);
      continue;
    }
    const eq = line.indexOf("=");
    assert.ok(current && eq > 0, `not a unit file line: ${line}`);
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1).trim().replace(/\s+/g, " ");
    current.set(key, [...(current.get(key) ?? []), value]);
  }
  return sections;
}

const UNITS = ["reclog-serve.service", "reclog-pull.service"];

async function readUnit(name: string): Promise<string> {
  return await Deno.readTextFile(`${CONTRIB}systemd/${name}`);
}

Deno.test("contrib/systemd: the units carry the hardening and never MemoryDenyWriteExecute", async () => {
  for (const name of UNITS) {
    const unit = parseUnit(await readUnit(name));
    const service = unit.get("Service")!;
    const one = (key: string) => {
      const values = service.get(key);
      assert.ok(values, `${name}: ${key}= missing`);
      return values.at(-1)!;
    };
    const expected: Record<string, string> = {
      DynamicUser: "yes",
      ProtectSystem: "strict",
      ProtectHome: "yes",
      PrivateTmp: "yes",
      NoNewPrivileges: "yes",
      CapabilityBoundingSet: "",
      AmbientCapabilities: "",
      RestrictAddressFamilies: "AF_INET AF_INET6 AF_UNIX",
      SystemCallArchitectures: "native",
      LockPersonality: "yes",
      ProtectKernelTunables: "yes",
      ProtectKernelModules: "yes",
      ProtectControlGroups: "yes",
      RestrictNamespaces: "yes",
      Restart: "on-failure",
      RestartSec: "2",
      KillSignal: "SIGTERM",
      TimeoutStopSec: "10",
    };
    for (const [key, value] of Object.entries(expected)) {
      assert.equal(one(key), value, `${name}: ${key}=`);
    }
    assert.ok(!service.has("MemoryDenyWriteExecute"), `${name}: V8's JIT needs W+X memory`);
    assert.ok(!service.has("ReadWritePaths"), `${name}: only State/RuntimeDirectory are writable`);
    assert.ok(!service.has("User"), `${name}: DynamicUser, no fixed user`);
    for (const key of ["After", "Wants"]) {
      assert.ok(
        unit.get("Unit")?.get(key)?.join(" ").split(" ").includes("network-online.target"),
        `${name}: ${key}=network-online.target`,
      );
    }
    assert.equal(unit.get("Install")?.get("WantedBy")?.[0], "multi-user.target");

    // Every file the command line names is a credential or in a directory
    // systemd makes writable for the dynamic user.
    const argv = one("ExecStart").split(" ");
    assert.equal(argv[0], "/usr/local/bin/reclog");
    const credentials = (service.get("LoadCredential") ?? []).map((value) => {
      const [id, path] = value.split(":");
      assert.match(path!, /^\/etc\/reclog\//, `${name}: credentials come from /etc/reclog`);
      return id!;
    });
    for (const flag of ["--cert", "--key", "--ca"]) {
      const value = argv[argv.indexOf(flag) + 1]!;
      const match = value.match(/^\$\{CREDENTIALS_DIRECTORY\}\/(.+)$/);
      assert.ok(match, `${name}: ${flag} ${value} is not a credential`);
      assert.ok(credentials.includes(match[1]!), `${name}: no LoadCredential=${match[1]}:...`);
    }
    const stateDirs = (service.get("StateDirectory") ?? []).map((d) => `/var/lib/${d}/`);
    const runtimeDirs = (service.get("RuntimeDirectory") ?? []).map((d) => `/run/${d}/`);
    const writable = [...stateDirs, ...runtimeDirs];
    for (const flag of ["--spool", "--state", "--status-file"]) {
      const index = argv.indexOf(flag);
      if (index < 0) continue;
      const path = argv[index + 1]!;
      assert.ok(
        writable.some((dir) => `${path}/`.startsWith(dir)),
        `${name}: ${flag} ${path} is outside ${writable}`,
      );
    }
  }
});

/** Writes the unit's credentials (LoadCredential=ID:/etc/reclog/FILE) from the test certificates. */
async function loadCredentials(unitText: string, certs: CertPaths, dir: string): Promise<string> {
  const files: Record<string, string> = {
    "/etc/reclog/ca.pem": certs.ca,
    "/etc/reclog/server.pem": certs.serverCert,
    "/etc/reclog/server.key": certs.serverKey,
    "/etc/reclog/home.pem": certs.clientCert,
    "/etc/reclog/home.key": certs.clientKey,
  };
  await Deno.mkdir(dir, { recursive: true });
  for (const value of parseUnit(unitText).get("Service")!.get("LoadCredential") ?? []) {
    const [id, path] = value.split(":");
    assert.ok(files[path!], `no test file for ${path}`);
    await Deno.copyFile(files[path!]!, `${dir}/${id}`);
  }
  return dir;
}

/**
 * The unit's ExecStart arguments (after the binary) with its directories made
 * as systemd would (State/RuntimeDirectory under `root`, credentials) and
 * the given substitutions.
 */
async function execStart(
  name: string,
  certs: CertPaths,
  root: string,
  pairs: Array<[string, string]>,
): Promise<string[]> {
  const text = await readUnit(name);
  const service = parseUnit(text).get("Service")!;
  for (const d of service.get("StateDirectory") ?? []) {
    await Deno.mkdir(`${root}/var/lib/${d}`, { recursive: true, mode: 0o700 });
  }
  for (const d of service.get("RuntimeDirectory") ?? []) {
    await Deno.mkdir(`${root}/run/${d}`, { recursive: true });
  }
  const credentials = await loadCredentials(text, certs, `${root}/credentials/${name}`);
  const line = substitute(service.get("ExecStart")![0]!, [
    ["${CREDENTIALS_DIRECTORY}", credentials],
    ...pairs,
  ], `${name} ExecStart`);
  assert.doesNotMatch(line, /["'$%]/, `${name}: ExecStart needs no quoting or expansion left`);
  return line.split(" ").slice(1);
}

/** A receiver for pull's sink: a UDP socket, or an in-process RELP server. */
interface SinkReceiver extends AsyncDisposable {
  port: number;
  /** The first message received. */
  first(): Promise<string>;
}

async function sinkReceiver(scheme: string): Promise<SinkReceiver> {
  if (scheme === "udp") {
    const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    return {
      port: (socket.addr as Deno.NetAddr).port,
      first: async () =>
        decoder.decode(
          (await withDeadline(socket.receive(), 15_000, "the message at the sink"))[0],
        ),
      [Symbol.asyncDispose]: () => Promise.resolve(socket.close()),
    };
  }
  assert.equal(scheme, "relp", `a --to scheme this test does not know: ${scheme}`);
  const taken: string[] = [];
  const source = new RelpSource({
    host: "127.0.0.1",
    port: 0,
    onBatch: (batch) => {
      for (let i = 0; i < batch.count; i++) taken.push(decoder.decode(batch.message(i)));
    },
  });
  const { port } = await source.listen();
  return {
    port,
    first: async () => {
      await waitFor(() => taken.length > 0, { what: "the message at the RELP sink" });
      return taken[0]!;
    },
    [Symbol.asyncDispose]: () => source.close(),
  };
}

/** Sends one message to serve's syslog input, over TCP (octet counting) or RELP. */
async function sendToInput(scheme: string, port: number, message: string): Promise<void> {
  if (scheme === "tcp") return await sendTcp(port, [message]);
  assert.equal(scheme, "relp", `a --syslog-in scheme this test does not know: ${scheme}`);
  const client = new RelpClient({ host: "127.0.0.1", port });
  try {
    await client.send([new TextEncoder().encode(message)]);
  } finally {
    await client.close();
  }
}

Deno.test("contrib/systemd: the units' ExecStart lines run: syslog in and out as the units say (TCP or RELP in; UDP or RELP out), state and status written", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const root = `${dir.path}/root`;
  const moved: Array<[string, string]> = [["/var/lib/", `${root}/var/lib/`]];

  const syslogIn = (await readUnit("reclog-serve.service")).match(
    /--syslog-in ((tcp|relp):\/\/127\.0\.0\.1:\d+)/,
  );
  assert.ok(syslogIn, "reclog-serve.service: --syslog-in tcp:// or relp:// on 127.0.0.1");
  const inScheme = syslogIn[2]!;
  const serveArgs = await execStart("reclog-serve.service", certs, root, [
    ...moved,
    ["--listen 0.0.0.0:6514", "--listen 127.0.0.1:0"],
    [syslogIn[1]!, `${inScheme}://127.0.0.1:0`],
  ]);
  await using serve = startReclog(serveArgs);
  const inPort = await serve.waitForListening(`syslog-in ${inScheme}`);
  const mtlsPort = await serve.waitForListening("mTLS");

  const to = (await readUnit("reclog-pull.service")).match(
    /--to ((udp|relp):\/\/127\.0\.0\.1:\d+)/,
  );
  assert.ok(to, "reclog-pull.service: --to udp:// or relp:// on 127.0.0.1");
  await using sink = await sinkReceiver(to[2]!);
  const pullArgs = await execStart("reclog-pull.service", certs, root, [
    ...moved,
    ["/run/", `${root}/run/`],
    ["vps.example.org:6514", `127.0.0.1:${mtlsPort} --server-name localhost`],
    [to[1]!, `${to[2]}://127.0.0.1:${sink.port}`],
  ]);
  await using pull = startReclog(pullArgs);
  await pull.waitForStderr(/connected to /);

  const message =
    "<13>2026-01-02T03:04:05.000006+00:00 vps app[1]: through the units' command lines";
  await sendToInput(inScheme, inPort, message);
  assert.equal(await sink.first(), message);

  await waitFor(async () => (await readOrEmpty(`${root}/run/reclog/status`)) === "OK\n", {
    what: () => `the status file to say OK; pull stderr:\n${pull.stderr}`,
  });
  await waitFor(
    async () => (await readOrEmpty(`${root}/var/lib/reclog/pull/pull.state`)) !== "",
    {
      what: () => `the resume point in the StateDirectory; pull stderr:\n${pull.stderr}`,
    },
  );
  assert.ok(
    [...Deno.readDirSync(`${root}/var/lib/reclog/spool`)].length > 0,
    "serve keeps its spool in the StateDirectory",
  );

  // systemd stops them with SIGTERM (KillSignal=) and waits TimeoutStopSec=10.
  for (const process of [pull, serve]) {
    const started = Date.now();
    process.kill("SIGTERM");
    assert.equal((await process.wait(10_000)).code, 0, process.stderr);
    assert.ok(Date.now() - started < 10_000);
  }
});

/** Resolves as `promise`, or throws after `ms` naming `what`. */
async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`Timed out after ${ms} ms waiting for ${what}`)),
          ms,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** systemd-analyze, or an error saying how to install it (package systemd). */
function systemdAnalyze(): string {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":").concat(["/usr/bin", "/bin"])) {
    try {
      if (Deno.statSync(`${dir}/systemd-analyze`).isFile) return `${dir}/systemd-analyze`;
    } catch {
      // not here
    }
  }
  throw new Error(
    "'systemd-analyze' is required by this test but not installed: run 'apt-get install -y systemd'",
  );
}

Deno.test("contrib/systemd: systemd-analyze verify finds nothing; security exposure stays low", async () => {
  const analyze = systemdAnalyze();
  await using dir = await tempDir();
  for (const name of UNITS) {
    // verify wants the ExecStart binary to exist: point it at this Deno.
    const text = substitute(
      await readUnit(name),
      [["/usr/local/bin/reclog", Deno.execPath()]],
      name,
    );
    const path = `${dir.path}/${name}`;
    await Deno.writeTextFile(path, text);
    const verify = await runProgram(analyze, ["verify", path]);
    assert.equal(verify.code, 0, `${name}:\n${verify.stderr}`);
    // Unknown keys and bad values are only warnings with exit code 0.
    assert.equal(verify.stderr + verify.stdout, "", `systemd-analyze verify ${name}`);

    const security = await runProgram(analyze, ["security", "--offline=yes", path]);
    assert.equal(security.code, 0, security.stderr);
    const exposure = security.stdout.match(/Overall exposure level for \S+: ([\d.]+)/);
    assert.ok(exposure, security.stdout);
    assert.ok(Number(exposure[1]) <= 2, `${name}: exposure ${exposure[1]}\n${security.stdout}`);
  }
});
