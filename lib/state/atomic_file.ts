/**
 * Replacing a small file atomically: write a temporary file beside it (a
 * name of its own: pid and random, so two writers never share one), fsync
 * it, rename it over the old one, then fsync the directory, so a reader (or
 * a restart after a crash or a power loss) sees the old content or the new,
 * never a mix, and the rename itself is on disk.
 *
 * @module
 */

import { basename, dirname } from "node:path";

/** Options for {@linkcode writeFileAtomic}. */
export interface WriteFileAtomicOptions {
  /**
   * Mode of a newly created file.
   * @default {0o600}
   */
  mode?: number;
  /**
   * fsync the file before the rename and its directory after it, so the new
   * content survives a power loss too (a rename alone is enough for a crash
   * of the process).
   * @default {false}
   */
  sync?: boolean;
}

/**
 * The directory that holds `path` (`.` for a bare file name): what to create
 * before writing `path`, and what to fsync after a rename in it.
 *
 * @example Relative and absolute paths
 * ```ts
 * import { parentDir } from "./atomic_file.ts";
 * parentDir("pull.state"); // "."
 * parentDir("/var/lib/reclog/files.json"); // "/var/lib/reclog"
 * ```
 */
export function parentDir(path: string): string {
  return dirname(path);
}

/**
 * Replaces `path` with `data`, atomically. On failure the temporary file is
 * removed and the old content stays.
 *
 * @example Save a resume point
 * ```ts
 * import { writeFileAtomic } from "./atomic_file.ts";
 * await writeFileAtomic("pull.state", JSON.stringify({ epoch: "e", next: 42 }) + "\n", {
 *   sync: true,
 * });
 * ```
 */
export async function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  options: WriteFileAtomicOptions = {},
): Promise<void> {
  const dir = dirname(path);
  const random = crypto.getRandomValues(new Uint32Array(1))[0]!.toString(16).padStart(8, "0");
  const temp = `${dir}/.${basename(path)}.${Deno.pid}.${random}.tmp`;
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  try {
    using file = await Deno.open(temp, {
      write: true,
      createNew: true,
      mode: options.mode ?? 0o600,
    });
    let offset = 0;
    while (offset < bytes.length) offset += await file.write(bytes.subarray(offset));
    if (options.sync) await file.sync();
  } catch (error) {
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
  try {
    await Deno.rename(temp, path);
  } catch (error) {
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
  if (options.sync) await syncDir(dir);
}

/** fsync a directory (so a rename in it is on disk); ignored where unsupported. */
async function syncDir(dir: string): Promise<void> {
  let handle: Deno.FsFile;
  try {
    handle = await Deno.open(dir, { read: true });
  } catch {
    return; // not openable (permissions, platform): the rename still happened
  }
  try {
    await handle.sync();
  } catch {
    // some file systems refuse fsync on a directory
  } finally {
    handle.close();
  }
}
