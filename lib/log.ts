/**
 * reclog's own log: one line an event on stderr, through `@logtape/logtape`.
 * Message contents never appear above debug level.
 *
 * @module
 */

import {
  configureSync,
  getLogger,
  getTextFormatter,
  type Logger,
  type LogLevel,
  parseLogLevel,
} from "@logtape/logtape";

const encoder = new TextEncoder();

/** Options for {@linkcode setupLogging}. */
export interface LoggingOptions {
  /**
   * Lowest level written; `RECLOG_LOG_LEVEL` overrides it.
   * @default {"info"}
   */
  level?: LogLevel;
}

/**
 * Sends every reclog log record to stderr, one line each, synchronously (so
 * nothing is lost when the process exits right after).
 *
 * @example Configure logging once in main
 * ```ts
 * import { setupLogging } from "./log.ts";
 * setupLogging({ level: "debug" });
 * ```
 */
export function setupLogging(options: LoggingOptions = {}): void {
  let level = options.level ?? "info";
  const fromEnv = Deno.env.get("RECLOG_LOG_LEVEL");
  if (fromEnv) level = parseLogLevel(fromEnv);
  const format = getTextFormatter({
    timestamp: "date-time-tz",
    category: ".",
    value: (value) => typeof value === "string" ? value : Deno.inspect(value),
  });
  configureSync({
    reset: true,
    sinks: {
      stderr(record) {
        Deno.stderr.writeSync(encoder.encode(format(record)));
      },
    },
    loggers: [
      { category: ["reclog"], lowestLevel: level, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}

/**
 * The logger for one part of reclog, e.g. `log("serve")`.
 *
 * @example Log an event
 * ```ts
 * import { log } from "./log.ts";
 * log("serve").info("listening on {address}", { address: "0.0.0.0:6514" });
 * ```
 */
export function log(part: string): Logger {
  return getLogger(["reclog", part]);
}
