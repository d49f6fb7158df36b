/**
 * `reclog pull`'s upstreams: from its flags or from `--config FILE` (the
 * JSON shape is in the README), each checked with errors that name the flag
 * or the file and the upstream.
 *
 * @module
 */

import { ConfigError, type Endpoint, parseEndpoint, parseHostPort, readFlagFile } from "./flags.ts";
import { errorMessage } from "../util/errors.ts";
import { formatHostPort, type HostPort } from "../util/address.ts";

/** The flag values of `reclog pull` these functions read. */
export interface FlagValues {
  server?: string;
  cert?: string;
  key?: string;
  ca?: string;
  "server-name"?: string;
  to?: string;
  mirror?: string;
  state?: string;
  live?: boolean;
}

/** One server to pull from, and where its messages go. */
export interface Upstream extends Pick<UpstreamFields, "cert" | "key" | "ca" | "mirror" | "state"> {
  name: string;
  server: HostPort;
  serverName: string;
  endpoint: Endpoint;
  /** How `--to` is named in errors: `--to`, `--config 'f', upstreams[0].to`. */
  toFlag: string;
}

/** What `--config FILE` holds. */
export interface PullConfig {
  upstreams: Upstream[];
  statusFile?: string;
  metrics?: string;
}

/**
 * The one upstream `pull`'s flags name; throws a {@linkcode ConfigError}
 * naming the flag that is missing or wrong.
 *
 * @example From flags
 * ```ts
 * import { upstreamFromFlags } from "./pull_config.ts";
 * const up = upstreamFromFlags({
 *   server: "vps.example.org:6514", cert: "c.pem", key: "c.key", ca: "ca.pem",
 *   to: "relp://127.0.0.1:2514",
 * });
 * console.log(up.endpoint.kind); // "relp"
 * ```
 */
export function upstreamFromFlags(values: FlagValues): Upstream {
  for (const flag of ["server", "cert", "key", "ca"] as const) {
    if (!values[flag]) throw new ConfigError(`--${flag} is required (see 'reclog pull --help')`);
  }
  return upstream({
    server: values.server!,
    cert: values.cert!,
    key: values.key!,
    ca: values.ca!,
    serverName: values["server-name"],
    to: values.to,
    mirror: values.mirror,
    state: values.state,
    live: values.live,
  }, (field) => `--${field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`);
}

/** The fields of one upstream, from flags or a config file. */
type UpstreamFields =
  & {
    [K in keyof typeof UPSTREAM_FIELDS]?: (typeof UPSTREAM_FIELDS)[K] extends "boolean" ? boolean
      : string;
  }
  & { server: string; cert: string; key: string; ca: string };

function upstream(fields: UpstreamFields, flag: (field: string) => string): Upstream {
  if (fields.live && fields.state) {
    throw new ConfigError(`${flag("live")} and ${flag("state")} exclude each other`);
  }
  if (fields.to && fields.mirror) {
    throw new ConfigError(`${flag("to")} and ${flag("mirror")} exclude each other`);
  }
  const server = parseHostPort(fields.server, flag("server"));
  return {
    name: fields.name ?? formatHostPort(server),
    server,
    serverName: fields.serverName ?? server.host,
    cert: fields.cert,
    key: fields.key,
    ca: fields.ca,
    endpoint: parseEndpoint(fields.to ?? "udp://127.0.0.1:514", flag("to"), "udp"),
    toFlag: flag("to"),
    mirror: fields.mirror,
    state: fields.live ? undefined : fields.state ?? defaultStatePath(server),
  };
}

const UPSTREAM_FIELDS = {
  name: "string",
  server: "string",
  cert: "string",
  key: "string",
  ca: "string",
  serverName: "string",
  to: "string",
  mirror: "string",
  state: "string",
  live: "boolean",
} as const;

/**
 * Reads `--config FILE` (see the README for its shape); errors name the
 * file and the upstream.
 *
 * @example Read a config
 * ```ts
 * import { readConfig } from "./pull_config.ts";
 * const config = await readConfig("/etc/reclog/pull.json", {});
 * console.log(config.upstreams.length);
 * ```
 */
export async function readConfig(path: string, values: FlagValues): Promise<PullConfig> {
  const flags = ["server", "cert", "key", "ca", "to", "mirror", "state", "server-name"] as const;
  const clash = flags.find((flag) => values[flag] !== undefined);
  if (clash) {
    throw new ConfigError(`--config and --${clash} exclude each other (put it in the file)`);
  }
  const where = `--config '${path}'`;
  let config: unknown;
  try {
    config = JSON.parse(await readFlagFile("--config", path));
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new ConfigError(`${where}: not valid JSON (${errorMessage(error)})`);
  }
  if (
    typeof config !== "object" || config === null ||
    !Array.isArray((config as { upstreams?: unknown }).upstreams)
  ) {
    throw new ConfigError(`${where}: expected an object with an "upstreams" array`);
  }
  const { upstreams, statusFile, metrics, ...rest } = config as {
    upstreams: unknown[];
    statusFile?: unknown;
    metrics?: unknown;
  };
  for (const key of Object.keys(rest)) throw new ConfigError(`${where}: unknown key "${key}"`);
  if (statusFile !== undefined && typeof statusFile !== "string") {
    throw new ConfigError(`${where}: "statusFile" must be a string`);
  }
  if (metrics !== undefined && typeof metrics !== "string") {
    throw new ConfigError(`${where}: "metrics" must be a string`);
  }
  if (upstreams.length === 0) throw new ConfigError(`${where}: "upstreams" is empty`);
  const names = new Set<string>();
  const parsed = upstreams.map((entry, i) => {
    const at = `${where}, upstreams[${i}]`;
    if (!entry || typeof entry !== "object") throw new ConfigError(`${at}: expected an object`);
    for (const [key, value] of Object.entries(entry)) {
      const type = (UPSTREAM_FIELDS as Record<string, string>)[key];
      const actual: string = typeof value;
      if (!type) throw new ConfigError(`${at}: unknown key "${key}"`);
      if (actual !== type) throw new ConfigError(`${at}: "${key}" must be a ${type}`);
    }
    for (const key of ["server", "cert", "key", "ca"]) {
      if (!(key in entry)) throw new ConfigError(`${at}: "${key}" is required`);
    }
    const result = upstream(entry as UpstreamFields, (field) => `${at}.${field}`);
    if (names.has(result.name)) throw new ConfigError(`${at}: name "${result.name}" used twice`);
    names.add(result.name);
    return result;
  });
  return { upstreams: parsed, statusFile, metrics };
}

function defaultStatePath(server: { host: string; port: number }): string {
  const base = Deno.env.get("XDG_STATE_HOME") || `${Deno.env.get("HOME") ?? "."}/.local/state`;
  const name = `${server.host}_${server.port}`.replace(/[^A-Za-z0-9._-]/g, "_");
  return `${base}/reclog/${name}.state`;
}
