/**
 * `deno task compile`: builds dist/reclog with `deno compile -P=reclog`, the
 * permission set the tests run with. On failure it prints one line saying
 * what is missing and how to provide it, removes what it created, and exits
 * non-zero.
 *
 * `deno compile` needs denort, Deno's runtime for compiled programs, of the
 * same version as the Deno running it; it downloads it from dl.deno.land
 * unless `DENORT_BIN` names one.
 *
 * @module
 */

import { basename, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** Options for {@linkcode compile}. */
export interface CompileOptions {
  /**
   * The output file, absolute or relative to the repository root.
   * @default {"dist/reclog"}
   */
  output?: string;
  /**
   * The environment for `deno compile` (`DENORT_BIN` among it).
   * @default {Deno.env.toObject()}
   */
  env?: Record<string, string>;
}

/** What {@linkcode compile} did. */
export interface CompileResult {
  /** 0 when the binary was written. */
  code: number;
  /** One line for the user: where the binary is, or what is missing. */
  message: string;
}

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/**
 * V8 flags baked into the binary (and given to `deno run` by the `reclog`
 * task and the tests, so both run the same program). A bounded old space
 * makes V8 collect what TLS connections leave behind before RSS grows: with
 * V8's default limit, serve's RSS rose 63 → 130 MiB over 6 × 300 TLS
 * connect/hello/disconnect cycles; with 48 MiB it levels off near 110 MiB.
 * 48 MiB leaves room for play's longest line (16 MiB) parsed as JSON.
 * `deno compile` applies the flags to itself too, and type-checking does not
 * fit in 48 MiB: it compiles with `--no-check` (`deno task check` is a gate).
 *
 * @example Run like the binary
 * ```ts
 * import { V8_FLAGS } from "./compile.ts";
 * console.log(["deno", "run", `--v8-flags=${V8_FLAGS}`, "-P=reclog", "main.ts"].join(" "));
 * ```
 */
export const V8_FLAGS = "--max-old-space-size=48";

/**
 * Runs `deno compile -P=reclog --output OUTPUT main.ts` in the repository
 * root; on failure removes the output's directory if it made it.
 *
 * @example Build dist/reclog
 * ```ts
 * import { compile } from "./compile.ts";
 * const { code, message } = await compile();
 * console.log(code, message);
 * ```
 */
export async function compile(options: CompileOptions = {}): Promise<CompileResult> {
  const output = options.output ?? "dist/reclog";
  const env = { ...(options.env ?? Deno.env.toObject()) };
  if (!env.DENORT_BIN) delete env.DENORT_BIN; // deno takes "" for a path
  const outDir = dirname(resolve(ROOT, output));
  const dirExisted = await exists(outDir);
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "compile",
      "-q",
      "--no-check",
      "-P=reclog",
      `--v8-flags=${V8_FLAGS}`,
      "--output",
      output,
      "main.ts",
    ],
    cwd: ROOT,
    env: { ...env, NO_COLOR: "1" },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  const version = Deno.version.deno;
  if (out.success) {
    let from = "";
    if (env.DENORT_BIN) {
      from = ` (runtime from DENORT_BIN '${env.DENORT_BIN}')`;
      if (await sameFile(env.DENORT_BIN, Deno.execPath())) {
        from += "; DENORT_BIN is the deno binary, not denort, so the result runs as deno, " +
          "not as reclog: use it only to check the packaging";
      }
    }
    return { code: 0, message: `compile: wrote ${output}${from}` };
  }
  // Remove what this run made: the output, its temporary files, and the
  // directory if it was not there before.
  if (dirExisted) {
    const base = basename(output);
    for await (const entry of Deno.readDir(outDir)) {
      if (entry.name === base || entry.name.startsWith(`${base}.tmp-`)) {
        await Deno.remove(`${outDir}/${entry.name}`).catch(() => {});
      }
    }
  } else {
    await Deno.remove(outDir, { recursive: true }).catch(() => {});
  }
  const cause = lastCause(stderr);
  if (env.DENORT_BIN) {
    return {
      code: 1,
      message: `compile: failed with DENORT_BIN '${env.DENORT_BIN}': ${cause} ` +
        `(it must be denort ${version} for this machine's CPU and OS)`,
    };
  }
  if (/Setting up base binary|dl\.deno\.land/.test(stderr)) {
    return {
      code: 1,
      message: `compile: cannot download denort ${version} (Deno's runtime for compiled ` +
        `programs) from dl.deno.land (${cause}); copy denort from a machine that has it ` +
        `(~/.cache/deno/dl/release/v${version}/denort-*.zip, unzipped) and run ` +
        `'DENORT_BIN=/path/to/denort deno task compile', or build there and copy dist/reclog`,
    };
  }
  return { code: 1, message: `compile: deno compile failed: ${cause}` };
}

/** The innermost cause of a Deno error report, on one line. */
function lastCause(stderr: string): string {
  const text = stderr.split(/\n\s*Stack backtrace:/)[0]!;
  const causes = [...text.matchAll(/^\s*\d+: (.+)$/gm)].map((match) => match[1]!);
  const error = /^error: (.+)$/m.exec(text)?.[1];
  return causes.at(-1) ?? error ?? (text.trim().split("\n").at(-1) || "no output");
}

async function sameFile(a: string, b: string): Promise<boolean> {
  try {
    return (await Deno.realPath(a)) === (await Deno.realPath(b));
  } catch {
    return false;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

if (import.meta.main) {
  const at = Deno.args.indexOf("--output");
  const { code, message } = await compile(at >= 0 ? { output: Deno.args[at + 1] } : {});
  (code === 0 ? console.log : console.error)(message);
  Deno.exit(code);
}
