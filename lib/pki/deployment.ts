/**
 * The one deployment that `reclog certs` prints, README.md describes and
 * contrib/systemd/ and contrib/rsyslog/ implement: its paths and addresses,
 * and the next-step texts `certs init` and `certs client` print.
 *
 * @module
 */

import { join } from "node:path";
import { formatHostPort } from "../util/address.ts";
import type { ClientResult, InitResult } from "./ca_dir.ts";
import { isoDay } from "./describe.ts";

/** The port `serve --listen` uses in the deployment (syslog over TLS, RFC 5425). */
export const DEFAULT_PORT = 6514;

/**
 * The one deployment that `certs init` prints, README.md describes and
 * contrib/systemd/ and contrib/rsyslog/ implement.
 *
 * @example Where the certificates go
 * ```ts
 * import { DEPLOYMENT } from "./deployment.ts";
 * console.log(`${DEPLOYMENT.etc}/server.pem`); // "/etc/reclog/server.pem"
 * ```
 */
export const DEPLOYMENT = {
  /** Certificates and keys, on the VPS and at home. */
  etc: "/etc/reclog",
  /** serve --spool (reclog-serve.service's StateDirectory). */
  spool: "/var/lib/reclog/spool",
  /** pull --state (reclog-pull.service's StateDirectory). */
  state: "/var/lib/reclog/pull/pull.state",
  /** serve --syslog-in: what contrib/rsyslog/90-forward-to-reclog.conf forwards to. */
  syslogIn: "relp://127.0.0.1:5142",
  /** serve --listen. */
  listen: `0.0.0.0:${DEFAULT_PORT}`,
  /** pull --to: what contrib/rsyslog/10-reclog-receive.conf listens on. */
  to: "relp://127.0.0.1:2514",
} as const;

/**
 * Quotes a path for a POSIX shell when it needs it.
 *
 * @example A path with a space
 * ```ts
 * import { shellQuote } from "./deployment.ts";
 * shellQuote("/tmp/my pki"); // "'/tmp/my pki'"
 * shellQuote("/tmp/pki"); // "/tmp/pki"
 * ```
 */
export function shellQuote(value: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(value) ? value : `'${value.replaceAll("'", `'\\''`)}'`;
}

/**
 * What `reclog certs init` prints: the files it made, and the next steps of
 * the deployment (copy to the VPS, rsyslog, serve; at home: a client
 * certificate, rsyslog, pull).
 *
 * @example Print the next steps
 * ```ts
 * import { initCa } from "./ca_dir.ts";
 * import { initReport } from "./deployment.ts";
 * console.log(initReport(await initCa({ dir: "pki", serverName: "vps.example.org" })));
 * ```
 */
export function initReport(result: InitResult): string {
  const path = (file: string) => shellQuote(join(result.dir, file));
  const names = [
    ...result.dnsNames.map((n) => `DNS:${n}`),
    ...result.ipAddresses.map((ip) => `IP:${ip}`),
  ];
  const server = formatHostPort({ host: result.serverName, port: DEFAULT_PORT });
  const lines = [
    `Made a new CA and a server certificate in ${result.dir}:`,
    `  ca.pem      CA certificate, valid until ${isoDay(result.caNotAfter)}`,
    `  ca.key      CA private key (mode 0600): STAYS AT HOME, never goes to the VPS`,
    `  server.pem  server certificate for ${names.join(", ")}, valid until ${
      isoDay(result.serverNotAfter)
    }`,
    `  server.key  server private key (mode 0600)`,
  ];
  if (result.replaced.length > 0) {
    lines.push(
      "",
      `Replaced (--force): ${
        result.replaced.map((file) => file.slice(result.dir.length + 1)).join(", ")
      }.`,
      "Certificates issued by the old CA no longer verify: reissue them with 'reclog certs client'.",
    );
  }
  const etc = DEPLOYMENT.etc;
  const vps = result.serverName.includes(":") ? `[${result.serverName}]` : result.serverName;
  lines.push(
    "",
    `Next steps (the deployment of contrib/systemd/ and contrib/rsyslog/: certificates in ${etc}`,
    `on both machines, the spool in ${DEPLOYMENT.spool}, the resume point in ${DEPLOYMENT.state};`,
    "run as root, the contrib/ paths are those of a reclog checkout):",
    "  1. Copy ca.pem, server.pem and server.key to the VPS (keep server.key mode 0600).",
    "     ca.key stays at home: it never goes to the VPS.",
    `       ssh root@${result.serverName} 'install -d -m 0700 ${etc}'`,
    `       scp ${path("ca.pem")} ${path("server.pem")} ${path("server.key")} root@${vps}:${etc}/`,
    `  2. On the VPS: rsyslog forwards to reclog over RELP on ${DEPLOYMENT.syslogIn}, and reclog serves`,
    `     clients on port ${DEFAULT_PORT} (open it in the firewall; reclog-serve.service runs the same;`,
    "     rsyslog needs the package rsyslog-relp on both machines):",
    "       install -m 0644 contrib/rsyslog/90-forward-to-reclog.conf /etc/rsyslog.d/ && systemctl restart rsyslog",
    `       ${serveCommand()}`,
    "  3. At home: a client certificate, an rsyslog that files what pull re-injects under",
    "     /var/log/remote/HOST/, and pull (reclog-pull.service runs the same):",
    `       reclog certs client home --dir ${shellQuote(result.dir)}`,
    `       install -d -m 0700 ${etc} && install -m 0600 ${path("ca.pem")} ${path("home.pem")} ${
      path("home.key")
    } ${etc}/`,
    "       install -m 0644 contrib/rsyslog/10-reclog-receive.conf contrib/rsyslog/20-tlog.conf /etc/rsyslog.d/ && systemctl restart rsyslog",
    `       ${pullCommand(server)}`,
  );
  return lines.join("\n");
}

/**
 * What `reclog certs client` prints: the files it made and how to install
 * them and pull with them.
 *
 * @example Print how to use a client certificate
 * ```ts
 * import { issueClient } from "./ca_dir.ts";
 * import { clientReport } from "./deployment.ts";
 * console.log(clientReport(await issueClient({ dir: "pki", name: "home" })));
 * ```
 */
export function clientReport(result: ClientResult): string {
  const path = (file: string) => shellQuote(join(result.dir, file));
  const lines = [
    `Made a client certificate for '${result.name}' in ${result.dir}:`,
    `  ${result.name}.pem  client certificate (CN=${result.name}), valid until ${
      isoDay(result.notAfter)
    }`,
    `  ${result.name}.key  its private key (mode 0600)`,
  ];
  if (result.replaced.length > 0) {
    lines.push(`Replaced (--force) the previous ${result.name}.pem / ${result.name}.key.`);
  }
  if (result.notAfter > result.caNotAfter) {
    lines.push(
      `Note: the CA expires sooner, on ${
        isoDay(result.caNotAfter)
      }; the certificate works until then.`,
    );
  }
  const etc = DEPLOYMENT.etc;
  lines.push(
    "",
    `Install it at home in ${etc} and pull with it (as reclog-pull.service does):`,
    `  install -d -m 0700 ${etc} && install -m 0600 ${path("ca.pem")} ${
      path(`${result.name}.pem`)
    } ${path(`${result.name}.key`)} ${etc}/`,
    `  ${pullCommand(result.server ?? `SERVER:${DEFAULT_PORT}`, result.name)}`,
  );
  return lines.join("\n");
}

function serveCommand(): string {
  const etc = DEPLOYMENT.etc;
  return `reclog serve --cert ${etc}/server.pem --key ${etc}/server.key --ca ${etc}/ca.pem ` +
    `--listen ${DEPLOYMENT.listen} --syslog-in ${DEPLOYMENT.syslogIn} --spool ${DEPLOYMENT.spool}`;
}

function pullCommand(server: string, name = "home"): string {
  const etc = DEPLOYMENT.etc;
  return `reclog pull --server ${server} --cert ${etc}/${name}.pem --key ${etc}/${name}.key ` +
    `--ca ${etc}/ca.pem --to ${DEPLOYMENT.to} --state ${DEPLOYMENT.state}`;
}
