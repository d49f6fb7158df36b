/**
 * `reclog send`: sends stdin, or the stdout and stderr of a command, line by
 * line (each line whole) to `reclog listen` or `reclog serve --tcp-in`, over
 * plain TCP or mutual TLS, through a {@linkcode LineSender}
 * (`lib/sinks/line_sender.ts`: the bounded buffer and the reconnecting).
 * This file is the wiring: flags, COMMAND, signals, exit code.
 *
 * @module
 */

import {
  ConfigError,
  parseBytes,
  parseHostPort,
  parseRoleArgs,
  printedHelp,
} from "../cli/flags.ts";
import { errorMessage } from "../util/errors.ts";
import { formatHostPort } from "../util/address.ts";
import { DEFAULT_MAX_LINE, LineSplitStream } from "../framing/lines.ts";
import { log } from "../util/log.ts";
import { shutdownSignal } from "../util/shutdown.ts";
import { loadTlsMaterial } from "../tls/policy.ts";
import { parseTlsFlags } from "../tls/flags.ts";
import { LineSender } from "../sinks/line_sender.ts";

const logger = log("send");

const USAGE = `Usage: reclog send HOST:PORT [flags] [-- COMMAND ARGS...]

Sends stdin, or the stdout and stderr of COMMAND, line by line (each line
whole) to 'reclog listen' or 'reclog serve --tcp-in' at HOST:PORT. While the
endpoint is away, lines wait in a bounded buffer and send reconnects with
back-off (100 ms doubling to 5 s, with jitter); when the buffer is full the
oldest lines are dropped and counted. While connected, a full buffer makes
send stop reading its input instead. When the input ends (or COMMAND exits),
send delivers what is buffered, waiting up to --linger seconds for the
endpoint, and exits.

Flags:
  --cert FILE          with --key and --ca: connect with mutual TLS
  --key FILE
  --ca FILE            the CA the server certificate must chain to
  --server-name NAME   name the server certificate must match (default HOST)
  --buffer-bytes N     buffer size while the endpoint is away (default 8MiB;
                       accepts 512KiB, 64MiB, ...)
  --linger SECONDS     at the end, how long to wait for the endpoint to take
                       the buffered lines (default 10)
  --max-line BYTES     longest line (default 64KiB); longer ones are split
  -h, --help           print this help

SIGINT and SIGTERM go to COMMAND; without COMMAND they end the input. A second signal
stops at once.

Exit code: COMMAND's exit code if it failed; otherwise 1 if any line was
dropped or could not be delivered (a line on stderr says how many), else 0.
2 on usage or configuration errors.`;

/**
 * Runs `reclog send`.
 *
 * @example Run the role
 * ```ts
 * import { run } from "./send.ts";
 * Deno.exit(await run(["127.0.0.1:5140", "--", "make", "test"]));
 * ```
 */
export async function run(args: string[]): Promise<number> {
  const dash = args.indexOf("--");
  const own = dash === -1 ? args : args.slice(0, dash);
  const command = dash === -1 ? [] : args.slice(dash + 1);
  const { values, positionals } = parseRoleArgs("send", own, {
    cert: { type: "string" },
    key: { type: "string" },
    ca: { type: "string" },
    "server-name": { type: "string" },
    "buffer-bytes": { type: "string" },
    linger: { type: "string" },
    "max-line": { type: "string" },
    help: { type: "boolean", short: "h" },
  }, true);
  if (printedHelp(values, USAGE)) return 0;
  if (positionals.length !== 1) {
    throw new ConfigError(
      positionals.length === 0
        ? "expected the endpoint HOST:PORT (see 'reclog send --help')"
        : `expected one HOST:PORT, got ${positionals.length} arguments (put COMMAND after --)`,
    );
  }
  const endpoint = parseHostPort(positionals[0]!, "HOST:PORT");
  if (endpoint.port === 0) throw new ConfigError(`HOST:PORT '${positionals[0]}': port 0`);
  if (dash !== -1 && command.length === 0) throw new ConfigError("expected COMMAND after --");
  const bufferBytes = values["buffer-bytes"] === undefined
    ? 8 * 1024 * 1024
    : parseBytes(values["buffer-bytes"], "--buffer-bytes");
  const maxLine = values["max-line"] === undefined
    ? DEFAULT_MAX_LINE
    : parseBytes(values["max-line"], "--max-line");
  const linger = values.linger === undefined ? 10 : Number(values.linger);
  if (values.linger !== undefined && (!/^\d+(\.\d+)?$/.test(values.linger) || linger > 86_400)) {
    throw new ConfigError(`--linger '${values.linger}': expected seconds, 0 to 86400`);
  }
  const tlsFiles = parseTlsFlags(values);
  if (!tlsFiles && values["server-name"] !== undefined) {
    throw new ConfigError("--server-name needs --cert, --key and --ca (it names the TLS server)");
  }
  const material = tlsFiles ? await loadTlsMaterial(tlsFiles) : undefined;

  let child: Deno.ChildProcess | undefined;
  if (command.length > 0) {
    try {
      child = new Deno.Command(command[0]!, {
        args: command.slice(1),
        stdin: "inherit",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (error) {
      if (
        error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied
      ) {
        throw new ConfigError(
          `Cannot run COMMAND '${command[0]}': needs the run permission (deno run --allow-run)`,
        );
      }
      if (error instanceof Deno.errors.NotFound) {
        throw new ConfigError(`Cannot run COMMAND '${command[0]}': not found`);
      }
      throw new ConfigError(`Cannot run COMMAND '${command[0]}': ${errorMessage(error)}`);
    }
  }

  await using sender = new LineSender({
    endpoint,
    tls: material,
    serverName: values["server-name"],
    bufferBytes,
  });
  sender.start();

  const inputEnded = new AbortController();
  const hardStop = new AbortController();
  using _signals = handleSignals(child, inputEnded, hardStop);
  const forward = async (stream: ReadableStream<Uint8Array>) => {
    for await (
      const lines of stream.pipeThrough(new LineSplitStream({ maxLine, telnet: false }))
    ) {
      if (!sender.send(lines)) await sender.waitForRoom();
      if (hardStop.signal.aborted) break;
    }
  };
  const aborted = (signal: AbortSignal) =>
    new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      signal.addEventListener("abort", () => resolve(), { once: true });
    });
  // The input ends when it ends (or COMMAND's output does), or at the first
  // signal without COMMAND; a second signal stops at once, even while
  // COMMAND's children still hold its output open.
  const input = child ? Promise.all([forward(child.stdout), forward(child.stderr)]) : Promise.race([
    forward(Deno.stdin.readable).catch((error) => {
      logger.error("reading stdin failed: {error}", { error: errorMessage(error) });
    }),
    aborted(inputEnded.signal),
  ]);
  input.catch(() => {}); // after a hard stop, nobody waits for it any more
  await Promise.race([input, aborted(hardStop.signal)]);
  let commandCode = 0;
  if (child) {
    const status = await child.status;
    commandCode = status.code;
    if (!status.success) {
      logger.info("COMMAND exited with code {code}", { code: status.code });
    }
  }
  const undelivered = await Promise.race([
    sender.finish(linger * 1000),
    aborted(hardStop.signal).then(async () => {
      const pending = sender.pending;
      await sender.close();
      return pending;
    }),
  ]);
  const lost = undelivered + sender.dropped;
  if (sender.dropped > 0) {
    logger.error("dropped {lines} lines (buffer full while {endpoint} was away)", {
      lines: sender.dropped,
      endpoint: formatHostPort(endpoint),
    });
  }
  if (undelivered > 0) {
    logger.error("{lines} lines not delivered: {endpoint} did not take them within {linger} s", {
      lines: undelivered,
      endpoint: formatHostPort(endpoint),
      linger,
    });
  }
  if (commandCode !== 0) return commandCode;
  return lost > 0 ? 1 : 0;
}

/**
 * First signal: forwarded to COMMAND, or (without COMMAND) it ends the input;
 * a second one kills COMMAND and aborts `hardStop` (stop at once, after what
 * can be said about undelivered lines).
 */
function handleSignals(
  child: Deno.ChildProcess | undefined,
  inputEnded: AbortController,
  hardStop: AbortController,
): Disposable {
  const kill = (signal: Deno.Signal) => {
    try {
      child?.kill(signal);
    } catch {
      // already exited
    }
  };
  const shutdown = shutdownSignal({
    onFirst: (signal) => child ? kill(signal) : inputEnded.abort(),
    onSecond: () => {
      kill("SIGKILL");
      hardStop.abort();
    },
  });
  return shutdown;
}
