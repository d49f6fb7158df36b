/**
 * `reclog certs`: a small certificate authority for reclog's mutual TLS.
 *
 * - `reclog certs init --dir DIR --server-name NAME [--ip ADDR]...` makes the
 *   CA (`ca.pem`, `ca.key`) and the VPS's server certificate (`server.pem`,
 *   `server.key`).
 * - `reclog certs client NAME --dir DIR` makes a client certificate
 *   (`NAME.pem`, `NAME.key`) signed by that CA.
 * - `reclog certs show FILE` describes a certificate.
 *
 * Private keys are created with mode 0600 (never widened then narrowed),
 * certificates with 0644, and no existing file is replaced without `--force`.
 *
 * @module
 */

import { dirname, join, resolve } from "node:path";
import { ConfigError, parsePositiveInt, parseRoleArgs } from "../cli/flags.ts";
import { describeFsError } from "../util/errors.ts";
import { formatHostPort } from "../util/address.ts";
import {
  type CertificateInfo,
  createCa,
  describeCertificate,
  issueCertificate,
  type Issued,
  normalizeIpAddress,
} from "../pki/pki.ts";

const DAY_MS = 86_400_000;
const MAX_DAYS = 36_500;
const CA_DAYS = 3650;
const LEAF_DAYS = 825;
const DEFAULT_PORT = 6514;
const RESERVED_NAMES = new Set(["ca", "server"]);

const USAGE = `Usage: reclog certs <init|client|show> [flags]

A small certificate authority for reclog's mutual TLS (X.509 v3, ECDSA P-256).

  reclog certs init --dir DIR --server-name NAME [--ip ADDR]... [--days N] [--force]
      make a CA (ca.pem, ca.key) and the VPS's server certificate (server.pem, server.key)
  reclog certs client NAME --dir DIR [--days N] [--force]
      make a client certificate NAME.pem / NAME.key signed by DIR/ca.pem + DIR/ca.key
  reclog certs show FILE
      print subject, issuer, SANs, validity, SHA-256 fingerprint and usages of a certificate

Run 'reclog certs <init|client|show> --help' for each one's flags.
ca.key stays at home: only ca.pem, server.pem and server.key go to the VPS.`;

const INIT_USAGE =
  `Usage: reclog certs init --dir DIR --server-name NAME [--ip ADDR]... [--days N] [--force]

Makes a new CA (DIR/ca.pem, DIR/ca.key) and a server certificate for the VPS
(DIR/server.pem, DIR/server.key). DIR is created with mode 0700 if absent.

Flags:
  --dir DIR            directory for the files (required)
  --server-name NAME   the VPS's DNS name as clients will dial it (required); an IP
                       address here is put in the certificate as an IP SAN
  --ip ADDR            also valid for this IPv4 or IPv6 address; repeat, or separate
                       with commas
  --days N             validity of the server certificate in days (default ${LEAF_DAYS});
                       the CA is valid ${CA_DAYS} days, or N if longer
  --force              replace existing files (this makes a NEW CA: certificates
                       issued by the old one stop working)
  -h, --help           show this help

Afterwards: ca.pem, server.pem and server.key go to the VPS; ca.key stays at home
and never goes to the VPS.`;

const CLIENT_USAGE = `Usage: reclog certs client NAME --dir DIR [--days N] [--force]

Makes a client certificate DIR/NAME.pem and its key DIR/NAME.key (CN=NAME,
extendedKeyUsage clientAuth), signed by DIR/ca.pem and DIR/ca.key. Run it at
home, where ca.key is.

Arguments:
  NAME          the client's name: letters, digits, '.', '_' and '-', starting with a
                letter or digit ('ca' and 'server' are taken)

Flags:
  --dir DIR     directory holding ca.pem and ca.key (required)
  --days N      validity in days (default ${LEAF_DAYS})
  --force       replace an existing NAME.pem / NAME.key
  -h, --help    show this help`;

const SHOW_USAGE = `Usage: reclog certs show FILE

Prints what a PEM (or DER) certificate says: subject, issuer, subject alternative
names, validity with the days left, SHA-256 fingerprint (as
'openssl x509 -noout -fingerprint -sha256' prints it), key usages, and whether
it is a CA. A file with several certificates shows each.

Flags:
  -h, --help    show this help`;

/** Options for {@linkcode initCa}. */
export interface InitOptions {
  /** Directory for `ca.pem`, `ca.key`, `server.pem`, `server.key`; made 0700 if absent. */
  dir: string;
  /** The server's DNS name (or IP address): its CN and first SAN. */
  serverName: string;
  /**
   * More IP addresses for the server certificate's SAN.
   * @default {[]}
   */
  ipAddresses?: string[];
  /**
   * Validity of the server certificate in days; the CA gets at least as long.
   * @default {825}
   */
  days?: number;
  /**
   * Replace existing files.
   * @default {false}
   */
  force?: boolean;
}

/** Options for {@linkcode issueClient}. */
export interface ClientOptions {
  /** Directory holding `ca.pem` and `ca.key`; the client files go there too. */
  dir: string;
  /** Client name: the CN and the file names `NAME.pem` / `NAME.key`. */
  name: string;
  /**
   * Validity in days.
   * @default {825}
   */
  days?: number;
  /**
   * Replace an existing `NAME.pem` / `NAME.key`.
   * @default {false}
   */
  force?: boolean;
}

/** A file written by {@linkcode initCa} or {@linkcode issueClient}. */
export interface WrittenFile {
  /** Absolute path. */
  path: string;
  /** Mode it was created with (before the umask). */
  mode: number;
}

/**
 * Runs `reclog certs` with the arguments after the role; resolves to the exit
 * code. Usage and configuration mistakes throw {@linkcode ConfigError}.
 *
 * @example Make a CA and a client certificate
 * ```ts
 * import { run } from "./certs.ts";
 * await run(["init", "--dir", "pki", "--server-name", "vps.example.org"]);
 * await run(["client", "home", "--dir", "pki"]);
 * ```
 */
export async function run(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === "--help" || sub === "-h" || sub === "help") {
    console.log(USAGE);
    return 0;
  }
  if (sub === undefined) {
    throw new ConfigError("missing subcommand: init, client or show (see 'reclog certs --help')");
  }
  switch (sub) {
    case "init":
      return await runInit(rest);
    case "client":
      return await runClient(rest);
    case "show":
      return await runShow(rest);
    default:
      throw new ConfigError(
        `unknown subcommand '${sub}' (expected init, client or show; see 'reclog certs --help')`,
      );
  }
}

async function runInit(args: string[]): Promise<number> {
  if (wantsHelp(args)) {
    console.log(INIT_USAGE);
    return 0;
  }
  const { values } = parseSub("init", args, {
    dir: { type: "string" },
    "server-name": { type: "string" },
    ip: { type: "string", multiple: true },
    days: { type: "string" },
    force: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  const dir = requireFlag("init", "--dir", values.dir, "DIR");
  const serverName = requireFlag("init", "--server-name", values["server-name"], "NAME");
  const result = await initCa({
    dir,
    serverName,
    ipAddresses: (values.ip ?? []).flatMap((value: string) => value.split(",")),
    days: values.days === undefined ? undefined : parseDays(values.days),
    force: values.force ?? false,
  });
  console.log(initReport(result));
  return 0;
}

async function runClient(args: string[]): Promise<number> {
  if (wantsHelp(args)) {
    console.log(CLIENT_USAGE);
    return 0;
  }
  const { values, positionals } = parseSub("client", args, {
    dir: { type: "string" },
    days: { type: "string" },
    force: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  }, true);
  if (positionals.length !== 1) {
    throw new ConfigError(
      positionals.length === 0
        ? "client: missing NAME, e.g. 'reclog certs client home --dir DIR'"
        : `client: expected one NAME, got ${positionals.length} (${positionals.join(" ")})`,
    );
  }
  const dir = requireFlag("client", "--dir", values.dir, "DIR");
  const result = await issueClient({
    dir,
    name: positionals[0]!,
    days: values.days === undefined ? undefined : parseDays(values.days),
    force: values.force ?? false,
  });
  console.log(clientReport(result));
  return 0;
}

async function runShow(args: string[]): Promise<number> {
  if (wantsHelp(args)) {
    console.log(SHOW_USAGE);
    return 0;
  }
  const { positionals } = parseSub("show", args, {
    help: { type: "boolean", short: "h" },
  }, true);
  if (positionals.length !== 1) {
    throw new ConfigError(
      positionals.length === 0
        ? "show: missing FILE, e.g. 'reclog certs show DIR/server.pem'"
        : `show: expected one FILE, got ${positionals.length}`,
    );
  }
  const file = positionals[0]!;
  const infos = await readCertificates(file);
  console.log(
    infos.map((info, index) =>
      formatCertificate(info, infos.length > 1 ? `${file} [${index + 1}/${infos.length}]` : file)
    ).join("\n\n"),
  );
  return 0;
}

/** What {@linkcode initCa} made. */
export interface InitResult {
  /** Absolute directory. */
  dir: string;
  /** Server name as given (lower-cased, without a trailing dot). */
  serverName: string;
  /** DNS names in the server certificate. */
  dnsNames: string[];
  /** IP addresses in the server certificate. */
  ipAddresses: string[];
  /** End of the server certificate's validity. */
  serverNotAfter: Date;
  /** End of the CA's validity. */
  caNotAfter: Date;
  /** Whether existing files were replaced. */
  replaced: string[];
  /** Files written. */
  files: WrittenFile[];
}

/**
 * Makes a CA and a server certificate in `options.dir` (`ca.pem`, `ca.key`,
 * `server.pem`, `server.key`). Refuses, before writing anything, when one of
 * them exists and `force` is not set.
 *
 * @example Make the PKI for a VPS
 * ```ts
 * import { initCa } from "./certs.ts";
 * const result = await initCa({
 *   dir: "pki",
 *   serverName: "vps.example.org",
 *   ipAddresses: ["203.0.113.7", "2001:db8::7"],
 * });
 * console.log(result.files.map((file) => file.path));
 * ```
 */
export async function initCa(options: InitOptions): Promise<InitResult> {
  const dir = resolve(options.dir);
  const name = options.serverName.trim().replace(/\.$/, "").toLowerCase();
  const dnsNames: string[] = [];
  const ipAddresses: string[] = [];
  const nameAsIp = normalizeIpAddress(name.replace(/^\[(.*)\]$/, "$1"));
  if (nameAsIp) ipAddresses.push(nameAsIp);
  else if (isDnsName(name)) dnsNames.push(name);
  else {
    throw new ConfigError(
      `--server-name '${options.serverName}': expected a DNS name such as vps.example.org (or an IP address)`,
    );
  }
  for (const raw of options.ipAddresses ?? []) {
    const value = raw.trim();
    const ip = normalizeIpAddress(value.replace(/^\[(.*)\]$/, "$1"));
    if (!ip) {
      throw new ConfigError(
        `--ip '${raw}': expected an IPv4 address (203.0.113.7) or an IPv6 address (2001:db8::7)`,
      );
    }
    if (!ipAddresses.includes(ip)) ipAddresses.push(ip);
  }
  const days = options.days ?? LEAF_DAYS;
  const targets = ["ca.pem", "ca.key", "server.pem", "server.key"].map((file) => join(dir, file));
  const replaced = await checkTargets(targets, options.force ?? false);

  const ca = await createCa({
    subject: `CN=reclog CA for ${escapeDn(name)}`,
    days: Math.max(CA_DAYS, days),
  });
  const server = await issueCertificate(ca, {
    kind: "server",
    commonName: name,
    dnsNames,
    ipAddresses,
    days,
  });
  await ensureDir(dir);
  const files = await writeAll(dir, [["ca", ca], ["server", server]]);
  const [caInfo, serverInfo] = await Promise.all([
    describeCertificate(ca.certPem),
    describeCertificate(server.certPem),
  ]);
  return {
    dir,
    serverName: name,
    dnsNames,
    ipAddresses,
    serverNotAfter: serverInfo.notAfter,
    caNotAfter: caInfo.notAfter,
    replaced,
    files,
  };
}

/** What {@linkcode issueClient} made. */
export interface ClientResult {
  /** Absolute directory. */
  dir: string;
  /** Client name. */
  name: string;
  /** End of the certificate's validity. */
  notAfter: Date;
  /** End of the CA's validity. */
  caNotAfter: Date;
  /** `host:port` for `reclog pull --server`, from `server.pem` when it is there. */
  server: string | undefined;
  /** Whether existing files were replaced. */
  replaced: string[];
  /** Files written. */
  files: WrittenFile[];
}

/**
 * Issues a client certificate `NAME.pem` / `NAME.key` in `options.dir`,
 * signed by the CA there (`ca.pem`, `ca.key`).
 *
 * @example Issue a certificate for the home machine
 * ```ts
 * import { issueClient } from "./certs.ts";
 * const result = await issueClient({ dir: "pki", name: "home" });
 * console.log(result.files.map((file) => file.path));
 * ```
 */
export async function issueClient(options: ClientOptions): Promise<ClientResult> {
  const name = options.name;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) {
    throw new ConfigError(
      `client NAME '${name}': use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  const lower = name.toLowerCase();
  if (RESERVED_NAMES.has(lower)) {
    throw new ConfigError(
      `client NAME '${name}' is reserved (${lower}.pem and ${lower}.key are the ${
        lower === "ca" ? "CA" : "server"
      }'s files); pick another name`,
    );
  }
  const dir = resolve(options.dir);
  const shownDir = options.dir;
  const caCertPath = join(shownDir, "ca.pem");
  const caKeyPath = join(shownDir, "ca.key");
  const caKeyPem = await readCaFile(caKeyPath, async (error) => {
    if (error instanceof Deno.errors.NotFound && await exists(join(dir, "ca.pem"))) {
      return "the CA key stays at home: run 'reclog certs client' where you ran 'reclog certs init'";
    }
    return `run 'reclog certs init --dir ${shellQuote(shownDir)} --server-name NAME' first`;
  });
  const caCertPem = await readCaFile(
    caCertPath,
    () => Promise.resolve("run 'reclog certs init' first, or restore it from the VPS"),
  );
  let caInfo: CertificateInfo;
  try {
    caInfo = await describeCertificate(caCertPem);
  } catch {
    throw new ConfigError(`'${caCertPath}' is not a PEM certificate`);
  }
  if (!caInfo.isCa) throw new ConfigError(`'${caCertPath}' is not a CA certificate`);
  if (caInfo.notAfter.getTime() <= Date.now()) {
    throw new ConfigError(
      `the CA in '${caCertPath}' expired on ${isoDay(caInfo.notAfter)}; ` +
        `make a new one with 'reclog certs init --force'`,
    );
  }
  const targets = [join(dir, `${name}.pem`), join(dir, `${name}.key`)];
  const replaced = await checkTargets(targets, options.force ?? false);
  let client: Issued;
  try {
    client = await issueCertificate({ certPem: caCertPem, keyPem: caKeyPem }, {
      kind: "client",
      commonName: name,
      days: options.days ?? LEAF_DAYS,
    });
  } catch (error) {
    if (error instanceof TypeError) {
      throw new ConfigError(
        `'${caKeyPath}': ${error.message.replace(/^Cannot read the CA key: /, "")}`,
      );
    }
    throw error;
  }
  const files = await writeAll(dir, [[name, client]]);
  const info = await describeCertificate(client.certPem);
  return {
    dir,
    name,
    notAfter: info.notAfter,
    caNotAfter: caInfo.notAfter,
    server: await serverAddress(join(dir, "server.pem")),
    replaced,
    files,
  };
}

/**
 * Reads every certificate in a PEM (or DER) file and describes it.
 * Throws {@linkcode ConfigError} when the file cannot be read or holds no
 * certificate.
 *
 * @example Describe the server certificate
 * ```ts
 * import { readCertificates } from "./certs.ts";
 * const [info] = await readCertificates("pki/server.pem");
 * console.log(info?.subjectAltNames);
 * ```
 */
export async function readCertificates(file: string): Promise<CertificateInfo[]> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(file);
  } catch (error) {
    throw new ConfigError(`Cannot read '${file}': ${describeFsError(error)}`);
  }
  const text = new TextDecoder().decode(bytes);
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  try {
    if (blocks.length > 0) return await Promise.all(blocks.map((pem) => describeCertificate(pem)));
    if (bytes[0] === 0x30) {
      const base64 = btoa(Array.from(bytes, (b) => String.fromCharCode(b)).join(""));
      const pem = `-----BEGIN CERTIFICATE-----\n${base64}\n-----END CERTIFICATE-----\n`;
      return [await describeCertificate(pem)];
    }
  } catch {
    // fall through to the error below
  }
  const hint = /-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)
    ? " (it is a private key; show the .pem file next to it)"
    : /-----BEGIN /.test(text)
    ? " (it has PEM data, but no valid 'CERTIFICATE' block)"
    : "";
  throw new ConfigError(`'${file}' is not a certificate${hint}`);
}

function formatCertificate(info: CertificateInfo, file: string, now = Date.now()): string {
  const left = info.notAfter.getTime() - now;
  let status: string;
  if (info.notBefore.getTime() > now) {
    status = `NOT YET VALID, starts in ${
      plural(Math.ceil((info.notBefore.getTime() - now) / DAY_MS), "day")
    }`;
  } else if (left <= 0) {
    const ago = Math.floor(-left / DAY_MS);
    status = ago === 0 ? "EXPIRED less than a day ago" : `EXPIRED ${plural(ago, "day")} ago`;
  } else {
    const days = Math.floor(left / DAY_MS);
    status = days === 0 ? "less than a day left" : `${plural(days, "day")} left`;
  }
  const rows: [string, string][] = [
    ["File", file],
    [
      "Fit for",
      fitFor(info) +
      (status.startsWith("EXPIRED") || status.startsWith("NOT YET")
        ? ` (but ${status.split(",")[0]!.toLowerCase()}: not usable now)`
        : ""),
    ],
    ["Subject", info.subject],
    ["Issuer", info.issuer + (info.issuer === info.subject ? " (self-signed)" : "")],
    ["SANs", info.subjectAltNames.length > 0 ? info.subjectAltNames.join(", ") : "(none)"],
    ["Not before", isoSecond(info.notBefore)],
    ["Not after", `${isoSecond(info.notAfter)} (${status})`],
    ["SHA-256", info.fingerprint],
    ["Key usage", info.usages.length > 0 ? info.usages.join(", ") : "(none)"],
    ["CA", info.isCa ? "yes (can sign certificates)" : "no"],
    ["Key", info.keyAlgorithm],
    ["Serial", info.serialNumber],
    ["Version", `X.509 v${info.version}`],
  ];
  return rows.map(([label, value]) => `${`${label}:`.padEnd(12)}${value}`).join("\n");
}

const KEY_USAGE_NAMES = new Set([
  "digitalSignature",
  "nonRepudiation",
  "keyEncipherment",
  "dataEncipherment",
  "keyAgreement",
  "keyCertSign",
  "cRLSign",
  "encipherOnly",
  "decipherOnly",
]);

/**
 * What a certificate is fit for, in plain words: a CA, a TLS server
 * (`serve`/`listen --cert`), a TLS client (`pull`/`send --cert`), or both.
 *
 * @example Describe the server certificate's purpose
 * ```ts
 * import { fitFor, readCertificates } from "./certs.ts";
 * const [info] = await readCertificates("pki/server.pem");
 * console.log(fitFor(info!)); // "a TLS server: reclog serve --cert or listen --cert; ..."
 * ```
 */
export function fitFor(info: CertificateInfo): string {
  if (info.isCa) {
    return "a CA: it signs certificates; give it as --ca (ca.pem), never as --cert";
  }
  const extended = info.usages.filter((usage) => !KEY_USAGE_NAMES.has(usage));
  // No extendedKeyUsage extension: TLS takes the certificate for either end.
  const server = extended.length === 0 || extended.includes("serverAuth");
  const client = extended.length === 0 || extended.includes("clientAuth");
  if (server && client) {
    return "a TLS server and client: serve/listen --cert and pull/send --cert";
  }
  if (server) {
    return "a TLS server: reclog serve --cert or listen --cert; not for pull or send (no clientAuth)";
  }
  if (client) {
    return "a TLS client: reclog pull --cert or send --cert; not for serve or listen (no serverAuth)";
  }
  return `neither a TLS server nor a client (extended key usage: ${extended.join(", ")})`;
}

/**
 * The one deployment that `certs init` prints, README.md describes and
 * contrib/systemd/ and contrib/rsyslog/ implement.
 */
export const DEPLOYMENT = {
  /** Certificates and keys, on the VPS and at home. */
  etc: "/etc/reclog",
  /** serve --spool (reclog-serve.service's StateDirectory). */
  spool: "/var/lib/reclog/spool",
  /** pull --state (reclog-pull.service's StateDirectory). */
  state: "/var/lib/reclog/pull/pull.state",
  /** serve --syslog-in: what contrib/rsyslog/90-forward-to-reclog.conf forwards to. */
  syslogIn: "tcp://127.0.0.1:5141",
  /** serve --listen. */
  listen: `0.0.0.0:${DEFAULT_PORT}`,
  /** pull --to: what contrib/rsyslog/10-reclog-receive.conf listens on. */
  to: "udp://127.0.0.1:514",
} as const;

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

function initReport(result: InitResult): string {
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
    `  2. On the VPS: rsyslog forwards to reclog over TCP on ${DEPLOYMENT.syslogIn}, and reclog serves`,
    `     clients on port ${DEFAULT_PORT} (open it in the firewall; reclog-serve.service runs the same):`,
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

function clientReport(result: ClientResult): string {
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

/** Returns the paths that exist; throws unless `force` when any does. */
async function checkTargets(targets: string[], force: boolean): Promise<string[]> {
  const existing: string[] = [];
  for (const target of targets) {
    let stat: Deno.FileInfo;
    try {
      stat = await Deno.lstat(target);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
        continue;
      }
      throw new ConfigError(`Cannot check '${target}': ${describeFsError(error)}`);
    }
    if (stat.isDirectory) throw new ConfigError(`'${target}' is a directory`);
    existing.push(target);
  }
  if (existing.length > 0 && !force) {
    const list = existing.map((path) => `'${path}'`).join(", ");
    throw new ConfigError(
      `${list} already ${
        existing.length === 1 ? "exists" : "exist"
      }; nothing was written (use --force to replace)`,
    );
  }
  return existing;
}

async function ensureDir(dir: string): Promise<void> {
  try {
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw new ConfigError(`Cannot create --dir '${dir}': ${describeFsError(error)}`);
  }
  const stat = await Deno.stat(dir);
  if (!stat.isDirectory) throw new ConfigError(`--dir '${dir}' is not a directory`);
}

/**
 * Writes `NAME.pem` (0644) and `NAME.key` (0600) for each pair: first to
 * fresh temporary files created with those modes, then renamed into place,
 * so a failure leaves no half-written set and a key is never readable by
 * others, not even for a moment.
 */
async function writeAll(dir: string, items: [string, Issued][]): Promise<WrittenFile[]> {
  const plan: { path: string; data: string; mode: number; temp: string }[] = [];
  for (const [name, issued] of items) {
    for (
      const [ext, data, mode] of [["pem", issued.certPem, 0o644], [
        "key",
        issued.keyPem,
        0o600,
      ]] as const
    ) {
      const path = join(dir, `${name}.${ext}`);
      const temp = join(dirname(path), `.${name}.${ext}.${crypto.randomUUID().slice(0, 8)}.tmp`);
      plan.push({ path, data, mode, temp });
    }
  }
  try {
    for (const item of plan) {
      await Deno.writeTextFile(item.temp, item.data, { createNew: true, mode: item.mode });
    }
    for (const item of plan) await Deno.rename(item.temp, item.path);
  } catch (error) {
    await Promise.all(plan.map((item) => Deno.remove(item.temp).catch(() => {})));
    throw new Error(`Cannot write into '${dir}': ${describeFsError(error)}`);
  }
  return plan.map(({ path, mode }) => ({ path, mode }));
}

async function readCaFile(
  path: string,
  hint: (error: unknown) => Promise<string>,
): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    throw new ConfigError(
      `Cannot read '${path}': ${describeFsError(error)} (${await hint(error)})`,
    );
  }
}

async function serverAddress(serverPem: string): Promise<string | undefined> {
  try {
    const [info] = await readCertificates(serverPem);
    const name = info?.subjectAltNames[0]?.replace(/^(DNS|IP):/, "");
    return name ? formatHostPort({ host: name, port: DEFAULT_PORT }) : undefined;
  } catch {
    return undefined;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

function parseSub<O extends Parameters<typeof parseRoleArgs>[2]>(
  sub: string,
  args: string[],
  options: O,
  allowPositionals = false,
): ReturnType<typeof parseRoleArgs<O>> {
  try {
    return parseRoleArgs(`certs ${sub}`, args, options, allowPositionals);
  } catch (error) {
    if (error instanceof ConfigError) {
      throw new ConfigError(error.message.replace(/^reclog certs \w+: /, `${sub}: `));
    }
    throw error;
  }
}

function wantsHelp(args: string[]): boolean {
  const end = args.indexOf("--");
  return (end < 0 ? args : args.slice(0, end)).some((arg) => arg === "--help" || arg === "-h");
}

function requireFlag(sub: string, flag: string, value: string | undefined, meta: string): string {
  if (value === undefined || value === "") {
    throw new ConfigError(`${sub}: ${flag} ${meta} is required (see 'reclog certs ${sub} --help')`);
  }
  return value;
}

function parseDays(value: string): number {
  const days = parsePositiveInt(value, "--days");
  if (days > MAX_DAYS) throw new ConfigError(`--days '${value}': at most ${MAX_DAYS} (100 years)`);
  return days;
}

function isDnsName(name: string): boolean {
  if (name.length === 0 || name.length > 253) return false;
  return name.split(".").every((label) => /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/.test(label));
}

function escapeDn(value: string): string {
  return value.replace(/([,+"\\<>;=])/g, "\\$1");
}

/** Quotes a path for a POSIX shell when it needs it. */
function shellQuote(value: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(value) ? value : `'${value.replaceAll("'", `'\\''`)}'`;
}

function plural(count: number, unit: string): string {
  return `${count} ${unit}${count === 1 ? "" : "s"}`;
}

function isoDay(date: Date): string {
  return date.toISOString().slice(0, 10);
}

function isoSecond(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}
