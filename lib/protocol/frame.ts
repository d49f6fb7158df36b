/**
 * The reclog wire protocol's frames (see docs/protocol.md).
 *
 * Every frame is `LENGTH(u32 BE) TYPE(u8) BODY`, where LENGTH counts TYPE and
 * BODY. A message frame's body is
 * `SEQ(u64 BE) TIME_MS(u64 BE) STREAM_LEN(u8) STREAM PAYLOAD`.
 *
 * Frames are written once, into journal segments, and sent to every client
 * from there unchanged; readers walk frames in place with a
 * {@linkcode FrameReader} instead of copying each message out.
 *
 * @module
 */

/** Frame types. */
export const FrameType = {
  /** Greeting, JSON body, both directions. */
  Hello: 0x48, // "H"
  /** A journal message. */
  Message: 0x4d, // "M"
  /** Keep-alive, empty body, both directions. */
  KeepAlive: 0x4b, // "K"
  /** Messages lost, JSON body. */
  Lost: 0x4c, // "L"
  /**
   * A file stream was rotated: a journal entry laid out like a message
   * (sequence number, time, stream) with no data.
   */
  Rotated: 0x52, // "R"
  /** The sender closes; UTF-8 reason. */
  Close: 0x43, // "C"
} as const;

/** The protocol version spoken in the greeting. */
export const PROTOCOL_VERSION = 1;

/**
 * Whether a frame type is a journal entry (carries a sequence number):
 * `FrameType.Message` or `FrameType.Rotated`.
 *
 * @example Tell entries from control frames
 * ```ts
 * import { FrameType, isEntry } from "./frame.ts";
 * console.log(isEntry(FrameType.Message), isEntry(FrameType.KeepAlive)); // true false
 * ```
 */
export function isEntry(type: number): boolean {
  return type === FrameType.Message || type === FrameType.Rotated;
}

/** Bytes before a message frame's stream name: length, type, seq, time, stream length. */
export const MESSAGE_HEADER_BYTES: number = 4 + 1 + 8 + 8 + 1;

/**
 * Largest frame (LENGTH plus what it counts) either side accepts by default.
 */
export const DEFAULT_MAX_FRAME = 1024 * 1024;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const TWO_32 = 2 ** 32;
/** Highest upper 32-bit half of a u64 that is still a safe integer (2^53 - 1). */
const MAX_SAFE_HIGH = 0x1fffff;

/**
 * Writes a message frame into `target` at `offset`; returns the frame's size.
 * The caller makes sure it fits ({@linkcode messageFrameSize}).
 *
 * @example Encode one message
 * ```ts
 * import { encodeMessage, messageFrameSize } from "./frame.ts";
 * const stream = new TextEncoder().encode("syslog");
 * const data = new TextEncoder().encode("<13>hello");
 * const buf = new Uint8Array(messageFrameSize(stream.length, data.length));
 * encodeMessage(buf, 0, { seq: 1, time: Date.now(), stream, data });
 * ```
 */
export function encodeMessage(
  target: Uint8Array,
  offset: number,
  message: {
    seq: number;
    time: number;
    stream: Uint8Array;
    data: Uint8Array;
    dataStart?: number;
    dataEnd?: number;
    /** {@linkcode FrameType.Message} or {@linkcode FrameType.Rotated}. */
    type?: number;
  },
): number {
  const start = message.dataStart ?? 0;
  const end = message.dataEnd ?? message.data.length;
  const size = MESSAGE_HEADER_BYTES + message.stream.length + (end - start);
  // Header bytes written directly: this runs once per ingested message.
  writeU32(target, offset, size - 4);
  target[offset + 4] = message.type ?? FrameType.Message;
  writeU32(target, offset + 5, Math.floor(message.seq / TWO_32));
  writeU32(target, offset + 9, message.seq >>> 0);
  writeU32(target, offset + 13, Math.floor(message.time / TWO_32));
  writeU32(target, offset + 17, message.time >>> 0);
  target[offset + 21] = message.stream.length;
  target.set(message.stream, offset + MESSAGE_HEADER_BYTES);
  target.set(
    message.data.subarray(start, end),
    offset + MESSAGE_HEADER_BYTES + message.stream.length,
  );
  return size;
}

function writeU32(target: Uint8Array, offset: number, value: number): void {
  target[offset] = value >>> 24;
  target[offset + 1] = value >>> 16 & 0xff;
  target[offset + 2] = value >>> 8 & 0xff;
  target[offset + 3] = value & 0xff;
}

/**
 * Size of a message frame with the given stream-name and payload lengths.
 *
 * @example Size a frame
 * ```ts
 * import { messageFrameSize } from "./frame.ts";
 * messageFrameSize(6, 100); // 128
 * ```
 */
export function messageFrameSize(streamLength: number, dataLength: number): number {
  return MESSAGE_HEADER_BYTES + streamLength + dataLength;
}

/**
 * Encodes a control frame (hello, keep-alive, lost, rotated, close). Objects
 * become JSON bodies, strings UTF-8 bodies.
 *
 * @example Encode a keep-alive and a greeting
 * ```ts
 * import { encodeControl, FrameType } from "./frame.ts";
 * encodeControl(FrameType.KeepAlive);
 * encodeControl(FrameType.Hello, { proto: "reclog", v: 1, live: true });
 * ```
 */
export function encodeControl(type: number, body?: unknown): Uint8Array {
  const bytes = body === undefined
    ? new Uint8Array(0)
    : encoder.encode(typeof body === "string" ? body : JSON.stringify(body));
  const frame = new Uint8Array(5 + bytes.length);
  new DataView(frame.buffer).setUint32(0, 1 + bytes.length);
  frame[4] = type;
  frame.set(bytes, 5);
  return frame;
}

/**
 * A protocol violation by the peer: the connection is closed with this reason.
 *
 * @example Refuse a bad frame
 * ```ts
 * import { ProtocolError } from "./frame.ts";
 * throw new ProtocolError("unexpected frame type 0x00");
 * ```
 */
export class ProtocolError extends Error {
  /** Always `"ProtocolError"`. */
  override name = "ProtocolError";
}

/**
 * Walks the frames of a buffer that holds whole frames, without copying.
 * One reader is reused for every frame: its fields describe the current one.
 *
 * @example Read every message in a batch
 * ```ts
 * import { FrameReader, FrameType } from "./frame.ts";
 * declare const batch: Uint8Array;
 * const frame = new FrameReader(batch);
 * while (frame.next()) {
 *   if (frame.type === FrameType.Message) console.log(frame.seq, frame.data());
 * }
 * ```
 */
export class FrameReader {
  /** The buffer being walked. */
  buf: Uint8Array;
  /** Offset of the current frame. */
  start = 0;
  /** Offset just after the current frame. */
  end = 0;
  /** Type of the current frame. */
  type = 0;
  /** Message and rotated frames (journal entries): sequence number. */
  seq = 0;
  /** Message frames: receive time, ms since the epoch. */
  time = 0;
  /** Message frames: offset of the stream name. */
  streamStart = 0;
  /** Message frames: offset of the payload (also its stream name's end). */
  dataStart = 0;
  #view: DataView;

  /** Starts before the first frame of `buf`; call {@linkcode FrameReader.next} to read it. */
  constructor(buf: Uint8Array) {
    this.buf = buf;
    this.#view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  /** Starts again on another buffer. */
  reset(buf: Uint8Array): void {
    this.buf = buf;
    this.#view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.start = this.end = 0;
  }

  /**
   * Moves to the next frame; false at the end. Throws {@linkcode ProtocolError}
   * for a malformed frame: LENGTH below 1 or running past the buffer (also a
   * trailing partial frame), a journal entry shorter than its header or whose
   * stream name runs past the frame, or a sequence number or time of 2^53 or
   * more. After a throw the reader stays on the bad frame.
   */
  next(): boolean {
    const s = this.start = this.end;
    const length = this.buf.length;
    if (s >= length) return false;
    if (s + 4 > length) throw new ProtocolError(`truncated frame at offset ${s}`);
    const v = this.#view;
    const frameLength = v.getUint32(s);
    const end = s + 4 + frameLength;
    if (frameLength < 1 || end > length) {
      throw new ProtocolError(
        frameLength < 1
          ? `frame of 4 bytes with LENGTH 0 at offset ${s}`
          : `frame of ${frameLength + 4} bytes runs past the buffer at offset ${s}`,
      );
    }
    const type = this.buf[s + 4]!;
    if (type === FrameType.Message || type === FrameType.Rotated) {
      if (end - s < MESSAGE_HEADER_BYTES) {
        throw new ProtocolError(
          `'${String.fromCharCode(type)}' frame of ${end - s} bytes is shorter than its header`,
        );
      }
      const dataStart = s + MESSAGE_HEADER_BYTES + this.buf[s + 21]!;
      if (dataStart > end) {
        throw new ProtocolError(`stream name runs past the end of its frame at offset ${s}`);
      }
      const seqHigh = v.getUint32(s + 5);
      const timeHigh = v.getUint32(s + 13);
      if (seqHigh > MAX_SAFE_HIGH || timeHigh > MAX_SAFE_HIGH) {
        throw new ProtocolError(`sequence number or time of 2^53 or more at offset ${s}`);
      }
      this.seq = seqHigh * TWO_32 + v.getUint32(s + 9);
      this.time = timeHigh * TWO_32 + v.getUint32(s + 17);
      this.streamStart = s + MESSAGE_HEADER_BYTES;
      this.dataStart = dataStart;
    }
    this.end = end;
    this.type = type;
    return true;
  }

  /** The current message's payload (a view, not a copy). */
  data(): Uint8Array {
    return this.buf.subarray(this.dataStart, this.end);
  }

  /** The current message's stream name. */
  stream(): string {
    return decoder.decode(this.buf.subarray(this.streamStart, this.dataStart));
  }

  /** The current control frame's body as text. */
  text(): string {
    return decoder.decode(this.buf.subarray(this.start + 5, this.end));
  }

  /** The current control frame's body parsed as JSON. */
  json<T>(): T {
    try {
      return JSON.parse(this.text()) as T;
    } catch {
      throw new ProtocolError(`malformed JSON in frame type '${String.fromCharCode(this.type)}'`);
    }
  }
}

/** Options for {@linkcode FrameSplitter}. */
export interface FrameSplitterOptions {
  /**
   * Largest frame accepted; a larger one is a {@linkcode ProtocolError}.
   * @default {DEFAULT_MAX_FRAME}
   */
  maxFrame?: number;
}

/**
 * Cuts a byte stream into runs of whole frames. Each `push` returns a view of
 * every whole frame available (no copy when the chunk holds whole frames);
 * only a trailing partial frame is kept back, bounded by `maxFrame`. A frame
 * over `maxFrame` is a {@linkcode ProtocolError} (the whole frames of the
 * same chunk before it are not returned); a frame with LENGTH 0 is returned
 * as 4 bytes for {@linkcode FrameReader} to refuse.
 *
 * @example Split a TLS byte stream
 * ```ts
 * import { FrameSplitter } from "./frame.ts";
 * const splitter = new FrameSplitter({ maxFrame: 1 << 20 });
 * declare const chunk: Uint8Array;
 * const whole = splitter.push(chunk); // Uint8Array of whole frames, maybe empty
 * ```
 */
export class FrameSplitter {
  readonly #maxFrame: number;
  #pending: Uint8Array = new Uint8Array(0);
  #pendingLength = 0;

  /** Makes a splitter with nothing held back. */
  constructor(options: FrameSplitterOptions = {}) {
    this.#maxFrame = options.maxFrame ?? DEFAULT_MAX_FRAME;
  }

  /** Adds a chunk; returns the whole frames now available (possibly empty). */
  push(chunk: Uint8Array): Uint8Array {
    let buf = chunk;
    if (this.#pendingLength > 0) {
      const needed = this.#pendingLength + chunk.length;
      if (this.#pending.length < needed) {
        const grown = new Uint8Array(Math.max(needed, this.#pending.length * 2));
        grown.set(this.#pending.subarray(0, this.#pendingLength));
        this.#pending = grown;
      }
      this.#pending.set(chunk, this.#pendingLength);
      buf = this.#pending.subarray(0, needed);
    }
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    let pos = 0;
    while (pos + 4 <= buf.length) {
      const length = view.getUint32(pos);
      if (length + 4 > this.#maxFrame) {
        throw new ProtocolError(`frame of ${length + 4} bytes (limit ${this.#maxFrame})`);
      }
      // LENGTH 0 is passed on as a 4-byte frame: FrameReader refuses it, after
      // the whole frames before it.
      if (pos + 4 + length > buf.length) break;
      pos += 4 + length;
    }
    const whole = buf.subarray(0, pos);
    const rest = buf.length - pos;
    if (buf === chunk) {
      if (rest > 0) {
        if (this.#pending.length < rest) this.#pending = new Uint8Array(Math.max(rest, 4096));
        this.#pending.set(chunk.subarray(pos));
      }
      this.#pendingLength = rest;
      return whole;
    }
    // The frames came out of #pending: hand out a copy, keep the rest.
    const out = whole.slice();
    this.#pending.copyWithin(0, pos, buf.length);
    this.#pendingLength = rest;
    return out;
  }
}
