/**
 * TLS policy: loading and checking `--cert`, `--key` and `--ca`, and the
 * options both ends hand to `node:tls` (TLS 1.3 only, client certificate
 * required). The server's extra checks on the client certificate
 * (`--issuer`, `--allow-cn`, `--allow-fingerprint`) are in peer_policy.ts.
 *
 * @module
 */

import { createPrivateKey, X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import { checkServerIdentity } from "node:tls";
import { ConfigError, readFlagFile } from "../cli/flags.ts";
import { errorMessage } from "../util/errors.ts";
import { signedBy } from "./certificate.ts";

// Importers outside lib/tls/ still take these from here; new code imports peer_policy.ts.
export {
  checkPeer,
  parseDn,
  parseFingerprint,
  peerIdentity,
  type PeerPolicy,
} from "./peer_policy.ts";

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
