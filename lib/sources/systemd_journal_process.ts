/**
 * How `SystemdJournalReader` (`./systemd_journal.ts`) runs journalctl:
 * under `stdbuf -o 64K` where it can, and its error output's tail kept.
 *
 * @module
 */

/** coreutils' stdbuf (always there on Debian). */
export const STDBUF = "/usr/bin/stdbuf";

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/**
 * The path of `program` to run under `stdbuf -o 64K`, or undefined to run
 * it as it is (no stdbuf, or `program` not found: then spawning it gives
 * the error). journalctl's stdout is a 4 KiB stdio buffer on a pipe, so
 * reading it costs a read, a batch and an append per 4 KiB (~10 entries);
 * with 64 KiB each read takes what the pipe holds (64 KiB). journalctl
 * flushes whenever it has shown all there is (before it waits in
 * `--follow`), so nothing waits in the buffer.
 *
 * @example Run journalctl with a large output buffer where possible
 * ```ts
 * import { STDBUF, withStdbuf } from "./systemd_journal_process.ts";
 * const path = withStdbuf("journalctl");
 * const command = path ? [STDBUF, "-o", "64K", path] : ["journalctl"];
 * console.log(command.length > 0); // true
 * ```
 */
export function withStdbuf(program: string): string | undefined {
  if (!isFile(STDBUF)) return undefined;
  if (program.includes("/")) return isFile(program) ? program : undefined;
  let path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  try {
    path = Deno.env.get("PATH") ?? path;
  } catch {
    // no --allow-env for PATH (the compiled reclog): the usual places
  }
  for (const dir of path.split(":")) {
    if (dir !== "" && isFile(`${dir}/${program}`)) return `${dir}/${program}`;
  }
  return undefined;
}

/**
 * Reads a stream to its end, keeping only its last `max` bytes, as text.
 *
 * @example The last bytes of a program's error output
 * ```ts
 * import { collectTail } from "./systemd_journal_process.ts";
 * const stream = new Blob(["first line\n", "last line\n"]).stream();
 * console.log(await collectTail(stream, 10)); // "last line\n"
 * ```
 */
export async function collectTail(
  stream: ReadableStream<Uint8Array>,
  max: number,
): Promise<string> {
  let tail = new Uint8Array(0);
  try {
    for await (const chunk of stream) {
      const joined = new Uint8Array(Math.min(max, tail.length + chunk.length));
      const all = new Uint8Array(tail.length + chunk.length);
      all.set(tail);
      all.set(chunk, tail.length);
      joined.set(all.subarray(all.length - joined.length));
      tail = joined;
    }
  } catch {
    // the stream failed: keep what came
  }
  return new TextDecoder().decode(tail);
}
