/**
 * `reclog play`: plays back a tlog terminal recording on stdout with its
 * recorded timing. Reads tlog's JSON messages, bare (`tlog-rec
 * --writer=file`) or after a syslog header, from a file, stdin, or a file that
 * is still growing (`--follow`). Only the recorded output is written, byte
 * for byte; input and window sizes are not (size changes are reported on
 * stderr). The file is streamed twice (a scan that lists the recordings and
 * checks their messages are all there, then the playback), so memory stays
 * bounded whatever its size; stdin is spooled to a temporary file for that,
 * unless `--session` names the recording up front. This file is the command
 * line; the engine is lib/tlog/player.ts.
 *
 * @module
 */

import { ConfigError, parseRoleArgs, printedHelp } from "../cli/flags.ts";
import { play } from "../tlog/player.ts";
import { stringFlags } from "../util/flag_options.ts";
import { shutdownSignal } from "../util/shutdown.ts";

const USAGE = `Usage: reclog play [FILE|-] [flags]

Plays back a tlog terminal recording on stdout with its recorded timing.
FILE holds tlog's JSON messages, one a line, bare (tlog-rec --writer=file) or
after a syslog header; - or no FILE reads stdin. Only the recorded output is
written, byte for byte; terminal size changes are reported on stderr.

Flags:
  --session ID         play the recording with this rec id (or audit session
                       number); needed when FILE holds several
  --host HOST          only recordings made on HOST
  --speed X            play X times as fast (default 1; 0.5 is half speed)
  --skip-idle SECONDS  shorten every pause longer than SECONDS to SECONDS
  --follow             keep playing what is appended to FILE, like tail -f;
                       SIGINT or SIGTERM stops (exit 0)
  --lax                play on across missing or out-of-order messages
                       (marked on stdout) and skip malformed lines (warned)
  -h, --help           this help

Exit codes: 0 played, 1 a bad or incomplete recording, 2 usage error or no
single recording chosen (the recordings are listed).`;

function parseNumber(value: string, flag: string, min: number, minExclusive: boolean): number {
  const number = /^(\d+(\.\d*)?|\.\d+)$/.test(value) ? Number(value) : NaN;
  if (!Number.isFinite(number) || (minExclusive ? number <= min : number < min)) {
    throw new ConfigError(
      `${flag} '${value}': expected a ${minExclusive ? "positive" : "non-negative"} number`,
    );
  }
  return number;
}

/**
 * Runs `reclog play` with its command-line arguments; resolves to the exit
 * code. Usage mistakes throw a {@linkcode ConfigError}.
 *
 * @example Play a recording twice as fast
 * ```ts
 * import { run } from "./play.ts";
 * Deno.exit(await run(["--speed", "2", "session.log"]));
 * ```
 */
export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parseRoleArgs("play", args, {
    ...stringFlags("session", "host", "speed", "skip-idle"),
    follow: { type: "boolean" },
    lax: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  }, true);
  if (printedHelp(values, USAGE)) return 0;
  if (positionals.length > 1) {
    throw new ConfigError(
      `expected one FILE, got ${positionals.length}: ${
        positionals.join(" ")
      } (see 'reclog play --help')`,
    );
  }
  const file = positionals[0] ?? "-";
  if (file === "-" && Deno.stdin.isTerminal()) {
    throw new ConfigError("no FILE given and stdin is a terminal (see 'reclog play --help')");
  }
  if (file === "-" && values.follow) {
    throw new ConfigError("--follow needs a FILE (stdin is read to its end anyway)");
  }
  const speed = values.speed === undefined ? 1 : parseNumber(values.speed, "--speed", 0, true);
  const skipIdle = values["skip-idle"];
  const maxPauseMs = skipIdle === undefined
    ? Infinity
    : parseNumber(skipIdle, "--skip-idle", 0, false) * 1000;
  for (const flag of ["session", "host"] as const) {
    if (values[flag] === "") throw new ConfigError(`--${flag} '': expected a value`);
  }
  // --follow stops on a signal; so does stdin, whose temporary copy must be
  // removed (without a handler a signal would kill reclog and leave it). A
  // plain file keeps the default: a signal ends reclog at once.
  using shutdown = values.follow || file === "-" ? shutdownSignal() : undefined;
  const signal = shutdown?.signal;
  const code = await play({
    file,
    session: values.session,
    host: values.host,
    speed,
    maxPauseMs,
    follow: values.follow ?? false,
    lax: values.lax ?? false,
    signal,
  });
  // Interrupted playback of stdin: 130, as a shell reports SIGINT.
  return signal?.aborted && !values.follow ? 130 : code;
}
