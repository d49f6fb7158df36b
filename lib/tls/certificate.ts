/**
 * Checks on one X.509 certificate: who signed it, and whether it can be a
 * TLS client's own (leaf) certificate (read from its DER extensions).
 *
 * @module
 */

import type { X509Certificate } from "node:crypto";

/**
 * Whether `authority` issued `certificate` and its signature verifies;
 * false on any error.
 *
 * @example Check a chain of one
 * ```ts
 * import { X509Certificate } from "node:crypto";
 * import { signedBy } from "./certificate.ts";
 * declare const certPem: string, caPem: string;
 * signedBy(new X509Certificate(certPem), new X509Certificate(caPem));
 * ```
 */
export function signedBy(certificate: X509Certificate, authority: X509Certificate): boolean {
  try {
    return certificate.checkIssued(authority) && certificate.verify(authority.publicKey);
  } catch {
    return false;
  }
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
 * import { clientLeafProblem } from "./certificate.ts";
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
