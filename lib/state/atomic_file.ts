/**
 * Replacing a small file atomically: write a temporary file beside it (a
 * name of its own: pid and random, so two writers never share one), fsync
 * it, rename it over the old one, then fsync the directory, so a reader (or
 * a restart after a crash or a power loss) sees the old content or the new,
 * never a mix, and the rename itself is on disk.
 *
 * {@linkcode writeFilesAtomic} does the same for a set of files (a key and
 * its certificate): every temporary file is written before the first rename,
 * so a failure while writing leaves none of the set changed.
 *
 * @module
 */

import { basename, dirname } from "node:path";

/** Options for {@linkcode writeFileAtomic} and {@linkcode writeFilesAtomic}. */
export interface WriteFileAtomicOptions {
  /**
   * Mode of a newly created file. The temporary file is created with it, so
   * the content is never readable more widely, not even for a moment.
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

/** One file for {@linkcode writeFilesAtomic}. */
export interface AtomicFileEntry {
  /** Where the file goes. */
  path: string;
  /** Its content. */
  data: string | Uint8Array;
  /**
   * Its mode; overrides {@linkcode WriteFileAtomicOptions.mode}.
   * @default {the options' mode, 0o600}
   */
  mode?: number;
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
 * Whether something (a file, a directory, a link) is at `path`. `false` when
 * it or a directory on the way is missing; other errors (permission denied)
 * are thrown.
 *
 * @example Check before replacing
 * ```ts
 * import { pathExists } from "./atomic_file.ts";
 * if (await pathExists("pki/ca.pem")) console.log("there is a CA already");
 * ```
 */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
      return false;
    }
    throw error;
  }
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
  await writeFilesAtomic([{ path, data }], options);
}

/**
 * Replaces several files, each atomically, and writes all their temporary
 * files before renaming the first: a failure while writing (a full disk, a
 * permission) removes the temporary files and leaves every old file as it
 * was. (The renames themselves can still fail half-way, on a file system
 * that fails a rename in a directory where a write just succeeded.)
 *
 * @example Write a private key (0600) and its certificate (0644)
 * ```ts
 * import { writeFilesAtomic } from "./atomic_file.ts";
 * await writeFilesAtomic([
 *   { path: "pki/home.pem", data: "-----BEGIN CERTIFICATE-----\n...", mode: 0o644 },
 *   { path: "pki/home.key", data: "-----BEGIN PRIVATE KEY-----\n...", mode: 0o600 },
 * ], { sync: true });
 * ```
 */
export async function writeFilesAtomic(
  files: readonly AtomicFileEntry[],
  options: WriteFileAtomicOptions = {},
): Promise<void> {
  const temps: string[] = [];
  const removeTemps = () => Promise.all(temps.map((temp) => Deno.remove(temp).catch(() => {})));
  try {
    for (const file of files) {
      const temp = tempPath(file.path);
      temps.push(temp);
      await writeNew(temp, file.data, file.mode ?? options.mode ?? 0o600, options.sync ?? false);
    }
  } catch (error) {
    await removeTemps();
    throw error;
  }
  let renamed = 0;
  try {
    for (; renamed < files.length; renamed++) {
      await Deno.rename(temps[renamed]!, files[renamed]!.path);
    }
  } catch (error) {
    temps.splice(0, renamed);
    await removeTemps();
    throw error;
  }
  if (options.sync) {
    for (const dir of new Set(files.map((file) => dirname(file.path)))) await syncDir(dir);
  }
}

/** A fresh name beside `path`: hidden, with the pid and a random part. */
function tempPath(path: string): string {
  const random = crypto.getRandomValues(new Uint32Array(1))[0]!.toString(16).padStart(8, "0");
  return `${dirname(path)}/.${basename(path)}.${Deno.pid}.${random}.tmp`;
}

/** Creates `path` (it must not exist) with `mode` and writes `data` into it. */
async function writeNew(
  path: string,
  data: string | Uint8Array,
  mode: number,
  sync: boolean,
): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  using file = await Deno.open(path, { write: true, createNew: true, mode });
  let offset = 0;
  while (offset < bytes.length) offset += await file.write(bytes.subarray(offset));
  if (sync) await file.sync();
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
