/**
 * The daemons of `deno task chaos` (tools/chaos.ts): restartable child
 * processes with their output appended to a log file, the rsyslog
 * configurations of both chains, and the certificates.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { createCa, issueCertificate } from "../lib/pki/pki.ts";
import { V8_FLAGS } from "./compile.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** Options for {@linkcode Daemon}. */
export interface DaemonOptions {
  /** Environment variables added to the inherited ones. */
  env?: Record<string, string>;
  /**
   * How long {@linkcode Daemon.stop} waits after SIGTERM before SIGKILL.
   * @default {15000}
   */
  stopTimeoutMs?: number;
}

/**
 * A child process that can be killed and started again, its stdout and
 * stderr appended to `LOG`.
 *
 * @example Kill and restart
 * ```ts
 * import { Daemon } from "./chaos_daemons.ts";
 * await using sleeper = new Daemon("sleep", "/tmp/sleep.log", ["sleep", "60"]);
 * sleeper.start();
 * await sleeper.kill("SIGKILL");
 * sleeper.start();
 * ```
 */
export class Daemon implements AsyncDisposable {
  /** Name shown in the chaos log. */
  readonly name: string;
  readonly #log: string;
  readonly #argv: string[];
  readonly #options: DaemonOptions;
  #child: Deno.ChildProcess | undefined;
  #pumps: Promise<void>[] = [];
  /** Starts so far. */
  starts = 0;
  /** Stops that needed SIGKILL after SIGTERM timed out. */
  forced = 0;

  constructor(name: string, log: string, argv: string[], options: DaemonOptions = {}) {
    this.name = name;
    this.#log = log;
    this.#argv = argv;
    this.#options = options;
  }

  /** Whether the process runs (was started and not yet waited for). */
  get running(): boolean {
    return this.#child !== undefined;
  }

  /** Starts the process (no-op while it runs). */
  start(): void {
    if (this.#child) return;
    const [program, ...args] = this.#argv;
    const child = new Deno.Command(program!, {
      args,
      env: { NO_COLOR: "1", ...this.#options.env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#child = child;
    this.starts++;
    this.#pumps = [child.stdout, child.stderr].map(async (stream) => {
      using file = await Deno.open(this.#log, { append: true, create: true });
      for await (const chunk of stream) file.writeSync(chunk);
    });
  }

  /** Sends `signal` and waits for the exit; returns its status, or undefined if not running. */
  async kill(signal: Deno.Signal): Promise<Deno.CommandStatus | undefined> {
    const child = this.#child;
    if (!child) return undefined;
    try {
      child.kill(signal);
    } catch {
      // exited already
    }
    const status = await child.status;
    await Promise.all(this.#pumps);
    this.#child = undefined;
    return status;
  }

  /** SIGTERM, then SIGKILL after `stopTimeoutMs`; counts forced stops. */
  async stop(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      timer = setTimeout(() => {
        this.forced++;
        try {
          child.kill("SIGKILL");
        } catch {
          // exited meanwhile
        }
      }, this.#options.stopTimeoutMs ?? 15_000);
      await this.kill("SIGTERM");
    } finally {
      clearTimeout(timer);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill("SIGKILL");
  }
}

/** The argv that runs reclog from this checkout as the tests and `deno task reclog` do. */
export function reclogCommand(args: string[]): string[] {
  return [
    Deno.execPath(),
    "run",
    "-q",
    "-P=reclog",
    `--v8-flags=${V8_FLAGS}`,
    `--config=${ROOT}deno.json`,
    `${ROOT}main.ts`,
    ...args,
  ];
}

/** Certificate files of a chaos run. */
export interface ChaosCerts {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

/**
 * Writes a CA, a server certificate (localhost, 127.0.0.1) and a client
 * certificate `home` into `dir`, for reclog's mTLS and rsyslog's RELP TLS.
 *
 * @example
 * ```ts
 * import { writeCerts } from "./chaos_daemons.ts";
 * const certs = await writeCerts(await Deno.makeTempDir());
 * console.log(certs.ca);
 * ```
 */
export async function writeCerts(dir: string): Promise<ChaosCerts> {
  const ca = await createCa({ subject: "CN=chaos CA" });
  const server = await issueCertificate(ca, {
    kind: "server",
    commonName: "localhost",
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
  });
  const client = await issueCertificate(ca, { kind: "client", commonName: "home" });
  const write = async (name: string, text: string) => {
    await Deno.writeTextFile(`${dir}/${name}`, text, { mode: 0o600 });
    return `${dir}/${name}`;
  };
  return {
    ca: await write("ca.pem", ca.certPem),
    serverCert: await write("server.pem", server.certPem),
    serverKey: await write("server.key", server.keyPem),
    clientCert: await write("home.pem", client.certPem),
    clientKey: await write("home.key", client.keyPem),
  };
}

/** The forwarding action of rsyslog A, with the parameters of contrib/rsyslog/90-forward-to-reclog.conf. */
export function forwardAction(
  kind: "relp" | "tcp" | "relp-tls",
  port: number,
  certs?: ChaosCerts,
): string {
  const queue = `template="RSYSLOG_ForwardFormat"
       queue.type="LinkedList" queue.filename="fwd"
       queue.size="100000" queue.maxDiskSpace="1g" queue.saveOnShutdown="on"
       action.resumeRetryCount="-1" action.resumeInterval="2"`;
  if (kind === "tcp") {
    return `action(name="fwd" type="omfwd" target="127.0.0.1" port="${port}" protocol="tcp"
       TCP_Framing="octet-counted" ${queue})`;
  }
  const tls = kind === "relp-tls"
    ? ` tls="on" tls.caCert="${certs!.ca}" tls.myCert="${certs!.clientCert}"
       tls.myPrivKey="${certs!.clientKey}" tls.authMode="name" tls.permittedPeer=["localhost"]`
    : "";
  return `module(load="omrelp")
action(name="fwd" type="omrelp" target="127.0.0.1" port="${port}"${tls}
       ${queue})`;
}

/**
 * A file of contrib/rsyslog/ with each `from` replaced by its `to`; throws if
 * a `from` is no longer in it.
 *
 * @example The VPS snippet forwarding to port 15142
 * ```ts
 * import { contribSnippet } from "./chaos_daemons.ts";
 * const text = await contribSnippet("90-forward-to-reclog.conf", [['port="5142"', 'port="15142"']]);
 * ```
 */
export async function contribSnippet(
  name: string,
  pairs: Array<[string, string]>,
): Promise<string> {
  let text = await Deno.readTextFile(`${ROOT}contrib/rsyslog/${name}`);
  for (const [from, to] of pairs) {
    if (!text.includes(from)) throw new Error(`contrib/rsyslog/${name} has no ${from}`);
    text = text.replaceAll(from, to);
  }
  return text;
}

/** rsyslog A: reads the generator's file with imfile and forwards it with `action`. */
export function rsyslogA(dir: string, genFile: string, action: string): string {
  return `global(workDirectory="${dir}/work" maxMessageSize="64k")
module(load="imfile")
input(type="imfile" file="${genFile}" tag="chaos:" freshStartTail="off")
${action}
`;
}

/**
 * rsyslog B: RELP (optionally with TLS) or TCP in, each message's raw text
 * appended to `file` before the input acknowledges it (a Direct ruleset
 * queue, as contrib/rsyslog/10-reclog-receive.conf does).
 */
export function rsyslogB(
  dir: string,
  input: { kind: "relp" | "tcp" | "relp-tls"; port: number; certs?: ChaosCerts },
  file: string,
): string {
  const { kind, port, certs } = input;
  const tls = kind === "relp-tls"
    ? ` tls="on" tls.caCert="${certs!.ca}" tls.myCert="${certs!.serverCert}"
      tls.myPrivKey="${certs!.serverKey}" tls.authMode="name" tls.permittedPeer=["home"]`
    : "";
  const inputs = kind === "tcp"
    ? `module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="${port}" ruleset="home")`
    : `module(load="imrelp")
input(type="imrelp" address="127.0.0.1" port="${port}" ruleset="home"${tls})`;
  return `global(workDirectory="${dir}/work" maxMessageSize="64k")
${inputs}
template(name="raw" type="string" string="%rawmsg%\\n")
ruleset(name="home" queue.type="Direct") {
  action(type="omfile" file="${file}" template="raw")
}
`;
}

/** A Daemon running rsyslogd in the foreground with `conf` written to DIR/rsyslog.conf. */
export async function rsyslogDaemon(name: string, dir: string, conf: string): Promise<Daemon> {
  await Deno.mkdir(`${dir}/work`, { recursive: true });
  await Deno.writeTextFile(`${dir}/rsyslog.conf`, conf);
  return new Daemon(name, `${dir}/rsyslogd.log`, [
    "rsyslogd",
    "-n",
    "-f",
    `${dir}/rsyslog.conf`,
    "-i",
    `${dir}/rsyslog.pid`,
  ]);
}
