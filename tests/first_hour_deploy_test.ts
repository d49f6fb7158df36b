/**
 * The first hour (issue 17): what `reclog certs init` prints, pasted as is
 * (ports and the file-system root aside), makes a working deployment with
 * the contrib/ rsyslog snippets, and agrees with the systemd units; and
 * `certs show` says what a certificate is fit for.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { issueCertificate } from "../lib/pki/pki.ts";
import {
  freePort,
  makeCerts,
  readOrEmpty,
  type Running,
  runProgram,
  runReclog,
  startReclog,
  startRsyslog,
  tempDir,
  waitFor,
  writeIssued,
} from "./helpers.ts";

const REPO = fileURLToPath(new URL("..", import.meta.url));

/** The printed commands (indented 7 spaces), each with the number of its step. */
function printedCommands(stdout: string): Array<{ step: number; command: string }> {
  let step = 0;
  const commands: Array<{ step: number; command: string }> = [];
  for (const line of stdout.split("\n")) {
    const heading = /^ {2}(\d)\. /.exec(line);
    if (heading) step = Number(heading[1]);
    const command = /^ {7}(\S.*)$/.exec(line);
    if (command && step > 0) commands.push({ step, command: command[1]! });
  }
  return commands;
}

/** Replaces every `from` (string or global regexp) and fails if one does not occur. */
function substitute(text: string, pairs: Array<[string | RegExp, string]>): string {
  for (const [from, to] of pairs) {
    const found = typeof from === "string" ? text.includes(from) : from.test(text);
    if (typeof from !== "string") from.lastIndex = 0;
    assert.ok(found, `${JSON.stringify(text)} no longer contains ${from}`);
    text = typeof from === "string" ? text.replaceAll(from, to) : text.replace(from, to);
  }
  return text;
}

/** The flags of a command line (or ExecStart) as FLAG → VALUE. */
function flagsOf(words: string[]): Map<string, string> {
  const flags = new Map<string, string>();
  for (let i = 0; i < words.length; i++) {
    if (words[i]!.startsWith("--")) flags.set(words[i]!, words[i + 1] ?? "");
  }
  return flags;
}

async function unitExecStart(name: string): Promise<string[]> {
  const text = await Deno.readTextFile(`${REPO}contrib/systemd/${name}`);
  const match = /^ExecStart=((?:.*\\\n)*.*)$/m.exec(text);
  assert.ok(match, `${name} has an ExecStart=`);
  return match[1]!.replace(/\\\n/g, " ").replaceAll("${CREDENTIALS_DIRECTORY}", "/etc/reclog")
    .trim().split(/\s+/);
}

Deno.test("certs init: the printed commands, pasted, deliver a logger message from the VPS's rsyslog to the home rsyslog's file", async () => {
  await using dir = await tempDir();
  const pki = `${dir.path}/pki`;
  const init = await runReclog([
    "certs",
    "init",
    "--dir",
    pki,
    "--server-name",
    "localhost",
    "--ip",
    "127.0.0.1",
  ]);
  assert.equal(init.code, 0, init.stderr);
  const commands = printedCommands(init.stdout);
  assert.ok(commands.length >= 7, `printed commands:\n${init.stdout}`);

  // The printed commands and the systemd units describe the same deployment.
  const printedServe = commands.find((c) => c.command.startsWith("reclog serve "))!;
  const printedPull = commands.find((c) => c.command.startsWith("reclog pull "))!;
  assert.ok(printedServe && printedPull, init.stdout);
  const unitServe = flagsOf(await unitExecStart("reclog-serve.service"));
  const unitPull = flagsOf(await unitExecStart("reclog-pull.service"));
  assert.deepEqual(flagsOf(printedServe.command.split(" ")), unitServe, "serve: printed vs unit");
  const pullFlags = flagsOf(printedPull.command.split(" "));
  for (const [flag, value] of pullFlags) {
    if (flag !== "--server") assert.equal(unitPull.get(flag), value, `pull ${flag}: unit`);
  }
  // And the README shows the same commands.
  const readme = await Deno.readTextFile(`${REPO}README.md`);
  assert.ok(readme.includes(printedServe.command), "README has the printed serve command");
  assert.ok(
    readme.includes(printedPull.command.replace("localhost:6514", "vps.example.org:6514")),
    "README has the printed pull command",
  );

  const mtlsPort = freePort("tcp");
  const syslogInPort = freePort("tcp");
  const homeUdpPort = freePort("udp");
  const homeRelpPort = freePort("tcp");
  const loggerPort = freePort("udp");
  const vps = `${dir.path}/vps`;
  const home = `${dir.path}/home`;
  // What exists on a Debian machine before the paste.
  for (const root of [vps, home]) await Deno.mkdir(`${root}/rsyslog.d`, { recursive: true });

  // The machine's file system, moved under `root` (whichever paths occur).
  const relocate = (text: string, root: string): string =>
    text.replace(/\/etc\/reclog/g, `${root}/etc/reclog`)
      .replace(/\/var\/lib\/reclog/g, `${root}/var/lib/reclog`)
      .replace(/\/etc\/rsyslog\.d\//g, `${root}/rsyslog.d/`);
  const sh = async (command: string): Promise<void> => {
    const out = await runProgram("sh", ["-ec", command], { cwd: REPO });
    assert.equal(out.code, 0, `${command}\n${out.stderr}`);
  };
  const reclogWords = (command: string): string[] => command.split(" ").slice(1);

  await using stack = new AsyncDisposableStack();
  let serve: Running | undefined;
  let pull: Running | undefined;
  let vpsRsyslog = false;
  let homeRsyslog = false;
  const rsyslogd = async (root: string, rules: string): Promise<void> => {
    const running = await startRsyslog({ dir: `${root}/rsyslog`, rules });
    stack.defer(() => running[Symbol.asyncDispose]());
  };

  for (const { step, command } of commands) {
    const root = step === 3 ? home : vps;
    if (command.startsWith("ssh ")) {
      const match = /^ssh root@localhost '(.*)'$/.exec(command);
      assert.ok(match, command);
      await sh(relocate(match[1]!, root));
    } else if (command.startsWith("scp ")) {
      const local = substitute(command, [
        [/^scp /g, "cp "],
        [/root@localhost:\/etc\/reclog\//g, `${vps}/etc/reclog/`],
      ]);
      await sh(local);
    } else if (command.startsWith("install ")) {
      const [install, restart] = command.split(" && systemctl restart rsyslog");
      await sh(relocate(install!, root).replace(/ contrib\//g, ` ${REPO}contrib/`));
      if (restart !== undefined) {
        if (step === 2) vpsRsyslog = true;
        if (step === 3) homeRsyslog = true;
      }
    } else if (command.startsWith("reclog certs client ")) {
      const out = await runReclog(reclogWords(command));
      assert.equal(out.code, 0, out.stderr);
    } else if (command.startsWith("reclog serve ")) {
      const line = substitute(relocate(command, vps), [
        ["--listen 0.0.0.0:6514", `--listen 127.0.0.1:${mtlsPort}`],
        ["relp://127.0.0.1:5142", `relp://127.0.0.1:${syslogInPort}`],
      ]);
      serve = startReclog(reclogWords(line));
      stack.defer(() => serve![Symbol.asyncDispose]());
      await serve.waitForListening("syslog-in relp");
    } else if (command.startsWith("reclog pull ")) {
      const line = substitute(relocate(command, home), [
        ["localhost:6514", `localhost:${mtlsPort}`],
        [/relp:\/\/127\.0\.0\.1:2514\b/g, `relp://127.0.0.1:${homeRelpPort}`],
      ]);
      pull = startReclog(reclogWords(line));
      stack.defer(() => pull![Symbol.asyncDispose]());
    } else {
      assert.fail(`a printed command this test does not know how to paste: ${command}`);
    }
    // The installed rsyslog snippets, ports changed, in a real rsyslogd.
    if (vpsRsyslog) {
      vpsRsyslog = false;
      const forward = substitute(
        await Deno.readTextFile(`${vps}/rsyslog.d/90-forward-to-reclog.conf`),
        [['port="5142"', `port="${syslogInPort}"`]],
      );
      await rsyslogd(
        vps,
        `module(load="imudp")\ninput(type="imudp" address="127.0.0.1" port="${loggerPort}")\n${forward}`,
      );
    }
    if (homeRsyslog) {
      homeRsyslog = false;
      const receive = substitute(
        await Deno.readTextFile(`${home}/rsyslog.d/10-reclog-receive.conf`),
        [
          ['port="2514"', `port="${homeRelpPort}"`],
          ['port="514"', `port="${homeUdpPort}"`],
          [/\/var\/log\//g, `${home}/log/`],
        ],
      );
      const tlog = substitute(
        await Deno.readTextFile(`${home}/rsyslog.d/20-tlog.conf`),
        [[/\/var\/log\//g, `${home}/log/`]],
      );
      await rsyslogd(home, `${receive}\n${tlog}`);
    }
  }
  assert.ok(serve && pull, "serve and pull were started");
  await pull!.waitForStderr(/connected|resum|pulling/);

  const text = `pasted deployment works ${crypto.randomUUID()}`;
  const hostname = Deno.hostname().split(".")[0]!;
  const filed = `${home}/log/remote/${hostname}/syslog.log`;
  // rsyslog may not have the forwarding connection up yet: log again until
  // the message is filed (bounded), then check it arrived, once at least.
  let sent = 0;
  await waitFor(async () => {
    if (sent < 20 && (await readOrEmpty(filed)) === "") {
      sent++;
      const out = await runProgram("logger", [
        "--rfc3164",
        "-n",
        "127.0.0.1",
        "-P",
        String(loggerPort),
        "-d",
        "-t",
        "firsthour",
        text,
      ]);
      assert.equal(out.code, 0, out.stderr);
    }
    return (await readOrEmpty(filed)).includes(text);
  }, {
    timeoutMs: 30_000,
    intervalMs: 500,
    what: () => `${filed} to hold the message; serve:\n${serve!.stderr}\npull:\n${pull!.stderr}`,
  });
  const content = await readOrEmpty(filed);
  assert.match(content, new RegExp(` ${hostname} firsthour: ${text}$`, "m"));
  // The resume point is where the printed command put it.
  await waitFor(async () => (await readOrEmpty(`${home}/var/lib/reclog/pull/pull.state`)) !== "", {
    what: "pull.state under /var/lib/reclog/pull",
  });
  assert.ok((await Deno.stat(`${vps}/var/lib/reclog/spool`)).isDirectory);
});

Deno.test("certs show says what each certificate is fit for: CA, server, client", async () => {
  await using dir = await tempDir();
  const certs = await makeCerts(dir.path);
  const fit = async (file: string): Promise<string> => {
    const out = await runReclog(["certs", "show", file]);
    assert.equal(out.code, 0, out.stderr);
    const line = out.stdout.split("\n").find((l) => l.startsWith("Fit for:"));
    assert.ok(line, out.stdout);
    return line;
  };
  assert.match(await fit(certs.ca), /^Fit for: +a CA: it signs certificates; give it as --ca/);
  assert.match(
    await fit(certs.serverCert),
    /^Fit for: +a TLS server: reclog serve --cert or listen --cert; not for pull or send \(no clientAuth\)$/,
  );
  assert.match(
    await fit(certs.clientCert),
    /^Fit for: +a TLS client: reclog pull --cert or send --cert; not for serve or listen \(no serverAuth\)$/,
  );
  const expired = await issueCertificate(certs.caIssued, {
    kind: "client",
    commonName: "old",
    notBefore: new Date("2020-01-01T00:00:00Z"),
    days: 30,
  });
  const files = await writeIssued(dir.path, "old", expired);
  assert.match(
    await fit(files.cert),
    /^Fit for: +a TLS client: .*\(but expired\b.*not usable now\)$/,
  );
});

Deno.test("systemd units do not restart on a configuration error: RestartPreventExitStatus=2, and their ExecStart with a missing certificate exits 2", async () => {
  for (const name of ["reclog-serve.service", "reclog-pull.service"]) {
    const text = await Deno.readTextFile(`${REPO}contrib/systemd/${name}`);
    assert.match(text, /^Restart=on-failure$/m, name);
    assert.match(text, /^RestartPreventExitStatus=2$/m, name);
    // The unit's own command line, its certificates missing: exit code 2.
    const words = (await unitExecStart(name)).slice(1)
      .map((word) => word.replace(/^\/etc\/reclog\//, "/nonexistent/reclog/"));
    const out = await runReclog(words);
    assert.equal(out.code, 2, `${name}: ${out.stderr}`);
    assert.match(out.stderr, /^reclog (serve|pull): Cannot read --cert '\/nonexistent\/reclog\//);
  }
});
