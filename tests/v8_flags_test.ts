/**
 * The program the tests run is the program users run: `deno task reclog`,
 * `deno task compile` and the tests' `deno run` give V8 the same flags.
 */

import assert from "node:assert/strict";
import { V8_FLAGS } from "../tools/compile.ts";
import { reclogArgv } from "./helpers.ts";

Deno.test("the reclog task, the compiled binary and the tests run with the same V8 flags", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  const task: string = config.tasks.reclog;
  assert.ok(task.includes(` --v8-flags=${V8_FLAGS} `), `deno.json task reclog: ${task}`);
  assert.ok(reclogArgv([]).includes(`--v8-flags=${V8_FLAGS}`));
  const compile = await Deno.readTextFile(new URL("../tools/compile.ts", import.meta.url));
  assert.match(compile, /"-P=reclog",\s*`--v8-flags=\$\{V8_FLAGS\}`/);
});
