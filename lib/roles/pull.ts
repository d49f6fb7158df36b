/**
 * `reclog pull`: mutual-TLS client with reconnect → a sink (local syslog over
 * UDP, TCP or a unix socket, or stdout), with a saved resume point.
 *
 * @module
 */

import { stringFlags } from "../util/flag_options.ts";
import { dirname } from "node:path";
import {
  ConfigError,
  parseHostPort,
  parseRoleArgs,
  prepareDir,
  printedHelp,
} from "../cli/flags.ts";
import { type PullConfig, readConfig, upstreamFromFlags } from "../cli/pull_config.ts";
import { Metrics } from "../ops/metrics.ts";
import { log } from "../util/log.ts";
import { PullClient } from "../transport/pull_client.ts";
import { ResumeState } from "../state/resume_state.ts";
import { shutdownSignal } from "../util/shutdown.ts";
import { openCheckedSink } from "../sinks/open.ts";
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
                            relp://HOST:PORT (acknowledged), unix:///dev/log,
                            or - for stdout (a message a line); checked at start
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

Only relp:// loses nothing: the resume point moves past acknowledged
messages only. A tcp:// receiver that crashes can lose the batch in flight;
udp:// has no acknowledgement (to a loopback receiver pull paces by its queue
and holds the resume point while it is down). A failing sink is retried with
back-off, the server connection kept. The resume point is saved every 500
messages and every second: a SIGKILL re-sends at most those 500, the batch in
flight and, with relp://, the up to 1,024 not yet acknowledged.

--cert, --key and --ca are read again on SIGHUP and when they change on disk
(used from the next connection on). Reconnects with exponential back-off from
1 s to 30 s with jitter. Stops on
SIGINT/SIGTERM with exit code 0. Exit 2 on a usage or configuration error.`;

const OPTIONS = {
  ...stringFlags("server", "cert", "key", "ca", "server-name", "to", "mirror", "state"),
  ...stringFlags("status-file", "config", "metrics"),
  live: { type: "boolean", default: false },
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
  if (printedHelp(values, USAGE)) return 0;
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
      upstream.mirror
        ? new MirrorSink(upstream.mirror)
        : await openCheckedSink(upstream.endpoint, upstream.toFlag),
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
