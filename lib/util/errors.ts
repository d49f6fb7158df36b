/**
 * One wording for errors: file-system and network errors described in a few
 * words, for one-line messages that name the flag or file.
 *
 * @module
 */

/**
 * A short human description of a file-system error.
 *
 * @example Describe an error
 * ```ts
 * import { describeFsError } from "./errors.ts";
 * describeFsError(new Deno.errors.NotFound("x")); // "file not found"
 * ```
 */
export function describeFsError(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "file not found";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (error instanceof Deno.errors.IsADirectory) return "is a directory";
  if (error instanceof Deno.errors.AlreadyExists) return "already exists";
  if (error instanceof Deno.errors.NotADirectory) return "a part of the path is not a directory";
  if (error instanceof Deno.errors.NotCapable) {
    return "reclog's permission set does not allow it (Deno refuses /proc, /sys and /dev paths)";
  }
  if (error instanceof Error && /No space left/i.test(error.message)) {
    return "no space left on device";
  }
  if (error instanceof Error && /Read-only file system/i.test(error.message)) {
    return "read-only file system";
  }
  return error instanceof Error ? error.message : String(error);
}

/**
 * Returns the error's message without a stack trace.
 *
 * @example Describe an unknown value
 * ```ts
 * import { errorMessage } from "./errors.ts";
 * errorMessage(new Error("boom")); // "boom"
 * ```
 */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * A short human description of a network error (bind or connect), without
 * the stack trace: "address already in use", "connection refused", ...
 *
 * @example Describe a refused connection
 * ```ts
 * import { describeNetError } from "./errors.ts";
 * describeNetError(Object.assign(new Error("x"), { code: "ECONNREFUSED" })); // "connection refused"
 * ```
 */
export function describeNetError(error: unknown): string {
  const code = (error as { code?: string } | null)?.code;
  if (code === "EADDRINUSE" || error instanceof Deno.errors.AddrInUse) {
    return "address already in use";
  }
  if (code === "EACCES" || error instanceof Deno.errors.PermissionDenied) {
    return "permission denied";
  }
  if (code === "EADDRNOTAVAIL" || error instanceof Deno.errors.AddrNotAvailable) {
    return "address not available on this machine";
  }
  if (code === "ECONNREFUSED" || error instanceof Deno.errors.ConnectionRefused) {
    return "connection refused";
  }
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") return "host name not found";
  if (error instanceof Error && /failed to lookup address/i.test(error.message)) {
    return "host name not found";
  }
  if (code === "EHOSTUNREACH" || code === "ENETUNREACH") return "no route to host";
  if (code === "ECONNRESET" || error instanceof Deno.errors.ConnectionReset) {
    return "connection reset by peer";
  }
  if (code === "EPIPE" || error instanceof Deno.errors.BrokenPipe) return "broken pipe";
  if (code === "ETIMEDOUT" || error instanceof Deno.errors.TimedOut) return "timed out";
  return errorMessage(error);
}
