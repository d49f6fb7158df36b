/**
 * A small certificate authority: X.509 v3, ECDSA P-256, made with WebCrypto
 * and `@peculiar/x509`. Used by `reclog certs` and by the tests.
 *
 * @module
 */

import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { isIPv4, isIPv6 } from "node:net";

const ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const DAY_MS = 86_400_000;

x509.cryptoProvider.set(crypto);

/** A certificate and its private key, both PEM. */
export interface Issued {
  /** The certificate, PEM. */
  certPem: string;
  /** The PKCS#8 private key, PEM. */
  keyPem: string;
}

/** Options for {@linkcode createCa}. */
export interface CaOptions {
  /**
   * Subject of the CA, RFC 4514 (`CN=..,O=..`).
   * @default {"CN=reclog CA"}
   */
  subject?: string;
  /**
   * Validity in days from now.
   * @default {3650}
   */
  days?: number;
  /**
   * Start of validity (for tests of expired certificates).
   * @default {now minus one hour}
   */
  notBefore?: Date;
}

/**
 * Makes a self-signed CA certificate (basicConstraints CA:TRUE, keyCertSign).
 *
 * @example Make a CA
 * ```ts
 * import { createCa } from "./pki.ts";
 * const ca = await createCa({ subject: "CN=home CA" });
 * ```
 */
export async function createCa(options: CaOptions = {}): Promise<Issued> {
  const keys = await crypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]);
  const { notBefore, notAfter } = validity(options.notBefore, options.days ?? 3650);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: options.subject ?? "CN=reclog CA",
    notBefore,
    notAfter,
    signingAlgorithm: ALGORITHM,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString("pem"), keyPem: await exportKey(keys.privateKey) };
}

/** Options for {@linkcode issueCertificate}. */
export interface IssueOptions {
  /** `server` adds serverAuth and the SANs; `client` adds clientAuth. */
  kind: "server" | "client";
  /** Subject common name. */
  commonName: string;
  /**
   * DNS names for the SAN extension (servers).
   * @default {[]}
   */
  dnsNames?: string[];
  /**
   * IP addresses for the SAN extension (servers), IPv4 or IPv6; see
   * {@linkcode normalizeIpAddress} for what is accepted.
   * @default {[]}
   */
  ipAddresses?: string[];
  /**
   * Validity in days from now.
   * @default {825}
   */
  days?: number;
  /**
   * Start of validity.
   * @default {now minus one hour}
   */
  notBefore?: Date;
}

/**
 * Issues a server or client certificate signed by `ca`.
 *
 * @example Issue a server certificate
 * ```ts
 * import { createCa, issueCertificate } from "./pki.ts";
 * const ca = await createCa();
 * const server = await issueCertificate(ca, {
 *   kind: "server",
 *   commonName: "vps.example.org",
 *   dnsNames: ["vps.example.org"],
 * });
 * ```
 */
export async function issueCertificate(ca: Issued, options: IssueOptions): Promise<Issued> {
  const caCert = new x509.X509Certificate(ca.certPem);
  const caKey = await importKey(ca.keyPem);
  const keys = await crypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]);
  const { notBefore, notAfter } = validity(options.notBefore, options.days ?? 825);
  const names: x509.JsonGeneralNames = [
    ...(options.dnsNames ?? []).map((value) => ({ type: "dns" as const, value })),
    ...(options.ipAddresses ?? []).map((value) => {
      const groups = ipGroups(value);
      if (!groups) throw new TypeError(`Not an IP address: '${value}'`);
      // The SAN encoder only reads dotted IPv4 and eight-group IPv6 reliably
      // (it mangles `::ffff:10.0.0.1`), so hand it exactly those forms.
      const text = groups.length === 4
        ? groups.join(".")
        : groups.map((group) => group.toString(16)).join(":");
      return { type: "ip" as const, value: text };
    }),
  ];
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(
      x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement,
      true,
    ),
    new x509.ExtendedKeyUsageExtension(
      [
        options.kind === "server"
          ? x509.ExtendedKeyUsage.serverAuth
          : x509.ExtendedKeyUsage.clientAuth,
      ],
      false,
    ),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(caCert),
  ];
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names, false));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${escapeDnValue(options.commonName)}`,
    issuer: caCert.subjectName,
    notBefore,
    notAfter,
    signingAlgorithm: ALGORITHM,
    publicKey: keys.publicKey,
    signingKey: caKey,
    extensions,
  });
  if (!(await cert.verify({ publicKey: caCert, signatureOnly: true }))) {
    throw new TypeError("The CA private key does not belong to the CA certificate");
  }
  return { certPem: cert.toString("pem"), keyPem: await exportKey(keys.privateKey) };
}

/** What `reclog certs show` prints about a certificate. */
export interface CertificateInfo {
  /** Subject DN, RFC 4514. */
  subject: string;
  /** Issuer DN, RFC 4514. */
  issuer: string;
  /** Subject alternative names, e.g. `DNS:vps.example.org`, `IP:10.0.0.1`. */
  subjectAltNames: string[];
  /** Start of validity. */
  notBefore: Date;
  /** End of validity. */
  notAfter: Date;
  /** SHA-256 fingerprint, colon-separated upper-case hex (as openssl prints). */
  fingerprint: string;
  /** Key usages and extended key usages, e.g. `digitalSignature`, `clientAuth`. */
  usages: string[];
  /** Whether basicConstraints says CA:TRUE. */
  isCa: boolean;
  /** X.509 version (3 for everything reclog makes). */
  version: number;
  /** Serial number, colon-separated upper-case hex. */
  serialNumber: string;
  /** Public key algorithm, e.g. `ECDSA P-256` or `RSA 2048`. */
  keyAlgorithm: string;
}

/**
 * Describes the first certificate in a PEM text.
 *
 * @example Show a certificate
 * ```ts
 * import { createCa, describeCertificate } from "./pki.ts";
 * const info = await describeCertificate((await createCa()).certPem);
 * console.log(info.subject, info.fingerprint);
 * ```
 */
export async function describeCertificate(pem: string): Promise<CertificateInfo> {
  const cert = new x509.X509Certificate(pem);
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const subjectAltNames = (san?.names.toJSON() ?? []).map((name) =>
    `${name.type === "ip" ? "IP" : name.type.toUpperCase()}:${name.value}`
  );
  const usages: string[] = [];
  const keyUsage = cert.getExtension(x509.KeyUsagesExtension);
  if (keyUsage) {
    for (const [name, flag] of Object.entries(x509.KeyUsageFlags)) {
      if (typeof flag === "number" && (keyUsage.usages & flag) !== 0) usages.push(name);
    }
  }
  const eku = cert.getExtension(x509.ExtendedKeyUsageExtension);
  for (const usage of eku?.usages ?? []) usages.push(EKU_NAMES[String(usage)] ?? String(usage));
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", cert.rawData));
  return {
    subject: cert.subject,
    issuer: cert.issuer,
    subjectAltNames,
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    fingerprint: colonHex(digest),
    usages,
    isCa: cert.getExtension(x509.BasicConstraintsExtension)?.ca ?? false,
    version: certificateVersion(new Uint8Array(cert.rawData)),
    serialNumber: colonHex(hexBytes(cert.serialNumber)),
    keyAlgorithm: describeKeyAlgorithm(cert.publicKey.algorithm),
  };
}

/**
 * Checks an IP address and returns it in its canonical text form: dotted
 * decimal for IPv4, RFC 5952 (lower case, longest zero run as `::`) for
 * IPv6. Returns `undefined` for anything else, including IPv6 zone ids
 * (`fe80::1%eth0`), which cannot go into a certificate.
 *
 * @example Normalize addresses for a server certificate
 * ```ts
 * import { normalizeIpAddress } from "./pki.ts";
 * normalizeIpAddress("2001:DB8:0:0::1"); // "2001:db8::1"
 * normalizeIpAddress("10.0.0.1"); // "10.0.0.1"
 * normalizeIpAddress("10.0.0.256"); // undefined
 * ```
 */
export function normalizeIpAddress(value: string): string | undefined {
  const groups = ipGroups(value);
  if (!groups) return undefined;
  if (groups.length === 4) return groups.join(".");
  let best = -1;
  let bestLength = 1; // RFC 5952: never compress a single zero group
  for (let start = 0; start < 8; start++) {
    let end = start;
    while (end < 8 && groups[end] === 0) end++;
    if (end - start > bestLength) [best, bestLength] = [start, end - start];
  }
  const hex = groups.map((group) => group.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLength).join(":")}`;
}

/** Four bytes for IPv4, eight 16-bit groups for IPv6, or undefined. */
function ipGroups(value: string): number[] | undefined {
  if (isIPv4(value)) return value.split(".").map(Number);
  if (!isIPv6(value) || value.includes("%")) return undefined;
  let text = value.toLowerCase();
  const tail: number[] = [];
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    tail.push(a << 8 | b, c << 8 | d);
    text = text.slice(0, -v4[0].length);
    if (!text.endsWith("::")) text = text.slice(0, -1);
  }
  const [left, right] = text.split("::") as [string, string | undefined];
  const parse = (part: string | undefined) =>
    part ? part.split(":").map((group) => parseInt(group, 16)) : [];
  const head = parse(left);
  const rest = [...parse(right), ...tail];
  const zeros = right === undefined ? 0 : 8 - head.length - rest.length;
  const groups = [...head, ...new Array<number>(zeros).fill(0), ...rest];
  return groups.length === 8 && groups.every((group) => group >= 0 && group <= 0xffff)
    ? groups
    : undefined;
}

/** Reads the version field of a DER certificate (v1 when absent). */
function certificateVersion(der: Uint8Array): number {
  // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] EXPLICIT Version ... } ... }
  let offset = 0;
  const header = (): void => {
    offset++; // tag
    const first = der[offset++]!;
    if (first & 0x80) offset += first & 0x7f;
  };
  header(); // Certificate
  header(); // TBSCertificate
  if (der[offset] !== 0xa0) return 1;
  header(); // [0]
  if (der[offset] !== 0x02 || der[offset + 1] !== 1) return 1;
  return der[offset + 2]! + 1;
}

function describeKeyAlgorithm(algorithm: Algorithm): string {
  const details = algorithm as Algorithm & { namedCurve?: string; modulusLength?: number };
  return [details.name, details.namedCurve ?? details.modulusLength].filter((part) =>
    part !== undefined
  ).join(" ");
}

function colonHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0").toUpperCase()).join(":");
}

function hexBytes(hex: string): Uint8Array {
  const even = hex.length % 2 ? `0${hex}` : hex;
  return Uint8Array.from(even.match(/../g) ?? [], (pair) => parseInt(pair, 16));
}

const EKU_NAMES: Record<string, string> = {
  [x509.ExtendedKeyUsage.serverAuth]: "serverAuth",
  [x509.ExtendedKeyUsage.clientAuth]: "clientAuth",
};

function validity(start: Date | undefined, days: number): { notBefore: Date; notAfter: Date } {
  const notBefore = start ?? new Date(Date.now() - 3_600_000);
  return { notBefore, notAfter: new Date(notBefore.getTime() + days * DAY_MS + 3_600_000) };
}

function serial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = bytes[0]! & 0x7f | 0x10; // positive, no leading zero byte
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function exportKey(key: CryptoKey): Promise<string> {
  const der = await crypto.subtle.exportKey("pkcs8", key);
  return x509.PemConverter.encode(der, "PRIVATE KEY") + "\n";
}

async function importKey(pem: string): Promise<CryptoKey> {
  let der: ArrayBuffer | undefined;
  try {
    der = /-----BEGIN PRIVATE KEY-----/.test(pem) ? x509.PemConverter.decode(pem)[0] : undefined;
  } catch {
    der = undefined;
  }
  if (!der) throw new TypeError("Cannot read the CA key: no PKCS#8 'PRIVATE KEY' PEM block found");
  try {
    return await crypto.subtle.importKey("pkcs8", der, ALGORITHM, false, ["sign"]);
  } catch {
    throw new TypeError("Cannot read the CA key: not an ECDSA P-256 private key");
  }
}

/**
 * Escapes a value for an RFC 4514 distinguished name (`CN=...`): a backslash
 * before `,`, `+`, `"`, `\\`, `<`, `>`, `;` and `=`.
 *
 * @example A common name with a comma
 * ```ts
 * import { escapeDnValue } from "./pki.ts";
 * escapeDnValue("reclog CA for a,b"); // "reclog CA for a\\,b"
 * ```
 */
export function escapeDnValue(value: string): string {
  return value.replace(/([,+"\\<>;=])/g, "\\$1");
}
