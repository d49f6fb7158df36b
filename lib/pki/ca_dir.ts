/**
 * The CA directory of `reclog certs`: `init` makes a CA (`ca.pem`, `ca.key`)
 * and the VPS's server certificate (`server.pem`, `server.key`) in it,
 * `client` issues `NAME.pem` / `NAME.key` signed by that CA.
 *
 * Private keys are created with mode 0600 (never widened then narrowed),
 * certificates with 0644, and no existing file is replaced without `force`.
 * Mistakes throw {@linkcode ConfigError} with a one-line message naming the
 * flag or file.
 *
 * @module
 */

import { join, resolve } from "node:path";
import { ConfigError } from "../cli/flags.ts";
import { describeFsError } from "../util/errors.ts";
import { formatHostPort } from "../util/address.ts";
import { pathExists, writeFilesAtomic } from "../state/atomic_file.ts";
import {
  type CertificateInfo,
  createCa,
  describeCertificate,
  escapeDnValue,
  issueCertificate,
  type Issued,
  normalizeIpAddress,
} from "./pki.ts";
import { isoDay, readCertificates } from "./describe.ts";
import { DEFAULT_PORT, shellQuote } from "./deployment.ts";

/** Validity of the CA in days (or the server certificate's, if longer). */
export const CA_DAYS = 3650;
/** Default validity of server and client certificates in days. */
export const LEAF_DAYS = 825;
const RESERVED_NAMES = new Set(["ca", "server"]);

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
  /** Existing files that were replaced. */
  replaced: string[];
  /** Files written. */
  files: WrittenFile[];
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
  /** Existing files that were replaced. */
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
 * import { initCa } from "./ca_dir.ts";
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
  const nameAsIp = normalizeIpAddress(unbracket(name));
  if (nameAsIp) ipAddresses.push(nameAsIp);
  else if (isDnsName(name)) dnsNames.push(name);
  else {
    throw new ConfigError(
      `--server-name '${options.serverName}': expected a DNS name such as vps.example.org (or an IP address)`,
    );
  }
  for (const raw of options.ipAddresses ?? []) {
    const ip = normalizeIpAddress(unbracket(raw.trim()));
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
    subject: `CN=reclog CA for ${escapeDnValue(name)}`,
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
  const files = await writeIssued(dir, [["ca", ca], ["server", server]]);
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

/**
 * Issues a client certificate `NAME.pem` / `NAME.key` in `options.dir`,
 * signed by the CA there (`ca.pem`, `ca.key`).
 *
 * @example Issue a certificate for the home machine
 * ```ts
 * import { issueClient } from "./ca_dir.ts";
 * const result = await issueClient({ dir: "pki", name: "home" });
 * console.log(result.files.map((file) => file.path));
 * ```
 */
export async function issueClient(options: ClientOptions): Promise<ClientResult> {
  const name = options.name;
  checkClientName(name);
  const dir = resolve(options.dir);
  const shownDir = options.dir;
  const caCertPath = join(shownDir, "ca.pem");
  const caKeyPath = join(shownDir, "ca.key");
  const caKeyPem = await readCaFile(caKeyPath, async (error) => {
    if (
      error instanceof Deno.errors.NotFound &&
      await pathExists(join(dir, "ca.pem")).catch(() => false)
    ) {
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
  const files = await writeIssued(dir, [[name, client]]);
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

function checkClientName(name: string): void {
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
 * Writes `NAME.pem` (0644) and `NAME.key` (0600) for each pair with
 * {@linkcode writeFilesAtomic}: every temporary file is created with its
 * final mode and written before the first rename, so a failure leaves no
 * half-written set and a key is never readable by others, not even for a
 * moment.
 */
async function writeIssued(dir: string, items: [string, Issued][]): Promise<WrittenFile[]> {
  const files = items.flatMap(([name, issued]) => [
    { path: join(dir, `${name}.pem`), data: issued.certPem, mode: 0o644 },
    { path: join(dir, `${name}.key`), data: issued.keyPem, mode: 0o600 },
  ]);
  try {
    await writeFilesAtomic(files, { sync: true });
  } catch (error) {
    throw new Error(`Cannot write into '${dir}': ${describeFsError(error)}`);
  }
  return files.map(({ path, mode }) => ({ path, mode }));
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

/** `host:port` of the server certificate's first SAN, for `pull --server`. */
async function serverAddress(serverPem: string): Promise<string | undefined> {
  try {
    const [info] = await readCertificates(serverPem);
    const name = info?.subjectAltNames[0]?.replace(/^(DNS|IP):/, "");
    return name ? formatHostPort({ host: name, port: DEFAULT_PORT }) : undefined;
  } catch {
    return undefined;
  }
}

function unbracket(value: string): string {
  return value.replace(/^\[(.*)\]$/, "$1");
}

function isDnsName(name: string): boolean {
  if (name.length === 0 || name.length > 253) return false;
  return name.split(".").every((label) => /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/.test(label));
}
