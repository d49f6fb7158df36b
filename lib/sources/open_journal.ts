/**
 * serve's systemd journal input, from its flags to a running
 * {@linkcode JournalInput}: `--journal`, `--journal-dir DIR`,
 * `--journal-match FIELD=VALUE` (repeatable), `--journal-priority LEVEL`,
 * `--journal-format rfc5424|json`. Entries go to stream `journal`; the
 * cursor is saved with the journal (the spool directory, else the state
 * directory) after the append, and only while the spool is healthy; entries
 * gone before serve read them are logged, counted and recorded in the
 * journal as lost ({@linkcode Journal.appendLost}), so clients get an `L`.
 *
 * @module
 */

import { ConfigError, prepareDir } from "../cli/flags.ts";
import type { Journal } from "../journal/journal.ts";
import type { Metrics } from "../ops/metrics.ts";
import { log } from "../util/log.ts";
import type { JournalFormat } from "../framing/journal_entry.ts";
import { defaultFileState, toJournal } from "./open.ts";
import { JournalInput } from "./systemd_journal_input.ts";
import type { JournalGap } from "./systemd_journal_source.ts";

/** The flags, for serve's `parseArgs` options. */
export const JOURNAL_FLAGS = {
  journal: { type: "boolean", default: false },
  "journal-dir": { type: "string" },
  "journal-match": { type: "string", multiple: true },
  "journal-priority": { type: "string" },
  "journal-format": { type: "string" },
} as const;

/** The flags' part of `serve --help`. */
export const JOURNAL_USAGE = `systemd journal (stream 'journal'; no syslog daemon needed):
  --journal                 read the local system journal (via journalctl)
  --journal-dir DIR         read a directory of journal files instead
  --journal-match F=VALUE   only matching entries, like 'journalctl F=VALUE';
                            repeatable, '+' between groups means OR
  --journal-priority LEVEL  only this priority or more urgent: warning, 0-7,
                            or a range err..warning
  --journal-format FORMAT   rfc5424 (one syslog message per entry) or json
                            (journalctl's JSON line, every field) [rfc5424]
  The cursor is kept in DIR/journal-cursor.json with --spool, else in
  ~/.local/state/reclog/; a restart continues right after the last entry.`;

/** What the journal flags asked for. */
export interface JournalSpec {
  /** `--journal-dir`; undefined: the system journal. */
  directory?: string;
  /** `--journal-match` values. */
  matches: string[];
  /** `--journal-priority`. */
  priority?: string;
  /** `--journal-format`. */
  format: JournalFormat;
}

/**
 * Checks the journal flags; undefined when neither `--journal` nor
 * `--journal-dir` was given (then the other journal flags are errors).
 *
 * @example The local journal, warnings and worse
 * ```ts
 * import { parseJournalFlags } from "./open_journal.ts";
 * parseJournalFlags({ journal: true, "journal-priority": "warning" });
 * // { directory: undefined, matches: [], priority: "warning", format: "rfc5424" }
 * ```
 */
export function parseJournalFlags(values: {
  journal?: boolean;
  "journal-dir"?: string;
  "journal-match"?: string[];
  "journal-priority"?: string;
  "journal-format"?: string;
}): JournalSpec | undefined {
  const directory = values["journal-dir"];
  if (values.journal && directory !== undefined) {
    throw new ConfigError("--journal and --journal-dir: give one of them");
  }
  const format = values["journal-format"] ?? "rfc5424";
  if (!values.journal && directory === undefined) {
    for (const flag of ["journal-match", "journal-priority", "journal-format"] as const) {
      if (values[flag] !== undefined) {
        throw new ConfigError(`--${flag} needs --journal or --journal-dir`);
      }
    }
    return undefined;
  }
  if (directory === "") throw new ConfigError("--journal-dir '': expected a directory");
  if (format !== "rfc5424" && format !== "json") {
    throw new ConfigError(`--journal-format '${format}': expected rfc5424 or json`);
  }
  return {
    directory,
    matches: values["journal-match"] ?? [],
    priority: values["journal-priority"],
    format,
  };
}

/** Options for {@linkcode startJournalInput}. */
export interface OpenJournalInputOptions {
  /** `--spool`: the cursor file goes there. */
  spoolDir?: string;
  /** Longest message (`--max-message`). */
  maxMessage: number;
  /** Where the input's metrics go. */
  metrics: Metrics;
}

const LOST_REASON = "entries gone from the systemd journal before serve read them";

/**
 * Opens and starts the journal input: each batch appended to `journal` as
 * stream `journal`, its cursor saved after. A bad match or priority, a
 * damaged cursor file, a journal directory that is not one: a one-line
 * {@linkcode ConfigError}.
 *
 * @example Feed the journal from a directory of journal files
 * ```ts ignore
 * const spec = parseJournalFlags({ "journal-dir": "/srv/journal" })!;
 * await using input = await startJournalInput(spec, journal, { maxMessage: 65536, metrics });
 * ```
 */
export async function startJournalInput(
  spec: JournalSpec,
  journal: Journal,
  options: OpenJournalInputOptions,
): Promise<JournalInput> {
  const stateDir = options.spoolDir ?? defaultFileState().replace(/\/[^/]*$/, "");
  if (!options.spoolDir) await prepareDir("the state directory", stateDir);
  const { metrics } = options;
  const label = { input: spec.directory === undefined ? "journal" : `journal ${spec.directory}` };
  const append = toJournal(journal, "journal", {
    counters: {
      messages: metrics.counter("reclog_input_messages_total", "Messages received", label),
      bytes: metrics.counter("reclog_input_bytes_total", "Bytes of messages received", label),
    },
  });
  const lost = metrics.counter(
    "reclog_input_lost_total",
    "Messages lost at the source before serve read them (systemd journal: vacuumed or rotated away)",
    label,
  );
  // A gap is recorded in the journal together with the batch after it, in one turn.
  let pending = 0;
  let input: JournalInput;
  try {
    input = await JournalInput.open({
      stateDir,
      directory: spec.directory,
      matches: spec.matches,
      priority: spec.priority,
      format: spec.format,
      maxBytes: options.maxMessage,
      hostname: Deno.hostname(),
      canSave: () => journal.spoolHealthy,
      onGap: (gap: JournalGap) => {
        log("journal").warn(
          "{count} journal entries (sequence numbers {from}..{to}) were gone from the journal before serve read them",
          { ...gap },
        );
        lost.inc(gap.count);
        pending += gap.count;
      },
      onBatch: (batch) => {
        if (pending > 0) journal.appendLost(pending, LOST_REASON);
        pending = 0;
        return append(batch);
      },
    });
  } catch (error) {
    if (
      error instanceof RangeError ||
      error instanceof Error && /journal cursor file/.test(error.message)
    ) {
      throw new ConfigError(error.message);
    }
    throw error;
  }
  const stats = () => input.stats;
  const counters: Array<[string, string, () => number]> = [
    ["reclog_input_truncated_total", "Messages cut to --max-message", () => stats().truncated],
    [
      "reclog_input_dropped_total",
      "Messages dropped (too long a JSON line, malformed entries)",
      () => stats().dropped + stats().malformed,
    ],
    ["reclog_journalctl_restarts_total", "Times journalctl was restarted", () => stats().restarts],
  ];
  for (const [name, help, read] of counters) metrics.counterOf(name, help, label, read);
  try {
    await input.listen();
  } catch (error) {
    await input.close();
    const flag = spec.directory === undefined ? "--journal" : `--journal-dir '${spec.directory}'`;
    throw new ConfigError(`${flag}: ${(error as Error).message}`);
  }
  return input;
}
