/**
 * Makes sure the real peers the tests talk to are installed: rsyslog, socat,
 * tlog, logrotate, logger, openssl, nc,
 * nats-server. As root with apt-get it installs what
 * is missing (`apt-get update` once, then `apt-get install -y ...`);
 * otherwise it stops at once with the exact command to run. Tests never skip
 * because a peer is missing.
 *
 * @module
 */

/** The programs the tests talk to, and the Debian package of each. */
export const PEERS: Record<string, string> = {
  rsyslogd: "rsyslog",
  socat: "socat",
  "tlog-rec": "tlog",
  "tlog-play": "tlog",
  logrotate: "logrotate",
  logger: "bsdutils",
  openssl: "openssl",
  nc: "netcat-openbsd",
  ss: "iproute2",
  script: "bsdutils",
  "systemd-analyze": "systemd",
  // JetStream tests (issue 16): nats-server 2.9 from Debian.
  "nats-server": "nats-server",
  // Not on PATH: found as /usr/sbin/../lib/systemd/systemd-journal-remote.
  "../lib/systemd/systemd-journal-remote": "systemd-journal-remote",
  // rsyslog's RELP modules (imrelp, omrelp), found the same way.
  [`../lib/${Deno.build.arch}-linux-gnu/rsyslog/imrelp.so`]: "rsyslog-relp",
};

function found(program: string): boolean {
  const dirs = (Deno.env.get("PATH") ?? "").split(":").concat(["/usr/sbin", "/sbin"]);
  return dirs.some((dir) => {
    try {
      return Deno.statSync(`${dir}/${program}`).isFile;
    } catch {
      return false;
    }
  });
}

async function run(command: string[]): Promise<boolean> {
  const child = new Deno.Command(command[0]!, {
    args: command.slice(1),
    stdout: "inherit",
    stderr: "inherit",
    env: { DEBIAN_FRONTEND: "noninteractive" },
  });
  return (await child.output()).success;
}

/**
 * Installs missing peers or exits 1 with the command to run.
 *
 * @example Run before the tests
 * ```ts
 * import { ensurePeers } from "./ensure_peers.ts";
 * await ensurePeers();
 * ```
 */
export async function ensurePeers(): Promise<void> {
  const missing = [
    ...new Set(Object.entries(PEERS).filter(([p]) => !found(p)).map(([, pkg]) => pkg)),
  ];
  if (missing.length === 0) return;
  const install = `apt-get install -y ${missing.join(" ")}`;
  if (Deno.uid() === 0 && found("apt-get")) {
    console.error(`tests need: ${missing.join(" ")}; installing them`);
    if (
      (await run(["apt-get", "update", "-qq"])) &&
      (await run(["apt-get", "install", "-y", "-qq", ...missing]))
    ) {
      return;
    }
    console.error(`installing failed; run: apt-get update && ${install}`);
    Deno.exit(1);
  }
  console.error(
    `The tests need real peers that are not installed. Run (as root):\n  apt-get update && ${install}`,
  );
  Deno.exit(1);
}

if (import.meta.main) await ensurePeers();
