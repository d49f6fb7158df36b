/**
 * The NATS flags of `serve --publish` and `pull --from`, as parseArgs option
 * configs and as parsers that turn their values into
 * {@linkcode JetStreamSinkOptions} / {@linkcode JetStreamSourceOptions}
 * (one-line {@linkcode ConfigError}s naming the flag), so a role's wiring is
 * a spread of options, a parse call and `new JetStreamSink(...)`.
 *
 * @module
 */

import { ConfigError, parseBytes, parsePositiveInt } from "../cli/flags.ts";
import type { CreateStreamOptions, JetStreamSinkOptions } from "../sinks/nats.ts";
import type { JetStreamSourceOptions } from "../sources/nats.ts";
import { natsServers, type NatsTls } from "./nats_connect.ts";
import { stringFlags } from "../util/flag_options.ts";

/** Flags shared by both roles (parseArgs config). */
const COMMON = stringFlags("nats-stream", "nats-cert", "nats-key", "nats-ca");

/** serve's NATS flags (parseArgs config): spread into serve's options. */
export const NATS_PUBLISH_FLAGS = {
  ...COMMON,
  publish: { type: "string", multiple: true },
  ...stringFlags("nats-subject"),
  // --nats-create and the stream it makes.
  "nats-create": { type: "boolean" },
  ...stringFlags("nats-replicas", "nats-max-age", "nats-max-bytes", "nats-dupe-window"),
} as const;

/** pull's NATS flags (parseArgs config): spread into pull's options. */
export const NATS_FROM_FLAGS = {
  ...COMMON,
  ...stringFlags("durable", "nats-filter"),
  from: { type: "string", multiple: true },
} as const;

/** Values of the flags both roles have. */
export interface CommonValues {
  /** `--nats-stream NAME`. */
  "nats-stream"?: string;
  /** `--nats-cert FILE` (client certificate). */
  "nats-cert"?: string;
  /** `--nats-key FILE`. */
  "nats-key"?: string;
  /** `--nats-ca FILE`. */
  "nats-ca"?: string;
}

/**
 * Parses `30d`, `12h`, `10m`, `90s`, `500ms` or plain seconds, to ms.
 *
 * @example Parse --nats-max-age
 * ```ts
 * import { parseDurationMs } from "./nats_flags.ts";
 * console.log(parseDurationMs("30d", "--nats-max-age")); // 2592000000
 * ```
 */
export function parseDurationMs(value: string, flag: string): number {
  const match = /^(\d+)(ms|s|m|h|d)?$/.exec(value);
  if (!match) {
    throw new ConfigError(`${flag} '${value}': expected a duration such as 90s, 10m, 12h or 30d`);
  }
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] ?? "s"]!;
  return Number(match[1]) * unit;
}

function servers(values: string[] | undefined, flag: string): string[] {
  try {
    return natsServers(values ?? []);
  } catch (error) {
    throw new ConfigError(`${flag}: ${(error as Error).message}`);
  }
}

function tls(values: CommonValues, fallback?: NatsTls): NatsTls | undefined {
  const given = values["nats-cert"] ?? values["nats-key"] ?? values["nats-ca"];
  if (given === undefined) return fallback;
  if ((values["nats-cert"] === undefined) !== (values["nats-key"] === undefined)) {
    throw new ConfigError("--nats-cert and --nats-key go together");
  }
  const out: NatsTls = {};
  if (values["nats-cert"] !== undefined) out.cert = values["nats-cert"];
  if (values["nats-key"] !== undefined) out.key = values["nats-key"];
  if (values["nats-ca"] !== undefined) out.ca = values["nats-ca"];
  return out;
}

function stream(values: CommonValues, flag: string): string {
  const name = values["nats-stream"];
  if (name === undefined) throw new ConfigError(`${flag} needs --nats-stream NAME`);
  if (!/^[A-Za-z0-9_-]+$/.test(name)) {
    throw new ConfigError(`--nats-stream '${name}': use letters, digits, - and _ only`);
  }
  return name;
}

/**
 * serve's sink options from its flag values, or undefined without `--publish`.
 * `serveTls` (serve's own --cert/--key/--ca) is used when no `--nats-*` TLS
 * flag is given.
 *
 * @example Parse serve's flags
 * ```ts
 * import { natsPublishOptions } from "./nats_flags.ts";
 * const options = natsPublishOptions({ publish: ["nats://127.0.0.1:4222"], "nats-stream": "LOGS" });
 * console.log(options?.stream); // LOGS
 * ```
 */
export function natsPublishOptions(
  values: CommonValues & {
    publish?: string[];
    "nats-subject"?: string;
    "nats-create"?: boolean;
    "nats-replicas"?: string;
    "nats-max-age"?: string;
    "nats-max-bytes"?: string;
    "nats-dupe-window"?: string;
  },
  serveTls?: NatsTls,
): Omit<JetStreamSinkOptions, "epoch" | "signal"> | undefined {
  if (!values.publish?.length) {
    const stray = Object.keys(values).find((k) =>
      k.startsWith("nats-") && values[k as "nats-stream"] !== undefined
    );
    if (stray) throw new ConfigError(`--${stray} needs --publish nats://HOST:PORT`);
    return undefined;
  }
  const options: Omit<JetStreamSinkOptions, "epoch" | "signal"> = {
    servers: servers(values.publish, "--publish"),
    stream: stream(values, "--publish"),
  };
  if (values["nats-subject"] !== undefined) options.subject = values["nats-subject"];
  const t = tls(values, serveTls);
  if (t) options.tls = t;
  if (values["nats-create"]) {
    const create: CreateStreamOptions = {};
    if (values["nats-replicas"]) {
      create.replicas = parsePositiveInt(values["nats-replicas"], "--nats-replicas");
    }
    if (values["nats-max-age"]) {
      create.maxAgeMs = parseDurationMs(values["nats-max-age"], "--nats-max-age");
    }
    if (values["nats-max-bytes"]) {
      create.maxBytes = parseBytes(values["nats-max-bytes"], "--nats-max-bytes");
    }
    if (values["nats-dupe-window"]) {
      create.duplicateWindowMs = parseDurationMs(values["nats-dupe-window"], "--nats-dupe-window");
    }
    options.createStream = create;
  } else {
    for (
      const flag of ["nats-replicas", "nats-max-age", "nats-max-bytes", "nats-dupe-window"] as const
    ) {
      if (values[flag] !== undefined) throw new ConfigError(`--${flag} needs --nats-create`);
    }
  }
  return options;
}

/**
 * pull's source options (without `onBatch` and `signal`) from its flag
 * values, or undefined without `--from`.
 *
 * @example Parse pull's flags
 * ```ts
 * import { natsFromOptions } from "./nats_flags.ts";
 * const options = natsFromOptions({ from: ["nats://127.0.0.1:4222"], "nats-stream": "LOGS", durable: "home" });
 * console.log(options?.durable); // home
 * ```
 */
export function natsFromOptions(
  values: CommonValues & { from?: string[]; durable?: string; "nats-filter"?: string },
): Omit<JetStreamSourceOptions, "onBatch" | "signal"> | undefined {
  if (!values.from?.length) return undefined;
  if (values.durable === undefined) throw new ConfigError("--from nats://... needs --durable NAME");
  if (!/^[A-Za-z0-9_-]+$/.test(values.durable)) {
    throw new ConfigError(`--durable '${values.durable}': use letters, digits, - and _ only`);
  }
  const options: Omit<JetStreamSourceOptions, "onBatch" | "signal"> = {
    servers: servers(values.from, "--from"),
    stream: stream(values, "--from"),
    durable: values.durable,
  };
  if (values["nats-filter"] !== undefined) options.filter = values["nats-filter"];
  const t = tls(values);
  if (t) options.tls = t;
  return options;
}
