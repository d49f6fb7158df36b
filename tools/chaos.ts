/**
 * `deno task chaos [--seconds N] [--rate N] [--via relp|tcp] [--in relp|tcp] [--out relp|tcp] [--keep]`: the
 * whole chain with real daemons, killed at random, counted at the end.
 *
 * A paced generator appends numbered lines to a file that two rsyslog A
 * instances read (imfile). Chain 1, reclog's: rsyslog A (omrelp,
 * disk-assisted queue) → `reclog serve --spool` (relp in) → `reclog pull`
 * (relp out, --state) → rsyslog B (imrelp → file). Chain 2, what a user
 * would build without reclog: rsyslog A (omrelp over TLS, same queue) →
 * rsyslog B (imrelp over TLS → file). Every 5–10 s one of chain 1's daemons
 * is picked: serve, pull or B is SIGKILLed, A is stopped with SIGTERM (its
 * queue is saved); at the same moment chain 2's B is SIGKILLed (or its A
 * stopped). Each comes back 1–2 s later. At the end every daemon runs until
 * the files stop growing; then the unique and duplicate sequence numbers in
 * each B file are counted and printed side by side.
 *
 * `--via tcp` runs chain 1 over TCP (omfwd octet-counted in, `--to tcp://`
 * out) instead of RELP, for comparison; `--in` and `--out` pick each end. Exit code 1 when chain 1 lost a
 * message or doubled more than 0.5 %.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { sleep } from "../lib/util/sleep.ts";
import {
  type ChaosCerts,
  contribSnippet,
  Daemon,
  forwardAction,
  reclogCommand,
  rsyslogA,
  rsyslogB,
  rsyslogDaemon,
  writeCerts,
} from "./chaos_daemons.ts";

/** What one B file holds. */
interface Tally {
  unique: number;
  duplicates: number;
}

/** Counts sequence numbers `seq=N` in a file as it grows. */
class FileCounter {
  readonly #path: string;
  readonly #seen: Uint8Array;
  #offset = 0;
  #rest = "";
  #decoder = new TextDecoder();
  unique = 0;
  duplicates = 0;

  constructor(path: string, total: number) {
    this.#path = path;
    this.#seen = new Uint8Array(total);
  }

  /** Reads what was appended since the last call. */
  async update(): Promise<Tally> {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(this.#path);
    } catch {
      return this;
    }
    try {
      await file.seek(this.#offset, Deno.SeekMode.Start);
      const buffer = new Uint8Array(1 << 20);
      for (;;) {
        const n = await file.read(buffer);
        if (n === null) break;
        this.#offset += n;
        const text = this.#rest + this.#decoder.decode(buffer.subarray(0, n), { stream: true });
        const end = text.lastIndexOf("\n");
        this.#rest = text.slice(end + 1);
        for (const match of text.slice(0, end + 1).matchAll(/seq=(\d+)/g)) {
          const seq = Number(match[1]);
          if (seq >= this.#seen.length) continue;
          if (this.#seen[seq]) this.duplicates++;
          else {
            this.#seen[seq] = 1;
            this.unique++;
          }
        }
      }
    } finally {
      file.close();
    }
    return this;
  }
}

/** Appends `total` numbered lines to `path` at `rate` per second. */
async function generate(path: string, total: number, rate: number): Promise<void> {
  using file = await Deno.open(path, { append: true, create: true });
  const encoder = new TextEncoder();
  const pad = "x".repeat(60);
  const started = performance.now();
  let written = 0;
  while (written < total) {
    const due = Math.min(total, Math.floor((performance.now() - started) * rate / 1000));
    if (due > written) {
      let text = "";
      for (; written < due; written++) {
        text += `chaos seq=${String(written).padStart(8, "0")} ${pad}\n`;
      }
      file.writeSync(encoder.encode(text));
    }
    await sleep(10);
  }
}

const random = (min: number, max: number) => min + Math.random() * (max - min);

/** One kill-and-restart plan: what chain 1 loses and what chain 2 loses at the same moment. */
interface Victims {
  reclog: Daemon;
  rsyslog: Daemon;
  /** SIGTERM (rsyslog A, its queue saved) rather than SIGKILL. */
  term: boolean;
}

async function strike(victims: Victims, signal: AbortSignal, log: string[]): Promise<void> {
  const down = [victims.reclog, victims.rsyslog];
  const how = victims.term ? "SIGTERM" : "SIGKILL";
  log.push(`${new Date().toISOString()} ${how} ${down.map((d) => d.name).join(" + ")}`);
  await Promise.all(down.map((d) => victims.term ? d.stop() : d.kill("SIGKILL")));
  await sleep(random(1_000, 2_000), signal);
  for (const d of down) d.start();
}

type Via = "relp" | "tcp";

function parseFlags(): {
  seconds: number;
  rate: number;
  via: { in: Via; out: Via };
  keep: boolean;
} {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      seconds: { type: "string", default: "180" },
      rate: { type: "string", default: "2000" },
      via: { type: "string", default: "relp" },
      in: { type: "string" },
      out: { type: "string" },
      keep: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(
      "Usage: deno task chaos [--seconds N (180)] [--rate N (2000)] [--via relp|tcp] [--in relp|tcp] [--out relp|tcp] [--keep]",
    );
    Deno.exit(0);
  }
  const seconds = Number(values.seconds);
  const rate = Number(values.rate);
  if (!(seconds > 0) || !(rate > 0)) {
    console.error("chaos: --seconds and --rate take a positive number");
    Deno.exit(2);
  }
  const via = (flag: string, value: string): Via => {
    if (value === "relp" || value === "tcp") return value;
    console.error(`chaos: --${flag} '${value}': expected relp or tcp`);
    Deno.exit(2);
  };
  const both = via("via", values.via);
  return {
    seconds,
    rate,
    via: { in: via("in", values.in ?? both), out: via("out", values.out ?? both) },
    keep: values.keep,
  };
}

function freeUdpPort(): number {
  const socket = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const port = (socket.addr as Deno.NetAddr).port;
  socket.close();
  return port;
}

function freePort(): number {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return (listener.addr as Deno.NetAddr).port;
}

/** Chain 1: rsyslog A → serve → pull → rsyslog B. */
async function reclogChain(
  dir: string,
  gen: string,
  certs: ChaosCerts,
  via: { in: Via; out: Via },
): Promise<{ a: Daemon; serve: Daemon; pull: Daemon; b: Daemon; file: string }> {
  const inPort = freePort();
  const mtlsPort = freePort();
  const homePort = freePort();
  await Deno.mkdir(`${dir}/b`, { recursive: true });
  // RELP ends: the contrib/rsyslog snippets as installed, ports and paths changed.
  // (While the VPS snippet still forwards over TCP, its parameters with omrelp.)
  const vps = await contribSnippet("90-forward-to-reclog.conf", []);
  const forward = via.in === "relp" && vps.includes('type="omrelp"')
    ? await contribSnippet("90-forward-to-reclog.conf", [['port="5142"', `port="${inPort}"`]])
    : forwardAction(via.in, inPort);
  const a = await rsyslogDaemon("A(reclog)", `${dir}/a`, rsyslogA(`${dir}/a`, gen, forward));
  const serve = new Daemon(
    "serve",
    `${dir}/serve.log`,
    reclogCommand([
      "serve",
      ...["--cert", certs.serverCert, "--key", certs.serverKey, "--ca", certs.ca],
      ...["--listen", `127.0.0.1:${mtlsPort}`],
      ...["--syslog-in", `${via.in}://127.0.0.1:${inPort}`, "--spool", `${dir}/spool`],
    ]),
  );
  const pull = new Daemon(
    "pull",
    `${dir}/pull.log`,
    reclogCommand([
      "pull",
      ...["--server", `127.0.0.1:${mtlsPort}`, "--server-name", "localhost"],
      ...["--cert", certs.clientCert, "--key", certs.clientKey, "--ca", certs.ca],
      ...["--to", `${via.out}://127.0.0.1:${homePort}`, "--state", `${dir}/pull.state`],
    ]),
  );
  let b: Daemon;
  let file = `${dir}/b/home.log`;
  if (via.out === "relp") {
    const log = `${dir}/b/log/`;
    const home = await contribSnippet("10-reclog-receive.conf", [
      ["/var/log/", log],
      ['port="2514"', `port="${homePort}"`],
      ['port="514"', `port="${freeUdpPort()}"`],
    ]);
    const tlog = await contribSnippet("20-tlog.conf", [["/var/log/", log]]);
    const conf = `global(workDirectory="${dir}/b/work" maxMessageSize="64k")\n${home}\n${tlog}\n`;
    b = await rsyslogDaemon("B(reclog)", `${dir}/b`, conf);
    file = `${log}remote/${Deno.hostname().split(".")[0]}/syslog.log`;
  } else {
    b = await rsyslogDaemon(
      "B(reclog)",
      `${dir}/b`,
      rsyslogB(`${dir}/b`, { kind: via.out, port: homePort }, file),
    );
  }
  return { a, serve, pull, b, file };
}

/** Chain 2: rsyslog A → rsyslog B over RELP with TLS. */
async function rsyslogChain(
  dir: string,
  gen: string,
  certs: ChaosCerts,
): Promise<{ a: Daemon; b: Daemon; file: string }> {
  const port = freePort();
  const file = `${dir}/b/home.log`;
  await Deno.mkdir(`${dir}/b`, { recursive: true });
  const a = await rsyslogDaemon(
    "A(rsyslog)",
    `${dir}/a`,
    rsyslogA(`${dir}/a`, gen, forwardAction("relp-tls", port, certs)),
  );
  const b = await rsyslogDaemon(
    "B(rsyslog)",
    `${dir}/b`,
    rsyslogB(`${dir}/b`, { kind: "relp-tls", port, certs }, file),
  );
  return { a, b, file };
}

const percent = (part: number, whole: number) => `${(100 * part / whole).toFixed(3)} %`;

async function main(): Promise<number> {
  const { seconds, rate, via, keep } = parseFlags();
  const total = Math.round(seconds * rate);
  const dir = await Deno.makeTempDir({ prefix: "reclog-chaos-" });
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  Deno.addSignalListener("SIGINT", onSignal);
  try {
    const certs = await writeCerts(dir);
    const gen = `${dir}/generated.log`;
    await Deno.writeTextFile(gen, "");
    const one = await reclogChain(`${dir}/reclog`, gen, certs, via);
    const two = await rsyslogChain(`${dir}/rsyslog`, gen, certs);
    const all = [one.b, two.b, one.pull, one.serve, one.a, two.a];
    await using stack = new AsyncDisposableStack();
    for (const d of all) stack.use(d);
    for (const d of all) d.start();
    console.log(
      `chaos: ${total} messages at ${rate}/s for ${seconds} s; reclog chain in ${via.in}, out ${via.out}; in ${dir}`,
    );
    await sleep(3_000, controller.signal); // the daemons bind their ports

    const log: string[] = [];
    const generating = generate(gen, total, rate);
    let generated = false;
    generating.finally(() => generated = true);
    const choices: Array<() => Victims> = [
      () => ({ reclog: one.serve, rsyslog: two.b, term: false }),
      () => ({ reclog: one.pull, rsyslog: two.b, term: false }),
      () => ({ reclog: one.b, rsyslog: two.b, term: false }),
      () => ({ reclog: one.a, rsyslog: two.a, term: true }),
    ];
    while (!generated && !controller.signal.aborted) {
      await Promise.race([sleep(random(5_000, 10_000), controller.signal), generating]);
      if (generated || controller.signal.aborted) break;
      const victims = choices[Math.floor(Math.random() * choices.length)]!();
      await strike(victims, controller.signal, log);
      console.log(log.at(-1));
    }
    await generating;
    for (const d of all) d.start();

    // Drain: until both files hold everything, or neither grew for 30 s (at most 5 min).
    const counters = [new FileCounter(one.file, total), new FileCounter(two.file, total)];
    let last = "";
    let still = Date.now();
    const deadline = Date.now() + 300_000;
    while (!controller.signal.aborted && Date.now() < deadline) {
      const tallies = await Promise.all(counters.map((c) => c.update()));
      const now = tallies.map((t) => `${t.unique}/${t.duplicates}`).join(" ");
      if (tallies.every((t) => t.unique === total)) break;
      if (now !== last) [last, still] = [now, Date.now()];
      else if (Date.now() - still > 30_000) break;
      await sleep(1_000, controller.signal);
    }
    const [r, s] = await Promise.all(counters.map((c) => c.update()));
    const kills = (names: string[]) =>
      names.map((name) => `${name} ${log.filter((l) => l.includes(name)).length}`).join(", ");
    const rows: Array<[string, string, string]> = [
      [
        "chain",
        `rsyslog A → serve → pull → rsyslog B (in ${via.in}, out ${via.out})`,
        "rsyslog A → rsyslog B (RELP + TLS)",
      ],
      ["generated", String(total), String(total)],
      ["unique in B's file", String(r!.unique), String(s!.unique)],
      [
        "missing",
        `${total - r!.unique} (${percent(total - r!.unique, total)})`,
        `${total - s!.unique} (${percent(total - s!.unique, total)})`,
      ],
      [
        "duplicates",
        `${r!.duplicates} (${percent(r!.duplicates, total)})`,
        `${s!.duplicates} (${percent(s!.duplicates, total)})`,
      ],
      [
        "stopped",
        kills(["serve", "pull", "B(reclog)", "A(reclog)"]),
        kills(["B(rsyslog)", "A(rsyslog)"]),
      ],
    ];
    const width = [0, 1, 2].map((i) => Math.max(...rows.map((row) => row[i].length)));
    for (const row of rows) {
      console.log(row.map((cell, i) => cell.padEnd(width[i]!)).join(" | ").trimEnd());
    }
    const forced = all.filter((d) => d.forced > 0).map((d) => `${d.name} ${d.forced}`);
    if (forced.length > 0) console.log(`SIGTERM timed out, SIGKILLed: ${forced.join(", ")}`);
    const ok = r!.unique === total && r!.duplicates <= total * 0.005;
    console.log(ok ? "reclog chain: OK" : "reclog chain: FAILED (loss, or duplicates over 0.5 %)");
    return ok ? 0 : 1;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    if (keep) console.log(`kept ${dir}`);
    else await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) Deno.exit(await main());
