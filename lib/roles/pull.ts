/**
 * `reclog pull`: mutual-TLS client with reconnect → a sink (local syslog over
 * UDP, TCP or a unix socket, or stdout), with a saved resume point.
 *
 * @module
 */

import { dirname } from "node:path";
import {
  ConfigError,
  type Endpoint,
  parseEndpoint,
  parseHostPort,
  parseRoleArgs,
  prepareDir,
  readFlagFile,
} from "../cli/flags.ts";
import { errorMessage } from "../util/errors.ts";
import { formatHostPort, type HostPort } from "../util/address.ts";
import { Metrics } from "../ops/metrics.ts";
import { log } from "../util/log.ts";
import { PullClient } from "../transport/pull_client.ts";
import { ResumeState } from "../state/resume_state.ts";
import { shutdownSignal } from "../util/shutdown.ts";
import { openSink } from "../sinks/open.ts";
import { MirrorSink } from "../sinks/mirror.ts";
import { StatusFile } from "../ops/status_file.ts";
import { loadTlsMaterial } from "../tls/policy.ts";
import { TlsReloader } from "../tls/reloader.ts";

const USAGE = `Usage: reclog pull --server HOST:PORT --cert FILE --key FILE --ca FILE [flags]
       reclog pull --config FILE [--status-file FILE] [--metrics HOST:PORT]

Connects out to 'reclog serve', reconnects forever, and re-injects every
message unchanged into the local syslog (so it is filed under the server's
host name), or writes it elsewhere.

  --server HOST:PORT        the server ([IPV6]:PORT for IPv6)
  --cert FILE               client certificate (PEM)
  --key FILE                its private key (PEM)
  --ca FILE                 CA certificate(s) the server certificate must chain to
  --server-name NAME        name the server certificate must carry
                                                          [the HOST of --server]
  --to URL                  udp://HOST:PORT, tcp://HOST:PORT (octet counting),
                            unix:///dev/log, or - for stdout (a message a line)
                                                          [udp://127.0.0.1:514]
  --mirror DIR              instead of --to: append each stream to DIR/<stream>
                            (DIR/syslog, DIR/tcp for serve --tcp-in, ...)
  --state FILE              resume point (epoch and next sequence number), so
                            nothing is lost across disconnects and restarts;
                            without a saved point yet, starts with the oldest
                            message the server holds
                            [$XDG_STATE_HOME/reclog/HOST_PORT.state or
                             ~/.local/state/reclog/HOST_PORT.state]
  --live                    no resume point: start at the live tail every time
  --status-file FILE        'OK' while connected with no errors, else a line for
                            each problem (disconnected since when, lost
                            messages, unwritable mirror), rewritten atomically
  --metrics HOST:PORT       Prometheus text format at /metrics; /healthz is 'ok'
                            while every upstream is connected, else 503
  --config FILE             several upstreams in one process (JSON, see the
                            README); replaces --server, --cert, --key, --ca,
                            --server-name, --to, --mirror, --state
  -h, --help                this text

--cert, --key and --ca are read again on SIGHUP and when they change on disk
(used from the next connection on). Reconnects with exponential back-off from
1 s to 30 s with jitter. Stops on
SIGINT/SIGTERM with exit code 0. Exit 2 on a usage or configuration error.`;

const OPTIONS = {
  server: { type: "string" },
  cert: { type: "string" },
  key: { type: "string" },
  ca: { type: "string" },
  "server-name": { type: "string" },
  to: { type: "string" },
  mirror: { type: "string" },
  state: { type: "string" },
  live: { type: "boolean", default: false },
  "status-file": { type: "string" },
  config: { type: "string" },
  metrics: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

/**
 * Runs `reclog pull`; resolves to the exit code.
 *
 * @example Pull into the local syslog
 * ```ts
 * import { run } from "./pull.ts";
 * await run([
 *   "--server", "vps.example.org:6514",
 *   "--cert", "home.pem", "--key", "home.key", "--ca", "ca.pem",
 * ]);
 * ```
 */
export async function run(args: string[]): Promise<number> {
  const { values } = parseRoleArgs("pull", args, OPTIONS);
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const config: PullConfig = values.config
    ? await readConfig(values.config, values)
    : { upstreams: [upstreamFromFlags(values)] };
  const upstreams = config.upstreams;
  const statusPath = values["status-file"] ?? config.statusFile;
  const metricsAddress = values.metrics ?? config.metrics;
  const materials = await Promise.all(
    upstreams.map(({ cert, key, ca, name }) =>
      loadTlsMaterial({ cert, key, ca }).catch((error) => {
        if (!(error instanceof ConfigError) || !values.config) throw error;
        throw new ConfigError(`--config '${values.config}', upstream '${name}': ${error.message}`);
      })
    ),
  );

  using shutdown = shutdownSignal();
  await using stack = new AsyncDisposableStack();
  const status = statusPath ? new StatusFile(statusPath) : undefined;
  const metrics = new Metrics();
  const clients: PullClient[] = [];
  for (const [i, upstream] of upstreams.entries()) {
    const material = materials[i]!;
    const sink = stack.use(
      upstream.mirror ? new MirrorSink(upstream.mirror) : openSink(upstream.endpoint),
    );
    const path = upstream.state;
    if (path) await prepareDir("--state", dirname(path) || ".", path);
    const state = path ? stack.use(await ResumeState.open(path)) : undefined;
    log("pull").info("pulling from {server} into {sink}{resume}", {
      server: upstream.name,
      sink: sink.description,
      resume: state ? `, resume point in ${state.path}` : " (live tail only)",
    });
    const client = new PullClient({
      host: upstream.server.host,
      port: upstream.server.port,
      serverName: upstream.serverName,
      name: upstreams.length > 1 ? upstream.name : undefined,
      material,
      sink,
      state,
      status,
      metrics,
      signal: shutdown.signal,
    });
    stack.use(new TlsReloader(material, { onReload: (next) => client.reload(next) }));
    clients.push(client);
  }
  if (metricsAddress) {
    const address = parseHostPort(metricsAddress, "--metrics");
    stack.use(await metrics.serve(address, () => clients.every((client) => client.connected)));
  }
  // Each upstream runs on its own: one that fails never stalls the others.
  await Promise.all(clients.map((client) => client.run()));
  await status?.flush();
  log("pull").info("stopped");
  return 0;
}

/** One server to pull from, and where its messages go. */
interface Upstream extends Pick<UpstreamFields, "cert" | "key" | "ca" | "mirror" | "state"> {
  name: string;
  server: HostPort;
  serverName: string;
  endpoint: Endpoint;
}

type Values = ReturnType<typeof parseRoleArgs<typeof OPTIONS>>["values"];

/** What `--config FILE` holds. */
interface PullConfig {
  upstreams: Upstream[];
  statusFile?: string;
  metrics?: string;
}

function upstreamFromFlags(values: Values): Upstream {
  for (const flag of ["server", "cert", "key", "ca"] as const) {
    if (!values[flag]) throw new ConfigError(`--${flag} is required (see 'reclog pull --help')`);
  }
  return upstream({
    server: values.server!,
    cert: values.cert!,
    key: values.key!,
    ca: values.ca!,
    serverName: values["server-name"],
    to: values.to,
    mirror: values.mirror,
    state: values.state,
    live: values.live,
  }, (field) => `--${field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`);
}

/** The fields of one upstream, from flags or a config file. */
type UpstreamFields =
  & {
    [K in keyof typeof UPSTREAM_FIELDS]?: (typeof UPSTREAM_FIELDS)[K] extends "boolean" ? boolean
      : string;
  }
  & { server: string; cert: string; key: string; ca: string };

function upstream(fields: UpstreamFields, flag: (field: string) => string): Upstream {
  if (fields.live && fields.state) {
    throw new ConfigError(`${flag("live")} and ${flag("state")} exclude each other`);
  }
  if (fields.to && fields.mirror) {
    throw new ConfigError(`${flag("to")} and ${flag("mirror")} exclude each other`);
  }
  const server = parseHostPort(fields.server, flag("server"));
  return {
    name: fields.name ?? formatHostPort(server),
    server,
    serverName: fields.serverName ?? server.host,
    cert: fields.cert,
    key: fields.key,
    ca: fields.ca,
    endpoint: parseEndpoint(fields.to ?? "udp://127.0.0.1:514", flag("to"), "udp"),
    mirror: fields.mirror,
    state: fields.live ? undefined : fields.state ?? defaultStatePath(server),
  };
}

const UPSTREAM_FIELDS = {
  name: "string",
  server: "string",
  cert: "string",
  key: "string",
  ca: "string",
  serverName: "string",
  to: "string",
  mirror: "string",
  state: "string",
  live: "boolean",
} as const;

/** Reads `--config FILE` (see the README for its shape). */
async function readConfig(path: string, values: Values): Promise<PullConfig> {
  const flags = ["server", "cert", "key", "ca", "to", "mirror", "state", "server-name"] as const;
  const clash = flags.find((flag) => values[flag] !== undefined);
  if (clash) {
    throw new ConfigError(`--config and --${clash} exclude each other (put it in the file)`);
  }
  const where = `--config '${path}'`;
  let config: unknown;
  try {
    config = JSON.parse(await readFlagFile("--config", path));
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new ConfigError(`${where}: not valid JSON (${errorMessage(error)})`);
  }
  if (
    typeof config !== "object" || config === null ||
    !Array.isArray((config as { upstreams?: unknown }).upstreams)
  ) {
    throw new ConfigError(`${where}: expected an object with an "upstreams" array`);
  }
  const { upstreams, statusFile, metrics, ...rest } = config as {
    upstreams: unknown[];
    statusFile?: unknown;
    metrics?: unknown;
  };
  for (const key of Object.keys(rest)) throw new ConfigError(`${where}: unknown key "${key}"`);
  if (statusFile !== undefined && typeof statusFile !== "string") {
    throw new ConfigError(`${where}: "statusFile" must be a string`);
  }
  if (metrics !== undefined && typeof metrics !== "string") {
    throw new ConfigError(`${where}: "metrics" must be a string`);
  }
  if (upstreams.length === 0) throw new ConfigError(`${where}: "upstreams" is empty`);
  const names = new Set<string>();
  const parsed = upstreams.map((entry, i) => {
    const at = `${where}, upstreams[${i}]`;
    if (!entry || typeof entry !== "object") throw new ConfigError(`${at}: expected an object`);
    for (const [key, value] of Object.entries(entry)) {
      const type = (UPSTREAM_FIELDS as Record<string, string>)[key];
      const actual: string = typeof value;
      if (!type) throw new ConfigError(`${at}: unknown key "${key}"`);
      if (actual !== type) throw new ConfigError(`${at}: "${key}" must be a ${type}`);
    }
    for (const key of ["server", "cert", "key", "ca"]) {
      if (!(key in entry)) throw new ConfigError(`${at}: "${key}" is required`);
    }
    const result = upstream(entry as UpstreamFields, (field) => `${at}.${field}`);
    if (names.has(result.name)) throw new ConfigError(`${at}: name "${result.name}" used twice`);
    names.add(result.name);
    return result;
  });
  return { upstreams: parsed, statusFile, metrics };
}

function defaultStatePath(server: { host: string; port: number }): string {
  const base = Deno.env.get("XDG_STATE_HOME") || `${Deno.env.get("HOME") ?? "."}/.local/state`;
  const name = `${server.host}_${server.port}`.replace(/[^A-Za-z0-9._-]/g, "_");
  return `${base}/reclog/${name}.state`;
}
