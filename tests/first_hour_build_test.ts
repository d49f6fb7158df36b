/**
 * Running from a checkout (`deno task reclog -- ...`) prints nothing extra;
 * `deno task compile` (tools/compile.ts): one line and nothing left behind
 * when denort cannot be downloaded; with DENORT_BIN it packages.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { tempDir } from "./helpers.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

async function denoTask(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
}

Deno.test("deno task reclog -- --version runs from the checkout and prints no permission warning", async () => {
  const version = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).version;
  const plain = await new Deno.Command(Deno.execPath(), {
    args: ["task", "reclog", "--", "--version"],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(plain.stderr);
  assert.equal(plain.code, 0, stderr);
  assert.equal(new TextDecoder().decode(plain.stdout), `reclog ${version}\n`);
  assert.doesNotMatch(stderr, /Warning|experimental|unknown role/);
  // With `task -q` (as the README says) not even deno's "Task ..." line.
  const quiet = await denoTask(["reclog", "--", "--version"], {});
  assert.equal(quiet.code, 0, quiet.stderr);
  assert.equal(quiet.stdout, `reclog ${version}\n`);
  assert.equal(quiet.stderr, "");
  // A role with its flags after the `--`.
  const help = await denoTask(["reclog", "--", "certs", "--help"], {});
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /^Usage: reclog certs/);
  assert.equal(help.stderr, "");
});

Deno.test("deno task compile without Deno's download server: one line naming DENORT_BIN, exit 1, no dist/ left", async () => {
  const distBefore = await exists(`${ROOT}dist`);
  // A proxy that refuses: the download fails here as it does on a machine
  // without access to dl.deno.land, whatever this machine can reach.
  const result = await denoTask(["compile"], {
    HTTPS_PROXY: "http://127.0.0.1:9",
    https_proxy: "http://127.0.0.1:9",
    DENORT_BIN: "",
  });
  assert.equal(result.code, 1, result.stderr);
  const lines = result.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `one line, got:\n${result.stderr}`);
  assert.match(
    lines[0]!,
    /^compile: cannot download denort 2\.9\.6 .*DENORT_BIN=\/path\/to\/denort/,
  );
  assert.doesNotMatch(result.stderr, /backtrace|Caused by/i);
  if (distBefore) {
    assert.equal(await exists(`${ROOT}dist/reclog`), false, "dist/reclog left behind");
  } else {
    assert.equal(await exists(`${ROOT}dist`), false, "dist/ left behind");
  }
});

Deno.test("deno task compile with DENORT_BIN packages, and says when it is only the deno binary", async () => {
  await using dir = await tempDir();
  const output = `${dir.path}/out/reclog`;
  const result = await denoTask(["compile", "--output", output], {
    DENORT_BIN: Deno.execPath(),
    HTTPS_PROXY: "http://127.0.0.1:9",
  });
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /^compile: wrote .*out\/reclog \(runtime from DENORT_BIN/);
  assert.match(result.stdout, /DENORT_BIN is the deno binary, not denort/);
  const stat = await Deno.stat(output);
  assert.ok(stat.isFile && stat.size > 1_000_000, `size ${stat.size}`);
  assert.ok((stat.mode! & 0o111) !== 0, "executable");
});

Deno.test("deno task compile with a DENORT_BIN that is not a runtime: one line, exit 1, nothing left", async () => {
  await using dir = await tempDir();
  const bogus = `${dir.path}/denort`;
  await Deno.writeTextFile(bogus, "not a binary\n");
  const output = `${dir.path}/out/reclog`;
  const result = await denoTask(["compile", "--output", output], { DENORT_BIN: bogus });
  assert.equal(result.code, 1, result.stderr);
  const lines = result.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `one line, got:\n${result.stderr}`);
  assert.match(lines[0]!, /^compile: failed with DENORT_BIN '.*denort': .*denort 2\.9\.6/);
  assert.equal(await exists(`${dir.path}/out`), false, "out/ left behind");
});
