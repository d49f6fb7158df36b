/**
 * The messages of the reclog wire protocol (docs/protocol.md): the two
 * greetings and the `L` frame's report, with the checks each side applies to
 * what its peer sends.
 *
 * @module
 */

import { readJsonObject } from "../util/json.ts";
import { MESSAGE_HEADER_BYTES, PROTOCOL_VERSION, ProtocolError } from "./frame.ts";

/** The greeting a client sends. */
export interface ClientHello {
  /** Protocol name; always `"reclog"`. */
  proto: "reclog";
  /** Protocol version; must equal {@linkcode PROTOCOL_VERSION} or the client is closed. */
  v: number;
  /** Resume point: the journal's epoch and the next sequence number wanted. */
  resume?: { epoch: string; next: number };
  /** Start at the live tail. */
  live?: boolean;
  /** Start at the oldest message held (a first connection with a state file). */
  oldest?: boolean;
}

/** The greeting the server answers with. */
export interface ServerHello {
  /** Protocol name; always `"reclog"`. */
  proto: "reclog";
  /** Protocol version: {@linkcode PROTOCOL_VERSION}. */
  v: number;
  /** Id of the journal's life; a resume point from another epoch cannot be honoured. */
  epoch: string;
  /** Oldest sequence number held. */
  first: number;
  /** Sequence number the next message will get. */
  next: number;
  /** Where this client's stream starts. */
  start: number;
  /** Largest frame the server sends, bytes ({@linkcode DEFAULT_MAX_FRAME}). */
  maxFrame: number;
  /** Longest the server stays quiet before a keep-alive, ms. */
  keepAliveMs: number;
}

/** The body of a Lost frame. */
export interface LostReport {
  /** Messages lost (0 when unknown). */
  count: number;
  /** First lost sequence number (when known). */
  from?: number;
  /** Last lost sequence number (when known). */
  to?: number;
  /** Set when the client's resume point belongs to another journal. */
  unknown?: boolean;
  /** Time of the newest lost message, ms (when known). */
  toTime?: number;
  /** Why. */
  reason: string;
}

/** Longest epoch accepted in a server hello, characters. */
export const MAX_EPOCH_LENGTH = 128;
/**
 * Checks a server hello (the parsed JSON body of its `H` frame) field by
 * field; throws {@linkcode ProtocolError} naming the first bad one. Unknown
 * extra fields are ignored.
 *
 * - `proto` is `"reclog"`, `v` is {@linkcode PROTOCOL_VERSION};
 * - `epoch` is 1 to {@linkcode MAX_EPOCH_LENGTH} printable ASCII characters;
 * - `first`, `next`, `start`, `maxFrame`, `keepAliveMs` are safe
 *   non-negative integers (at most `Number.MAX_SAFE_INTEGER`);
 * - `first <= next`, `start <= next`, `maxFrame` at least a message header.
 *
 * @example Check what a server sent
 * ```ts
 * import { parseServerHello } from "./messages.ts";
 * const hello = parseServerHello({
 *   proto: "reclog", v: 1, epoch: "5f0c", first: 1, next: 10, start: 1,
 *   maxFrame: 1048576, keepAliveMs: 30000,
 * });
 * console.log(hello.start); // 1
 * ```
 */
export function parseServerHello(value: unknown): ServerHello {
  const hello = object(value, "hello");
  if (hello.proto !== "reclog" || hello.v !== PROTOCOL_VERSION) {
    throw new ProtocolError(`the server does not speak reclog protocol v${PROTOCOL_VERSION}`);
  }
  const epoch = hello.epoch;
  if (
    typeof epoch !== "string" || epoch.length < 1 || epoch.length > MAX_EPOCH_LENGTH ||
    !/^[\x21-\x7e]+$/.test(epoch)
  ) {
    throw new ProtocolError(
      `hello: "epoch" must be 1 to ${MAX_EPOCH_LENGTH} printable ASCII characters`,
    );
  }
  const first = count(hello, "first", "hello");
  const next = count(hello, "next", "hello");
  const start = count(hello, "start", "hello");
  const maxFrame = count(hello, "maxFrame", "hello");
  const keepAliveMs = count(hello, "keepAliveMs", "hello");
  if (first > next) throw new ProtocolError(`hello: "first" ${first} is after "next" ${next}`);
  if (start > next) throw new ProtocolError(`hello: "start" ${start} is after "next" ${next}`);
  if (maxFrame < MESSAGE_HEADER_BYTES) {
    throw new ProtocolError(`hello: "maxFrame" ${maxFrame} is smaller than a message header`);
  }
  return { proto: "reclog", v: PROTOCOL_VERSION, epoch, first, next, start, maxFrame, keepAliveMs };
}

/**
 * Checks the parsed JSON body of an `L` frame; throws
 * {@linkcode ProtocolError} naming the first bad field. Either `unknown` is
 * true and `count` is 0, or `from` and `to` are safe integers with
 * `1 <= from <= to` and `count === to - from + 1`. `reason` is a string;
 * `toTime`, when present, a safe non-negative integer.
 *
 * @example Check a loss report
 * ```ts
 * import { parseLostReport } from "./messages.ts";
 * parseLostReport({ count: 3, from: 5, to: 7, reason: "client fell behind" });
 * ```
 */
export function parseLostReport(value: unknown): LostReport {
  const report = object(value, "'L' frame");
  const lostCount = count(report, "count", "'L' frame");
  const reason = report.reason;
  if (typeof reason !== "string") throw new ProtocolError(`'L' frame: "reason" must be a string`);
  let toTime: number | undefined;
  if (report.toTime !== undefined) toTime = count(report, "toTime", "'L' frame");
  if (report.unknown !== undefined && typeof report.unknown !== "boolean") {
    throw new ProtocolError(`'L' frame: "unknown" must be a boolean`);
  }
  if (report.unknown === true) {
    if (lostCount !== 0) throw new ProtocolError(`'L' frame: "unknown" with a "count"`);
    return { count: 0, unknown: true, reason, ...(toTime === undefined ? {} : { toTime }) };
  }
  const from = count(report, "from", "'L' frame");
  const to = count(report, "to", "'L' frame");
  if (from < 1 || from > to || lostCount !== to - from + 1) {
    throw new ProtocolError(
      `'L' frame: "count" ${lostCount} does not match "from" ${from} and "to" ${to}`,
    );
  }
  return { count: lostCount, from, to, reason, ...(toTime === undefined ? {} : { toTime }) };
}

/** Parses and checks a client's greeting; anything else is a {@linkcode ProtocolError}. */
export function parseClientHello(body: Uint8Array): ClientHello {
  const hello = readJsonObject(decoder.decode(body));
  if (hello === "not JSON") throw new ProtocolError("malformed JSON in the greeting");
  if (typeof hello === "string") throw new ProtocolError("the greeting is not a JSON object");
  if (hello.proto !== "reclog" || hello.v !== PROTOCOL_VERSION) {
    throw new ProtocolError(`unsupported greeting (want proto reclog v${PROTOCOL_VERSION})`);
  }
  for (const flag of ["live", "oldest"] as const) {
    if (hello[flag] !== undefined && typeof hello[flag] !== "boolean") {
      throw new ProtocolError(`greeting field '${flag}' is not a boolean`);
    }
  }
  const resume = hello.resume;
  if (resume !== undefined) {
    if (typeof resume !== "object" || resume === null || Array.isArray(resume)) {
      throw new ProtocolError("greeting field 'resume' is not an object");
    }
    const { epoch, next } = resume as Record<string, unknown>;
    if (typeof epoch !== "string" || epoch.length === 0 || epoch.length > 200) {
      throw new ProtocolError("greeting field 'resume.epoch' is not an epoch id");
    }
    if (typeof next !== "number" || !Number.isSafeInteger(next) || next < 1) {
      throw new ProtocolError("greeting field 'resume.next' is not a sequence number");
    }
  }
  return hello as unknown as ClientHello;
}

const decoder = new TextDecoder();

function object(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ProtocolError(`${what}: expected a JSON object`);
  }
  return value as Record<string, unknown>;
}

function count(record: Record<string, unknown>, field: string, what: string): number {
  const value = record[field];
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new ProtocolError(`${what}: "${field}" must be a safe non-negative integer`);
  }
  return value;
}
