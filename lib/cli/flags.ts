/**
 * Command-line plumbing shared by every role: the configuration error that
 * exits with code 2, `parseArgs` with friendly errors, and address parsing.
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { ParseArgsOptionsConfig } from "node:util";
import type { HostPort } from "../util/address.ts";
import { describeFsError } from "../util/errors.ts";

export type { HostPort };

/**
 * A usage or configuration mistake: printed as one line, exit code 2.
 *
 * @example Refuse a flag value
 * ```ts
 * import { ConfigError } from "./flags.ts";
 * throw new ConfigError("--listen 'x': expected HOST:PORT");
 * ```
 */
export class ConfigError extends Error {
  /** Always `"ConfigError"`. */
  override name = "ConfigError";
}

/**
 * Parses `HOST:PORT` (or `[IPV6]:PORT`).
 *
 * @example Parse an IPv6 address
 * ```ts
 * import { parseHostPort } from "./flags.ts";
 * parseHostPort("[::1]:6514", "--listen"); // { host: "::1", port: 6514 }
 * ```
 */
export function parseHostPort(value: string, flag: string): HostPort {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(value);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) {
    throw new ConfigError(`${flag} '${value}': expected HOST:PORT (or [IPV6]:PORT)`);
  }
  const host = match[1] ?? match[2]!;
  if (match[2] !== undefined && !isHostName(host)) {
    const hint = /^[a-z]+\/\//i.test(host) ? ` (did you mean '${host.replace("//", "://")}'?)` : "";
    throw new ConfigError(
      `${flag} '${value}': '${host}' is not a host name or IP address${hint}`,
    );
  }
  return { host, port };
}

/** A DNS name (letters, digits, '-', '_', dots), an IPv4 address, or `0.0.0.0`. */
function isHostName(host: string): boolean {
  return host.length <= 253 &&
    host.split(".").every((label) =>
      /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/.test(label)
    );
}

/** The parsed form of an endpoint URL such as `udp://127.0.0.1:514` or `relp://127.0.0.1:2514`. */
export type Endpoint =
  | { kind: "udp" | "tcp" | "relp"; host: string; port: number }
  | { kind: "unix"; path: string }
  | { kind: "stdout" };

/** The kinds of {@linkcode Endpoint}, as {@linkcode parseEndpoint} may accept them. */
export type EndpointKind = Endpoint["kind"];

const SCHEME_TEXT: Record<EndpointKind, string> = {
  udp: "udp://",
  tcp: "tcp://",
  relp: "relp://",
  unix: "unix://",
  stdout: "-",
};

/**
 * Parses `udp://HOST:PORT`, `tcp://HOST:PORT`, `relp://HOST:PORT`,
 * `unix:///PATH` or `-`. A bare `HOST:PORT` means `defaultKind`. Only the
 * kinds in `accept` are taken (`relp` too only where the caller lists it or
 * uses the default list); an error lists exactly those.
 *
 * @example Parse a sink URL
 * ```ts
 * import { parseEndpoint } from "./flags.ts";
 * parseEndpoint("tcp://127.0.0.1:514", "--to", "udp"); // { kind: "tcp", ... }
 * ```
 */
export function parseEndpoint(
  value: string,
  flag: string,
  defaultKind: "udp" | "tcp",
  accept: readonly EndpointKind[] = ["udp", "tcp", "relp", "unix", "stdout"],
): Endpoint {
  const expected = (): string => {
    const names = accept.map((kind) => SCHEME_TEXT[kind]);
    const list = names.length > 1
      ? `${names.slice(0, -1).join(", ")} or ${names.at(-1)}`
      : names.join("");
    return `expected ${list}`;
  };
  if (value === "-" && accept.includes("stdout")) return { kind: "stdout" };
  const scheme = /^([a-z]+):\/\/(.*)$/.exec(value);
  if (!scheme) return { kind: defaultKind, ...parseHostPort(value, flag) };
  const [, kind, rest] = scheme as unknown as [string, string, string];
  if (!accept.includes(kind as EndpointKind) || kind === "stdout") {
    throw new ConfigError(`${flag} '${value}': unknown scheme '${kind}://' (${expected()})`);
  }
  if (kind === "unix") {
    if (!rest.startsWith("/")) {
      throw new ConfigError(`${flag} '${value}': expected unix:///ABSOLUTE/PATH`);
    }
    return { kind, path: rest };
  }
  return { kind: kind as "udp" | "tcp" | "relp", ...parseHostPort(rest, flag) };
}

/**
 * `node:util` parseArgs for one role, strict, with errors turned into
 * {@linkcode ConfigError}s that name the role.
 *
 * @example Parse a role's flags
 * ```ts
 * import { parseRoleArgs } from "./flags.ts";
 * const { values } = parseRoleArgs("serve", ["--listen", ":1"], {
 *   listen: { type: "string" },
 * });
 * ```
 */
export function parseRoleArgs<const O extends ParseArgsOptionsConfig>(
  role: string,
  args: string[],
  options: O,
  allowPositionals = false,
): ReturnType<
  typeof parseArgs<{ args: string[]; options: O; allowPositionals: boolean; strict: true }>
> {
  try {
    return parseArgs({ args, options, allowPositionals, strict: true });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    // "Option '--cert' argument is ambiguous." (the next word is a flag) and
    // "Option '--cert <value>' argument missing" both mean the value is missing.
    const missing = /^Option '(?:-\w, )?(--?[\w-]+)(?: <value>)?' argument (?:is ambiguous|missing)/
      .exec(message);
    const line = missing ? `${missing[1]} needs a value` : message.split("\n")[0];
    throw new ConfigError(`reclog ${role}: ${line} (see 'reclog ${role} --help')`);
  }
}

/**
 * Parses a positive integer flag value.
 *
 * @example Parse --days
 * ```ts
 * import { parsePositiveInt } from "./flags.ts";
 * parsePositiveInt("30", "--days"); // 30
 * ```
 */
export function parsePositiveInt(value: string, flag: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1 || !Number.isSafeInteger(Number(value))) {
    throw new ConfigError(`${flag} '${value}': expected a positive whole number`);
  }
  return Number(value);
}

/**
 * Parses a byte size such as `64MiB`, `1GiB`, `512k` or `1048576`.
 *
 * @example Parse --journal-bytes
 * ```ts
 * import { parseBytes } from "./flags.ts";
 * parseBytes("64MiB", "--journal-bytes"); // 67108864
 * ```
 */
export function parseBytes(value: string, flag: string): number {
  const match = /^(\d+)\s*([kmg]?)(i?b)?$/i.exec(value);
  if (!match) {
    throw new ConfigError(`${flag} '${value}': expected a size such as 1048576, 512KiB or 64MiB`);
  }
  const unit = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[match[2]!.toLowerCase()]!;
  const bytes = Number(match[1]) * unit;
  if (bytes < 1) throw new ConfigError(`${flag} '${value}': must be at least 1 byte`);
  return bytes;
}

/**
 * Reads a file named by a flag, with an error that names the flag and file.
 *
 * @example Read a certificate
 * ```ts
 * import { readFlagFile } from "./flags.ts";
 * const pem = await readFlagFile("--cert", "server.pem");
 * ```
 */
export async function readFlagFile(flag: string, path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    throw new ConfigError(`Cannot read ${flag} '${path}': ${describeFsError(error)}`);
  }
}

/**
 * Makes sure a directory named by a flag exists (created 0700 if absent, with
 * its parents) and that files can be created in it; otherwise throws a
 * {@linkcode ConfigError} naming the flag and the path.
 *
 * @example Check the spool directory
 * ```ts
 * import { prepareDir } from "./flags.ts";
 * await prepareDir("--spool", "/var/lib/reclog/spool");
 * ```
 */
export async function prepareDir(flag: string, dir: string, what = dir): Promise<void> {
  try {
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (error) {
    const reason = error instanceof Deno.errors.AlreadyExists
      ? "it exists and is not a directory"
      : describeFsError(error);
    throw new ConfigError(`Cannot use ${flag} '${what}': ${reason}`);
  }
  const probe = `${dir}/.reclog-probe-${crypto.randomUUID().slice(0, 8)}`;
  try {
    await Deno.writeFile(probe, new Uint8Array(), { createNew: true, mode: 0o600 });
  } catch (error) {
    throw new ConfigError(`Cannot write into ${flag} '${what}': ${describeFsError(error)}`);
  }
  await Deno.remove(probe).catch(() => {});
}

/**
 * Prints a role's usage when `--help` was given; the role then exits 0.
 *
 * @example The first line of a role's run()
 * ```ts
 * import { printedHelp } from "./flags.ts";
 * const values = { help: true };
 * if (printedHelp(values, "Usage: reclog x")) Deno.exit(0);
 * ```
 */
export function printedHelp(values: { help?: boolean }, usage: string): boolean {
  if (values.help) console.log(usage);
  return values.help === true;
}
