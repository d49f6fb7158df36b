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
 * This file is the command line; the CA directory is lib/pki/ca_dir.ts, the
 * descriptions lib/pki/describe.ts, the next-step texts lib/pki/deployment.ts.
 *
 * @module
 */

import { ConfigError, parsePositiveInt, parseRoleArgs } from "../cli/flags.ts";
import { CA_DAYS, initCa, issueClient, LEAF_DAYS } from "../pki/ca_dir.ts";
import { formatCertificate, readCertificates } from "../pki/describe.ts";
import { clientReport, initReport } from "../pki/deployment.ts";

const MAX_DAYS = 36_500;

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

type ParseOptions = Parameters<typeof parseRoleArgs>[2];

/** The flags of `init` and `client` both. */
const DIR_FLAGS = {
  dir: { type: "string" },
  days: { type: "string" },
  force: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

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
    return print(USAGE);
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
  if (wantsHelp(args)) return print(INIT_USAGE);
  const { values } = parseSub("init", args, {
    ...DIR_FLAGS,
    "server-name": { type: "string" },
    ip: { type: "string", multiple: true },
  });
  const result = await initCa({
    dir: requireFlag("init", "--dir", values.dir, "DIR"),
    serverName: requireFlag("init", "--server-name", values["server-name"], "NAME"),
    ipAddresses: (values.ip ?? []).flatMap((value: string) => value.split(",")),
    days: parseDays(values.days),
    force: values.force ?? false,
  });
  return print(initReport(result));
}

async function runClient(args: string[]): Promise<number> {
  if (wantsHelp(args)) return print(CLIENT_USAGE);
  const { values, positionals } = parseSub("client", args, DIR_FLAGS, true);
  if (positionals.length !== 1) {
    throw new ConfigError(
      positionals.length === 0
        ? "client: missing NAME, e.g. 'reclog certs client home --dir DIR'"
        : `client: expected one NAME, got ${positionals.length} (${positionals.join(" ")})`,
    );
  }
  const dir = requireFlag("client", "--dir", values.dir, "DIR");
  const name = positionals[0]!;
  const days = parseDays(values.days);
  return print(clientReport(await issueClient({ dir, name, days, force: values.force ?? false })));
}

async function runShow(args: string[]): Promise<number> {
  if (wantsHelp(args)) return print(SHOW_USAGE);
  const { positionals } = parseSub("show", args, { help: { type: "boolean", short: "h" } }, true);
  if (positionals.length !== 1) {
    throw new ConfigError(
      positionals.length === 0
        ? "show: missing FILE, e.g. 'reclog certs show DIR/server.pem'"
        : `show: expected one FILE, got ${positionals.length}`,
    );
  }
  const file = positionals[0]!;
  const infos = await readCertificates(file);
  return print(
    infos.map((info, index) =>
      formatCertificate(info, infos.length > 1 ? `${file} [${index + 1}/${infos.length}]` : file)
    ).join("\n\n"),
  );
}

/** Prints `text` to stdout; the exit code 0. */
function print(text: string): number {
  console.log(text);
  return 0;
}

/** parseRoleArgs, with the messages saying `init: ...` instead of `reclog certs init: ...`. */
function parseSub<O extends ParseOptions>(
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

function parseDays(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const days = parsePositiveInt(value, "--days");
  if (days > MAX_DAYS) throw new ConfigError(`--days '${value}': at most ${MAX_DAYS} (100 years)`);
  return days;
}
