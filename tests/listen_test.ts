import assert from "node:assert/strict";
import {
  freePort,
  readOrEmpty,
  reclogArgv,
  runReclog,
  startProgram,
  startReclog,
  tempDir,
  waitFor,
} from "./helpers.ts";

const encoder = new TextEncoder();
const LISTENING = /listening on \S*:(\d+)/;

async function startListen(args: string[]) {
  const running = startReclog(["listen", ...args]);
  const port = Number((await running.waitForStderr(LISTENING))[1]);
  return { running, port };
}

async function stop(running: ReturnType<typeof startReclog>): Promise<Deno.CommandStatus> {
  running.kill("SIGTERM");
  return await running.wait();
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch {
    return 0;
  }
}

async function canConnect(port: number): Promise<boolean> {
  try {
    (await Deno.connect({ hostname: "127.0.0.1", port })).close();
    return true;
  } catch {
    return false;
  }
}

/** A sender's lines: `s<ID>:<SEQ>:<LEN>:<payload of LEN letters>`, random LEN up to ~8 KiB. */
function senderLines(id: number, count: number, seed: number): Uint8Array {
  let state = seed;
  const random = () => (state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const parts: string[] = [];
  for (let seq = 0; seq < count; seq++) {
    const len = Math.floor(random() * 8150);
    const letter = String.fromCharCode(97 + (id * 7 + seq) % 26);
    parts.push(`s${id}:${seq}:${len}:${letter.repeat(len)}\n`);
  }
  return encoder.encode(parts.join(""));
}

/** Checks lines of the senderLines form; returns torn lines and, per sender, the seqs in order. */
function analyse(text: string): { torn: number; bySender: Map<number, number[]> } {
  const bySender = new Map<number, number[]>();
  let torn = 0;
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  for (const line of lines) {
    const match = /^s(\d+):(\d+):(\d+):([a-z]*)$/.exec(line);
    const id = Number(match?.[1]);
    const seq = Number(match?.[2]);
    const letter = String.fromCharCode(97 + (id * 7 + seq) % 26);
    if (
      !match || match[4]!.length !== Number(match[3]) ||
      match[4]!.replaceAll(letter, "") !== ""
    ) {
      torn++;
      continue;
    }
    if (!bySender.has(id)) bySender.set(id, []);
    bySender.get(id)!.push(seq);
  }
  return { torn, bySender };
}

async function denoSender(port: number, data: Uint8Array, seed: number): Promise<void> {
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let state = seed;
  const random = () => (state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  // Writes of random sizes, so lines are cut anywhere between writes.
  for (let at = 0; at < data.length;) {
    const size = 1 + Math.floor(random() * 20_000);
    const piece = data.subarray(at, at + size);
    for (let done = 0; done < piece.length;) done += await conn.write(piece.subarray(done));
    at += size;
  }
}

Deno.test("listen: 20 concurrent senders, every line whole and in order (socat compared)", async () => {
  await using dir = await tempDir();
  const senders = 20;
  const linesEach = 2_000;
  const reclogFile = `${dir.path}/reclog.log`;
  const socatFile = `${dir.path}/socat.log`;
  const { running: reclog, port } = await startListen(["--port", "0", "--file", reclogFile]);
  await using _reclog = reclog;
  const socatPort = freePort();
  await using socat = startProgram("socat", [
    "-u",
    `TCP4-LISTEN:${socatPort},reuseaddr,fork`,
    `OPEN:${socatFile},creat,append`,
  ]);
  await waitFor(() => canConnect(socatPort), { what: "socat to listen" });

  const inputs: Uint8Array[] = [];
  let expectedBytes = 0;
  const clients: Array<Promise<unknown>> = [];
  const socatClients: Array<ReturnType<typeof startProgram>> = [];
  try {
    for (let id = 0; id < senders; id++) {
      const data = senderLines(id, linesEach, 1000 + id);
      inputs.push(data);
      expectedBytes += data.length;
      if (id % 2 === 0) {
        // Half the senders are socat clients, reading their lines from a file.
        const input = `${dir.path}/input-${id}`;
        await Deno.writeFile(input, data);
        for (const target of [port, socatPort]) {
          const client = startProgram("socat", ["-u", `OPEN:${input}`, `TCP4:127.0.0.1:${target}`]);
          socatClients.push(client);
          clients.push(
            client.wait(30_000).then((status) => {
              assert.equal(status.code, 0, `socat client: ${client.stderr}`);
            }),
          );
        }
      } else {
        // The other half are Deno TCP clients writing chunks of random sizes.
        clients.push(denoSender(port, data, id), denoSender(socatPort, data, id + 99));
      }
    }
    await Promise.all(clients);
  } finally {
    for (const client of socatClients) await client[Symbol.asyncDispose]();
  }

  await waitFor(async () => (await fileSize(reclogFile)) >= expectedBytes, {
    timeoutMs: 20_000,
    what: () => `reclog's file to reach ${expectedBytes} bytes; stderr:\n${reclog.stderr}`,
  });
  await waitFor(async () => (await fileSize(socatFile)) >= expectedBytes, {
    timeoutMs: 20_000,
    what: "socat's file to be complete",
  });
  const status = await stop(reclog);
  assert.equal(status.code, 0, reclog.stderr);

  const ours = analyse(await Deno.readTextFile(reclogFile));
  assert.equal(ours.torn, 0, "reclog wrote torn lines");
  assert.equal(await fileSize(reclogFile), expectedBytes);
  for (let id = 0; id < senders; id++) {
    const seqs = ours.bySender.get(id) ?? [];
    assert.equal(seqs.length, linesEach, `sender ${id}: ${seqs.length} lines`);
    assert.ok(seqs.every((seq, i) => seq === i), `sender ${id}: lines out of order`);
  }
  const theirs = analyse(await Deno.readTextFile(socatFile));
  console.log(
    `socat fork: ${theirs.torn} torn lines in ${socatFile.split("/").pop()} ` +
      `(${senders} senders x ${linesEach} lines, ${(expectedBytes / 2 ** 20).toFixed(0)} MiB); ` +
      `reclog listen: ${ours.torn} torn`,
  );
  socat.kill("SIGTERM");
  await socat.wait();
});

Deno.test("listen: telnet input gives clean lines; a cut sender's partial line is kept", async () => {
  await using dir = await tempDir();
  const file = `${dir.path}/out.log`;
  const { running, port } = await startListen(["--port", "0", "--file", file]);
  await using _running = running;

  {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    // What telnet sends: option negotiation, CR LF line ends, CR NUL for a bare CR.
    await conn.write(Uint8Array.from(
      "\xff\xfd\x03\xff\xfb\x18\xff\xfb\x1fhello\r\n\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0world\r\nbare\r\x00cr\r\ncut mid-li",
      (c) => c.charCodeAt(0),
    ));
    await waitFor(async () => (await readOrEmpty(file)).includes("bare"), { what: "lines" });
    // Gone mid-line.
    conn.close();
  }
  await waitFor(async () => (await readOrEmpty(file)).includes("cut mid-li\n"), {
    what: () => `the partial line; stderr:\n${running.stderr}`,
  });
  assert.equal(await readOrEmpty(file), "hello\nworld\nbare\rcr\ncut mid-li\n");

  // On SIGTERM, a connected sender's partial line is written too.
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(encoder.encode("whole\nstill typing"));
  await waitFor(async () => (await readOrEmpty(file)).includes("whole\n"), { what: "whole" });
  const status = await stop(running);
  assert.equal(status.code, 0, running.stderr);
  assert.equal(
    await readOrEmpty(file),
    "hello\nworld\nbare\rcr\ncut mid-li\nwhole\nstill typing\n",
  );
  const mode = (await Deno.stat(file)).mode! & 0o777;
  assert.equal(mode & ~0o640, 0, `file mode ${mode.toString(8)} wider than 0640`);
});

Deno.test("listen: --udp, --timestamp and --peer line forms", async () => {
  await using dir = await tempDir();
  const file = `${dir.path}/out.log`;
  const { running, port } = await startListen([
    "--port",
    "0",
    "--file",
    file,
    "--udp",
    "--timestamp",
    "--peer",
  ]);
  await using _running = running;
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const tcpPort = (conn.localAddr as Deno.NetAddr).port;
  await conn.write(encoder.encode("over tcp\n"));
  const udp = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const udpPort = (udp.addr as Deno.NetAddr).port;
  try {
    await udp.send(encoder.encode("datagram one\ndatagram two"), {
      transport: "udp",
      hostname: "127.0.0.1",
      port,
    });
  } finally {
    udp.close();
  }
  await waitFor(async () => (await readOrEmpty(file)).split("\n").length > 3, {
    what: () =>
      `three lines; file: ${
        JSON.stringify(Deno.readTextFileSync(file))
      }; stderr:\n${running.stderr}`,
  });
  const lines = (await readOrEmpty(file)).trimEnd().split("\n").sort((a, b) =>
    a.slice(25).localeCompare(b.slice(25))
  );
  const time = String.raw`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)`;
  const expected = [
    [udpPort, "datagram one"],
    [udpPort, "datagram two"],
    [tcpPort, "over tcp"],
  ] as const;
  assert.equal(lines.length, 3, lines.join("\n"));
  for (const [i, [peerPort, text]] of expected.entries()) {
    const line = lines.find((line) => line.endsWith(` ${text}`));
    assert.ok(line, `no line '${text}' in ${JSON.stringify(lines)}`);
    assert.match(line, new RegExp(`^${time} 127\\.0\\.0\\.1:${peerPort} ${text}$`), `line ${i}`);
    const stamp = Date.parse(line.split(" ")[0]!);
    assert.ok(Math.abs(stamp - Date.now()) < 60_000, `timestamp ${line}`);
  }
  conn.close();
  assert.equal((await stop(running)).code, 0);
});

Deno.test("listen: a write error names the file and exits 1", async () => {
  await using dir = await tempDir();
  const file = `${dir.path}/small.log`;
  // A file size limit of 1 block makes writes fail with EFBIG, as a full disk would
  // with ENOSPC (SIGXFSZ ignored so the write returns the error).
  const running = startProgram("sh", [
    "-c",
    `trap '' XFSZ; ulimit -f 1; exec "$0" "$@"`,
    Deno.execPath(),
    ...reclogArgv(["listen", "--port", "0", "--file", file]),
  ], { env: { NO_COLOR: "1" } });
  await using _running = running;
  const port = Number((await running.waitForStderr(LISTENING))[1]);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(encoder.encode("x".repeat(200) + "\n"));
    await conn.write(encoder.encode("y".repeat(100_000) + "\n"));
  } catch {
    // the listener may be gone already
  } finally {
    conn.close();
  }
  const status = await running.wait();
  assert.equal(status.code, 1, running.stderr);
  assert.match(
    running.stderr,
    new RegExp(`cannot write to '${RegExp.escape(file)}': .*lines not written`),
  );
  assert.ok(!/\n\s+at /.test(running.stderr), `no stack trace:\n${running.stderr}`);
});

Deno.test("listen: mistakes are one line on stderr and exit 2", async () => {
  await using dir = await tempDir();
  const cases: Array<[string[], RegExp]> = [
    [["--port", "0"], /--file is required/],
    [["--port", "99999", "--file", `${dir.path}/x`], /--port '99999': expected a port number/],
    [["--port", "x1", "--file", `${dir.path}/x`], /--port 'x1'/],
    [["--file", `${dir.path}/x`], /--port is required/],
    [["--port", "0", "--file", `${dir.path}/x`, "--cert", "c.pem"], /--key and --ca missing/],
    [
      ["--port", "0", "--file", `${dir.path}/x`, "--cert", "c", "--key", "k"],
      /--ca missing/,
    ],
    [["--port", "0", "--file", dir.path], /Cannot open --file '.*': is a directory/],
    [
      ["--port", "0", "--file", `${dir.path}/no/such/dir/x`],
      /Cannot open --file '.*no\/such\/dir\/x': file not found/,
    ],
    [["--port", "0", "--file", `${dir.path}/x`, "--bogus"], /bogus/],
  ];
  for (const [args, pattern] of cases) {
    const result = await runReclog(["listen", ...args]);
    assert.equal(result.code, 2, `${args.join(" ")}: ${result.stderr}`);
    const lines = result.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1, `one line for ${args.join(" ")}: ${result.stderr}`);
    assert.match(lines[0]!, /^reclog listen: /);
    assert.match(lines[0]!, pattern);
  }
  const help = await runReclog(["listen", "--help"]);
  assert.equal(help.code, 0);
  for (const flag of ["--port", "--file", "--host", "--udp", "--timestamp", "--peer", "--cert"]) {
    assert.ok(help.stdout.includes(flag), `--help mentions ${flag}`);
  }
  for (const flag of ["--key", "--ca", "--max-line"]) assert.ok(help.stdout.includes(flag));
});
