/**
 * `reclog serve`: syslog inputs → journal → mutual-TLS fan-out.
 *
 * @module
 */

import {
  ConfigError,
  parseBytes,
  parseHostPort,
  parseRoleArgs,
  prepareDir,
  printedHelp,
} from "../cli/flags.ts";
import { formatHostPort } from "../util/address.ts";
import { FanoutServer } from "../transport/fanout_server.ts";
import { Journal } from "../journal/journal.ts";
import { log } from "../util/log.ts";
import { shutdownSignal } from "../util/shutdown.ts";
import { FileTail } from "../sources/file.ts";
import {
  bindFlag as bind,
  defaultFileState,
  inputMetrics,
  openSource,
  parseFileFlags,
  parseInputFlags,
  toJournal,
} from "../sources/open.ts";
import * as journalInput from "../sources/open_journal.ts";
import { FileCheckpoints } from "../state/file_checkpoints.ts";
import { TlsReloader } from "../tls/reloader.ts";
import { Metrics } from "../ops/metrics.ts";
import { PUBLISH_FLAGS, PUBLISH_USAGE, startPublishing } from "../sinks/journal_publisher.ts";
import { loadTlsMaterial, parseDn, parseFingerprint, type PeerPolicy } from "../tls/policy.ts";

const USAGE = `Usage: reclog serve --cert FILE --key FILE --ca FILE [flags]

Receives syslog from the local syslog daemon (or reads the systemd journal)
and hands every message, over mutual TLS 1.3, to every connected 'reclog pull'.

TLS (required):
  --cert FILE               server certificate (PEM)
  --key FILE                its private key (PEM)
  --ca FILE                 CA certificate(s) a client certificate must chain to

Listening:
  --listen HOST:PORT        mutual-TLS listener                [0.0.0.0:6514]
  --syslog-in ADDR          syslog input, repeatable: HOST:PORT or udp://HOST:PORT
                            (UDP), tcp://HOST:PORT (RFC 6587 octet counting or
                            newline framing), relp://HOST:PORT (rsyslog omrelp;
                            acknowledged once in the journal, with --spool once
                            in the spool file)  [127.0.0.1:5140; none with
                            --journal or --journal-dir]
  --tcp-in HOST:PORT        plain TCP lines (nc, telnet, 'reclog send') become
                            messages of stream 'tcp', repeatable

Files (file-mode; 'pull --mirror DIR' keeps an exact copy at home):
  --file PATH[=NAME]        follow PATH like 'tail -F' as stream NAME (default
                            its base name), through rotation; repeatable
  --rotated GLOB            where rotated files go, e.g. '/var/log/messages.*[0-9]',
                            to finish a file that rotated while serve was down;
                            repeatable                         [PATH.*]
  --from-start              read a file never seen before from its beginning
                            (default: from its end)
  --file-state FILE         where each file was read to  [DIR/files.json with
                            --spool, else ~/.local/state/reclog/files.json]

${journalInput.JOURNAL_USAGE}

${PUBLISH_USAGE}

Which clients are accepted (beyond chaining to --ca):
  --issuer DN               exact issuer, 'CN=My CA,O=Example' or '/O=Example/CN=My CA'
  --allow-cn NAME           allowed subject common name, repeatable
  --allow-fingerprint HEX   allowed SHA-256 certificate fingerprint, repeatable

Journal (every message gets a sequence number; clients resume from theirs):
  --journal-bytes SIZE      messages kept in memory for clients that are away
                            or slow, e.g. 64MiB                [64MiB]
  --spool DIR               also keep the journal in segment files in DIR, so a
                            restart of serve continues it (same epoch, next
                            sequence number) and nothing accepted is lost
  --spool-bytes SIZE        bytes of segment files kept in DIR [1GiB]
  --max-message SIZE        longest syslog message over TCP; longer ones are
                            cut and counted                    [64KiB]

Monitoring:
  --metrics HOST:PORT       Prometheus text format at /metrics, 'ok' at /healthz

  -h, --help                this text

--cert, --key and --ca are read again on SIGHUP and when they change on disk
(new connections use them; a bad set is refused and the old one kept).
Stops cleanly on SIGINT/SIGTERM (exit 0). Exit 2 on a usage or configuration error.`;

const OPTIONS = {
  help: { type: "boolean", short: "h" },
  cert: { type: "string" },
  key: { type: "string" },
  ca: { type: "string" },
  listen: { type: "string", default: "0.0.0.0:6514" },
  "syslog-in": { type: "string", multiple: true },
  "tcp-in": { type: "string", multiple: true },
  file: { type: "string", multiple: true },
  rotated: { type: "string", multiple: true },
  "from-start": { type: "boolean", default: false },
  metrics: { type: "string" },
  "file-state": { type: "string" },
  issuer: { type: "string" },
  "allow-cn": { type: "string", multiple: true },
  "allow-fingerprint": { type: "string", multiple: true },
  "journal-bytes": { type: "string", default: "64MiB" },
  spool: { type: "string" },
  "spool-bytes": { type: "string", default: "1GiB" },
  "max-message": { type: "string", default: "64KiB" },
  ...journalInput.JOURNAL_FLAGS,
  ...PUBLISH_FLAGS,
} as const;

/**
 * Runs `reclog serve`; resolves to the exit code.
 *
 * @example Serve with defaults
 * ```ts
 * import { run } from "./serve.ts";
 * await run(["--cert", "server.pem", "--key", "server.key", "--ca", "ca.pem"]);
 * ```
 */
export async function run(args: string[]): Promise<number> {
  const { values } = parseRoleArgs("serve", args, OPTIONS);
  if (printedHelp(values, USAGE)) return 0;
  for (const flag of ["cert", "key", "ca"] as const) {
    if (!values[flag]) {
      throw new ConfigError(`--${flag} is required (see 'reclog serve --help')`);
    }
  }
  const listen = parseHostPort(values.listen, "--listen");
  const journalSpec = journalInput.parseJournalFlags(values);
  const inputs = parseInputFlags(values["syslog-in"], values["tcp-in"], {
    defaultInput: journalSpec === undefined,
  });
  const files = parseFileFlags(values.file ?? []);
  const policy: PeerPolicy = {
    issuer: values.issuer === undefined ? undefined : parseDn(values.issuer, "--issuer"),
    allowCn: values["allow-cn"] ?? [],
    allowFingerprint: (values["allow-fingerprint"] ?? []).map((v) =>
      parseFingerprint(v, "--allow-fingerprint")
    ),
  };
  const maxBytes = parseBytes(values["journal-bytes"], "--journal-bytes");
  const spoolBytes = parseBytes(values["spool-bytes"], "--spool-bytes");
  const maxMessage = parseBytes(values["max-message"], "--max-message");
  if (maxMessage > 512 * 1024) {
    throw new ConfigError(`--max-message '${values["max-message"]}': at most 512KiB`);
  }
  const material = await loadTlsMaterial({ cert: values.cert!, key: values.key!, ca: values.ca! });

  using shutdown = shutdownSignal();
  const signal = shutdown.signal;
  if (values.spool) await prepareDir("--spool", values.spool);
  let journal: Journal;
  try {
    journal = await Journal.open({ maxBytes, spoolDir: values.spool, spoolBytes });
  } catch (error) {
    if (values.spool && error instanceof Error && error.message.includes("--spool")) {
      throw new ConfigError(error.message);
    }
    throw error;
  }
  await using _journal = journal;
  await using stack = new AsyncDisposableStack();
  const metrics = new Metrics();
  const bound: string[] = [];
  for (const input of inputs) {
    const label = { input: `${input.label} ${input.value}` };
    const onBatch = toJournal(journal, input.stream, {
      counters: {
        messages: metrics.counter("reclog_input_messages_total", "Messages received", label),
        bytes: metrics.counter("reclog_input_bytes_total", "Bytes of messages received", label),
        empty: metrics.counter("reclog_input_empty_total", "Empty messages dropped", label),
      },
      durable: input.kind === "relp",
    });
    const source = stack.use(openSource(input, onBatch, { maxLength: maxMessage }));
    const address: Deno.NetAddr = await bind(() => source.listen(), input.flag, input.value);
    const what = input.kind === "lines" ? "tcp-in" : `syslog-in ${input.kind}`;
    bound.push(
      `${what} listening on ${formatHostPort({ host: address.hostname, port: address.port })}`,
    );
    inputMetrics(metrics, source, label, address.port);
  }
  if (files.length > 0) {
    const tails = new Map<string, FileTail>();
    const checkpoints = stack.use(
      await FileCheckpoints.open(
        values["file-state"] ?? (values.spool ? `${values.spool}/files.json` : defaultFileState()),
        () => Object.fromEntries([...tails].map(([name, tail]) => [name, tail.position])),
      ),
    );
    for (const { path, name } of files) {
      const stream = new TextEncoder().encode(name);
      const tail = new FileTail({
        path,
        name,
        from: checkpoints.get(name),
        fromStart: values["from-start"],
        rotatedGlobs: values.rotated,
        maxChunk: maxMessage,
        onBatch: toJournal(journal, name),
        onRotated: () => journal.appendRotated(stream),
      });
      tails.set(name, stack.use(tail));
      await tail.listen();
      bound.push(`file ${name} following ${path}`);
    }
  }
  if (journalSpec) {
    const options = { spoolDir: values.spool, maxMessage, metrics };
    const input = stack.use(await journalInput.startJournalInput(journalSpec, journal, options));
    bound.push(
      `${input.description} read ${input.startCursor ? "after its cursor" : "from the start"}`,
    );
  }
  const publishing = await startPublishing(values, journal, {
    spoolDir: values.spool,
    serveTls: { cert: values.cert!, key: values.key!, ca: values.ca! },
    metrics,
    signal,
  });
  if (publishing) bound.push(`publishing to ${stack.use(publishing).description}`);
  const server = stack.use(
    new FanoutServer(journal, {
      host: listen.host,
      port: listen.port,
      material,
      policy,
      metrics,
    }),
  );
  stack.use(new TlsReloader(material, { onReload: (next) => server.reload(next) }));
  const address = await bind(() => server.listen(), "--listen", values.listen);
  if (values.metrics) {
    const address = parseHostPort(values.metrics, "--metrics");
    const gauges: Array<[string, string, () => number]> = [
      ["reclog_clients_connected", "Clients streaming", () => server.clients],
      ["reclog_journal_entries", "Messages held", () => journal.nextSeq - journal.firstSeq],
      ["reclog_journal_bytes", "Bytes of segments in memory", () => journal.bytes],
      ["reclog_journal_disk_bytes", "Bytes of segments in the spool", () => journal.diskBytes],
      ["reclog_journal_oldest_seq", "Oldest sequence number held", () => journal.firstSeq],
      ["reclog_journal_next_seq", "Sequence number of the next message", () => journal.nextSeq],
    ];
    for (const [name, help, read] of gauges) metrics.gauge(name, help, {}, read);
    if (values.spool) {
      metrics.gauge(
        "reclog_spool_healthy",
        "1 while the spool is written, 0 while spooling is paused (disk full, file too large)",
        {},
        () => journal.spoolHealthy ? 1 : 0,
      );
      metrics.counterOf(
        "reclog_spool_write_errors_total",
        "Writes to the spool that failed",
        {},
        () => journal.spoolWriteErrors,
      );
    }
    stack.use(
      await bind(
        () => metrics.serve(address, () => journal.spoolHealthy),
        "--metrics",
        values.metrics,
      ),
    );
  }
  // Everything is bound: only now say so, so a failure above prints one line.
  for (const line of bound) log("serve").info(line);
  log("serve").info("mTLS listening on {address} (journal {epoch}, {bytes} bytes)", {
    address: formatHostPort(address),
    epoch: journal.epoch,
    bytes: maxBytes,
  });

  await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve()));
  await server.close("server shutting down");
  log("serve").info("stopped after {count} messages", { count: journal.nextSeq - 1 });
  return 0;
}
