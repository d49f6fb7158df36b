/**
 * Writes a buffer whole to a writer that may take part of it at a time.
 *
 * @module
 */

/**
 * Writes all of `bytes`, however many calls the writer needs.
 *
 * @example To standard output
 * ```ts
 * import { writeAll } from "./write_all.ts";
 * await writeAll(Deno.stdout, new TextEncoder().encode("hello\n"));
 * ```
 */
export async function writeAll(
  writer: { write(p: Uint8Array): Promise<number> },
  bytes: Uint8Array,
): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await writer.write(bytes.subarray(offset));
}
