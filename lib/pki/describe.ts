/**
 * Certificates in words: reading a PEM (or DER) file and describing each
 * certificate in it, as `reclog certs show` prints it, and what one is fit
 * for (a CA, a TLS server, a TLS client).
 *
 * @module
 */

import { ConfigError } from "../cli/flags.ts";
import { describeFsError } from "../util/errors.ts";
import { type CertificateInfo, describeCertificate } from "./pki.ts";

export type { CertificateInfo };

const DAY_MS = 86_400_000;

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
 * Reads every certificate in a PEM (or DER) file and describes it.
 * Throws {@linkcode ConfigError} when the file cannot be read or holds no
 * certificate.
 *
 * @example Describe the server certificate
 * ```ts
 * import { readCertificates } from "./describe.ts";
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

/** Options for {@linkcode formatCertificate}. */
export interface FormatCertificateOptions {
  /**
   * The time the days left are counted from, in ms since the epoch.
   * @default {Date.now()}
   */
  now?: number;
}

/**
 * What `reclog certs show` prints about one certificate: one `Label: value`
 * row per line, the first naming `file`.
 *
 * @example Show the server certificate
 * ```ts
 * import { formatCertificate, readCertificates } from "./describe.ts";
 * const [info] = await readCertificates("pki/server.pem");
 * console.log(formatCertificate(info!, "pki/server.pem"));
 * ```
 */
export function formatCertificate(
  info: CertificateInfo,
  file: string,
  options: FormatCertificateOptions = {},
): string {
  const now = options.now ?? Date.now();
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

/**
 * What a certificate is fit for, in plain words: a CA, a TLS server
 * (`serve`/`listen --cert`), a TLS client (`pull`/`send --cert`), or both.
 *
 * @example Describe the server certificate's purpose
 * ```ts
 * import { fitFor, readCertificates } from "./describe.ts";
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
 * A date as `YYYY-MM-DD` (UTC): how validity ends are printed.
 *
 * @example A day
 * ```ts
 * import { isoDay } from "./describe.ts";
 * isoDay(new Date("2030-01-02T03:04:05Z")); // "2030-01-02"
 * ```
 */
export function isoDay(date: Date): string {
  return date.toISOString().slice(0, 10);
}

function isoSecond(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

function plural(count: number, unit: string): string {
  return `${count} ${unit}${count === 1 ? "" : "s"}`;
}
