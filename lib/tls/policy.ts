/**
 * TLS policy: loading and checking `--cert`, `--key` and `--ca`, the options
 * both ends hand to `node:tls` (TLS 1.3 only, client certificate required),
 * and the server's extra checks on the client certificate (`--issuer`,
 * `--allow-cn`, `--allow-fingerprint`).
 *
 * @module
 */

import { createPrivateKey, X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import { checkServerIdentity, type TLSSocket } from "node:tls";
import { ConfigError, readFlagFile } from "../cli/flags.ts";
import { errorMessage } from "../util/errors.ts";

/** Paths of the certificate, key and CA bundle, as given by flags. */
export interface TlsFiles {
  /** `--cert`: this side's certificate (PEM). */
  cert: string;
  /** `--key`: its private key (PEM). */
  key: string;
  /** `--ca`: the CA certificate(s) the peer must chain to (PEM). */
  ca: string;
}

/** Loaded, checked TLS material. */
export interface TlsMaterial {
  /** Certificate PEM. */
  cert: string;
  /** Private key PEM. */
  key: string;
  /** CA bundle PEM. */
  ca: string;
  /** End of the certificate's validity. */
  notAfter: Date;
  /** The CA certificates of the bundle, parsed. */
  authorities: X509Certificate[];
  /** The paths it came from. */
  files: TlsFiles;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * Reads `--cert`, `--key` and `--ca`, and checks that the key matches the
 * certificate, that the certificate chains to a CA in `--ca`, and that it has
 * not expired. Every failure is a {@linkcode ConfigError} naming the flag.
 *
 * @example Load the server's material
 * ```ts
 * import { loadTlsMaterial } from "./policy.ts";
 * const material = await loadTlsMaterial({
 *   cert: "server.pem",
 *   key: "server.key",
 *   ca: "ca.pem",
 * });
 * ```
 */
export async function loadTlsMaterial(files: TlsFiles): Promise<TlsMaterial> {
  // Read all three, then report the first failure in flag order (not whichever read lost the race).
  const results = await Promise.allSettled([
    readFlagFile("--cert", files.cert),
    readFlagFile("--key", files.key),
    readFlagFile("--ca", files.ca),
  ]);
  const failed = results.find((result) => result.status === "rejected");
  if (failed) throw failed.reason;
  const [cert, key, ca] = results.map((result) => (result as PromiseFulfilledResult<string>).value);
  const certificate = parseCertificate(cert, "--cert", files.cert);
  const authorities = (ca.match(PEM_CERT) ?? []).map((pem) =>
    parseCertificate(pem, "--ca", files.ca)
  );
  if (authorities.length === 0) {
    throw new ConfigError(`Cannot use --ca '${files.ca}': no PEM certificate in it`);
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (error) {
    throw new ConfigError(
      `Cannot use --key '${files.key}': not a PEM private key (${errorMessage(error)})`,
    );
  }
  if (!certificate.checkPrivateKey(privateKey)) {
    throw new ConfigError(
      `--key '${files.key}' does not match --cert '${files.cert}' (they are not a pair)`,
    );
  }
  if (!authorities.some((authority) => signedBy(certificate, authority))) {
    throw new ConfigError(
      `--cert '${files.cert}' is not signed by --ca '${files.ca}' (issuer: ${
        certificate.issuer.replaceAll("\n", ",")
      })`,
    );
  }
  const notAfter = new Date(certificate.validTo);
  if (notAfter.getTime() < Date.now()) {
    throw new ConfigError(
      `--cert '${files.cert}' expired on ${notAfter.toISOString().slice(0, 10)}`,
    );
  }
  return { cert, key, ca, notAfter, authorities, files };
}

function parseCertificate(pem: string, flag: string, path: string): X509Certificate {
  const first = pem.match(PEM_CERT)?.[0];
  if (!first) throw new ConfigError(`Cannot use ${flag} '${path}': no PEM certificate in it`);
  try {
    return new X509Certificate(first);
  } catch (error) {
    throw new ConfigError(`Cannot use ${flag} '${path}': ${errorMessage(error)}`);
  }
}

function signedBy(certificate: X509Certificate, authority: X509Certificate): boolean {
  try {
    return certificate.checkIssued(authority) && certificate.verify(authority.publicKey);
  } catch {
    return false;
  }
}

/** Time allowed for a TLS handshake to finish, in milliseconds. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * `node:tls` server options: TLS 1.3 only, a client certificate requested
 * and verified against the CA bundle.
 *
 * `rejectUnauthorized` is off on purpose: Deno's node:tls reports a refused
 * certificate only as "socket hang up", so the server lets the handshake
 * finish, then {@linkcode checkPeer} refuses any client that is not
 * `authorized` (chain, validity) before a single byte of log data, with a
 * precise reason for the log and for the client.
 *
 * @example Create a server
 * ```ts
 * import tls from "node:tls";
 * import { loadTlsMaterial, serverTlsOptions } from "./policy.ts";
 * const material = await loadTlsMaterial({ cert: "s.pem", key: "s.key", ca: "ca.pem" });
 * const server = tls.createServer(serverTlsOptions(material));
 * ```
 */
export function serverTlsOptions(material: TlsMaterial): import("node:tls").TlsOptions {
  return {
    cert: material.cert,
    key: material.key,
    ca: material.ca,
    requestCert: true,
    rejectUnauthorized: false,
    minVersion: "TLSv1.3",
    handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
  };
}

/**
 * `node:tls` client options: TLS 1.3 only, this side's certificate, the server
 * verified against the CA bundle and `serverName`.
 *
 * @example Connect to a server
 * ```ts
 * import tls from "node:tls";
 * import { clientTlsOptions, loadTlsMaterial } from "./policy.ts";
 * const material = await loadTlsMaterial({ cert: "c.pem", key: "c.key", ca: "ca.pem" });
 * const socket = tls.connect({
 *   host: "127.0.0.1",
 *   port: 6514,
 *   ...clientTlsOptions(material, "vps.example.org"),
 * });
 * ```
 */
export function clientTlsOptions(
  material: TlsMaterial,
  serverName: string,
): import("node:tls").ConnectionOptions {
  const options = {
    cert: material.cert,
    key: material.key,
    ca: material.ca,
    minVersion: "TLSv1.3",
    rejectUnauthorized: true,
  } as const;
  if (isIP(serverName) === 0) return { ...options, servername: serverName };
  // node:tls refuses an IP address as SNI: check it against the IP SANs instead.
  return {
    ...options,
    checkServerIdentity: (_host, cert) => checkServerIdentity(serverName, cert),
  };
}

/** Extra conditions on a client certificate, beyond chaining to `--ca`. */
export interface PeerPolicy {
  /** `--issuer`: the exact issuer DN required, as attribute list. */
  issuer?: DistinguishedName;
  /** `--allow-cn`: allowed subject common names (empty: any). */
  allowCn: string[];
  /** `--allow-fingerprint`: allowed SHA-256 fingerprints, lower-case hex (empty: any). */
  allowFingerprint: string[];
}

/** A distinguished name as ordered `TYPE=value` attributes. */
export type DistinguishedName = Array<[type: string, value: string]>;

const ATTRIBUTE_ALIASES: Record<string, string> = {
  COMMONNAME: "CN",
  ORGANIZATIONNAME: "O",
  ORGANIZATIONALUNITNAME: "OU",
  COUNTRYNAME: "C",
  LOCALITYNAME: "L",
  STATEORPROVINCENAME: "ST",
  EMAILADDRESS: "EMAILADDRESS",
  E: "EMAILADDRESS",
  DOMAINCOMPONENT: "DC",
};

/**
 * Parses a DN in RFC 4514 form (`CN=My CA,O=Example`) or OpenSSL's slash form
 * (`/O=Example/CN=My CA`). Attribute order does not matter when comparing.
 *
 * @example Parse an issuer
 * ```ts
 * import { parseDn } from "./policy.ts";
 * parseDn("/O=Example/CN=My CA", "--issuer"); // [["O","Example"],["CN","My CA"]]
 * ```
 */
export function parseDn(value: string, flag: string): DistinguishedName {
  const slash = value.startsWith("/");
  const parts = splitUnescaped(slash ? value.slice(1) : value, slash ? "/" : ",+");
  const dn: DistinguishedName = [];
  for (const part of parts) {
    const eq = part.indexOf("=");
    const type = part.slice(0, eq).trim().toUpperCase();
    const raw = part.slice(eq + 1);
    if (eq < 1 || !/^[A-Z][A-Z0-9-]*$|^\d+(\.\d+)+$/.test(type) || raw.trim() === "") {
      throw new ConfigError(
        `${flag} '${value}': expected a DN such as 'CN=My CA,O=Example' or '/O=Example/CN=My CA'`,
      );
    }
    dn.push([ATTRIBUTE_ALIASES[type] ?? type, unescapeDnValue(raw.trim())]);
  }
  return dn;
}

function splitUnescaped(text: string, separators: string): string[] {
  const parts: string[] = [];
  let current = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === "\\" && i + 1 < text.length) {
      current += c + text[++i];
    } else if (separators.includes(c)) {
      parts.push(current);
      current = "";
    } else {
      current += c;
    }
  }
  parts.push(current);
  return parts;
}

function unescapeDnValue(value: string): string {
  return value.replace(
    /\\([0-9a-fA-F]{2}|.)/g,
    (_, escaped: string) =>
      escaped.length === 2 ? String.fromCharCode(parseInt(escaped, 16)) : escaped,
  );
}

/**
 * Normalizes a SHA-256 fingerprint (`AB:CD:..`, `abcd..`, `sha256:..`) to
 * lower-case hex without separators, or throws naming the flag.
 *
 * @example Normalize a fingerprint from openssl
 * ```ts
 * import { parseFingerprint } from "./policy.ts";
 * parseFingerprint("sha256:" + "AB:".repeat(31) + "AB", "--allow-fingerprint");
 * ```
 */
export function parseFingerprint(value: string, flag: string): string {
  const hex = value.replace(/^sha256[:=]/i, "").replace(/[:\s]/g, "").toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) {
    throw new ConfigError(`${flag} '${value}': expected a SHA-256 fingerprint (64 hex digits)`);
  }
  return hex;
}

/** What the server knows of an accepted TLS client. */
export interface PeerIdentity {
  /** Subject common name. */
  commonName: string;
  /** Subject DN as text. */
  subject: string;
  /** Issuer DN as text. */
  issuer: string;
  /** SHA-256 fingerprint, lower-case hex. */
  fingerprint: string;
}

/**
 * Reads the verified client certificate of a TLS socket.
 *
 * @example Identify a peer
 * ```ts
 * import type { TLSSocket } from "node:tls";
 * import { peerIdentity } from "./policy.ts";
 * declare const socket: TLSSocket;
 * console.log(peerIdentity(socket)?.commonName);
 * ```
 */
export function peerIdentity(socket: TLSSocket): PeerIdentity | undefined {
  const cert = socket.getPeerCertificate();
  if (!cert || !cert.fingerprint256) return undefined;
  const toText = (name: Record<string, string | string[]> | undefined) =>
    Object.entries(name ?? {}).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("+") : v}`)
      .join(",");
  const cn = cert.subject?.CN;
  return {
    commonName: Array.isArray(cn) ? cn[0] ?? "" : cn ?? "",
    subject: toText(cert.subject as unknown as Record<string, string>),
    issuer: toText(cert.issuer as unknown as Record<string, string>),
    fingerprint: cert.fingerprint256.replace(/:/g, "").toLowerCase(),
  };
}

/**
 * Applies `--issuer`, `--allow-cn` and `--allow-fingerprint` to a verified
 * client; returns the reason for refusing it, or undefined to accept.
 *
 * @example Check a client
 * ```ts
 * import type { TLSSocket } from "node:tls";
 * import { checkPeer } from "./policy.ts";
 * declare const socket: TLSSocket;
 * const reason = checkPeer(socket, { allowCn: ["home"], allowFingerprint: [] });
 * if (reason) socket.destroy();
 * ```
 */
export function checkPeer(
  socket: TLSSocket,
  policy: PeerPolicy,
  authorities: X509Certificate[] = [],
): string | undefined {
  if (!socket.authorized) return diagnose(socket, authorities);
  const peer = peerIdentity(socket);
  if (!peer) return "no client certificate";
  const raw = socket.getPeerCertificate().raw;
  const notLeaf = raw ? clientLeafProblem(raw) : "no client certificate";
  if (notLeaf) return notLeaf;
  if (policy.issuer) {
    const issuer = socket.getPeerCertificate().issuer as unknown as Record<string, string>;
    if (!sameDn(policy.issuer, issuer)) return `issuer '${peer.issuer}' is not --issuer`;
  }
  if (policy.allowCn.length > 0 && !policy.allowCn.includes(peer.commonName)) {
    return `subject CN '${peer.commonName}' is not in --allow-cn`;
  }
  if (policy.allowFingerprint.length > 0 && !policy.allowFingerprint.includes(peer.fingerprint)) {
    return `fingerprint ${peer.fingerprint} is not in --allow-fingerprint`;
  }
  return undefined;
}

/** Why a client certificate did not verify, in words. */
function diagnose(socket: TLSSocket, authorities: X509Certificate[]): string {
  const peer = socket.getPeerCertificate();
  if (!peer?.raw) return "no client certificate";
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(peer.raw);
  } catch {
    return "unreadable client certificate";
  }
  if (!authorities.some((authority) => signedBy(certificate, authority))) {
    return "client certificate not signed by --ca";
  }
  const now = Date.now();
  if (new Date(certificate.validTo).getTime() < now) {
    return `client certificate expired on ${new Date(certificate.validTo).toISOString()}`;
  }
  if (new Date(certificate.validFrom).getTime() > now) {
    return "client certificate not valid yet";
  }
  const notLeaf = clientLeafProblem(certificate.raw);
  if (notLeaf) return notLeaf;
  return `client certificate rejected (${String(socket.authorizationError ?? "unknown")})`;
}

function sameDn(wanted: DistinguishedName, actual: Record<string, string | string[]>): boolean {
  const have: string[] = [];
  for (const [type, value] of Object.entries(actual)) {
    const key = ATTRIBUTE_ALIASES[type.toUpperCase()] ?? type.toUpperCase();
    for (const v of Array.isArray(value) ? value : [value]) have.push(`${key}=${v}`);
  }
  const want = wanted.map(([type, value]) => `${type}=${value}`);
  return have.length === want.length && want.sort().join("\n") === have.sort().join("\n");
}

const OID_BASIC_CONSTRAINTS = "2.5.29.19";
const OID_EXTENDED_KEY_USAGE = "2.5.29.37";
const OID_ANY_EXTENDED_KEY_USAGE = "2.5.29.37.0";
const EXTENDED_KEY_USAGES: Record<string, string> = {
  "1.3.6.1.5.5.7.3.1": "serverAuth",
  "1.3.6.1.5.5.7.3.2": "clientAuth",
  "1.3.6.1.5.5.7.3.3": "codeSigning",
  "1.3.6.1.5.5.7.3.4": "emailProtection",
  "1.3.6.1.5.5.7.3.8": "timeStamping",
  "1.3.6.1.5.5.7.3.9": "OCSPSigning",
};

/**
 * Why a certificate cannot be a TLS client's own (leaf) certificate, or
 * undefined when it can: basicConstraints, where present, must say CA:FALSE,
 * and extendedKeyUsage, where present, must allow clientAuth (or any usage).
 *
 * @example Refuse a CA certificate presented by a client
 * ```ts
 * import { X509Certificate } from "node:crypto";
 * import { clientLeafProblem } from "./policy.ts";
 * declare const pem: string;
 * const reason = clientLeafProblem(new X509Certificate(pem).raw);
 * if (reason) console.log(`refused: ${reason}`);
 * ```
 */
export function clientLeafProblem(der: Uint8Array): string | undefined {
  let extensions: Map<string, Uint8Array>;
  try {
    extensions = certificateExtensions(der);
  } catch {
    return "unreadable client certificate";
  }
  const basic = extensions.get(OID_BASIC_CONSTRAINTS);
  if (basic) {
    const sequence = derRead(basic, 0, 0x30);
    const first = sequence.contentStart < sequence.end
      ? derRead(basic, sequence.contentStart)
      : undefined;
    if (first?.tag === 0x01 && basic[first.contentStart] !== 0x00) {
      return "client certificate is a CA certificate (basicConstraints CA:TRUE), not a client's own";
    }
  }
  const eku = extensions.get(OID_EXTENDED_KEY_USAGE);
  if (eku) {
    const usages: string[] = [];
    const sequence = derRead(eku, 0, 0x30);
    for (let pos = sequence.contentStart; pos < sequence.end;) {
      const oid = derRead(eku, pos, 0x06);
      usages.push(decodeOid(eku.subarray(oid.contentStart, oid.end)));
      pos = oid.end;
    }
    if (!usages.includes("1.3.6.1.5.5.7.3.2") && !usages.includes(OID_ANY_EXTENDED_KEY_USAGE)) {
      const names = usages.map((oid) => EXTENDED_KEY_USAGES[oid] ?? oid).join(", ") || "none";
      return `client certificate's extendedKeyUsage does not allow clientAuth (it allows: ${names})`;
    }
  }
  return undefined;
}

interface DerElement {
  tag: number;
  contentStart: number;
  end: number;
}

/** Reads the DER element at `pos`; throws on anything malformed or on a tag other than `tag`. */
function derRead(buf: Uint8Array, pos: number, tag?: number): DerElement {
  if (pos + 2 > buf.length) throw new RangeError("DER element past the end");
  const found = buf[pos]!;
  if (tag !== undefined && found !== tag) throw new RangeError(`DER tag ${found} is not ${tag}`);
  let length = buf[pos + 1]!;
  let contentStart = pos + 2;
  if (length & 0x80) {
    const bytes = length & 0x7f;
    if (bytes < 1 || bytes > 4 || contentStart + bytes > buf.length) {
      throw new RangeError("bad DER length");
    }
    length = 0;
    for (let i = 0; i < bytes; i++) length = length * 256 + buf[contentStart + i]!;
    contentStart += bytes;
  }
  const end = contentStart + length;
  if (end > buf.length) throw new RangeError("DER element past the end");
  return { tag: found, contentStart, end };
}

/** The extensions of an X.509 certificate (DER): OID → the extnValue's contents. */
function certificateExtensions(der: Uint8Array): Map<string, Uint8Array> {
  const extensions = new Map<string, Uint8Array>();
  const certificate = derRead(der, 0, 0x30);
  const tbs = derRead(der, certificate.contentStart, 0x30);
  for (let pos = tbs.contentStart; pos < tbs.end;) {
    const field = derRead(der, pos);
    pos = field.end;
    if (field.tag !== 0xa3) continue; // [3] extensions
    const list = derRead(der, field.contentStart, 0x30);
    for (let at = list.contentStart; at < list.end;) {
      const extension = derRead(der, at, 0x30);
      at = extension.end;
      const oid = derRead(der, extension.contentStart, 0x06);
      let next = derRead(der, oid.end);
      if (next.tag === 0x01) next = derRead(der, next.end); // critical
      if (next.tag !== 0x04) throw new RangeError("extension value is not an OCTET STRING");
      extensions.set(
        decodeOid(der.subarray(oid.contentStart, oid.end)),
        der.subarray(next.contentStart, next.end),
      );
    }
  }
  return extensions;
}

function decodeOid(bytes: Uint8Array): string {
  const parts: number[] = [];
  let value = 0;
  for (const byte of bytes) {
    value = value * 128 + (byte & 0x7f);
    if (byte & 0x80) continue;
    if (parts.length === 0) {
      parts.push(value < 80 ? Math.floor(value / 40) : 2, value < 80 ? value % 40 : value - 80);
    } else parts.push(value);
    value = 0;
  }
  return parts.join(".");
}
