/**
 * Test helpers: spawn reclog the way users run it (the same permission set as
 * `deno task compile`, `-P=reclog` from deno.json), wait for conditions with a
 * deadline, make certificates, and start real peers.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { createCa, issueCertificate, type Issued } from "../lib/pki/pki.ts";
import { PEERS } from "../tools/ensure_peers.ts";
import { V8_FLAGS } from "../tools/compile.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const MAIN = `${ROOT}main.ts`;
const CONFIG = `${ROOT}deno.json`;

/** The argv that runs reclog: `deno run -q -P=reclog main.ts`, as compiled. */
export function reclogArgv(args: string[]): string[] {
  return ["run", "-q", "-P=reclog", `--v8-flags=${V8_FLAGS}`, `--config=${CONFIG}`, MAIN, ...args];
}

/** Options for {@linkcode startReclog} and {@linkcode runReclog}. */
export interface SpawnOptions {
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Working directory. */
  cwd?: string;
  /** Bytes for stdin (runReclog only; startReclog keeps stdin piped). */
  stdin?: Uint8Array | string;
}

/** The result of a finished reclog run. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs reclog to completion and returns exit code, stdout and stderr.
 */
export function runReclog(args: string[], options: SpawnOptions = {}): Promise<RunResult> {
  return runCommand(Deno.execPath(), reclogArgv(args), {
    ...options,
    env: { NO_COLOR: "1", ...options.env },
  });
}

/** Runs a command to completion, feeding `options.stdin`, collecting its output. */
async function runCommand(
  command: string,
  args: string[],
  options: SpawnOptions,
): Promise<RunResult> {
  const child = new Deno.Command(command, {
    args,
    env: options.env,
    cwd: options.cwd,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(
      typeof options.stdin === "string" ? new TextEncoder().encode(options.stdin) : options.stdin,
    );
    await writer.close();
  }
  const out = await child.output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** A running reclog (or other) process whose output is collected as it comes. */
export class Running implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  /** Everything written to stderr so far. */
  stderr = "";
  /** Everything written to stdout so far. */
  stdout = "";
  /** Raw stdout bytes so far. */
  stdoutBytes: Uint8Array[] = [];
  readonly #pumps: Promise<void>[];
  #status: Deno.CommandStatus | undefined;
  readonly name: string;

  constructor(name: string, child: Deno.ChildProcess) {
    this.name = name;
    this.child = child;
    this.#pumps = [
      this.#pump(child.stderr, (text) => this.stderr += text),
      this.#pump(child.stdout, (text, bytes) => {
        this.stdout += text;
        this.stdoutBytes.push(bytes);
      }),
    ];
    child.status.then((status) => this.#status = status);
  }

  async #pump(
    stream: ReadableStream<Uint8Array>,
    onText: (text: string, bytes: Uint8Array) => void,
  ): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) onText(decoder.decode(chunk, { stream: true }), chunk);
  }

  /** The exit status once the process ended, else undefined. */
  get exited(): Deno.CommandStatus | undefined {
    return this.#status;
  }

  /** Waits until stderr matches `pattern`; returns the match. */
  async waitForStderr(pattern: RegExp, timeoutMs = 15_000): Promise<RegExpMatchArray> {
    let match: RegExpMatchArray | null = null;
    await waitFor(() => (match = this.stderr.match(pattern)) !== null, {
      timeoutMs,
      what: () =>
        `${this.name}: stderr to match ${pattern}${
          this.#status ? ` (exited ${this.#status.code})` : ""
        }; stderr so far:\n${this.stderr}`,
    });
    return match!;
  }

  /** Waits for the `listening on HOST:PORT` line with the given label; returns the port. */
  async waitForListening(label: string, timeoutMs = 15_000): Promise<number> {
    const escaped = label.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    const match = await this.waitForStderr(
      new RegExp(`${escaped} listening on \\S*:(\\d+)`),
      timeoutMs,
    );
    return Number(match[1]);
  }

  /** Sends a signal if the process still runs. */
  kill(signal: Deno.Signal = "SIGTERM"): void {
    if (this.#status) return;
    try {
      this.child.kill(signal);
    } catch {
      // already gone
    }
  }

  /** Waits for the process to exit, with a deadline; returns its status. */
  async wait(timeoutMs = 15_000): Promise<Deno.CommandStatus> {
    await waitFor(() => this.#status !== undefined, {
      timeoutMs,
      what: () => `${this.name} to exit; stderr:\n${this.stderr}`,
    });
    await Promise.all(this.#pumps);
    return this.#status!;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.kill("SIGKILL");
    await this.child.status;
    await Promise.all(this.#pumps);
    try {
      await this.child.stdin?.close();
    } catch {
      // not piped or already closed
    }
  }
}

/** Starts reclog in the background; dispose it with `await using`. */
export function startReclog(args: string[], options: SpawnOptions = {}): Running {
  const child = new Deno.Command(Deno.execPath(), {
    args: reclogArgv(args),
    env: { NO_COLOR: "1", ...options.env },
    cwd: options.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return new Running(`reclog ${args[0] ?? ""}`, child);
}

/** Starts any program in the background, collecting its output. */
export function startProgram(
  program: string,
  args: string[],
  options: SpawnOptions = {},
): Running {
  const child = new Deno.Command(requirePeer(program), {
    args,
    env: options.env,
    cwd: options.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return new Running(program, child);
}

/** Options for {@linkcode waitFor}. */
export interface WaitOptions {
  /** @default {15000} */
  timeoutMs?: number;
  /** What is waited for, for the error message. */
  what?: string | (() => string);
  /** @default {20} */
  intervalMs?: number;
}

/** Polls `condition` until it is true, or throws after the deadline. */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  options: WaitOptions = {},
): Promise<void> {
  const deadline = Date.now() + (options.timeoutMs ?? 15_000);
  while (!(await condition())) {
    if (Date.now() > deadline) {
      const what = typeof options.what === "function" ? options.what() : options.what;
      throw new Error(`Timed out after ${options.timeoutMs ?? 15_000} ms waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 20));
  }
}

/** A temporary directory removed on dispose. */
export async function tempDir(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "reclog-test-" });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}

/** Paths of a CA, a server and a client certificate written to a directory. */
export interface CertPaths {
  ca: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** The CA itself, to issue more. */
  caIssued: Issued;
}

/** Writes a certificate and key as `NAME.pem` / `NAME.key` into `dir`. */
export async function writeIssued(
  dir: string,
  name: string,
  issued: Issued,
): Promise<{ cert: string; key: string }> {
  const cert = `${dir}/${name}.pem`;
  const key = `${dir}/${name}.key`;
  await Deno.writeTextFile(cert, issued.certPem);
  await Deno.writeTextFile(key, issued.keyPem, { mode: 0o600 });
  return { cert, key };
}

/** `serve` with the test certificates, its mTLS listener on a free loopback port, then `extra`. */
export function serveArgv(certs: CertPaths, extra: string[] = []): string[] {
  return [
    "serve",
    "--cert",
    certs.serverCert,
    "--key",
    certs.serverKey,
    "--ca",
    certs.ca,
    "--listen",
    "127.0.0.1:0",
    ...extra,
  ];
}

/** Makes a CA, a server certificate for localhost/127.0.0.1/::1 and a client `home`. */
export async function makeCerts(dir: string): Promise<CertPaths> {
  const ca = await createCa({ subject: "CN=test CA,O=reclog tests" });
  const server = await issueCertificate(ca, {
    kind: "server",
    commonName: "localhost",
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1", "::1"],
  });
  const client = await issueCertificate(ca, { kind: "client", commonName: "home" });
  const caFiles = await writeIssued(dir, "ca", ca);
  const serverFiles = await writeIssued(dir, "server", server);
  const clientFiles = await writeIssued(dir, "home", client);
  return {
    ca: caFiles.cert,
    caKey: caFiles.key,
    serverCert: serverFiles.cert,
    serverKey: serverFiles.key,
    clientCert: clientFiles.cert,
    clientKey: clientFiles.key,
    caIssued: ca,
  };
}

/**
 * Returns the full path of a peer program, or throws an error saying what
 * to install. Tests never skip because a peer is missing.
 */
export function requirePeer(program: string): string {
  if (program.startsWith("/")) return program;
  for (const dir of (Deno.env.get("PATH") ?? "").split(":").concat(["/usr/sbin", "/sbin"])) {
    try {
      const path = `${dir}/${program}`;
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // not here
    }
  }
  const pkg = PEERS[program] ?? program;
  throw new Error(
    `'${program}' is required by this test but not installed: run 'apt-get install -y ${pkg}' (or .ci/run, which installs it)`,
  );
}

/** Runs a program to completion. */
export function runProgram(
  program: string,
  args: string[],
  options: SpawnOptions = {},
): Promise<RunResult> {
  return runCommand(requirePeer(program), args, options);
}

/** A port that was free a moment ago (for peers that cannot report port 0). */
export function freePort(transport: "tcp" | "udp" = "tcp"): number {
  if (transport === "tcp") {
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    return (listener.addr as Deno.NetAddr).port;
  }
  const socket = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const port = (socket.addr as Deno.NetAddr).port;
  socket.close();
  return port;
}

/** Options for {@linkcode startRsyslog}. */
export interface RsyslogOptions {
  /** rsyslog.conf body after the module loads (inputs, rules). */
  rules: string;
  /** Directory for the config, pid file and work files. */
  dir: string;
  /** Ports (UDP or TCP) that must accept before the start counts as done. */
  readyUdpPort?: number;
  readyTcpPort?: number;
}

/** Starts a real rsyslogd in the foreground from a private config. */
export async function startRsyslog(options: RsyslogOptions): Promise<Running> {
  const conf = `${options.dir}/rsyslog.conf`;
  await Deno.mkdir(`${options.dir}/work`, { recursive: true });
  await Deno.writeTextFile(
    conf,
    `global(workDirectory="${options.dir}/work" maxMessageSize="64k"\n  parser.escapeControlCharactersOnReceive="off")\n${options.rules}\n`,
  );
  const running = startProgram("rsyslogd", [
    "-n",
    "-f",
    conf,
    "-i",
    `${options.dir}/rsyslog.pid`,
  ]);
  if (options.readyTcpPort) {
    const port = options.readyTcpPort;
    await waitFor(async () => {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        return true;
      } catch {
        return false;
      }
    }, { what: () => `rsyslogd to accept TCP on ${port}; stderr: ${running.stderr}` });
  }
  if (options.readyUdpPort) {
    const port = options.readyUdpPort;
    await waitFor(async () => {
      const out = await runProgram("ss", ["-Hlun", `sport = :${port}`]).catch(() => undefined);
      return out === undefined || out.stdout.includes(`:${port}`);
    }, { what: () => `rsyslogd to listen on UDP ${port}; stderr: ${running.stderr}` });
  }
  return running;
}

/** Reads a file, or "" while it does not exist. */
export async function readOrEmpty(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "";
    throw error;
  }
}
