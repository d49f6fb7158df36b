/**
 * `reclog send`: sends stdin, or the stdout and stderr of a command, line by
 * line (each line whole) to `reclog listen` or `reclog serve --tcp-in`, over
 * plain TCP or mutual TLS. While the endpoint is away it keeps a bounded
 * buffer and reconnects with back-off; lines are only taken off the buffer
 * once the kernel has accepted them, so nothing is lost while the endpoint
 * is simply down.
 *
 * @module
 */

import net from "node:net";
import tls from "node:tls";
import { ConfigError, parseBytes, parseHostPort, parseRoleArgs } from "../cli/flags.ts";
import { errorMessage } from "../util/errors.ts";
import { formatHostPort, type HostPort } from "../util/address.ts";
import { DEFAULT_MAX_LINE, LineSplitStream } from "../framing/lines.ts";
import { log } from "../util/log.ts";
import { sleep } from "../util/sleep.ts";
import { clientTlsOptions, loadTlsMaterial, type TlsMaterial } from "../tls/policy.ts";
import { parseTlsFlags } from "../tls/flags.ts";

export type { HostPort } from "../cli/flags.ts";
export type { TlsFiles, TlsMaterial } from "../tls/policy.ts";

const logger = log("send");

/** Bytes gathered into one socket write. */
const BATCH_BYTES = 64 * 1024;
/** Bytes written to the socket and not yet accepted by the kernel, at most. */
const MAX_IN_FLIGHT = 256 * 1024;
/** Time allowed for a TCP connect (and TLS handshake). */
const CONNECT_TIMEOUT_MS = 10_000;
/** After a TLS handshake, time to wait for the server to refuse our certificate. */
const TLS_PROBATION_MS = 500;
/** Time the endpoint gets to close its side after our last line. */
const CLOSE_WAIT_MS = 2_000;

/** Options for {@linkcode LineSender}. */
export interface LineSenderOptions {
  /** Endpoint to send to. */
  endpoint: HostPort;
  /**
   * Connect with mutual TLS using this material instead of plain TCP.
   * @default {undefined}
   */
  tls?: TlsMaterial;
  /**
   * Name the server certificate must match, with `tls`.
   * @default {endpoint.host}
   */
  serverName?: string;
  /**
   * Bytes of unsent lines kept while the endpoint is away; beyond it the
   * oldest lines are dropped (and counted). While connected, `send()` asks
   * the producer to wait instead.
   * @default {8388608}
   */
  bufferBytes?: number;
  /**
   * First reconnect delay, doubled after each failure.
   * @default {100}
   */
  backoffMinMs?: number;
  /**
   * Longest reconnect delay.
   * @default {5000}
   */
  backoffMaxMs?: number;
  /**
   * Closes the sender (without waiting for the buffer) when aborted.
   * @default {undefined}
   */
  signal?: AbortSignal;
}

interface InFlight {
  lines: Uint8Array[];
  bytes: number;
}

/**
 * A reconnecting line connection to one endpoint, with a bounded buffer.
 * Lines are removed from the buffer only when the kernel accepted them; the
 * ones written to a connection that then fails are sent again.
 *
 * @example Send two lines and wait up to 10 s for them to go out
 * ```ts
 * import { LineSender } from "./send.ts";
 * await using sender = new LineSender({ endpoint: { host: "127.0.0.1", port: 5140 } });
 * sender.start();
 * const encoder = new TextEncoder();
 * if (!sender.send([encoder.encode("one"), encoder.encode("two")])) await sender.waitForRoom();
 * const undelivered = await sender.finish(10_000);
 * ```
 */
export class LineSender implements AsyncDisposable {
  readonly #endpoint: HostPort;
  readonly #name: string;
  readonly #tls: TlsMaterial | undefined;
  readonly #serverName: string;
  readonly #bufferBytes: number;
  readonly #backoffMin: number;
  readonly #backoffMax: number;
  readonly #signal: AbortSignal | undefined;
  readonly #stop = new AbortController();
  #queue: Uint8Array[] = [];
  #head = 0;
  #queuedBytes = 0;
  #inFlight: InFlight[] = [];
  #inFlightBytes = 0;
  #connected = false;
  #finishing = false;
  #done = false;
  #dropped = 0;
  #droppedUnreported = 0;
  #delivered = 0;
  #loop: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  #wakers: Array<() => void> = [];
  #onAbort = () => void this.close();

  /** Creates the sender; {@linkcode LineSender.start} starts connecting. */
  constructor(options: LineSenderOptions) {
    this.#endpoint = options.endpoint;
    this.#name = formatHostPort(options.endpoint);
    this.#tls = options.tls;
    this.#serverName = options.serverName ?? options.endpoint.host;
    this.#bufferBytes = options.bufferBytes ?? 8 * 1024 * 1024;
    this.#backoffMin = options.backoffMinMs ?? 100;
    this.#backoffMax = options.backoffMaxMs ?? 5_000;
    this.#signal = options.signal;
  }

  /** Lines dropped because the buffer was full while the endpoint was away. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Lines the kernel accepted for the endpoint so far. */
  get delivered(): number {
    return this.#delivered;
  }

  /** Lines buffered (unsent, or sent on a connection not yet confirmed). */
  get pending(): number {
    let lines = this.#queue.length - this.#head;
    for (const entry of this.#inFlight) lines += entry.lines.length;
    return lines;
  }

  /** Whether a connection is up now. */
  get connected(): boolean {
    return this.#connected;
  }

  /** Starts connecting (and reconnecting) in the background. */
  start(): void {
    if (this.#loop || this.#closing) return;
    if (this.#signal?.aborted) {
      void this.close();
      return;
    }
    this.#signal?.addEventListener("abort", this.#onAbort, { once: true });
    this.#loop = this.#run();
  }

  /**
   * Buffers lines (without their newline; they are copied). Returns false
   * when the buffer is over its size while connected: await
   * {@linkcode LineSender.waitForRoom} before sending more. While the
   * endpoint is away, the oldest lines are dropped instead.
   */
  send(lines: Uint8Array[]): boolean {
    if (lines.length === 0) return true;
    let size = 0;
    for (const line of lines) size += line.length;
    // One compact copy for the batch: the chunks the lines point into may be
    // much larger than the lines.
    const copy = new Uint8Array(size);
    let offset = 0;
    for (const line of lines) {
      copy.set(line, offset);
      this.#queue.push(copy.subarray(offset, offset + line.length));
      offset += line.length;
    }
    this.#queuedBytes += size + lines.length;
    this.#wake();
    if (this.#queuedBytes <= this.#bufferBytes) return true;
    if (this.#connected) return false;
    this.#dropOldest();
    return true;
  }

  /** Resolves when the buffer has room, or the endpoint is away (then drops the oldest). */
  async waitForRoom(): Promise<void> {
    while (this.#queuedBytes > this.#bufferBytes && this.#connected && !this.#closing) {
      await this.#changed();
    }
    if (this.#queuedBytes > this.#bufferBytes) this.#dropOldest();
  }

  /**
   * No more lines will come: sends what is buffered, waiting up to
   * `timeoutMs` for the endpoint, closes the connection and resolves with the
   * number of lines that could not be delivered.
   */
  async finish(timeoutMs: number): Promise<number> {
    this.#finishing = true;
    this.#wake();
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        this.#loop,
        new Promise<void>((resolve) => timer = setTimeout(resolve, timeoutMs)),
      ]);
    } finally {
      clearTimeout(timer);
    }
    const undelivered = this.#done ? 0 : this.pending;
    await this.close();
    return undelivered;
  }

  /** Stops at once, closing the connection; buffered lines stay unsent. Safe to call twice. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#signal?.removeEventListener("abort", this.#onAbort);
      this.#stop.abort();
      this.#wake();
      await this.#loop;
    })();
    return this.#closing;
  }

  /** Same as `close()`, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #changed(): Promise<void> {
    return new Promise((resolve) => this.#wakers.push(resolve));
  }

  #wake(): void {
    const wakers = this.#wakers;
    this.#wakers = [];
    for (const wake of wakers) wake();
  }

  #dropOldest(): void {
    let dropped = 0;
    while (this.#queuedBytes > this.#bufferBytes && this.#head < this.#queue.length) {
      this.#queuedBytes -= this.#queue[this.#head]!.length + 1;
      this.#head++;
      dropped++;
    }
    this.#compact();
    if (dropped === 0) return;
    if (this.#droppedUnreported === 0) {
      logger.warn(
        "buffer full ({bytes} bytes) while {endpoint} is away: dropping the oldest lines",
        { bytes: this.#bufferBytes, endpoint: this.#name },
      );
    }
    this.#dropped += dropped;
    this.#droppedUnreported += dropped;
  }

  #compact(): void {
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }

  #empty(): boolean {
    return this.#head === this.#queue.length && this.#inFlight.length === 0;
  }

  async #run(): Promise<void> {
    let backoff = this.#backoffMin;
    let lastError = "";
    const stop = this.#stop.signal;
    while (!stop.aborted) {
      if (this.#finishing && this.#empty()) {
        this.#done = true;
        return;
      }
      let socket: net.Socket;
      try {
        socket = await this.#connect();
      } catch (error) {
        if (stop.aborted) return;
        const message = describeConnectError(error);
        if (message !== lastError) {
          logger.warn("cannot reach {endpoint}: {error}; retrying", {
            endpoint: this.#name,
            error: message,
          });
          lastError = message;
        } else {
          logger.debug("cannot reach {endpoint}: {error}", {
            endpoint: this.#name,
            error: message,
          });
        }
        await this.#sleep(backoff / 2 + Math.random() * backoff / 2);
        backoff = Math.min(backoff * 2, this.#backoffMax);
        continue;
      }
      backoff = this.#backoffMin;
      lastError = "";
      logger.info("connected to {endpoint}{tls}", {
        endpoint: this.#name,
        tls: this.#tls ? " (mutual TLS)" : "",
      });
      if (this.#droppedUnreported > 0) {
        logger.warn("{lines} lines were dropped while {endpoint} was away", {
          lines: this.#droppedUnreported,
          endpoint: this.#name,
        });
        this.#droppedUnreported = 0;
      }
      const outcome = await this.#pump(socket);
      if (outcome === "done") {
        this.#done = true;
        return;
      }
      if (stop.aborted) return;
      logger.warn("connection to {endpoint} lost ({why}); reconnecting", {
        endpoint: this.#name,
        why: outcome,
      });
      await this.#sleep(backoff / 2 + Math.random() * backoff / 2);
    }
  }

  async #connect(): Promise<net.Socket> {
    const socket = await this.#open();
    if (this.#tls) await this.#probation(socket as tls.TLSSocket);
    return socket;
  }

  /**
   * With TLS 1.3 the client's handshake is done before the server has
   * checked the client certificate, so a refused sender would write lines
   * into a connection about to be closed. Wait TLS_PROBATION_MS for the
   * server to close it (the session ticket is no sign of acceptance: a
   * server sends it before its own checks of the certificate).
   */
  async #probation(socket: tls.TLSSocket): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let onGone: (() => void) | undefined;
    let onError: ((error: Error) => void) | undefined;
    let onAbort: (() => void) | undefined;
    const stop = this.#stop.signal;
    try {
      await new Promise<void>((resolve, reject) => {
        timer = setTimeout(resolve, TLS_PROBATION_MS);
        onAbort = resolve;
        stop.addEventListener("abort", onAbort, { once: true });
        onError = (error) => reject(error);
        onGone = () =>
          reject(
            new Error(
              "the endpoint closed the connection after the TLS handshake (does it accept our --cert?)",
            ),
          );
        socket.once("error", onError);
        socket.once("end", onGone);
        socket.once("close", onGone);
        socket.resume();
      });
    } catch (error) {
      socket.destroy();
      throw error;
    } finally {
      clearTimeout(timer);
      if (onAbort) stop.removeEventListener("abort", onAbort);
      if (onError) socket.off("error", onError);
      if (onGone) {
        socket.off("end", onGone);
        socket.off("close", onGone);
      }
    }
  }

  #open(): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
      const { host, port } = this.#endpoint;
      const socket = this.#tls
        ? tls.connect({ host, port, ...clientTlsOptions(this.#tls, this.#serverName) })
        : net.connect({ host, port });
      const ready = this.#tls ? "secureConnect" : "connect";
      const timer = setTimeout(
        () => socket.destroy(new Error(`no connection after ${CONNECT_TIMEOUT_MS / 1000} s`)),
        CONNECT_TIMEOUT_MS,
      );
      const onAbort = () => socket.destroy(new Error("closing"));
      this.#stop.signal.addEventListener("abort", onAbort);
      const cleanup = () => {
        clearTimeout(timer);
        this.#stop.signal.removeEventListener("abort", onAbort);
        socket.off(ready, onReady);
        socket.off("error", onError);
      };
      const onReady = () => {
        cleanup();
        resolve(socket);
      };
      const onError = (error: Error) => {
        cleanup();
        socket.destroy();
        reject(error);
      };
      socket.once(ready, onReady);
      socket.once("error", onError);
    });
  }

  /** Writes buffered lines until the connection ends; "done" once all is sent and closed. */
  async #pump(socket: net.Socket): Promise<string> {
    let closed = false;
    let remoteEnded = false;
    let failure: string | undefined;
    socket.setKeepAlive(true, 30_000);
    socket.on("data", () => {}); // the protocol is one-way: discard
    socket.on("end", () => {
      remoteEnded = true;
      this.#wake();
    });
    socket.on("error", (error: Error) => {
      failure ??= errorMessage(error);
      this.#wake();
    });
    socket.on("close", () => {
      closed = true;
      this.#wake();
    });
    // Events that came before these handlers were attached.
    if (socket.destroyed) closed = true;
    if (socket.readableEnded || !socket.writable) remoteEnded = true;
    this.#connected = true;
    this.#wake();
    const stop = this.#stop.signal;
    try {
      while (!closed && !remoteEnded && !failure && !stop.aborted) {
        if (this.#head === this.#queue.length) {
          if (this.#finishing && this.#inFlight.length === 0) {
            await this.#endGracefully(socket, () => closed || remoteEnded);
            return "done";
          }
          await this.#changed();
          continue;
        }
        if (this.#inFlightBytes >= MAX_IN_FLIGHT) {
          await this.#changed();
          continue;
        }
        this.#writeBatch(socket, (error) => {
          failure ??= errorMessage(error);
        });
      }
      // Let the writes already handed over settle before deciding what to resend.
      await this.#settle(() => closed || this.#inFlight.length === 0, 1_000);
      return failure ?? (remoteEnded ? "closed by the endpoint" : "closed");
    } finally {
      this.#connected = false;
      socket.destroy();
      this.#requeueInFlight();
      this.#wake();
    }
  }

  #writeBatch(socket: net.Socket, onError: (error: Error) => void): void {
    const lines: Uint8Array[] = [];
    let bytes = 0;
    while (this.#head < this.#queue.length) {
      const line = this.#queue[this.#head]!;
      if (lines.length > 0 && bytes + line.length + 1 > BATCH_BYTES) break;
      lines.push(line);
      bytes += line.length + 1;
      this.#head++;
    }
    this.#queuedBytes -= bytes;
    this.#compact();
    const buffer = new Uint8Array(bytes);
    let offset = 0;
    for (const line of lines) {
      buffer.set(line, offset);
      offset += line.length;
      buffer[offset++] = 0x0a;
    }
    const entry: InFlight = { lines, bytes };
    this.#inFlight.push(entry);
    this.#inFlightBytes += bytes;
    socket.write(buffer, (error) => {
      if (error) {
        onError(error); // the lines are sent again on the next connection
        this.#wake();
        return;
      }
      const index = this.#inFlight.indexOf(entry);
      if (index === -1) return;
      this.#inFlight.splice(index, 1);
      this.#inFlightBytes -= bytes;
      this.#delivered += lines.length;
      this.#wake();
    });
  }

  /** Puts lines written to a lost connection, unconfirmed, back at the front. */
  #requeueInFlight(): void {
    if (this.#inFlight.length === 0) return;
    const lines = this.#inFlight.flatMap((entry) => entry.lines);
    this.#queue = [...lines, ...this.#queue.slice(this.#head)];
    this.#head = 0;
    this.#queuedBytes += this.#inFlightBytes;
    this.#inFlight = [];
    this.#inFlightBytes = 0;
  }

  async #endGracefully(socket: net.Socket, finished: () => boolean): Promise<void> {
    socket.end();
    await this.#settle(finished, CLOSE_WAIT_MS);
  }

  /** Waits until `condition()` holds, something closes us, or `timeoutMs` passes. */
  async #settle(condition: () => boolean, timeoutMs: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let expired = false;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        expired = true;
        resolve();
      }, timeoutMs);
    });
    try {
      while (!condition() && !expired && !this.#stop.signal.aborted) {
        await Promise.race([this.#changed(), deadline]);
      }
    } finally {
      clearTimeout(timer);
    }
  }

  #sleep(ms: number): Promise<void> {
    return sleep(ms, this.#stop.signal);
  }
}

function describeConnectError(error: unknown): string {
  const code = (error as { code?: string }).code;
  if (code === "ECONNREFUSED") return "connection refused";
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") return "host name not found";
  if (code === "EHOSTUNREACH" || code === "ENETUNREACH") return "no route to host";
  return errorMessage(error);
}

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
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
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
  let signals = 0;
  const hardStop = new AbortController();
  const onSignal = (signal: Deno.Signal) => () => {
    signals++;
    if (signals > 1) {
      hardStop.abort();
    } else if (child) {
      try {
        child.kill(signal);
      } catch {
        // already exited
      }
    } else {
      inputEnded.abort();
    }
  };
  hardStop.signal.addEventListener("abort", () => {
    try {
      child?.kill("SIGKILL");
    } catch {
      // already exited
    }
  }, { once: true });
  const onInt = onSignal("SIGINT");
  const onTerm = onSignal("SIGTERM");
  Deno.addSignalListener("SIGINT", onInt);
  Deno.addSignalListener("SIGTERM", onTerm);
  try {
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
    let commandCode = 0;
    if (child) {
      const [, , status] = await Promise.all([
        forward(child.stdout),
        forward(child.stderr),
        child.status,
      ]);
      commandCode = status.code;
      if (!status.success) {
        logger.info("COMMAND exited with code {code}", { code: status.code });
      }
    } else {
      await Promise.race([
        forward(Deno.stdin.readable).catch((error) => {
          logger.error("reading stdin failed: {error}", { error: errorMessage(error) });
        }),
        aborted(inputEnded.signal),
      ]);
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
  } finally {
    Deno.removeSignalListener("SIGINT", onInt);
    Deno.removeSignalListener("SIGTERM", onTerm);
  }
}
