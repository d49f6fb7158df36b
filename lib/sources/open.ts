/**
 * Opens the sources `serve --syslog-in`, `--tcp-in` and `--file` name. A new
 * kind of input is one more case here, next to its module in `lib/sources/`.
 *
 * @module
 */

import type { BatchHandler } from "../batch.ts";
import { ConfigError, parseEndpoint, parseHostPort } from "../cli/flags.ts";
import { TcpSource } from "./tcp.ts";
import { UdpSource } from "./udp.ts";

/** A network input to open: syslog over UDP or TCP, or plain TCP lines. */
export interface InputSpec {
  /** `udp` and `tcp`: syslog; `lines`: plain TCP lines. */
  kind: "udp" | "tcp" | "lines";
  /** Address to bind. */
  host: string;
  /** Port to bind; 0 picks a free one. */
  port: number;
  /** Name used in log lines (the flag, without dashes). */
  label: string;
  /** The flag that named it: `--syslog-in`, `--tcp-in`. */
  flag: string;
  /** The flag's value, as given. */
  value: string;
  /** The stream its messages belong to: `syslog`, `tcp`. */
  stream: string;
}

/**
 * Checks `serve`'s `--syslog-in` values (`HOST:PORT` or `udp://` for UDP,
 * `tcp://` for TCP syslog; default `127.0.0.1:5140`) and `--tcp-in` values
 * (`HOST:PORT`, plain lines).
 *
 * @example The default input and one line input
 * ```ts
 * import { parseInputFlags } from "./open.ts";
 * const inputs = parseInputFlags(undefined, ["127.0.0.1:5141"]);
 * console.log(inputs.map((input) => input.kind)); // ["udp", "lines"]
 * ```
 */
export function parseInputFlags(
  syslogIn: string[] | undefined,
  tcpIn: string[] | undefined,
): InputSpec[] {
  const inputs = (syslogIn ?? ["127.0.0.1:5140"]).map((value): InputSpec => {
    const endpoint = parseEndpoint(value, "--syslog-in", "udp", ["udp", "tcp"]);
    if (endpoint.kind !== "udp" && endpoint.kind !== "tcp") {
      throw new ConfigError(`--syslog-in '${value}': expected HOST:PORT, udp:// or tcp://`);
    }
    const { kind, host, port } = endpoint;
    return { kind, host, port, label: "syslog-in", flag: "--syslog-in", value, stream: "syslog" };
  });
  for (const value of tcpIn ?? []) {
    const { host, port } = parseHostPort(value, "--tcp-in");
    inputs.push({
      kind: "lines",
      host,
      port,
      label: "tcp-in",
      flag: "--tcp-in",
      value,
      stream: "tcp",
    });
  }
  return inputs;
}

/** Options for {@linkcode openSource}. */
export interface OpenSourceOptions {
  /**
   * Longest message over TCP; longer ones are cut (syslog) or split (lines).
   * @default {65536}
   */
  maxLength?: number;
}

/**
 * Makes the source for an input (nothing is bound before its `listen()`).
 *
 * @example A TCP syslog input
 * ```ts
 * import { openSource } from "./open.ts";
 * await using source = openSource(
 *   {
 *     kind: "tcp",
 *     host: "127.0.0.1",
 *     port: 0,
 *     label: "syslog-in",
 *     flag: "--syslog-in",
 *     value: "tcp://127.0.0.1:0",
 *     stream: "syslog",
 *   },
 *   (batch) => console.log(batch.count),
 * );
 * await source.listen();
 * ```
 */
export function openSource(
  input: InputSpec,
  onBatch: BatchHandler,
  options: OpenSourceOptions = {},
): UdpSource | TcpSource {
  const { host, port, label } = input;
  if (input.kind === "udp") return new UdpSource({ host, port, onBatch });
  return new TcpSource({
    host,
    port,
    onBatch,
    label,
    maxLength: options.maxLength,
    framing: input.kind === "lines" ? "lines" : "syslog",
  });
}

/** A file stream to follow: `--file PATH[=NAME]`. */
export interface FileSpec {
  /** The file. */
  path: string;
  /** The stream's name. */
  name: string;
}

/**
 * Checks `--file PATH[=NAME]` values: names unique, not reserved (`syslog`,
 * `tcp`), of letters, digits, `.`, `_`, `-`, at most 200 bytes.
 *
 * @example Two files
 * ```ts
 * import { parseFileFlags } from "./open.ts";
 * parseFileFlags(["/var/log/auth.log", "/var/log/app/current=app"]);
 * // [{ path: "/var/log/auth.log", name: "auth.log" }, { path: "/var/log/app/current", name: "app" }]
 * ```
 */
export function parseFileFlags(values: string[]): FileSpec[] {
  const seen = new Set<string>();
  return values.map((value) => {
    const eq = value.lastIndexOf("=");
    const path = eq > 0 ? value.slice(0, eq) : value;
    const name = eq > 0 ? value.slice(eq + 1) : path.slice(path.lastIndexOf("/") + 1);
    if (!path || !name || !/^[A-Za-z0-9._-]+$/.test(name) || name.startsWith(".")) {
      throw new ConfigError(
        `--file '${value}': expected PATH or PATH=NAME (NAME of letters, digits, . _ -)`,
      );
    }
    if (name === "syslog" || name === "tcp") {
      throw new ConfigError(`--file '${value}': the stream name '${name}' is reserved`);
    }
    if (name.length > 200) throw new ConfigError(`--file '${value}': NAME is too long`);
    if (seen.has(name)) throw new ConfigError(`--file '${value}': stream '${name}' given twice`);
    seen.add(name);
    return { path, name };
  });
}

/**
 * Where file positions are kept without `--file-state` or `--spool`:
 * `$XDG_STATE_HOME/reclog/files.json` (`~/.local/state/...`).
 *
 * @example The default path
 * ```ts
 * import { defaultFileState } from "./open.ts";
 * console.log(defaultFileState());
 * ```
 */
export function defaultFileState(): string {
  const base = Deno.env.get("XDG_STATE_HOME") || `${Deno.env.get("HOME") ?? "."}/.local/state`;
  return `${base}/reclog/files.json`;
}
