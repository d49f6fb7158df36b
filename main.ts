/**
 * reclog: gets logs out of an isolated machine and onto the one where someone
 * reads them. This file only parses the role and dispatches; every role lives
 * in `lib/roles/*.ts` and exports `run(args)`.
 *
 * @module
 */

import { ConfigError } from "./lib/cli/flags.ts";
import { errorMessage } from "./lib/util/errors.ts";
import { setupLogging } from "./lib/util/log.ts";
import denoJson from "./deno.json" with { type: "json" };

/** What each role module exports. */
export interface RoleModule {
  /** Runs the role with its own arguments; resolves to the exit code. */
  run(args: string[]): Promise<number>;
}

const ROLES: Record<string, { summary: string; load: () => Promise<RoleModule> }> = {
  serve: {
    summary: "receive syslog (and files, TCP lines) and hand it to clients over mutual TLS",
    load: () => import("./lib/roles/serve.ts"),
  },
  pull: {
    summary: "connect to a server and re-inject its messages into the local syslog",
    load: () => import("./lib/roles/pull.ts"),
  },
  certs: {
    summary: "a small certificate authority: init, client, show",
    load: () => import("./lib/roles/certs.ts"),
  },
  listen: {
    summary: "socat-mode: lines from many TCP/UDP senders into one file",
    load: () => import("./lib/roles/listen.ts"),
  },
  send: {
    summary: "send stdin or a command's output, line by line, to listen or serve --tcp-in",
    load: () => import("./lib/roles/send.ts"),
  },
  play: {
    summary: "play back tlog terminal recordings with their original timing",
    load: () => import("./lib/roles/play.ts"),
  },
};

function usage(): string {
  const width = Math.max(...Object.keys(ROLES).map((name) => name.length));
  return [
    `reclog ${denoJson.version}: gets logs off an isolated machine, over mutual TLS`,
    "",
    "Usage: reclog <role> [flags]      reclog <role> --help      reclog --version",
    "",
    "Roles:",
    ...Object.entries(ROLES).map(([name, role]) => `  ${name.padEnd(width)}  ${role.summary}`),
    "",
    "Exit codes: 0 clean stop, 1 failure while running, 2 usage or configuration error.",
  ].join("\n");
}

/**
 * Runs reclog with the given command line and resolves to its exit code.
 *
 * @example Print the version
 * ```ts
 * import { main } from "./main.ts";
 * const code = await main(["--version"]);
 * ```
 */
export async function main(args: string[]): Promise<number> {
  // `deno task reclog -- serve ...` passes the `--` on: drop one leading `--`.
  const [name, ...rest] = args[0] === "--" ? args.slice(1) : args;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(usage());
    return name === undefined ? 2 : 0;
  }
  if (name === "--version" || name === "-V") {
    console.log(`reclog ${denoJson.version}`);
    return 0;
  }
  const role = ROLES[name];
  if (!role) {
    console.error(`reclog: unknown role '${name}' (roles: ${Object.keys(ROLES).join(", ")})`);
    return 2;
  }
  setupLogging();
  try {
    return await (await role.load()).run(rest);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`reclog ${name}: ${error.message.replace(/^reclog \w+: /, "")}`);
      return 2;
    }
    console.error(`reclog ${name}: ${errorMessage(error)}`);
    if (Deno.env.get("RECLOG_LOG_LEVEL") === "debug") console.error(error);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
