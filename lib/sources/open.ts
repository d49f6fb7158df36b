/**
 * Opens the sources `serve --syslog-in`, `--tcp-in` and `--file` name, and
 * the handlers that put their batches into the journal. A new kind of input
 * is one more case here, next to its module in `lib/sources/` (the systemd
 * journal: `./open_journal.ts`).
 *
 * @module
 */

import type { BatchHandler } from "../batch.ts";
import { ConfigError, parseEndpoint, parseHostPort } from "../cli/flags.ts";
import type { Journal } from "../journal/journal.ts";
import { describeNetError } from "../util/errors.ts";
import { type Counter, type Metrics, udpDrops } from "../ops/metrics.ts";
import { RelpSource } from "./relp.ts";
import { TcpSource } from "./tcp.ts";
import { UdpSource } from "./udp.ts";

/** A network input to open: syslog over UDP, TCP or RELP, or plain TCP lines. */
export interface InputSpec {
  /** `udp`, `tcp` and `relp`: syslog; `lines`: plain TCP lines. */
  kind: "udp" | "tcp" | "relp" | "lines";
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

/** Options for {@linkcode parseInputFlags}. */
export interface ParseInputFlagsOptions {
  /**
   * Listen on UDP `127.0.0.1:5140` when no `--syslog-in` is given (false when
   * serve reads the systemd journal: a VPS without a syslog daemon needs no port).
   *
   * @default {true}
   */
  defaultInput?: boolean;
}

/**
 * Checks `serve`'s `--syslog-in` values (`HOST:PORT` or `udp://` for UDP,
 * `tcp://` for TCP syslog, `relp://` for RELP; default `127.0.0.1:5140` unless
 * {@linkcode ParseInputFlagsOptions.defaultInput} is false) and `--tcp-in` values
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
  options: ParseInputFlagsOptions = {},
): InputSpec[] {
  const fallback = options.defaultInput === false ? [] : ["127.0.0.1:5140"];
  const inputs = (syslogIn ?? fallback).map((value): InputSpec => {
    const endpoint = parseEndpoint(value, "--syslog-in", "udp", ["udp", "tcp", "relp"]);
    if (endpoint.kind !== "udp" && endpoint.kind !== "tcp" && endpoint.kind !== "relp") {
      throw new ConfigError(
        `--syslog-in '${value}': expected HOST:PORT, udp://, tcp:// or relp://`,
      );
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
): UdpSource | TcpSource | RelpSource {
  const { host, port, label } = input;
  if (input.kind === "udp") return new UdpSource({ host, port, onBatch });
  if (input.kind === "relp") {
    return new RelpSource({ host, port, onBatch, maxFrame: options.maxLength ?? 65536 });
  }
  return new TcpSource({
    host,
    port,
    onBatch,
    label,
    maxLength: options.maxLength,
    framing: input.kind === "lines" ? "lines" : "syslog",
  });
}

/** Options for {@linkcode toJournal}. */
export interface ToJournalOptions {
  /** Counted per batch: messages and their bytes. */
  counters?: { messages: Counter; bytes: Counter; empty?: Counter };
  /**
   * Resolve only once the batch is as durable as the journal makes it (for a
   * source that acknowledges, RELP): reject before appending while the spool
   * is paused, append, write the spool now, reject if that failed. Also
   * drops (and counts in `counters.empty`) empty messages.
   * @default {false}
   */
  durable?: boolean;
}

/**
 * The handler that appends each message of a batch to the journal as
 * `stream`; with `durable`, see {@linkcode ToJournalOptions.durable}.
 *
 * @example Feed the journal from a source
 * ```ts
 * import { Journal } from "../journal/journal.ts";
 * import { toJournal } from "./open.ts";
 * const journal = new Journal();
 * const onBatch = toJournal(journal, "syslog");
 * ```
 */
export function toJournal(
  journal: Journal,
  stream: string,
  options: ToJournalOptions = {},
): BatchHandler {
  const name = new TextEncoder().encode(stream);
  const { counters, durable } = options;
  const append = (batch: Parameters<BatchHandler>[0]): void => {
    counters?.messages.inc(batch.count);
    for (let i = 0; i < batch.count; i++) {
      const message = batch.message(i);
      if (durable && message.length === 0) {
        counters?.empty?.inc();
        continue;
      }
      counters?.bytes.inc(message.length);
      journal.append(name, message, 0, message.length);
    }
  };
  if (!durable) return append;
  return (batch) => {
    if (!journal.spoolHealthy) throw new Error("the spool cannot be written: not acknowledged");
    append(batch);
    journal.flush();
    if (!journal.spoolHealthy) throw new Error("the spool write failed: not acknowledged");
    return Promise.resolve();
  };
}

/**
 * Registers the per-input metrics of a network source: messages cut (TCP,
 * RELP), RELP connections, kernel drops (UDP).
 *
 * @example After binding
 * ```ts ignore
 * inputMetrics(metrics, source, { input: "syslog-in udp://127.0.0.1:5140" }, address.port);
 * ```
 */
export function inputMetrics(
  metrics: Metrics,
  source: UdpSource | TcpSource | RelpSource,
  label: Record<string, string>,
  port: number,
): void {
  if (source instanceof UdpSource) {
    metrics.gauge(
      "reclog_udp_receive_drops",
      "Datagrams the kernel dropped on the input socket (/proc/net/udp)",
      label,
      () => udpDrops(port) ?? NaN,
    );
    return;
  }
  metrics.counterOf(
    "reclog_input_truncated_total",
    "Messages cut to --max-message (TCP, RELP)",
    label,
    () => source.truncated,
  );
  if (source instanceof RelpSource) {
    metrics.gauge(
      "reclog_relp_connections",
      "RELP senders connected",
      label,
      () => source.connections,
    );
    metrics.counterOf(
      "reclog_relp_rejected_total",
      "RELP messages not acknowledged (the spool could not be written; the sender resends)",
      label,
      () => source.rejected,
    );
  }
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
 * `tcp`, `journal`), of letters, digits, `.`, `_`, `-`, at most 200 bytes.
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
    if (name === "syslog" || name === "tcp" || name === "journal") {
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

/**
 * Runs `listen`; a bind error becomes a one-line ConfigError naming the flag:
 * "--listen '127.0.0.1:P': address already in use".
 *
 * @example Bind a listener
 * ```ts ignore
 * import { bindFlag } from "./open.ts";
 * const listener = await bindFlag(async () => Deno.listen({ port: 0 }), "--listen", "127.0.0.1:0");
 * listener.close();
 * ```
 */
export async function bindFlag<T>(
  listen: () => Promise<T>,
  flag: string,
  value: string,
): Promise<T> {
  try {
    return await listen();
  } catch (error) {
    const reason = describeNetError(error);
    if (reason === "address already in use") throw new ConfigError(`${flag} '${value}': ${reason}`);
    if (reason === "host name not found") {
      throw new ConfigError(`${flag} '${value}': cannot resolve the host name`);
    }
    if (reason === "permission denied" || reason === "address not available on this machine") {
      throw new ConfigError(`${flag} '${value}': cannot bind (${(error as Error).message})`);
    }
    throw error;
  }
}
