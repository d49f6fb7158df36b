/**
 * Pull's wording of a failed server connection: a refused connect, a
 * certificate one side rejected, a protocol error.
 *
 * @module
 */

import { ProtocolError } from "../protocol/frame.ts";
import { errorMessage } from "../util/errors.ts";
import { ConnectError } from "./connect.ts";

/**
 * A server connection's failure in a few words, for pull's log.
 *
 * @example Word a refused connection
 * ```ts
 * import { describeError } from "./pull_errors.ts";
 * const error = Object.assign(new Error("x"), { code: "ECONNREFUSED" });
 * console.log(describeError(error)); // "connection refused (is reclog serve running?)"
 * ```
 */
export function describeError(failure: unknown): string {
  if (failure instanceof ProtocolError) return `protocol error: ${failure.message}`;
  // A failed connect: its cause is worded here, for pull.
  const error = failure instanceof ConnectError && failure.cause !== undefined
    ? failure.cause
    : failure;
  const message = errorMessage(error);
  const code = (error as { code?: string })?.code;
  if (code === "ECONNREFUSED") return "connection refused (is reclog serve running?)";
  if (
    /CertificateRequired|certificate required|UnknownCA|unknown ca|bad certificate/i.test(message)
  ) {
    return `the server refused our certificate (${message})`;
  }
  if (/UnknownIssuer|NotValidForName|CertNotValidForName|Expired|certificate/i.test(message)) {
    return `the server's certificate was rejected: ${message}`;
  }
  return message;
}
