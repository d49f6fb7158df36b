/**
 * Entries per second from systemd journal files through
 * {@linkcode SystemdJournalReader} and the formatter, beside
 * `journalctl -o json > /dev/null` alone (the ceiling: the reader cannot be
 * faster than the journalctl it reads).
 *
 * Writes N entries shaped like journald's (about 20 fields each, 80–120 byte
 * messages, several units and priorities) with `systemd-journal-remote`, then
 * for each of: `journalctl` alone, the reader with `rfc5424`, the reader
 * with `json`, measures the median wall time of `--repeats` runs reading all
 * of them.
 *
 * ```sh
 * npx -y deno@2.9.6 run --allow-all bench/systemd_journal_bench.ts [--entries 200000] [--repeats 3] [--dir DIR]
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { SystemdJournalReader } from "../lib/sources/systemd_journal.ts";
import type { JournalFormat } from "../lib/framing/journal_entry.ts";

const { values } = parseArgs({
  options: {
    entries: { type: "string", default: "200000" },
    repeats: { type: "string", default: "3" },
    dir: { type: "string" },
  },
});
const ENTRIES = Number(values.entries);
const REPEATS = Number(values.repeats);
const encoder = new TextEncoder();
const RFC5424_FIELDS =
  "MESSAGE,PRIORITY,SYSLOG_FACILITY,_HOSTNAME,SYSLOG_IDENTIFIER,_COMM,_PID,SYSLOG_PID";

function journalRemote(): string {
  for (
    const path of ["/usr/lib/systemd/systemd-journal-remote", "/lib/systemd/systemd-journal-remote"]
  ) {
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // not here
    }
  }
  throw new Error(
    "systemd-journal-remote is not installed: apt-get install -y systemd-journal-remote",
  );
}

/** Journal export format of `count` journald-like entries starting at `from`. */
function exportChunk(from: number, count: number): Uint8Array {
  const units = ["nginx.service", "sshd.service", "cron.service", "app.service", "postfix.service"];
  let text = "";
  for (let i = from; i < from + count; i++) {
    const unit = units[i % units.length]!;
    const name = unit.split(".")[0]!;
    const pid = 1000 + (i % 5) * 17;
    text += `__REALTIME_TIMESTAMP=${1_796_197_841_000_000 + i * 37}\n` +
      `__MONOTONIC_TIMESTAMP=${1_000_000 + i * 37}\n` +
      `_BOOT_ID=0123456789abcdef0123456789abcdef\n_MACHINE_ID=3d1219c7c4c5404aaa1f6d2a48adfda4\n` +
      `_HOSTNAME=vps1\n_TRANSPORT=syslog\nPRIORITY=${i % 8}\nSYSLOG_FACILITY=${
        i % 3 === 0 ? 4 : 3
      }\n` +
      `SYSLOG_IDENTIFIER=${name}\n_PID=${pid}\n_UID=0\n_GID=0\n_COMM=${name}\n_EXE=/usr/sbin/${name}\n` +
      `_CMDLINE=/usr/sbin/${name} -D\n_CAP_EFFECTIVE=1ffffffffff\n_SYSTEMD_CGROUP=/system.slice/${unit}\n` +
      `_SYSTEMD_UNIT=${unit}\n_SYSTEMD_SLICE=system.slice\n_SYSTEMD_INVOCATION_ID=${
        (i % 5).toString(16).repeat(32)
      }\nSYSLOG_TIMESTAMP=Dec  2 07:50:41 \n` +
      `MESSAGE=request ${i} from 203.0.113.${i % 250} completed in ${i % 997} ms with status 200 (${
        "x".repeat(i % 40)
      })\n\n`;
  }
  return encoder.encode(text);
}

async function writeJournal(dir: string): Promise<void> {
  const child = new Deno.Command(journalRemote(), {
    args: [`--output=${dir}/bench.journal`, "--split-mode=none", "-"],
    stdin: "piped",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  for (let i = 0; i < ENTRIES; i += 10_000) {
    await writer.write(exportChunk(i, Math.min(10_000, ENTRIES - i)));
  }
  await writer.close();
  const out = await child.output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
}

async function journalctlAlone(dir: string, extra: string[] = []): Promise<number> {
  const started = performance.now();
  const out = await new Deno.Command("journalctl", {
    args: [
      `--directory=${dir}`,
      "--merge",
      "--output=json",
      "--all",
      "--no-pager",
      "--no-tail",
      ...extra,
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  return performance.now() - started;
}

async function throughReader(dir: string, format: JournalFormat): Promise<number> {
  const started = performance.now();
  await using reader = new SystemdJournalReader({ directory: dir, format: { format } });
  let count = 0;
  let bytes = 0;
  for await (const batch of reader) {
    for (const record of batch.records) bytes += record.message.length;
    count += batch.records.length;
    if (count >= ENTRIES) break;
  }
  if (count !== ENTRIES || bytes === 0) throw new Error(`read ${count} of ${ENTRIES}`);
  return performance.now() - started;
}

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

// --dir DIR: keep the journal there (written once, reused by later runs).
const dir = values.dir ?? await Deno.makeTempDir({ prefix: "reclog-journal-bench-" });
try {
  const t0 = performance.now();
  if (values.dir === undefined || ![...Deno.readDirSync(dir)].length) {
    await writeJournal(dir);
    console.error(`wrote ${ENTRIES} entries in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const runs: [string, () => Promise<number>][] = [
    ["`journalctl -o json > /dev/null` (ceiling)", () => journalctlAlone(dir)],
    [
      "`journalctl -o json --output-fields=<the 8 mapped> > /dev/null` (ceiling of rfc5424)",
      () => journalctlAlone(dir, [`--output-fields=${RFC5424_FIELDS}`]),
    ],
    [
      "`journalctl -o export > /dev/null` (for comparison: not parsed by reclog)",
      () => journalctlAlone(dir, ["--output=export"]),
    ],
    ["reader + formatter, rfc5424", () => throughReader(dir, "rfc5424")],
    ["reader, json", () => throughReader(dir, "json")],
  ];
  console.log(`| path (${ENTRIES} entries, median of ${REPEATS}) | seconds | entries/s |`);
  console.log("| --- | ---: | ---: |");
  for (const [name, run] of runs) {
    await run(); // warm the page cache and the JIT
    const times: number[] = [];
    for (let r = 0; r < REPEATS; r++) times.push(await run());
    const ms = median(times);
    console.log(`| ${name} | ${(ms / 1000).toFixed(2)} | ${Math.round(ENTRIES / (ms / 1000))} |`);
  }
} finally {
  if (values.dir === undefined) await Deno.remove(dir, { recursive: true });
}
