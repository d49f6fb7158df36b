/**
 * `reclog listen`: socat-mode. Accepts any number of concurrent TCP senders
 * (telnet, nc, socat, `reclog send`), optionally UDP datagrams on the same
 * port, or mutual-TLS senders, and appends their lines to one file. Unlike
 * `socat -u TCP4-LISTEN:port,fork OPEN:file,append`, every line is written
 * whole: lines from concurrent senders never interleave inside a line.
 *
 * The wiring: {@linkcode TcpSource} (lines, optionally TLS) and
 * {@linkcode UdpSource} (lines) → {@linkcode FileSink}.
 *
 * @module
 */

import type { BatchHandler } from "../batch.ts";
import { ConfigError, parseBytes, parseRoleArgs, printedHelp } from "../cli/flags.ts";
import { describeFsError, describeNetError } from "../util/errors.ts";
import { formatHostPort } from "../util/address.ts";
import { FileSink, type FileSinkError } from "../sinks/line_file.ts";
import { DEFAULT_MAX_LINE } from "../framing/lines.ts";
import { log } from "../util/log.ts";
import { shutdownSignal } from "../util/shutdown.ts";
import { loadTlsMaterial } from "../tls/policy.ts";
import { parseTlsFlags } from "../tls/flags.ts";
import { TcpSource } from "../sources/tcp.ts";
import { UdpSource } from "../sources/udp.ts";

const logger = log("listen");

/** On a stop, how long connected senders get to finish, ms. */
const CLOSE_GRACE_MS = 1_000;

const USAGE = `Usage: reclog listen --port PORT --file FILE [flags]

Accepts any number of concurrent TCP senders (telnet, nc, socat, reclog send)
and appends their lines to FILE, each line whole (lines of concurrent senders
never interleave). Telnet's CR LF becomes LF and its option negotiation is
dropped. A sender's last line without a newline is written, with one, when it
disconnects. A drop-in for
  socat -u TCP4-LISTEN:PORT,reuseaddr,fork OPEN:FILE,creat,append

Flags:
  --port PORT        TCP port to listen on (0: pick a free one, logged at start)
  --file FILE        file to append to (created with mode 0640 if absent)
  --host ADDR        address to listen on (default 127.0.0.1; 0.0.0.0 for all)
  --udp              also accept UDP datagrams on the same port (one datagram,
                     one or more lines; not with TLS)
  --timestamp        prefix each line with the RFC 3339 time it was received
  --peer             prefix each line with the sender's HOST:PORT
                     (both: "TIME PEER line")
  --cert FILE        with --key and --ca: listen with mutual TLS; senders
  --key FILE           must present a certificate signed by --ca
  --ca FILE
  --max-line BYTES   longest line (default 64KiB); longer ones are split
  -h, --help         print this help

SIGINT or SIGTERM: stop accepting, write the partial lines of connected
senders, flush and exit 0. Exit 1 if the file cannot be written (full disk,
permissions), 2 on usage or configuration errors.`;

function parsePort(value: string): number {
  if (!/^\d{1,5}$/.test(value) || Number(value) > 65535) {
    throw new ConfigError(`--port '${value}': expected a port number from 0 to 65535`);
  }
  return Number(value);
}

/**
 * Runs `reclog listen`.
 *
 * @example Run the role
 * ```ts
 * import { run } from "./listen.ts";
 * Deno.exit(await run(["--port", "5140", "--file", "/tmp/lines.log"]));
 * ```
 */
export async function run(args: string[]): Promise<number> {
  const { values } = parseRoleArgs("listen", args, {
    port: { type: "string" },
    file: { type: "string" },
    host: { type: "string" },
    udp: { type: "boolean" },
    timestamp: { type: "boolean" },
    peer: { type: "boolean" },
    cert: { type: "string" },
    key: { type: "string" },
    ca: { type: "string" },
    "max-line": { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  if (printedHelp(values, USAGE)) return 0;
  if (values.port === undefined) {
    throw new ConfigError("--port is required (see 'reclog listen --help')");
  }
  const port = parsePort(values.port);
  if (values.file === undefined || values.file === "") {
    throw new ConfigError("--file is required: the file lines are appended to");
  }
  const file = values.file;
  const host = values.host ?? "127.0.0.1";
  if (host === "") throw new ConfigError("--host '': expected an address");
  const maxLine = values["max-line"] === undefined
    ? DEFAULT_MAX_LINE
    : parseBytes(values["max-line"], "--max-line");
  const tlsFiles = parseTlsFlags(values);
  if (tlsFiles && values.udp) {
    throw new ConfigError("--udp cannot be used with --cert/--key/--ca (datagrams are not TLS)");
  }
  const material = tlsFiles ? await loadTlsMaterial(tlsFiles) : undefined;

  // Stops on the first signal (shutdownSignal) or when the file cannot be written.
  const failure = new AbortController();
  let failed: FileSinkError | undefined;
  let sink: FileSink;
  try {
    sink = await FileSink.open(file, {
      timestamp: values.timestamp ?? false,
      peer: values.peer ?? false,
      onError(error) {
        failed = error;
        logger.error("{error}", { error: `${error.message}; stopping` });
        failure.abort();
      },
    });
  } catch (error) {
    throw new ConfigError(`Cannot open --file '${file}': ${describeFsError(error)}`);
  }
  await using _sink = sink;
  using shutdown = shutdownSignal();
  const stop = AbortSignal.any([shutdown.signal, failure.signal]);
  // A failed write is reported once by onError; the senders' lines after it are lost.
  const onBatch: BatchHandler = (batch) => sink.write(batch).then(() => {}, () => {});
  await using stack = new AsyncDisposableStack();
  const tcp = stack.use(
    new TcpSource({
      host,
      port,
      onBatch,
      framing: "lines",
      maxLength: maxLine,
      tls: material,
      label: "listen",
      idleTimeoutMs: 0,
      closeGraceMs: CLOSE_GRACE_MS,
      connectionLog: "info",
    }),
  );
  let udp: UdpSource | undefined;
  let address: Deno.NetAddr;
  try {
    address = await tcp.listen();
    if (values.udp) {
      // The same port as TCP (the real one when 0 was asked).
      udp = stack.use(
        new UdpSource({ host, port: address.port, onBatch, framing: "lines", maxLength: maxLine }),
      );
      await udp.listen();
    }
  } catch (error) {
    throw new ConfigError(
      `Cannot listen on ${formatHostPort({ host, port })}${values.udp ? " (TCP and UDP)" : ""}: ${
        describeNetError(error)
      }`,
    );
  }
  const kind = material ? "mutual TLS" : values.udp ? "TCP and UDP" : "TCP";
  logger.info(`listening on {address} (${kind}), appending to {file}`, {
    address: formatHostPort({ host, port: address.port }),
    file,
  });
  await new Promise<void>((resolve) => {
    if (stop.aborted) resolve();
    stop.addEventListener("abort", () => resolve(), { once: true });
  });
  await tcp.close();
  await udp?.close();
  try {
    await sink.flush();
  } catch {
    // reported by onError
  }
  await sink.close();
  if (failed || sink.error) {
    logger.error("stopped: {lost} lines could not be written to {file}", {
      lost: sink.linesLost,
      file,
    });
    return 1;
  }
  logger.info("stopped; {lines} lines written to {file}", { lines: sink.linesWritten, file });
  return 0;
}
