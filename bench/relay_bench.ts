/**
 * `deno task bench`: reclog's relay side by side with rsyslog → rsyslog over
 * TLS, under the same offered load, with the same certificates, on loopback.
 *
 * Pipelines (each fed by bench/load_gen.ts, each ending in the counting
 * receiver of bench/receiver.ts):
 *
 * - `rsyslog`: rsyslog A (imudp) → omfwd over TLS (ossl or gtls driver,
 *   x509/name) → rsyslog B (imtcp, TLS) → omfwd UDP → receiver
 * - `reclog-udp`: UDP → `reclog serve` → mTLS → `reclog pull --to udp://` → receiver
 * - `reclog-tcp`: TCP octet counting → `serve --syslog-in tcp://` → `pull --to tcp://` →
 *   TCP receiver
 *
 * For each pipeline and offered rate: delivered fraction, latency p50/p99/max,
 * CPU time per message of each process, peak RSS of each process. Then the
 * journal catch-up: 1,000,000 messages ingested over TCP with no client, then
 * a client resuming from sequence 1, from memory and from a spool on disk.
 *
 * Prints markdown tables and writes every raw figure to bench/results/latest.json.
 * Run `deno task bench --help` for the flags.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import {
  type CertPaths,
  freePort,
  makeCerts,
  type Running,
  startProgram,
  startRsyslog,
} from "../tests/helpers.ts";
import { startPull, startServe } from "../tests/relay.ts";
import { loadTlsMaterial, type TlsMaterial } from "../lib/tls/policy.ts";
import { monotonicMicros } from "./clock.ts";
import type { LoadResult } from "./load_gen.ts";
import { type Counted, Receiver } from "./receiver.ts";
import { cpuSeconds, initClockTicks, killAll, peakRss, stop, track } from "./procs.ts";
import { udpDrops as kernelUdpDrops } from "../lib/ops/metrics.ts";
import { sleep } from "../lib/util/sleep.ts";
import { type CatchUpResult, readMessages } from "./catchup_client.ts";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const LOAD_GEN = `${HERE}load_gen.ts`;
const CONFIG = `${ROOT}deno.json`;

const USAGE = `deno task bench [flags]

  --rates LIST         offered rates in msg/s (default 1000,10000,50000,100000,200000)
  --seconds N          seconds of load per run (default 5)
  --repeats N          runs per pipeline and rate, the median is reported (default 3;
                       lowered to 1 for the rest when the time budget would be exceeded)
  --budget-minutes N   time budget for the rate sessions (default 30)
  --pipelines LIST     rsyslog,reclog-udp,rsyslog-tcp,reclog-tcp (the default), also
                       reclog-tcp-udp (TCP in, UDP out: tells the two TCP ends apart)
  --latency-rate N     a separate low-rate latency run (default 0: none; 1000 is in --rates)
  --catchup N          messages for the journal catch-up (default 1000000, 0: none)
  --rsyslog-configs L  rsyslog set-ups to try, the best figure per column is kept (default
                       gtls,gtls+queue,ossl,ossl+queue: TLS driver, with or without an
                       action queue on the forwarding action)
  --driver ossl|gtls   only that driver's two set-ups (with and without the queue)
  --flatness-minutes N memory flatness: reclog UDP in/out at --flatness-rate for N minutes,
                       RSS of serve and pull at the end vs after 1 minute (default 3, quick 1.5;
                       the issue asks 10; 0: none)
  --flatness-rate N    msg/s of the flatness run (default 20000)
  --relp N             messages for the RELP throughput beside rsyslog's omrelp/imrelp (runs
                       bench/relp_bench.ts and relp_io_bench.ts; default 200000, quick 50000;
                       0: none)
  --serve-args="A B"   extra flags for every reclog serve of the rate sessions and the
                       flatness run, e.g. --serve-args="--journal-bytes 8MiB" (default none)
  --pull-args="A B"    extra flags for every reclog pull (default none; --live is always given)
  --quick              rates 1000,10000,100000, UDP pipelines only, 2 s, 1 run, flatness
                       1.5 min, RELP 50k, catch-up of 200000: about 5 minutes
  --out FILE           raw figures (default bench/results/latest.json)
`;

// ---------------------------------------------------------------- options

/** One rsyslog set-up: its TLS driver, and whether the TLS action has its own queue. */
interface RsyslogConfig {
  name: string;
  driver: "ossl" | "gtls";
  queue: boolean;
}

const ALL_RSYSLOG_CONFIGS = ["gtls", "gtls+queue", "ossl", "ossl+queue"];

function parseRsyslogConfig(name: string): RsyslogConfig {
  const [driver, queue, ...rest] = name.split("+");
  if ((driver !== "gtls" && driver !== "ossl") || (queue && queue !== "queue") || rest.length) {
    throw new Error(
      `bench: --rsyslog-configs: unknown '${name}' (${ALL_RSYSLOG_CONFIGS.join(", ")})`,
    );
  }
  return { name, driver, queue: queue === "queue" };
}

interface Options {
  rates: number[];
  seconds: number;
  repeats: number;
  budgetSeconds: number;
  pipelines: PipelineKey[];
  latencyRate: number;
  catchup: number;
  rsyslogConfigs: RsyslogConfig[];
  flatnessMinutes: number;
  flatnessRate: number;
  relp: number;
  serveArgs: string[];
  pullArgs: string[];
  out: string;
}

type PipelineKey = "rsyslog" | "reclog-udp" | "rsyslog-tcp" | "reclog-tcp" | "reclog-tcp-udp";
const DEFAULT_PIPELINES: PipelineKey[] = ["rsyslog", "reclog-udp", "rsyslog-tcp", "reclog-tcp"];
const ALL_PIPELINES: PipelineKey[] = [...DEFAULT_PIPELINES, "reclog-tcp-udp"];
const LABELS: Record<PipelineKey, string> = {
  rsyslog: "rsyslog→rsyslog TLS, UDP in/out",
  "reclog-udp": "reclog, UDP in/out",
  "rsyslog-tcp": "rsyslog→rsyslog TLS, TCP in/out",
  "reclog-tcp": "reclog, TCP in/out",
  "reclog-tcp-udp": "reclog, TCP in, UDP out",
};

function parseOptions(args: string[]): Options {
  const { values } = parseArgs({
    args,
    options: {
      rates: { type: "string" },
      seconds: { type: "string" },
      repeats: { type: "string" },
      "budget-minutes": { type: "string", default: "30" },
      pipelines: { type: "string" },
      "latency-rate": { type: "string", default: "0" },
      catchup: { type: "string" },
      driver: { type: "string" },
      "rsyslog-configs": { type: "string" },
      "flatness-minutes": { type: "string" },
      "flatness-rate": { type: "string", default: "20000" },
      relp: { type: "string" },
      "serve-args": { type: "string", default: "" },
      "pull-args": { type: "string", default: "" },
      quick: { type: "boolean", default: false },
      out: { type: "string", default: `${HERE}results/latest.json` },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const quick = values.quick;
  const number = (value: string | undefined, fallback: number, flag: string) => {
    const n = value === undefined ? fallback : Number(value);
    if (!Number.isFinite(n) || n < 0) throw new Error(`bench: --${flag} '${value}': not a number`);
    return n;
  };
  const rates = (values.rates ?? (quick ? "1000,10000,100000" : "1000,10000,50000,100000,200000"))
    .split(",").map((r) => number(r.trim(), 0, "rates")).filter((r) => r > 0);
  const pipelines =
    (values.pipelines ?? (quick ? "rsyslog,reclog-udp" : DEFAULT_PIPELINES.join(",")))
      .split(",").map((p) => p.trim());
  for (const p of pipelines) {
    if (!ALL_PIPELINES.includes(p as PipelineKey)) {
      throw new Error(`bench: --pipelines: unknown '${p}' (${ALL_PIPELINES.join(", ")})`);
    }
  }
  if (values.driver !== undefined && values.driver !== "ossl" && values.driver !== "gtls") {
    throw new Error(`bench: --driver '${values.driver}': ossl or gtls`);
  }
  const configs = values["rsyslog-configs"]?.split(",").map((c) => c.trim()) ??
    (values.driver ? [values.driver, `${values.driver}+queue`] : ALL_RSYSLOG_CONFIGS);
  return {
    rates,
    seconds: number(values.seconds, quick ? 2 : 5, "seconds"),
    repeats: Math.max(1, Math.round(number(values.repeats, quick ? 1 : 3, "repeats"))),
    budgetSeconds: number(values["budget-minutes"], 30, "budget-minutes") * 60,
    pipelines: pipelines as PipelineKey[],
    latencyRate: number(values["latency-rate"], 0, "latency-rate"),
    catchup: number(values.catchup, quick ? 200_000 : 1_000_000, "catchup"),
    rsyslogConfigs: configs.map(parseRsyslogConfig),
    flatnessMinutes: number(values["flatness-minutes"], quick ? 1.5 : 3, "flatness-minutes"),
    flatnessRate: number(values["flatness-rate"], 20000, "flatness-rate"),
    relp: number(values.relp, quick ? 50_000 : 200_000, "relp"),
    serveArgs: values["serve-args"].split(/\s+/).filter((a) => a !== ""),
    pullArgs: values["pull-args"].split(/\s+/).filter((a) => a !== ""),
    out: values.out,
  };
}

// ---------------------------------------------------------------- rsyslog's TLS driver

async function ensureRsyslogDriver(driver: "ossl" | "gtls", notes: string[]): Promise<void> {
  const dirs = ["/usr/lib/x86_64-linux-gnu/rsyslog", "/usr/lib/aarch64-linux-gnu/rsyslog"];
  const has = () =>
    dirs.some((d) => {
      try {
        return Deno.statSync(`${d}/lmnsd_${driver}.so`).isFile;
      } catch {
        return false;
      }
    });
  if (has()) return;
  const pkg = driver === "ossl" ? "rsyslog-openssl" : "rsyslog-gnutls";
  if (Deno.uid() === 0) {
    console.error(`bench: rsyslog's ${driver} TLS driver is missing; installing ${pkg}`);
    const run = (args: string[]) =>
      new Deno.Command("apt-get", {
        args,
        stdout: "inherit",
        stderr: "inherit",
        env: { DEBIAN_FRONTEND: "noninteractive" },
      }).output();
    if ((await run(["install", "-y", "-qq", pkg])).success && has()) {
      notes.push(`installed ${pkg} for rsyslog's TLS driver`);
      return;
    }
    if ((await run(["update", "-qq"])).success && (await run(["install", "-y", "-qq", pkg]))) {
      if (has()) {
        notes.push(`installed ${pkg} for rsyslog's TLS driver`);
        return;
      }
    }
  }
  throw new Error(
    `bench: rsyslog's TLS driver lmnsd_${driver}.so is missing: run 'apt-get install -y ${pkg}'`,
  );
}

// ---------------------------------------------------------------- pipelines

interface Proc {
  name: string;
  running: Running;
}

interface Pipeline {
  key: PipelineKey;
  /** Where the load goes. */
  target: string;
  procs: Proc[];
  /** The UDP input's port (kernel drops are read from /proc/net/udp). */
  inputUdpPort?: number;
  /** reclog: serve's mTLS port, to ask its journal how many it took. */
  servePort?: number;
  /** rsyslog: the set-up. */
  config?: RsyslogConfig;
}

interface Context {
  dir: string;
  certs: CertPaths;
  material: TlsMaterial;
  receiver: Receiver;
  sessions: number;
  serveArgs: string[];
  pullArgs: string[];
}

const isRsyslog = (key: PipelineKey) => key === "rsyslog" || key === "rsyslog-tcp";

async function startPipeline(
  key: PipelineKey,
  ctx: Context,
  config: RsyslogConfig = { name: "ossl+queue", driver: "ossl", queue: true },
): Promise<Pipeline> {
  const { certs, receiver } = ctx;
  if (isRsyslog(key)) {
    const tcp = key === "rsyslog-tcp";
    const n = ctx.sessions;
    const tlsPort = freePort("tcp");
    const inPort = freePort(tcp ? "tcp" : "udp");
    // No default driver: every input and action names its own.
    const tls = (cert: string, key: string) =>
      `global(defaultNetstreamDriverCAFile="${certs.ca}"\n` +
      `  defaultNetstreamDriverCertFile="${cert}" defaultNetstreamDriverKeyFile="${key}")\n` +
      `template(name="raw" type="string" string="%rawmsg%")\n`;
    const out = tcp
      ? `action(type="omfwd" target="127.0.0.1" port="${receiver.tcpPort}" protocol="tcp"` +
        ` TCP_Framing="octet-counted" template="raw")\n`
      : `action(type="omfwd" target="127.0.0.1" port="${receiver.udpPort}" protocol="udp"` +
        ` template="raw")\n`;
    const b = track(
      await startRsyslog({
        dir: `${ctx.dir}/rsyslog-b-${n}`,
        rules: tls(certs.serverCert, certs.serverKey) +
          `module(load="imtcp" StreamDriver.Name="${config.driver}" StreamDriver.Mode="1"\n` +
          `  StreamDriver.AuthMode="x509/certvalid")\n` +
          `input(type="imtcp" address="127.0.0.1" port="${tlsPort}")\n` + out,
        readyTcpPort: tlsPort,
      }),
    );
    const input = tcp
      ? `module(load="imtcp" StreamDriver.Name="ptcp")\n` +
        `input(type="imtcp" address="127.0.0.1" port="${inPort}")\n`
      : `module(load="imudp")\n` +
        `input(type="imudp" address="127.0.0.1" port="${inPort}" rcvbufSize="8m")\n`;
    const a = track(
      await startRsyslog({
        dir: `${ctx.dir}/rsyslog-a-${n}`,
        rules: tls(certs.clientCert, certs.clientKey) + input +
          `action(type="omfwd" target="127.0.0.1" port="${tlsPort}" protocol="tcp"\n` +
          `  TCP_Framing="octet-counted" template="raw" StreamDriver="${config.driver}"\n` +
          `  StreamDriverMode="1" StreamDriverAuthMode="x509/name"` +
          ` StreamDriverPermittedPeers="localhost"\n` +
          (config.queue ? `  queue.type="LinkedList" queue.size="100000"` : "") +
          ` action.resumeRetryCount="-1")\n`,
        ...(tcp ? { readyTcpPort: inPort } : { readyUdpPort: inPort }),
      }),
    );
    return {
      key,
      target: `${tcp ? "tcp" : "udp"}://127.0.0.1:${inPort}`,
      procs: [{ name: "rsyslog A", running: a }, { name: "rsyslog B", running: b }],
      ...(tcp ? {} : { inputUdpPort: inPort }),
      config,
    };
  }
  const tcpIn = key !== "reclog-udp";
  const tcpOut = key === "reclog-tcp";
  const served = await startServe(certs, { tcp: tcpIn, args: ctx.serveArgs });
  track(served.process);
  const pull = track(
    await startPull(certs, served.port, {
      to: tcpOut ? `tcp://127.0.0.1:${receiver.tcpPort}` : `udp://127.0.0.1:${receiver.udpPort}`,
      args: ["--live", ...ctx.pullArgs],
    }),
  );
  return {
    key,
    target: tcpIn ? `tcp://127.0.0.1:${served.tcpPort}` : `udp://127.0.0.1:${served.udpPort}`,
    procs: [{ name: "serve", running: served.process }, { name: "pull", running: pull }],
    servePort: served.port,
    ...(tcpIn ? {} : { inputUdpPort: served.udpPort }),
  };
}

/** serve's journal: the sequence number its next message will get. */
async function journalNext(port: number, material: TlsMaterial): Promise<number> {
  const result = await readMessages({ port, material, count: 0, timeoutMs: 10_000 });
  return result.hello.next;
}

async function stopPipeline(pipeline: Pipeline): Promise<void> {
  await Promise.all(pipeline.procs.map((p) => stop(p.running)));
}

// ---------------------------------------------------------------- one run

interface RunResult {
  pipeline: PipelineKey;
  kind: "rate" | "latency" | "warmup";
  rate: number;
  load: LoadResult;
  counted: Counted;
  delivered: number;
  /** Seconds from the end of sending until the last message arrived (or the drain gave up). */
  drainSeconds: number;
  /** CPU seconds per process during the run (sending + drain). */
  cpuSeconds: Record<string, number>;
  /** CPU µs per message sent, per process. */
  cpuMicrosPerMessage: Record<string, number>;
  /** CPU time per process over the measured wall time (load + drain), % of one core. */
  cpuPercent: Record<string, number>;
  /** reclog: messages serve's journal took during the run (from its hello's `next`). */
  ingested?: number;
  /** Datagrams the kernel dropped at the pipeline's UDP input socket (receive buffer full). */
  inputDrops?: number;
  /** Datagrams the kernel dropped at the bench receiver's socket (should be 0). */
  receiverDrops: number;
  /** A pipeline process died during the run. */
  died?: string;
}

let seqBase = 0;
const SEQ_SPAN = 100_000_000;

/** The kernel's drops for the UDP socket on `port`, NaN when unknown. */
function udpDrops(port: number): number {
  return kernelUdpDrops(port) ?? NaN;
}

async function generateLoad(
  target: string,
  rate: number,
  seconds: number,
  extra: string[] = [],
): Promise<LoadResult> {
  seqBase += SEQ_SPAN;
  const gen = track(startProgram(Deno.execPath(), [
    "run",
    "-q",
    "-A",
    `--config=${CONFIG}`,
    LOAD_GEN,
    "--to",
    target,
    "--rate",
    String(rate),
    "--seconds",
    String(seconds),
    "--seq-base",
    String(seqBase),
    ...extra,
  ]));
  const status = await gen.wait(seconds * 1000 + 120_000);
  if (!status.success) throw new Error(`load_gen failed (${status.code}): ${gen.stderr}`);
  return JSON.parse(gen.stdout.trim().split("\n").at(-1)!) as LoadResult;
}

/** Waits until nothing arrived for `idleMs` (stale messages of an earlier run). */
async function quiesce(receiver: Receiver, idleMs: number, maxMs: number): Promise<number> {
  const start = performance.now();
  while (performance.now() - start < maxMs) {
    const quietFor = (monotonicMicros() - receiver.counter.lastAny) / 1000;
    if (quietFor >= idleMs) break;
    await sleep(50);
  }
  return (performance.now() - start) / 1000;
}

async function measure(
  pipeline: Pipeline,
  ctx: Context,
  kind: RunResult["kind"],
  rate: number,
  seconds: number,
  drainMaxMs: number,
): Promise<RunResult> {
  const receiver = ctx.receiver;
  const counter = receiver.counter;
  counter.reset(seqBase + SEQ_SPAN, Math.ceil(rate * seconds) + 16);
  const next0 = pipeline.servePort ? await journalNext(pipeline.servePort, ctx.material) : 0;
  const inputDrops0 = pipeline.inputUdpPort ? udpDrops(pipeline.inputUdpPort) : NaN;
  const receiverDrops0 = udpDrops(receiver.udpPort);
  const cpu0 = pipeline.procs.map((p) => cpuSeconds(p.running.child.pid));
  const wall0 = monotonicMicros();
  const load = await generateLoad(pipeline.target, rate, seconds);
  const sentAt = monotonicMicros();
  // Drain: until everything arrived, or nothing new for 1 s, or drainMaxMs.
  while (counter.unique < load.sent) {
    const now = monotonicMicros();
    if ((now - sentAt) / 1000 > drainMaxMs) break;
    if ((now - Math.max(counter.lastArrival, sentAt)) / 1000 > 1000) break;
    await sleep(20);
  }
  const counted = counter.result();
  const cpu1 = pipeline.procs.map((p) => cpuSeconds(p.running.child.pid));
  const wallSeconds = (monotonicMicros() - wall0) / 1e6;
  const inputDrops = pipeline.inputUdpPort ? udpDrops(pipeline.inputUdpPort) - inputDrops0 : NaN;
  const receiverDrops = udpDrops(receiver.udpPort) - receiverDrops0;
  const ingested = pipeline.servePort
    ? await journalNext(pipeline.servePort, ctx.material) - next0
    : undefined;
  const cpu: Record<string, number> = {};
  const perMessage: Record<string, number> = {};
  const percent: Record<string, number> = {};
  pipeline.procs.forEach((p, i) => {
    percent[p.name] = (cpu1[i]! - cpu0[i]!) / wallSeconds * 100;
    cpu[p.name] = cpu1[i]! - cpu0[i]!;
    perMessage[p.name] = (cpu1[i]! - cpu0[i]!) / Math.max(load.sent, 1) * 1e6;
  });
  const dead = pipeline.procs.filter((p) => p.running.exited);
  return {
    pipeline: pipeline.key,
    kind,
    rate,
    load,
    counted,
    delivered: counted.unique / Math.max(load.sent, 1),
    drainSeconds: counted.lastArrival ? Math.max(0, (counted.lastArrival - sentAt) / 1e6) : 0,
    cpuSeconds: cpu,
    cpuMicrosPerMessage: perMessage,
    cpuPercent: percent,
    ...(ingested === undefined ? {} : { ingested }),
    ...(Number.isNaN(inputDrops) ? {} : { inputDrops }),
    receiverDrops,
    ...(dead.length
      ? { died: dead.map((p) => `${p.name}: ${p.running.stderr.slice(-2000)}`).join("\n") }
      : {}),
  };
}

// ---------------------------------------------------------------- sessions

interface SessionResult {
  pipeline: PipelineKey;
  /** rsyslog: the set-up's name. */
  config?: string;
  rate: number;
  runs: RunResult[];
  /** Peak RSS (VmHWM) per process over the session, bytes. */
  peakRss: Record<string, number>;
  /** WARN/ERROR lines the pipeline's processes logged (the first 20). */
  warnings: string[];
  seconds: number;
  error?: string;
}

function warningsOf(pipeline: Pipeline | undefined): string[] {
  if (!pipeline) return [];
  return pipeline.procs.flatMap((p) =>
    p.running.stderr.split("\n").filter((line) =>
      /\b(WRN|WARN|ERR|ERROR|FTL|error)\b/i.test(line) &&
      // The readiness probe's plain connect to rsyslog B's TLS port is logged as an error.
      !/failed to process incoming connection|will be closed due to error|HandshakeCheck|unexpected eof/
        .test(line)
    ).map((line) => `${p.name}: ${line}`)
  ).slice(0, 20);
}

async function session(
  key: PipelineKey,
  rate: number,
  repeats: number,
  options: Options,
  ctx: Context,
  withLatencyRun: boolean,
  config?: RsyslogConfig,
): Promise<SessionResult> {
  const named = config ? { config: config.name } : {};
  const t0 = performance.now();
  ctx.sessions++;
  const runs: RunResult[] = [];
  const peak: Record<string, number> = {};
  let pipeline: Pipeline | undefined;
  try {
    pipeline = await startPipeline(key, ctx, config);
    const drainMaxMs = 6000;
    // Warm-up: TLS connection up, JIT warm, not counted.
    await measure(pipeline, ctx, "warmup", Math.min(rate, 5000), 1, 2000);
    await quiesce(ctx.receiver, 300, 5000);
    if (withLatencyRun && options.latencyRate > 0) {
      runs.push(
        await measure(
          pipeline,
          ctx,
          "latency",
          options.latencyRate,
          options.seconds,
          3000,
        ),
      );
      await quiesce(ctx.receiver, 300, 5000);
    }
    for (let i = 0; i < repeats; i++) {
      const run = await measure(pipeline, ctx, "rate", rate, options.seconds, drainMaxMs);
      runs.push(run);
      if (run.died) throw new Error(`a process died:\n${run.died}`);
      await quiesce(ctx.receiver, 300, 8000);
    }
    for (const p of pipeline.procs) peak[p.name] = peakRss(p.running.child.pid);
    return {
      pipeline: key,
      ...named,
      rate,
      runs,
      peakRss: peak,
      warnings: warningsOf(pipeline),
      seconds: (performance.now() - t0) / 1000,
    };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    console.error(`bench: ${key} at ${rate} msg/s failed: ${message}`);
    return {
      pipeline: key,
      ...named,
      rate,
      runs,
      peakRss: peak,
      warnings: warningsOf(pipeline),
      seconds: (performance.now() - t0) / 1000,
      error: message,
    };
  } finally {
    if (pipeline) await stopPipeline(pipeline);
  }
}

// ---------------------------------------------------------------- catch-up

interface CatchUp {
  mode: "memory" | "spool";
  serveArgs: string[];
  messages: number;
  ingestSeconds: number;
  ingestRate: number;
  catchUp: CatchUpResult;
  catchUpRate: number;
  serveCpuIngestMicrosPerMessage: number;
  serveCpuCatchUpMicrosPerMessage: number;
  servePeakRss: number;
  error?: string;
}

async function catchUp(
  mode: "memory" | "spool",
  count: number,
  ctx: Context,
  material: TlsMaterial,
): Promise<CatchUp> {
  const serveArgs = mode === "memory"
    ? ["--journal-bytes", "512MiB"]
    : ["--spool", `${ctx.dir}/spool`, "--journal-bytes", "16MiB"];
  const served = await startServe(ctx.certs, { tcp: true, args: serveArgs });
  track(served.process);
  try {
    const epoch = (await served.process.waitForStderr(/journal (\S+),/))[1]!;
    const pid = served.process.child.pid;
    const cpu0 = cpuSeconds(pid);
    const t0 = performance.now();
    const load = await generateLoad(`tcp://127.0.0.1:${served.tcpPort}`, 0, 600, [
      "--count",
      String(count),
    ]);
    // The journal has them all once the server's hello says next = count + 1.
    let next = 0;
    while (next < load.sent + 1) {
      const hello = await readMessages({
        port: served.port,
        material,
        count: 0,
        timeoutMs: 10_000,
      });
      next = hello.hello.next;
      if (next < load.sent + 1) await sleep(50);
      if (performance.now() - t0 > 300_000) throw new Error(`ingest stuck at ${next - 1}`);
    }
    const ingestSeconds = (performance.now() - t0) / 1000;
    const cpu1 = cpuSeconds(pid);
    const result = await readMessages({
      port: served.port,
      material,
      resume: { epoch, next: 1 },
      count: load.sent,
      timeoutMs: 300_000,
    });
    const cpu2 = cpuSeconds(pid);
    return {
      mode,
      serveArgs,
      messages: load.sent,
      ingestSeconds,
      ingestRate: load.sent / ingestSeconds,
      catchUp: result,
      catchUpRate: result.received / result.seconds,
      serveCpuIngestMicrosPerMessage: (cpu1 - cpu0) / load.sent * 1e6,
      serveCpuCatchUpMicrosPerMessage: (cpu2 - cpu1) / load.sent * 1e6,
      servePeakRss: peakRss(pid),
    };
  } finally {
    await stop(served.process);
  }
}

// ---------------------------------------------------------------- memory flatness

/** Resident set size (VmRSS) in bytes, or NaN once the process is gone. */
function rss(pid: number): number {
  try {
    const match = Deno.readTextFileSync(`/proc/${pid}/status`).match(/^VmRSS:\s+(\d+) kB/m);
    return match ? Number(match[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

interface Flatness {
  minutes: number;
  rate: number;
  /** Seconds into the load of the reference sample (1 minute, or half the run if shorter). */
  referenceAt: number;
  /** VmRSS per process every 2 s: seconds into the load, bytes. */
  samples: Array<{ t: number; rss: Record<string, number> }>;
  reference: Record<string, number>;
  end: Record<string, number>;
  peakRss: Record<string, number>;
  run?: RunResult;
  error?: string;
}

/** reclog UDP in/out at `rate` for `minutes`: serve's and pull's RSS over time. */
async function flatness(ctx: Context, minutes: number, rate: number): Promise<Flatness> {
  const seconds = Math.round(minutes * 60);
  const referenceAt = Math.min(60, seconds / 2);
  const samples: Flatness["samples"] = [];
  const result: Flatness = {
    minutes,
    rate,
    referenceAt,
    samples,
    reference: {},
    end: {},
    peakRss: {},
  };
  let pipeline: Pipeline | undefined;
  let timer: ReturnType<typeof setInterval> | undefined;
  try {
    pipeline = await startPipeline("reclog-udp", ctx);
    await measure(pipeline, ctx, "warmup", Math.min(rate, 5000), 1, 2000);
    await quiesce(ctx.receiver, 300, 5000);
    const procs = pipeline.procs;
    const t0 = performance.now();
    timer = setInterval(() => {
      samples.push({
        t: (performance.now() - t0) / 1000,
        rss: Object.fromEntries(procs.map((p) => [p.name, rss(p.running.child.pid)])),
      });
    }, 2000);
    result.run = await measure(pipeline, ctx, "rate", rate, seconds, 6000);
    for (const p of procs) result.peakRss[p.name] = peakRss(p.running.child.pid);
  } catch (error) {
    result.error = error instanceof Error ? error.message : String(error);
  } finally {
    clearInterval(timer);
    if (pipeline) await stopPipeline(pipeline);
  }
  const during = samples.filter((x) => x.t <= seconds);
  const ref = during.find((x) => x.t >= referenceAt);
  const last = during.at(-1);
  if (ref) result.reference = ref.rss;
  if (last) result.end = last.rss;
  return result;
}

function flatnessText(f: Flatness): string {
  const names = Object.keys(f.end);
  const lines = [
    `Memory flatness: reclog UDP in/out at ${fmtNum(f.rate)} msg/s for ${f.minutes} min` +
    ` (delivered ${f.run ? fmtPct(f.run.delivered) : "–"}):`,
    "",
    markdown(
      [
        "process",
        `RSS at ${fmtNum(f.referenceAt)} s, MiB`,
        `RSS at the end, MiB`,
        "change",
        "peak",
      ],
      names.map((n) => {
        const a = f.reference[n] ?? NaN;
        const b = f.end[n] ?? NaN;
        return [
          n,
          MiB(a),
          MiB(b),
          `${((b / a - 1) * 100).toFixed(1)} %`,
          MiB(f.peakRss[n] ?? NaN),
        ];
      }),
    ),
  ];
  if (f.error) lines.push(`flatness run failed: ${f.error.split("\n")[0]}`);
  return lines.join("\n");
}

// ---------------------------------------------------------------- RELP

interface RelpLine {
  name: string;
  rate: number;
  seconds: number;
  unique: number;
  count: number;
  duplicates: number;
}

interface RelpFigures {
  count: number;
  lines: RelpLine[];
  error?: string;
}

/**
 * Runs bench/relp_bench.ts (reclog's RELP client and server, rsyslog omrelp → imrelp) and
 * bench/relp_io_bench.ts (reclog's RELP input and sink with rsyslog), each in its own process,
 * and reads their result lines.
 */
async function relpBench(count: number): Promise<RelpFigures> {
  const figures: RelpFigures = { count, lines: [] };
  const errors: string[] = [];
  for (const script of ["relp_bench.ts", "relp_io_bench.ts"]) {
    const part = await relpScript(script, count);
    figures.lines.push(...part.lines);
    if (part.error) errors.push(`${script}: ${part.error}`);
  }
  return errors.length ? { ...figures, error: errors.join("; ") } : figures;
}

async function relpScript(script: string, count: number): Promise<RelpFigures> {
  const run = track(startProgram(Deno.execPath(), [
    "run",
    "-q",
    "-A",
    `--config=${CONFIG}`,
    `${HERE}${script}`,
    String(count),
  ]));
  try {
    const status = await run.wait(600_000);
    const lines: RelpLine[] = [];
    for (const line of run.stdout.split("\n")) {
      const m = line.match(
        /^(.+?)\s+(\d+) msg\/s\s+\(([\d.]+) s; (\d+)\/(\d+) unique, (\d+) duplicates\)/,
      );
      if (m) {
        lines.push({
          name: m[1]!.trim(),
          rate: Number(m[2]),
          seconds: Number(m[3]),
          unique: Number(m[4]),
          count: Number(m[5]),
          duplicates: Number(m[6]),
        });
      }
    }
    return {
      count,
      lines,
      ...(status.success ? {} : { error: run.stderr.trim().split("\n").slice(-3).join(" ") }),
    };
  } catch (error) {
    run.kill("SIGKILL");
    return { count, lines: [], error: error instanceof Error ? error.message : String(error) };
  }
}

function relpText(r: RelpFigures): string {
  return [
    `RELP throughput, ${fmtNum(r.count)} × 200-byte messages over loopback, no TLS` +
    " (bench/relp_bench.ts, bench/relp_io_bench.ts; reclog's RELP parts in a bench process," +
    " rsyslog as the other end):",
    "",
    markdown(
      ["path", "msg/s", "seconds", "unique / sent", "duplicates"],
      r.lines.map((l) => [
        l.name,
        fmtNum(l.rate),
        l.seconds.toFixed(2),
        `${fmtNum(l.unique)} / ${fmtNum(l.count)}`,
        String(l.duplicates),
      ]),
    ),
    ...(r.error ? [`RELP bench failed: ${r.error.slice(0, 300)}`] : []),
  ].join("\n");
}

// ---------------------------------------------------------------- the issue's targets

function targets(
  summaries: Summary[],
  options: Options,
  catchUps: CatchUp[],
  flat: Flatness | undefined,
): string {
  const out: string[] = ["Targets (issue 15), from this run:", ""];
  const say = (ok: boolean | undefined, what: string, detail: string) =>
    out.push(
      `- ${ok === undefined ? "not measured" : ok ? "met" : "NOT met"}: ${what} (${detail})`,
    );
  for (const [a, b] of [["rsyslog", "reclog-udp"], ["rsyslog-tcp", "reclog-tcp"]] as const) {
    if (!options.pipelines.includes(b)) continue;
    const label = LABELS[b];
    const mine = options.rates.map((rate) => best(summaries, b, rate)).filter((s) =>
      s && s.runs > 0
    ) as Summary[];
    const peak = (name: string) =>
      Math.max(...mine.map((s) => s.peakRss[name] ?? NaN).filter(Number.isFinite));
    const servePeak = peak("serve");
    const pullPeak = peak("pull");
    say(servePeak <= 64 * 1048576, `${label}: serve peak RSS ≤ 64 MiB`, `${MiB(servePeak)} MiB`);
    say(pullPeak <= 48 * 1048576, `${label}: pull peak RSS ≤ 48 MiB`, `${MiB(pullPeak)} MiB`);
    if (!options.pipelines.includes(a)) continue;
    const pairs = mine.map((c) => ({ c, r: best(summaries, a, c.rate) })).filter((x) =>
      x.r && x.r.runs > 0
    ) as Array<{ c: Summary; r: Summary }>;
    const list = (f: (x: { c: Summary; r: Summary }) => string) => pairs.map(f).join("; ");
    say(
      pairs.every(({ c, r }) => sum(c.cpu) <= sum(r.cpu)),
      `${label}: CPU per message ≤ rsyslog's best at every rate`,
      list(({ c, r }) =>
        `${fmtNum(c.rate)}: ${sum(c.cpu).toFixed(1)} vs ${sum(r.cpu).toFixed(1)} µs`
      ),
    );
    const low = pairs.filter(({ c }) => c.rate <= 10_000);
    say(
      low.length ? low.every(({ c, r }) => c.p50 <= r.p50 && c.p99 <= r.p99) : undefined,
      `${label}: p50 and p99 ≤ rsyslog's best at 1k and 10k msg/s`,
      low.map(({ c, r }) =>
        `${fmtNum(c.rate)}: ${fmtMs(c.p50)}/${fmtMs(c.p99)} vs ${fmtMs(r.p50)}/${fmtMs(r.p99)} ms`
      ).join("; "),
    );
    say(
      pairs.every(({ c, r }) => c.delivered >= r.delivered),
      `${label}: delivered ≥ rsyslog's best at every rate`,
      list(({ c, r }) =>
        `${fmtNum(c.rate)}: ${c.delivered.toFixed(3)} vs ${r.delivered.toFixed(3)}`
      ),
    );
  }
  const ups = catchUps.filter((c) => !c.error);
  say(
    ups.length ? ups.every((c) => c.catchUpRate >= 300_000) : undefined,
    "catch-up ≥ 300k msg/s",
    ups.map((c) => `${c.mode} ${fmtNum(c.catchUpRate)}`).join(", ") || "no catch-up run",
  );
  if (flat && !flat.error) {
    const names = Object.keys(flat.end);
    say(
      names.every((n) => flat.end[n]! <= flat.reference[n]! * 1.1),
      `RSS at ${flat.minutes} min within 10 % of ${fmtNum(flat.referenceAt)} s at ${
        fmtNum(flat.rate)
      } msg/s` + (flat.minutes < 10 ? " (the issue asks 10 min: --flatness-minutes 10)" : ""),
      names.map((n) => `${n} ${MiB(flat.reference[n]!)} → ${MiB(flat.end[n]!)} MiB`).join(", "),
    );
  } else say(undefined, "memory flatness", flat?.error ?? "not run");
  return out.join("\n");
}

// ---------------------------------------------------------------- figures and tables

function median(values: number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

interface Summary {
  pipeline: PipelineKey;
  /** rsyslog: the set-up; for a best-of summary, `winners` names the set-up per figure. */
  config?: string;
  rate: number;
  runs: number;
  achievedRate: number;
  delivered: number;
  p50: number;
  p99: number;
  max: number;
  drainSeconds: number;
  /** reclog: fraction of sent messages serve's journal took. */
  ingested?: number;
  /** Fraction of sent datagrams the kernel dropped at the UDP input socket. */
  inputDropped?: number;
  receiverDrops: number;
  cpu: Record<string, number>;
  cpuPercent: Record<string, number>;
  peakRss: Record<string, number>;
  /** Best-of summaries: the set-up each figure came from. */
  winners?: Record<string, string>;
  error?: string;
}

function summarize(s: SessionResult): Summary {
  const runs = s.runs.filter((r) => r.kind === "rate");
  const cpu: Record<string, number> = {};
  const cpuPercent: Record<string, number> = {};
  for (const name of Object.keys(runs[0]?.cpuMicrosPerMessage ?? {})) {
    cpu[name] = median(runs.map((r) => r.cpuMicrosPerMessage[name]!));
    cpuPercent[name] = median(runs.map((r) => r.cpuPercent[name]!));
  }
  return {
    pipeline: s.pipeline,
    ...(s.config ? { config: s.config } : {}),
    rate: s.rate,
    runs: runs.length,
    achievedRate: median(runs.map((r) => r.load.achievedRate)),
    delivered: median(runs.map((r) => r.delivered)),
    p50: median(runs.map((r) => r.counted.latency.p50)),
    p99: median(runs.map((r) => r.counted.latency.p99)),
    max: median(runs.map((r) => r.counted.latency.max)),
    drainSeconds: median(runs.map((r) => r.drainSeconds)),
    ...(runs.some((r) => r.ingested !== undefined)
      ? { ingested: median(runs.map((r) => (r.ingested ?? NaN) / Math.max(r.load.sent, 1))) }
      : {}),
    ...(runs.some((r) => r.inputDrops !== undefined)
      ? {
        inputDropped: median(runs.map((r) => (r.inputDrops ?? NaN) / Math.max(r.load.sent, 1))),
      }
      : {}),
    receiverDrops: runs.reduce((a, r) => a + r.receiverDrops, 0),
    cpu,
    cpuPercent,
    peakRss: s.peakRss,
    ...(s.error ? { error: s.error } : {}),
  };
}

function markdown(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    `| ${
      cells.map((c, i) => i === 0 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)).join(" | ")
    } |`;
  return [
    line(headers),
    `| ${widths.map((w, i) => i === 0 ? "-".repeat(w - 1) + ":" : "-".repeat(w)).join(" | ")} |`,
    ...rows.map(line),
  ].join("\n");
}

const fmtPct = (x: number) =>
  Number.isFinite(x) ? `${(x * 100).toFixed(x >= 0.9995 ? 0 : 1)} %` : "–";
const fmtMs = (x: number) =>
  Number.isFinite(x) ? (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2)) : "–";
const fmtNum = (x: number) => Math.round(x).toLocaleString("en-US");

const sum = (o: Record<string, number>) => Object.values(o).reduce((a, v) => a + v, 0);

/**
 * The best of the rsyslog set-ups per figure: the highest delivered fraction, the lowest
 * p50, p99 and max latency, the lowest CPU per message (both processes summed; the per-process
 * split and % of a core of that set-up) and the lowest peak RSS (both summed). `winners` names
 * the set-up each came from ("all" when every set-up had the same figure). A reclog pipeline
 * has one summary per rate, returned as it is.
 */
function best(summaries: Summary[], pipeline: PipelineKey, rate: number): Summary | undefined {
  const all = summaries.filter((s) => s.pipeline === pipeline && s.rate === rate);
  const ok = all.filter((s) => s.runs > 0);
  if (!isRsyslog(pipeline) || ok.length === 0) return all[0];
  const winners: Record<string, string> = {};
  const pick = (field: string, value: (s: Summary) => number, higher = false): Summary => {
    const valid = ok.filter((s) => Number.isFinite(value(s)));
    if (valid.length === 0) return ok[0]!;
    const top = valid.reduce((b, s) =>
      (higher ? value(s) > value(b) : value(s) < value(b)) ? s : b
    );
    const ties = valid.filter((s) => value(s) === value(top)).map((s) => s.config ?? "");
    winners[field] = ties.length === ok.length && ok.length > 1 ? "all" : ties.join(", ");
    return top;
  };
  const d = pick("delivered", (s) => s.delivered, true);
  const p50 = pick("p50", (s) => s.p50);
  const p99 = pick("p99", (s) => s.p99);
  const max = pick("max", (s) => s.max);
  const cpu = pick("cpu", (s) => sum(s.cpu));
  const rss = pick("rss", (s) => sum(s.peakRss));
  return {
    ...d,
    config: "best",
    runs: Math.min(...ok.map((s) => s.runs)),
    p50: p50.p50,
    p99: p99.p99,
    max: max.max,
    cpu: cpu.cpu,
    cpuPercent: cpu.cpuPercent,
    peakRss: rss.peakRss,
    winners,
  };
}

const MiB = (bytes: number) => (bytes / 1048576).toFixed(0);

/** The issue's table: rsyslog's best beside reclog, one row per rate, for one pair. */
function headline(
  summaries: Summary[],
  rsyslog: PipelineKey,
  reclog: PipelineKey,
  options: Options,
): string {
  const rows = options.rates.map((rate) => {
    const r = best(summaries, rsyslog, rate);
    const c = best(summaries, reclog, rate);
    const ok = (s: Summary | undefined) => s !== undefined && s.runs > 0;
    const pair = (f: (s: Summary) => string) =>
      `${ok(r) ? f(r!) : "failed"} / ${ok(c) ? f(c!) : "failed"}`;
    const w = r?.winners ?? {};
    return [
      fmtNum(rate),
      pair((s) => s.delivered.toFixed(3)),
      `${ok(r) ? `${fmtMs(r!.p50)} / ${fmtMs(r!.p99)}` : "failed"} vs ${
        ok(c) ? `${fmtMs(c!.p50)} / ${fmtMs(c!.p99)}` : "failed"
      }`,
      pair((s) => sum(s.cpu).toFixed(1)),
      pair((s) => sum(s.cpuPercent).toFixed(0)),
      pair((s) => Object.values(s.peakRss).map(MiB).join(", ")),
      `delivered ${w.delivered ?? "–"}; p50 ${w.p50 ?? "–"}; p99 ${w.p99 ?? "–"}; CPU ${
        w.cpu ?? "–"
      }; RSS ${w.rss ?? "–"}`,
    ];
  });
  return markdown([
    "offered msg/s",
    "delivered, rsyslog / reclog",
    "p50 / p99 ms, rsyslog vs reclog",
    "CPU µs/msg, both relay processes, rsyslog / reclog",
    "CPU % of a core, both, rsyslog / reclog",
    "peak RSS MiB (in, out), rsyslog / reclog",
    "rsyslog set-up that won",
  ], rows);
}

/** Every rsyslog set-up's figures, so the best-of columns can be checked. */
function configTable(summaries: Summary[], options: Options): string {
  const rows: string[][] = [];
  for (const pipeline of options.pipelines.filter(isRsyslog)) {
    for (const rate of options.rates) {
      for (const s of summaries.filter((x) => x.pipeline === pipeline && x.rate === rate)) {
        rows.push(
          s.runs === 0
            ? [fmtNum(rate), LABELS[pipeline], s.config ?? "", "failed", "–", "–", "–"]
            : [
              fmtNum(rate),
              LABELS[pipeline],
              s.config ?? "",
              fmtPct(s.delivered),
              `${fmtMs(s.p50)} / ${fmtMs(s.p99)} / ${fmtMs(s.max)}`,
              Object.entries(s.cpu).map(([n, v]) => `${n.replace("rsyslog ", "")} ${v.toFixed(1)}`)
                .join(" + ") + ` = ${sum(s.cpu).toFixed(1)}`,
              Object.entries(s.peakRss).map(([n, v]) => `${n.replace("rsyslog ", "")} ${MiB(v)}`)
                .join(" / "),
            ],
        );
      }
    }
  }
  return markdown([
    "offered msg/s",
    "pipeline",
    "rsyslog set-up",
    "delivered",
    "p50 / p99 / max ms",
    "CPU µs/msg",
    "peak RSS MiB",
  ], rows);
}

function tables(summaries: Summary[], latency: RunResult[], options: Options): string {
  const pipelines = options.pipelines;
  const find = (p: PipelineKey, rate: number) => best(summaries, p, rate);
  const cell = (p: PipelineKey, rate: number, f: (s: Summary) => string) => {
    const s = find(p, rate);
    if (!s) return "–";
    if (s.runs === 0) return `failed${s.error ? ` (${s.error.split("\n")[0]!.slice(0, 40)})` : ""}`;
    return f(s);
  };
  const headers = ["offered msg/s", ...pipelines.map((p) => LABELS[p])];
  const out: string[] = [];
  const short = (name: string) => name.replace("rsyslog ", "");
  const won = (s: Summary, field: string) => s.winners?.[field] ? ` (${s.winners[field]})` : "";

  for (const [a, b] of [["rsyslog", "reclog-udp"], ["rsyslog-tcp", "reclog-tcp"]] as const) {
    if (!pipelines.includes(a) || !pipelines.includes(b)) continue;
    out.push(`${LABELS[b]} beside rsyslog's best set-up per column:\n`);
    out.push(headline(summaries, a, b, options));
    out.push("");
  }
  out.push(
    "rsyslog columns below: the best of the set-ups per figure, the winner in brackets.\n",
  );

  out.push("Delivered (unique sequence numbers received / sent):\n");
  out.push(markdown(
    headers,
    options.rates.map((rate) => [
      fmtNum(rate),
      ...pipelines.map((p) =>
        cell(p, rate, (s) => {
          const offNote = s.achievedRate < rate * 0.97 ? ` (sent ${fmtNum(s.achievedRate)}/s)` : "";
          return `${fmtPct(s.delivered)}${offNote}${won(s, "delivered")}`;
        })
      ),
    ]),
  ));
  const lossy = summaries.filter((s) => s.runs > 0 && s.delivered < 0.9995);
  if (lossy.length > 0) {
    out.push("\nWhere the missing messages went (medians, share of sent):\n");
    out.push(markdown(
      ["offered msg/s", "pipeline", "delivered", "kernel drop at UDP input", "in serve's journal"],
      lossy.map((s) => [
        fmtNum(s.rate),
        LABELS[s.pipeline] + (s.config ? ` (${s.config})` : ""),
        fmtPct(s.delivered),
        s.inputDropped === undefined ? "n/a (TCP)" : fmtPct(s.inputDropped),
        s.ingested === undefined ? "n/a" : fmtPct(s.ingested),
      ]),
    ));
  }
  out.push("\nLatency p50 / p99 / max, ms (delivered messages only):\n");
  const latencyRows = options.rates.map((rate) => [
    fmtNum(rate),
    ...pipelines.map((p) =>
      cell(
        p,
        rate,
        (s) =>
          `${fmtMs(s.p50)} / ${fmtMs(s.p99)} / ${fmtMs(s.max)}` +
          (s.winners ? ` (${s.winners.p50} / ${s.winners.p99} / ${s.winners.max})` : ""),
      )
    ),
  ]);
  if (latency.length > 0) {
    latencyRows.unshift([
      `${fmtNum(options.latencyRate)} (latency run)`,
      ...pipelines.map((p) => {
        const r = latency.filter((l) =>
          l.pipeline === p
        ).sort((a, b) => a.counted.latency.p99 - b.counted.latency.p99)[0];
        if (!r) {
          return "–";
        }
        const l = r.counted.latency;
        return `${fmtMs(l.p50)} / ${fmtMs(l.p99)} / ${fmtMs(l.max)}` +
          (r.delivered < 0.9995 ? ` (${fmtPct(r.delivered)} delivered)` : "");
      }),
    ]);
  }
  out.push(markdown(headers, latencyRows));
  out.push("\nCPU time per message sent, µs (user + system, all threads of each process):\n");
  out.push(markdown(
    headers,
    options.rates.map((rate) => [
      fmtNum(rate),
      ...pipelines.map((p) =>
        cell(p, rate, (s) => {
          const parts = Object.entries(s.cpu);
          const total = parts.reduce((a, [, v]) => a + v, 0);
          return `${parts.map(([n, v]) => `${short(n)} ${v.toFixed(1)}`).join(" + ")} = ${
            total.toFixed(1)
          }${won(s, "cpu")}`;
        })
      ),
    ]),
  ));
  out.push("\nPeak RSS (VmHWM) per process, MiB:\n");
  out.push(markdown(
    headers,
    options.rates.map((rate) => [
      fmtNum(rate),
      ...pipelines.map((p) =>
        cell(
          p,
          rate,
          (s) =>
            Object.entries(s.peakRss).map(([n, v]) => `${short(n)} ${(v / 1048576).toFixed(0)}`)
              .join(" / ") + won(s, "rss"),
        )
      ),
    ]),
  ));
  return out.join("\n");
}

function catchUpTable(results: CatchUp[]): string {
  return markdown(
    [
      "journal",
      "messages",
      "ingest over TCP, no client",
      "catch-up from seq 1",
      "serve CPU µs/msg ingest / catch-up",
      "serve peak RSS",
    ],
    results.map((r) =>
      r.error ? [r.mode, "–", `failed: ${r.error.slice(0, 60)}`, "–", "–", "–"] : [
        r.mode === "memory"
          ? "memory (--journal-bytes 512MiB)"
          : "spool (--spool, 16MiB in memory)",
        fmtNum(r.messages),
        `${fmtNum(r.ingestRate)} msg/s (${r.ingestSeconds.toFixed(2)} s)`,
        `${fmtNum(r.catchUpRate)} msg/s (${r.catchUp.seconds.toFixed(2)} s` +
        `${
          r.catchUp.gaps || r.catchUp.lost ? `, ${r.catchUp.gaps} gaps, ${r.catchUp.lost} L` : ""
        })`,
        `${r.serveCpuIngestMicrosPerMessage.toFixed(1)} / ${
          r.serveCpuCatchUpMicrosPerMessage.toFixed(1)
        }`,
        `${(r.servePeakRss / 1048576).toFixed(0)} MiB`,
      ]
    ),
  );
}

// ---------------------------------------------------------------- main

/** The commit measured, and whether lib/ or main.ts had uncommitted changes. */
async function sourceState(): Promise<string> {
  const git = async (args: string[]) => {
    try {
      const out = await new Deno.Command("git", {
        args,
        cwd: ROOT,
        stdout: "piped",
        stderr: "null",
      })
        .output();
      return new TextDecoder().decode(out.stdout).trim();
    } catch {
      return "";
    }
  };
  const head = await git(["rev-parse", "--short", "HEAD"]);
  if (!head) return "commit unknown";
  const dirty = await git(["status", "--porcelain", "--", "lib", "main.ts"]);
  return `commit ${head}${dirty ? " + uncommitted changes in lib/" : ""}`;
}

/** Seconds a session costs besides its runs: start, warm-up, stop. */
const SESSION_OVERHEAD = 4;

/** The bench's temporary directory (certificates, rsyslog configs, spool), removed at the end. */
let benchDir: string | undefined;

async function main(): Promise<void> {
  const options = parseOptions(Deno.args);
  const started = performance.now();
  const notes: string[] = [];
  await initClockTicks();
  for (const driver of new Set(options.rsyslogConfigs.map((c) => c.driver))) {
    await ensureRsyslogDriver(driver, notes);
  }
  const dir = await Deno.makeTempDir({ prefix: "reclog-bench-" });
  benchDir = dir;
  let receiver: Receiver | undefined;
  try {
    const certs = await makeCerts(dir);
    const material = await loadTlsMaterial({
      cert: certs.clientCert,
      key: certs.clientKey,
      ca: certs.ca,
    });
    receiver = new Receiver();
    const ctx: Context = {
      dir,
      certs,
      material,
      receiver,
      sessions: 0,
      serveArgs: options.serveArgs,
      pullArgs: options.pullArgs,
    };
    const source = await sourceState();
    const sessions: SessionResult[] = [];
    const plan: Array<
      { key: PipelineKey; rate: number; latency: boolean; config?: RsyslogConfig }
    > = [];
    options.rates.forEach((rate, i) => {
      for (const key of options.pipelines) {
        if (!isRsyslog(key)) plan.push({ key, rate, latency: i === 0 });
        else {
          for (const config of options.rsyslogConfigs) {
            plan.push({ key, rate, latency: i === 0, config });
          }
        }
      }
    });
    let repeats = options.repeats;
    const catchUpEstimate = options.catchup > 0 ? 10 + options.catchup / 1_000_000 * 10 : 0;
    for (let i = 0; i < plan.length; i++) {
      const { key, rate, latency, config } = plan[i]!;
      // Lower the repeats if the rest would not fit the budget. A session costs its start,
      // warm-up and stop (SESSION_OVERHEAD) plus, per run, the load, drain and quiet time;
      // the latter is measured once sessions have run.
      const elapsed = (performance.now() - started) / 1000;
      const done = sessions.filter((x) => x.runs.length > 0);
      const perRun = done.length
        ? median(done.map((x) => (x.seconds - SESSION_OVERHEAD) / x.runs.length))
        : options.seconds + 1.5;
      const rest = plan.slice(i);
      const estimate = (r: number) =>
        rest.reduce(
          (sum, p) =>
            sum + SESSION_OVERHEAD + (r + (p.latency && options.latencyRate > 0 ? 1 : 0)) * perRun,
          0,
        ) + catchUpEstimate;
      if (repeats > 1 && elapsed + estimate(repeats) > options.budgetSeconds) {
        notes.push(
          `from ${key} at ${rate} msg/s on: 1 run per rate instead of ${repeats} (time budget)`,
        );
        repeats = 1;
      }
      console.error(
        `bench: ${LABELS[key]}${config ? ` (${config.name})` : ""} at ${
          fmtNum(rate)
        } msg/s, ${repeats} run(s) of ${options.seconds} s` +
          ` [${elapsed.toFixed(0)} s elapsed]`,
      );
      const result = await session(key, rate, repeats, options, ctx, latency, config);
      sessions.push(result);
      const s = summarize(result);
      console.error(
        `bench:   delivered ${fmtPct(s.delivered)}, p50 ${fmtMs(s.p50)} ms, p99 ${
          fmtMs(s.p99)
        } ms` +
          `, CPU ${
            JSON.stringify(
              Object.fromEntries(Object.entries(s.cpu).map(([k, v]) => [k, +v.toFixed(1)])),
            )
          } µs/msg`,
      );
    }
    const catchUps: CatchUp[] = [];
    if (options.catchup > 0) {
      for (const mode of ["memory", "spool"] as const) {
        console.error(
          `bench: journal catch-up, ${fmtNum(options.catchup)} messages, ${mode} [${
            ((performance.now() - started) / 1000).toFixed(0)
          } s elapsed]`,
        );
        try {
          catchUps.push(await catchUp(mode, options.catchup, ctx, material));
        } catch (error) {
          const message = error instanceof Error ? error.message : String(error);
          console.error(`bench: catch-up (${mode}) failed: ${message}`);
          catchUps.push({ mode, error: message } as CatchUp);
        }
      }
    }
    let flat: Flatness | undefined;
    if (options.flatnessMinutes > 0) {
      console.error(
        `bench: memory flatness, reclog UDP in/out at ${
          fmtNum(options.flatnessRate)
        } msg/s for ${options.flatnessMinutes} min [${
          ((performance.now() - started) / 1000).toFixed(0)
        } s elapsed]`,
      );
      flat = await flatness(ctx, options.flatnessMinutes, options.flatnessRate);
    }
    let relp: RelpFigures | undefined;
    if (options.relp > 0) {
      console.error(
        `bench: RELP, ${fmtNum(options.relp)} messages (bench/relp_bench.ts, relp_io_bench.ts)`,
      );
      relp = await relpBench(options.relp);
    }
    const summaries = sessions.map(summarize);
    const latencyRuns = sessions.flatMap((s) => s.runs.filter((r) => r.kind === "latency"));
    const totalSeconds = (performance.now() - started) / 1000;
    const repeatsUsed = [...new Set(summaries.map((s) => s.runs))].join("/");
    const extra = [
      ...(options.serveArgs.length ? [`serve ${options.serveArgs.join(" ")}`] : []),
      ...(options.pullArgs.length ? [`pull ${options.pullArgs.join(" ")}`] : []),
    ];
    const header = `reclog relay bench, ${new Date().toISOString()}, ${source}, ` +
      (extra.length ? `reclog flags: ${extra.join("; ")}, ` : "") +
      `${navigator.hardwareConcurrency} CPUs, ` +
      `rsyslog set-ups ${
        options.rsyslogConfigs.map((c) => c.name).join(", ")
      } (best per column), ` +
      `${options.seconds} s per run, runs per point: ${repeatsUsed}` +
      ` (median), 200-byte messages, total ${totalSeconds.toFixed(0)} s`;
    const text = [
      header,
      "",
      tables(summaries, latencyRuns, options),
      ...(options.pipelines.some(isRsyslog)
        ? ["", "Every rsyslog set-up (medians):", "", configTable(summaries, options)]
        : []),
      ...(catchUps.length
        ? ["", "Journal catch-up (raw mTLS client resuming from seq 1):", ""]
        : []),
      ...(catchUps.length ? [catchUpTable(catchUps)] : []),
      ...(flat ? ["", flatnessText(flat)] : []),
      ...(relp ? ["", relpText(relp)] : []),
      "",
      targets(summaries, options, catchUps, flat),
      ...(notes.length ? ["", ...notes.map((n) => `Note: ${n}`)] : []),
    ].join("\n");
    console.log(text);
    await Deno.mkdir(options.out.replace(/\/[^/]*$/, ""), { recursive: true });
    await Deno.writeTextFile(
      options.out,
      JSON.stringify(
        {
          date: new Date().toISOString(),
          cpus: navigator.hardwareConcurrency,
          kernel: Deno.osRelease(),
          deno: Deno.version.deno,
          source,
          options,
          totalSeconds,
          notes,
          summaries,
          sessions,
          catchUps,
          flatness: flat,
          relp,
          text,
        },
        null,
        2,
      ) + "\n",
    );
    console.log(`\nraw figures: ${options.out}`);
  } finally {
    await killAll();
    if (receiver) await receiver[Symbol.asyncDispose]();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  let stopping = false;
  const onSignal = async () => {
    if (stopping) Deno.exit(130);
    stopping = true;
    console.error("bench: interrupted, stopping every process");
    await killAll();
    if (benchDir) await Deno.remove(benchDir, { recursive: true }).catch(() => {});
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    await main();
  } catch (error) {
    console.error(error instanceof Error ? error.message : error);
    await killAll();
    Deno.exit(1);
  }
  Deno.exit(0);
}
