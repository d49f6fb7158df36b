/**
 * reclog's own log: one line an event on stderr, through `@logtape/logtape`.
 * Message contents never appear above debug level.
 *
 * @module
 */

import { configureSync, getLogger, getTextFormatter, parseLogLevel } from "@logtape/logtape";

/**
 * A log level, least severe first: the same names as logtape's `LogLevel`.
 * (Declared here because logtape's own type refers to a constant it does not
 * export.)
 */
export type LogLevel = "trace" | "debug" | "info" | "warning" | "error" | "fatal";

/**
 * The part of logtape's `Logger` reclog uses: one method a level, taking a
 * message template with `{name}` placeholders and the values for them.
 */
export interface Logger {
  /** Logs at trace level. */
  trace(message: string, properties?: Record<string, unknown>): void;
  /** Logs at debug level. */
  debug(message: string, properties?: Record<string, unknown>): void;
  /** Logs at info level. */
  info(message: string, properties?: Record<string, unknown>): void;
  /** Logs at warning level (same as {@linkcode Logger.warning}). */
  warn(message: string, properties?: Record<string, unknown>): void;
  /** Logs at warning level. */
  warning(message: string, properties?: Record<string, unknown>): void;
  /** Logs at error level. */
  error(message: string, properties?: Record<string, unknown>): void;
  /** Logs at fatal level. */
  fatal(message: string, properties?: Record<string, unknown>): void;
}

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
