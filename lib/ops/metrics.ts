/**
 * `--metrics HOST:PORT`: Prometheus text format (version 0.0.4) at `/metrics`
 * and `ok` or 503 at `/healthz`. Counters are plain numbers bumped on the
 * hot path (no allocation); gauges are read when scraped.
 *
 * @module
 */

import { formatHostPort, type HostPort } from "../util/address.ts";
import { log } from "../util/log.ts";
import { readFileRaw } from "../ffi/libc.ts";

/** Label names and values of one series. */
export type Labels = Record<string, string>;

interface Family {
  help: string;
  type: "counter" | "gauge";
  series: Map<string, { labels: Labels; value: number | (() => number) }>;
}

/**
 * A counter for one series; `inc()` is cheap enough for every message.
 *
 * @example Count messages
 * ```ts
 * import { Metrics } from "./metrics.ts";
 * const metrics = new Metrics();
 * const received = metrics.counter("reclog_input_messages_total", "Messages received", {
 *   input: "udp://127.0.0.1:5140",
 * });
 * received.inc();
 * ```
 */
export interface Counter {
  /** Adds `n` (default 1). */
  inc(n?: number): void;
}

/**
 * A registry of metric families, rendered in Prometheus text format.
 *
 * @example Serve metrics
 * ```ts
 * import { Metrics } from "./metrics.ts";
 * const metrics = new Metrics();
 * metrics.gauge("reclog_clients", "Clients connected", {}, () => 0);
 * await using server = await metrics.serve({ host: "127.0.0.1", port: 0 }, () => true);
 * ```
 */
export class Metrics {
  readonly #families = new Map<string, Family>();

  #family(name: string, help: string, type: Family["type"]): Family {
    let family = this.#families.get(name);
    if (!family) this.#families.set(name, family = { help, type, series: new Map() });
    return family;
  }

  /** A counter series (created once; the same name and labels give the same series). */
  counter(name: string, help: string, labels: Labels = {}): Counter {
    const family = this.#family(name, help, "counter");
    const key = labelText(labels);
    let series = family.series.get(key);
    if (!series) family.series.set(key, series = { labels, value: 0 });
    const entry = series;
    return {
      inc(n = 1) {
        (entry.value as number) += n;
      },
    };
  }

  /** A counter series whose value is read when scraped (kept by another part). */
  counterOf(name: string, help: string, labels: Labels, read: () => number): void {
    this.#family(name, help, "counter").series.set(labelText(labels), { labels, value: read });
  }

  /** A gauge series whose value is read when scraped. */
  gauge(name: string, help: string, labels: Labels, read: () => number): void {
    this.#family(name, help, "gauge").series.set(labelText(labels), { labels, value: read });
  }

  /** Forgets a series (a client that went away). */
  remove(name: string, labels: Labels): void {
    this.#families.get(name)?.series.delete(labelText(labels));
  }

  /** The Prometheus text exposition. */
  render(): string {
    const lines: string[] = [];
    for (const [name, family] of this.#families) {
      lines.push(`# HELP ${name} ${family.help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`);
      lines.push(`# TYPE ${name} ${family.type}`);
      for (const [key, series] of family.series) {
        const value = typeof series.value === "function" ? series.value() : series.value;
        lines.push(`${name}${key} ${formatValue(value)}`);
      }
    }
    return lines.join("\n") + "\n";
  }

  /**
   * Serves `/metrics` and `/healthz` (`ok` while `healthy()`, else 503);
   * resolves once listening.
   */
  async serve(
    address: HostPort,
    healthy: () => boolean,
  ): Promise<{ port: number } & AsyncDisposable> {
    const { promise, resolve } = Promise.withResolvers<number>();
    const server = Deno.serve({
      hostname: address.host,
      port: address.port,
      onListen: ({ port }) => resolve(port),
    }, (request) => {
      const path = new URL(request.url).pathname;
      if (path === "/metrics") {
        return new Response(this.render(), {
          headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
        });
      }
      if (path === "/healthz") {
        return healthy() ? new Response("ok\n") : new Response("unhealthy\n", { status: 503 });
      }
      return new Response("not found: try /metrics or /healthz\n", { status: 404 });
    });
    const port = await promise;
    log("metrics").info("metrics listening on {address}", {
      address: formatHostPort({ host: address.host, port }),
    });
    return {
      port,
      async [Symbol.asyncDispose]() {
        await server.shutdown();
      },
    };
  }
}

function labelText(labels: Labels): string {
  const entries = Object.entries(labels);
  if (entries.length === 0) return "";
  return `{${
    entries.map(([k, v]) =>
      `${k}="${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`
    ).join(",")
  }}`;
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

/**
 * The kernel's drop count for the UDP socket bound to `port` (the `drops`
 * column of /proc/net/udp and /proc/net/udp6), read through libc because
 * Deno's permissions keep /proc out of reach; undefined when unknown.
 *
 * @example Read the drops of a syslog input
 * ```ts
 * import { udpDrops } from "./metrics.ts";
 * console.log(udpDrops(5140));
 * ```
 */
export function udpDrops(port: number): number | undefined {
  const hex = port.toString(16).toUpperCase().padStart(4, "0");
  let total: number | undefined;
  for (const file of ["/proc/net/udp", "/proc/net/udp6"]) {
    const text = readFileRaw(file);
    if (text === undefined) continue;
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields[1]?.endsWith(`:${hex}`) && fields[12] !== undefined) {
        total = (total ?? 0) + Number(fields[12]);
      }
    }
  }
  return total;
}
