/**
 * `reclog pull`: mutual-TLS client with reconnect → a sink (local syslog over
 * UDP, TCP or a unix socket, or stdout), with a saved resume point.
 *
 * @module
 */

import { ConfigError, parseEndpoint, parseHostPort, parseRoleArgs } from "./cli.ts";
import { log } from "./log.ts";
import { PullClient } from "./pull_client.ts";
import { ResumeState } from "./resume_state.ts";
import { shutdownSignal } from "./shutdown.ts";
import { openSink } from "./sink.ts";
import { MirrorSink } from "./sink_mirror.ts";
import { StatusFile } from "./status_file.ts";
import { loadTlsMaterial } from "./tls_policy.ts";
import { TlsReloader } from "./tls_reloader.ts";

const USAGE = `Usage: reclog pull --server HOST:PORT --cert FILE --key FILE --ca FILE [flags]

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
  help: { type: "boolean", short: "h" },
} as const;

/**
 * Runs `reclog pull`; resolves to the exit code.
 *
 * @example Pull into the local syslog
 * ```ts
 * import { run } from "./role_pull.ts";
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
  for (const flag of ["server", "cert", "key", "ca"] as const) {
    if (!values[flag]) throw new ConfigError(`--${flag} is required (see 'reclog pull --help')`);
  }
  if (values.live && values.state) throw new ConfigError("--live and --state exclude each other");
  const server = parseHostPort(values.server!, "--server");
  if (values.to && values.mirror) throw new ConfigError("--to and --mirror exclude each other");
  const endpoint = parseEndpoint(values.to ?? "udp://127.0.0.1:514", "--to", "udp");
  const material = await loadTlsMaterial({ cert: values.cert!, key: values.key!, ca: values.ca! });
  const statePath = values.live ? undefined : values.state ?? defaultStatePath(server);

  using shutdown = shutdownSignal();
  await using sink = values.mirror ? new MirrorSink(values.mirror) : openSink(endpoint);
  await using state = statePath ? await ResumeState.open(statePath) : undefined;
  log("pull").info("pulling from {server} into {sink}{resume}", {
    server: values.server,
    sink: sink.description,
    resume: state ? `, resume point in ${state.path}` : " (live tail only)",
  });
  const status = values["status-file"] ? new StatusFile(values["status-file"]) : undefined;
  const client = new PullClient({
    host: server.host,
    port: server.port,
    serverName: values["server-name"] ?? server.host,
    material,
    sink,
    state,
    status,
    signal: shutdown.signal,
  });
  using _reloader = new TlsReloader(material, {
    onReload: (next) => client.reload(next),
  });
  await client.run();
  await status?.flush();
  log("pull").info("stopped");
  return 0;
}

function defaultStatePath(server: { host: string; port: number }): string {
  const base = Deno.env.get("XDG_STATE_HOME") ||
    `${Deno.env.get("HOME") ?? "."}/.local/state`;
  const name = `${server.host}_${server.port}`.replace(/[^A-Za-z0-9._-]/g, "_");
  return `${base}/reclog/${name}.state`;
}
