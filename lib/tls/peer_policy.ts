/**
 * The server's checks on a client certificate beyond chaining to `--ca`:
 * `--issuer`, `--allow-cn`, `--allow-fingerprint`, the leaf certificate's
 * usage, and a refusal reason in words for the log.
 *
 * @module
 */

import { X509Certificate } from "node:crypto";
import type { TLSSocket } from "node:tls";
import { ConfigError } from "../cli/flags.ts";
import { clientLeafProblem, signedBy } from "./certificate.ts";

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
 * import { parseDn } from "./peer_policy.ts";
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
 * import { parseFingerprint } from "./peer_policy.ts";
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
 * import { peerIdentity } from "./peer_policy.ts";
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
 * import { checkPeer } from "./peer_policy.ts";
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
