// deno-lint-ignore-file no-explicit-any -- Chrome DevTools Protocol results are untyped JSON
/**
 * Profiles `reclog serve` and `reclog pull` (UDP in → mTLS → UDP out) over the V8 inspector,
 * for issue 15 (/work/notes/issue15_profile.md has the findings):
 * - idle serve and pull: `Deno.memoryUsage()`, VmRSS, smaps_rollup, RSS per mapping;
 * - per offered rate: `Deno.memoryUsage()` and VmRSS of both every second, one forced full GC
 *   half-way (what garbage the RSS held), CPU µs/msg per thread (/proc/PID/task), the main
 *   thread's CPU profile (500 µs sampling) and a sampling heap profile of live allocations,
 *   summed per component (reclog file, `ext:` module, npm package, native).
 *
 * Writes OUT/report.json. The inspector adds a few MiB of RSS and ~6 µs/msg on its own thread.
 * Best run on a copy of the tree (`git worktree add /tmp/prof HEAD`) so others' uncommitted
 * changes are not measured.
 *
 * Run: `deno run -A bench/profile_relay.ts [OUT_DIR] [RATES] [SECONDS]`
 * (default /tmp/prof_out, 10000,100000, 15)
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { freePort, makeCerts, type Running, startProgram } from "../tests/helpers.ts";
import { Receiver } from "./receiver.ts";
import { sleep } from "../lib/util/sleep.ts";
import { V8_FLAGS } from "../tools/compile.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const OUT = Deno.args[0] ?? "/tmp/prof_out";
await Deno.mkdir(OUT, { recursive: true });
const RATES = (Deno.args[1] ?? "10000,100000").split(",").map(Number);
const SECONDS = Number(Deno.args[2] ?? 15);

class Inspector {
  #ws: WebSocket;
  #id = 0;
  #pending = new Map<number, (v: unknown) => void>();
  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.onmessage = (e) => {
      const msg = JSON.parse(e.data as string);
      if (msg.id && this.#pending.has(msg.id)) {
        this.#pending.get(msg.id)!(msg.result ?? msg.error);
        this.#pending.delete(msg.id);
      }
    };
  }
  static async open(url: string): Promise<Inspector> {
    const ws = new WebSocket(url);
    await new Promise((r, j) => {
      ws.onopen = r;
      ws.onerror = j;
    });
    return new Inspector(ws);
  }
  send<T = any>(method: string, params: unknown = {}): Promise<T> {
    const id = ++this.#id;
    this.#ws.send(JSON.stringify({ id, method, params }));
    return new Promise((r) => this.#pending.set(id, r as (v: unknown) => void));
  }
  async evaluate(expr: string): Promise<any> {
    const r = await this.send("Runtime.evaluate", { expression: expr, returnByValue: true });
    return r.result?.value;
  }
  close() {
    this.#ws.close();
  }
}

function status(pid: number, key: string): number {
  const s = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(s.match(new RegExp(`^${key}:\\s+(\\d+)`, "m"))?.[1] ?? NaN) / 1024;
}
function rollup(pid: number): Record<string, number> {
  const s = Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`);
  const o: Record<string, number> = {};
  for (const m of s.matchAll(/^(\w+):\s+(\d+) kB/gm)) o[m[1]!] = Number(m[2]) / 1024;
  return o;
}
/** RSS by mapping kind from /proc/PID/smaps: the deno binary, anonymous, other files. */
function smapsByKind(pid: number): Record<string, number> {
  const text = Deno.readTextFileSync(`/proc/${pid}/smaps`);
  const out: Record<string, number> = {};
  let kind = "";
  for (const line of text.split("\n")) {
    const head = line.match(/^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/);
    if (head) {
      const name = head[1]!;
      kind = name.includes("deno")
        ? "deno binary"
        : name === ""
        ? "anon"
        : name.startsWith("[")
        ? name
        : name.replace(/.*\//, "");
      continue;
    }
    const rss = line.match(/^Rss:\s+(\d+) kB/);
    if (rss) out[kind] = (out[kind] ?? 0) + Number(rss[1]) / 1024;
  }
  return Object.fromEntries(
    Object.entries(out).filter(([, v]) => v >= 0.5).sort((a, b) => b[1] - a[1]).slice(0, 8)
      .map(([k, v]) => [k, +v.toFixed(1)]),
  );
}
function threadsCpu(pid: number): Record<string, number> {
  const o: Record<string, number> = {};
  for (const e of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      const st = Deno.readTextFileSync(`/proc/${pid}/task/${e.name}/stat`);
      const name = st.slice(st.indexOf("(") + 1, st.lastIndexOf(")"));
      const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
      o[name] = (o[name] ?? 0) + (Number(f[11]) + Number(f[12])) / 100;
    } catch { /* gone */ }
  }
  return o;
}
function cpuDelta(a: Record<string, number>, b: Record<string, number>, n: number) {
  return Object.fromEntries(
    Object.entries(b).map(([k, v]) => [k, +(((v - (a[k] ?? 0)) / n) * 1e6).toFixed(2)]).filter((
      [, v],
    ) => (v as number) > 0.05),
  );
}

function component(url: string, fn: string): string {
  if (!url) return fn.startsWith("(") ? fn : "(native/builtin)";
  const root = new URL("..", import.meta.url).href;
  if (url.startsWith(root)) return url.slice(root.length);
  if (url.startsWith("ext:")) return url.replace(/^ext:/, "ext:").replace(/\/[^/]*$/, "");
  if (url.includes("node_modules") || url.includes("npm")) {
    return "npm:" + (url.match(/node_modules\/(@[^/]+\/[^/]+|[^/]+)/)?.[1] ?? url);
  }
  return url;
}

interface CpuProfile {
  nodes: Array<
    { id: number; callFrame: { functionName: string; url: string }; hitCount?: number }
  >;
  startTime: number;
  endTime: number;
  samples: number[];
}
function summarizeCpu(p: CpuProfile) {
  const total = p.samples.length;
  const us = (p.endTime - p.startTime) / Math.max(total, 1);
  const byComp: Record<string, number> = {};
  const byFn: Record<string, number> = {};
  for (const n of p.nodes) {
    const h = n.hitCount ?? 0;
    if (!h) continue;
    const c = component(n.callFrame.url, n.callFrame.functionName);
    byComp[c] = (byComp[c] ?? 0) + h;
    const f = `${n.callFrame.functionName || "(anon)"} ${c}`;
    byFn[f] = (byFn[f] ?? 0) + h;
  }
  const top = (o: Record<string, number>, k: number) =>
    Object.entries(o).sort((a, b) => b[1] - a[1]).slice(0, k).map((
      [name, h],
    ) => [name, +(h * us / 1000).toFixed(0), +(h / total * 100).toFixed(1)]);
  return { samples: total, byComponentMs: top(byComp, 25), byFunctionMs: top(byFn, 25) };
}
interface HeapNode {
  callFrame: { functionName: string; url: string };
  selfSize: number;
  children: HeapNode[];
}
function summarizeHeap(head: HeapNode) {
  const byComp: Record<string, number> = {};
  const byFn: Record<string, number> = {};
  const walk = (n: HeapNode) => {
    const c = component(n.callFrame.url, n.callFrame.functionName);
    byComp[c] = (byComp[c] ?? 0) + n.selfSize;
    const f = `${n.callFrame.functionName || "(anon)"} ${c}`;
    byFn[f] = (byFn[f] ?? 0) + n.selfSize;
    n.children.forEach(walk);
  };
  walk(head);
  const top = (o: Record<string, number>) =>
    Object.entries(o).sort((a, b) => b[1] - a[1]).slice(0, 20).map((
      [k, v],
    ) => [k, +(v / 1048576).toFixed(2)]);
  return { byComponentMiB: top(byComp), byFunctionMiB: top(byFn) };
}

const inspectPorts = new Map<Running, number>();
function reclog(args: string[], extraFlags: string[] = []): Running {
  const ip = freePort();
  const r = startProgram(Deno.execPath(), [
    "run",
    "-q",
    "-P=reclog",
    `--v8-flags=${V8_FLAGS}`,
    `--inspect=127.0.0.1:${ip}`,
    ...extraFlags,
    `--config=${ROOT}deno.json`,
    `${ROOT}main.ts`,
    ...args,
  ], { env: { NO_COLOR: "1" } });
  inspectPorts.set(r, ip);
  return r;
}
async function inspectorOf(r: Running): Promise<Inspector> {
  const ip = inspectPorts.get(r)!;
  for (let i = 0; i < 100; i++) {
    try {
      const list = await (await fetch(`http://127.0.0.1:${ip}/json/list`)).json();
      return await Inspector.open(list[0].webSocketDebuggerUrl);
    } catch {
      await sleep(100);
    }
  }
  throw new Error("no inspector");
}
async function mem(ins: Inspector, pid: number) {
  const m = await ins.evaluate("JSON.stringify(Deno.memoryUsage())");
  const u = JSON.parse(m);
  return {
    rss: +status(pid, "VmRSS").toFixed(1),
    hwm: +status(pid, "VmHWM").toFixed(1),
    heapTotal: +(u.heapTotal / 1048576).toFixed(1),
    heapUsed: +(u.heapUsed / 1048576).toFixed(1),
    external: +(u.external / 1048576).toFixed(1),
  };
}

const dir = await Deno.makeTempDir({ prefix: "reclog-prof-" });
const certs = await makeCerts(dir);
const receiver = new Receiver();
const report: Record<string, unknown> = {};
const serve = reclog([
  "serve",
  "--cert",
  certs.serverCert,
  "--key",
  certs.serverKey,
  "--ca",
  certs.ca,
  "--listen",
  "127.0.0.1:0",
  "--syslog-in",
  "127.0.0.1:0",
]);
const sIns = await inspectorOf(serve);
await sIns.send("Runtime.runIfWaitingForDebugger");
const udpPort = await serve.waitForListening("syslog-in udp");
const port = await serve.waitForListening("mTLS");
const spid = serve.child.pid;
await sleep(5000);
report.serveIdle = {
  mem: await mem(sIns, spid),
  rollup: rollup(spid),
  smaps: smapsByKind(spid),
};
await sIns.send("HeapProfiler.collectGarbage");
report.serveIdleAfterGc = await mem(sIns, spid);
console.error("idle", JSON.stringify(report.serveIdle));

const pull = reclog([
  "pull",
  "--server",
  `127.0.0.1:${port}`,
  "--server-name",
  "localhost",
  "--cert",
  certs.clientCert,
  "--key",
  certs.clientKey,
  "--ca",
  certs.ca,
  "--to",
  `udp://127.0.0.1:${receiver.udpPort}`,
  "--live",
]);
const pIns = await inspectorOf(pull);
await pIns.send("Runtime.runIfWaitingForDebugger");
await pull.waitForStderr(/connected to /);
const ppid = pull.child.pid;
await sleep(2000);
report.pullIdle = { mem: await mem(pIns, ppid), smaps: smapsByKind(ppid) };

for (const rate of RATES) {
  const phase: Record<string, unknown> = {};
  for (const ins of [sIns, pIns]) {
    await ins.send("Profiler.enable");
    await ins.send("Profiler.setSamplingInterval", { interval: 500 });
    await ins.send("Profiler.start");
    await ins.send("HeapProfiler.enable");
    await ins.send("HeapProfiler.startSampling", { samplingInterval: 16384 });
  }
  const t0 = { s: threadsCpu(spid), p: threadsCpu(ppid) };
  const gen = startProgram(Deno.execPath(), [
    "run",
    "-q",
    "-A",
    `--config=${ROOT}deno.json`,
    `${ROOT}bench/load_gen.ts`,
    "--to",
    `udp://127.0.0.1:${udpPort}`,
    "--rate",
    String(rate),
    "--seconds",
    String(SECONDS),
    "--seq-base",
    String(rate * 1000),
  ]);
  const series: unknown[] = [];
  const start = performance.now();
  let gcDone = false;
  while (!gen.exited) {
    await sleep(1000);
    if (!gcDone && performance.now() - start > SECONDS * 500) {
      gcDone = true;
      const before = { serve: await mem(sIns, spid), pull: await mem(pIns, ppid) };
      await sIns.send("HeapProfiler.collectGarbage");
      await pIns.send("HeapProfiler.collectGarbage");
      await sleep(200);
      const after = { serve: await mem(sIns, spid), pull: await mem(pIns, ppid) };
      phase.gc = { before, after };
      console.error("gc", JSON.stringify(phase.gc));
    }
    series.push({
      t: +((performance.now() - start) / 1000).toFixed(0),
      serve: await mem(sIns, spid),
      pull: await mem(pIns, ppid),
    });
  }
  await sleep(1500);
  const load = JSON.parse(gen.stdout.trim().split("\n").at(-1)!);
  const t1 = { s: threadsCpu(spid), p: threadsCpu(ppid) };
  phase.sent = load.sent;
  phase.cpuUsPerMsgByThread = {
    serve: cpuDelta(t0.s, t1.s, load.sent),
    pull: cpuDelta(t0.p, t1.p, load.sent),
  };
  phase.series = series;
  for (const [name, ins] of [["serve", sIns], ["pull", pIns]] as const) {
    const heap = await ins.send("HeapProfiler.stopSampling");
    const { profile } = await ins.send("Profiler.stop");
    phase[`${name}Cpu`] = summarizeCpu(profile);
    phase[`${name}HeapLive`] = summarizeHeap(heap.profile.head);
    phase[`${name}Smaps`] = smapsByKind(name === "serve" ? spid : ppid);
    phase[`${name}Hwm`] = status(name === "serve" ? spid : ppid, "VmHWM");
  }
  report[`rate${rate}`] = phase;
  console.error(rate, "done", JSON.stringify(phase.cpuUsPerMsgByThread));
  await Deno.writeTextFile(`${OUT}/report.json`, JSON.stringify(report, null, 1));
}
await Deno.writeTextFile(`${OUT}/report.json`, JSON.stringify(report, null, 1));
sIns.close();
pIns.close();
serve.kill("SIGKILL");
pull.kill("SIGKILL");
await receiver[Symbol.asyncDispose]();
await Deno.remove(dir, { recursive: true });
Deno.exit(0);
