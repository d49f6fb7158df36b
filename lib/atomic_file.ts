/**
 * Replacing a small file atomically: write a temporary file beside it,
 * optionally fsync it, then rename it over the old one, so a reader (or a
 * restart after a crash) sees the old content or the new, never a mix.
 *
 * @module
 */

/** Options for {@linkcode writeFileAtomic}. */
export interface WriteFileAtomicOptions {
  /**
   * Mode of a newly created file.
   * @default {0o600}
   */
  mode?: number;
  /**
   * fsync before the rename, so the new content survives a power loss too
   * (a rename alone is enough for a crash of the process).
   * @default {false}
   */
  sync?: boolean;
}

/**
 * Replaces `path` with `data`, atomically.
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
  const temp = `${path}.tmp`;
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  {
    using file = await Deno.open(temp, {
      write: true,
      create: true,
      truncate: true,
      mode: options.mode ?? 0o600,
    });
    let offset = 0;
    while (offset < bytes.length) offset += await file.write(bytes.subarray(offset));
    if (options.sync) await file.sync();
  }
  await Deno.rename(temp, path);
}
