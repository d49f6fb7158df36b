/**
 * A small certificate authority: X.509 v3, ECDSA P-256, made with WebCrypto
 * and `@peculiar/x509`. Used by `reclog certs` and by the tests.
 *
 * @module
 */

import "reflect-metadata";
import * as x509 from "@peculiar/x509";

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
   * IP addresses for the SAN extension (servers).
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
    ...(options.ipAddresses ?? []).map((value) => ({ type: "ip" as const, value })),
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
    issuer: caCert.subject,
    notBefore,
    notAfter,
    signingAlgorithm: ALGORITHM,
    publicKey: keys.publicKey,
    signingKey: caKey,
    extensions,
  });
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
    fingerprint: Array.from(digest, (b) => b.toString(16).padStart(2, "0").toUpperCase())
      .join(":"),
    usages,
    isCa: cert.getExtension(x509.BasicConstraintsExtension)?.ca ?? false,
    version: 3,
  };
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
  const der = x509.PemConverter.decode(pem)[0];
  if (!der) throw new TypeError("Cannot read the CA key: no PEM block found");
  return await crypto.subtle.importKey("pkcs8", der, ALGORITHM, false, ["sign"]);
}

function escapeDnValue(value: string): string {
  return value.replace(/([,+"\\<>;=])/g, "\\$1");
}
