/**
 * Parsing a JSON text that must be an object (a greeting, a journal entry,
 * a state file), telling "not JSON" from "JSON, but not an object" so the
 * caller can say which in its own one-line error.
 *
 * @module
 */

/** Why a text is not a JSON object. */
export type JsonObjectProblem = "not JSON" | "not an object";

/**
 * Parses `text` and returns it if it is a plain object (not an array, not
 * null), else what is wrong with it. Never throws.
 *
 * @example Tell the two failures apart
 * ```ts
 * import { readJsonObject } from "./json.ts";
 * readJsonObject('{"v":1}'); // { v: 1 }
 * readJsonObject("{"); // "not JSON"
 * readJsonObject("[1]"); // "not an object"
 * ```
 */
export function readJsonObject(text: string): Record<string, unknown> | JsonObjectProblem {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return "not JSON";
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    return "not an object";
  }
  return parsed as Record<string, unknown>;
}

/**
 * Parses `text` and returns it if it is a plain object (not an array, not
 * null), else undefined. Never throws.
 *
 * @example Parse a state file's text
 * ```ts
 * import { parseJsonObject } from "./json.ts";
 * parseJsonObject('{"epoch":"e"}'); // { epoch: "e" }
 * parseJsonObject("[1]"); // undefined
 * ```
 */
export function parseJsonObject(text: string): Record<string, unknown> | undefined {
  const parsed = readJsonObject(text);
  return typeof parsed === "string" ? undefined : parsed;
}
