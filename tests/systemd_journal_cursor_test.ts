/**
 * The saved journal cursor belongs to one source: a cursor file in a state
 * directory shared by several sources (`--journal`, `--journal-dir A`,
 * `--journal-dir B`, other matches) is applied only to the source it was
 * saved for; any other starts as on its first start, and the other file is
 * kept aside.
 */

import assert from "node:assert/strict";
import { JOURNAL_CURSOR_FILE } from "../lib/state/journal_cursor.ts";
import { JournalInput, journalSourceId } from "../lib/sources/systemd_journal_input.ts";
import type { JournalInputOptions } from "../lib/sources/systemd_journal_input.ts";
import { tempDir, waitFor } from "./helpers.ts";
import { plain, writeJournal } from "./systemd_journal_fixture.ts";

const decoder = new TextDecoder();

/** Runs a journal input until `count` messages came; returns their MESSAGEs and where it started. */
async function readSome(
  options: Omit<JournalInputOptions, "onBatch" | "cursorIntervalMs">,
  count: number,
): Promise<{ messages: string[]; started: string | undefined }> {
  const messages: string[] = [];
  await using input = await JournalInput.open({
    ...options,
    cursorIntervalMs: 0,
    onBatch: (batch) => {
      for (let i = 0; i < batch.count; i++) {
        const m = decoder.decode(batch.message(i));
        messages.push(m.slice(m.lastIndexOf(" ") + 1));
      }
    },
  });
  await input.listen();
  await waitFor(() => messages.length >= count, { what: `${count} messages: ${messages}` });
  // A little longer: anything beyond `count` would show up.
  await new Promise((resolve) => setTimeout(resolve, 150));
  return { messages, started: input.startCursor };
}

async function savedFor(stateDir: string): Promise<string> {
  return JSON.parse(await Deno.readTextFile(`${stateDir}/${JOURNAL_CURSOR_FILE}`)).source;
}

Deno.test("journal cursor: saved for one directory, not applied to another, other matches or priority; the same directory by another path continues", async () => {
  await using dir = await tempDir();
  const a = `${dir.path}/a`;
  const b = `${dir.path}/b`;
  const state = `${dir.path}/state`;
  for (const d of [a, b, state]) await Deno.mkdir(d);
  await writeJournal(a, plain(1, 3));
  await writeJournal(b, plain(101, 4, { PRIORITY: "6" }));

  const first = await readSome({ stateDir: state, directory: a }, 3);
  assert.deepEqual(first, { messages: ["m1", "m2", "m3"], started: undefined });
  assert.equal(await savedFor(state), `journal:${await Deno.realPath(a)}`);

  // B with A's cursor file: from B's oldest entry, A's file kept aside.
  const other = await readSome({ stateDir: state, directory: b }, 4);
  assert.deepEqual(other, { messages: ["m101", "m102", "m103", "m104"], started: undefined });
  assert.equal(await savedFor(state), `journal:${await Deno.realPath(b)}`);
  assert.equal(
    JSON.parse(await Deno.readTextFile(`${state}/${JOURNAL_CURSOR_FILE}.replaced`)).source,
    `journal:${await Deno.realPath(a)}`,
  );

  // B again, by a symlink: the same journal, so it continues after its cursor.
  await Deno.symlink(b, `${dir.path}/b-link`);
  await writeJournal(b, plain(105, 2, { PRIORITY: "6" }));
  const again = await readSome({ stateDir: state, directory: `${dir.path}/b-link` }, 2);
  assert.deepEqual(again.messages, ["m105", "m106"]);
  assert.ok(again.started !== undefined, "started after the saved cursor");

  // Other matches, then a priority filter: other sources, each from the start.
  const matched = await readSome(
    { stateDir: state, directory: b, matches: ["MESSAGE=m102", "+", "MESSAGE=m106"] },
    2,
  );
  assert.deepEqual(matched, { messages: ["m102", "m106"], started: undefined });
  assert.equal(
    await savedFor(state),
    `journal:${await Deno.realPath(b)} match=["MESSAGE=m102","+","MESSAGE=m106"]`,
  );
  const urgent = await readSome({ stateDir: state, directory: b, priority: "info" }, 6);
  assert.equal(urgent.started, undefined);
  assert.equal(urgent.messages.length, 6);

  // A bad match is refused before the cursor file is touched.
  const before = await Deno.readTextFile(`${state}/${JOURNAL_CURSOR_FILE}`);
  await assert.rejects(
    JournalInput.open({ stateDir: state, directory: a, matches: ["bad"], onBatch: () => {} }),
    RangeError,
  );
  assert.equal(await Deno.readTextFile(`${state}/${JOURNAL_CURSOR_FILE}`), before);
});

Deno.test("journal cursor: the system journal and a directory are different sources; a file of the earlier format (journal:DIR as given) still applies", async () => {
  assert.equal(await journalSourceId({}), "journal");
  assert.equal(await journalSourceId({ priority: "warning" }), "journal priority=warning");
  assert.equal(
    await journalSourceId({ directory: "/nonexistent/../x", matches: ["A=1"] }),
    'journal:/x match=["A=1"]',
  );
  await using dir = await tempDir();
  const a = `${dir.path}/a`;
  const state = `${dir.path}/state`;
  for (const d of [a, state]) await Deno.mkdir(d);
  await writeJournal(a, plain(1, 3));
  const first = await readSome({ stateDir: state, directory: a }, 3);
  assert.equal(first.messages.length, 3);
  // As the earlier code wrote it: the directory as given (here a symlink to it).
  await Deno.symlink(a, `${dir.path}/a-link`);
  const saved = JSON.parse(await Deno.readTextFile(`${state}/${JOURNAL_CURSOR_FILE}`));
  await Deno.writeTextFile(
    `${state}/${JOURNAL_CURSOR_FILE}`,
    JSON.stringify({ ...saved, source: `journal:${dir.path}/a-link` }),
  );
  await writeJournal(a, plain(4, 1));
  const continued = await readSome({ stateDir: state, directory: `${dir.path}/a-link` }, 1);
  assert.deepEqual(continued.messages, ["m4"]);
  assert.ok(continued.started !== undefined);
  // The system journal's cursor is not applied to the directory.
  await Deno.writeTextFile(
    `${state}/${JOURNAL_CURSOR_FILE}`,
    JSON.stringify({ ...saved, source: "journal" }),
  );
  const fresh = await readSome({ stateDir: state, directory: a }, 4);
  assert.deepEqual(fresh, { messages: ["m1", "m2", "m3", "m4"], started: undefined });
});
