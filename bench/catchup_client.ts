/**
 * A minimal reclog protocol client (docs/protocol.md) for the journal
 * catch-up figure: connect over mutual TLS, send a hello (resume from a
 * point, or live), count message frames until the wanted number arrived.
 *
 * @module
 */

import tls from "node:tls";
import { encodeControl, FrameReader, FrameSplitter, FrameType } from "../lib/protocol/frame.ts";
import { clientTlsOptions, type TlsMaterial } from "../lib/tls/policy.ts";

/** The server's greeting (the fields the bench uses). */
export interface ServerHello {
  epoch: string;
  first: number;
  next: number;
  start: number;
}

/** What a catch-up read. */
export interface CatchUpResult {
  hello: ServerHello;
  received: number;
  firstSeq: number;
  lastSeq: number;
  /** Gaps in the sequence numbers (should be 0). */
  gaps: number;
  /** `L` frames received. */
  lost: number;
  /** From the connect call to the last wanted message. */
  seconds: number;
  /** From the server's hello to the last wanted message. */
  streamSeconds: number;
}

/** Where to connect and how. */
export interface ClientOptions {
  port: number;
  material: TlsMaterial;
  /** Resume point; absent: live tail. */
  resume?: { epoch: string; next: number };
  /** Stop after this many message frames (0: after the hello). */
  count: number;
  timeoutMs: number;
}

/** Connects, reads `count` messages (or just the hello), disconnects. */
export function readMessages(options: ClientOptions): Promise<CatchUpResult> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: "127.0.0.1",
      port: options.port,
      ...clientTlsOptions(options.material, "localhost"),
    });
    const splitter = new FrameSplitter();
    const frame = new FrameReader(new Uint8Array(0));
    let hello: ServerHello | undefined;
    let helloAt = 0;
    let received = 0, firstSeq = 0, lastSeq = 0, gaps = 0, lost = 0;
    let done = false;
    const timer = setTimeout(
      () => finish(new Error(`catch-up: only ${received} of ${options.count} messages in time`)),
      options.timeoutMs,
    );
    const finish = (error?: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const end = performance.now();
      socket.destroy();
      if (error) return reject(error);
      resolve({
        hello: hello!,
        received,
        firstSeq,
        lastSeq,
        gaps,
        lost,
        seconds: (end - t0) / 1000,
        streamSeconds: (end - helloAt) / 1000,
      });
    };
    socket.once("secureConnect", () => {
      socket.write(encodeControl(FrameType.Hello, {
        proto: "reclog",
        v: 1,
        ...(options.resume ? { resume: options.resume } : { live: true }),
      }));
    });
    socket.on("error", (error: Error) => finish(error));
    socket.on("close", () => finish(new Error(`catch-up: closed after ${received} messages`)));
    socket.on("data", (chunk: Uint8Array) => {
      if (done) return;
      try {
        frame.reset(splitter.push(chunk));
      } catch (error) {
        return finish(error as Error);
      }
      while (frame.next()) {
        if (frame.type === FrameType.Message) {
          if (received === 0) firstSeq = frame.seq;
          else if (frame.seq !== lastSeq + 1) gaps++;
          lastSeq = frame.seq;
          if (++received >= options.count) return finish();
        } else if (frame.type === FrameType.Hello) {
          hello = frame.json<ServerHello>();
          helloAt = performance.now();
          if (options.count === 0) return finish();
        } else if (frame.type === FrameType.Lost) {
          lost++;
        } else if (frame.type === FrameType.Close) {
          return finish(new Error(`catch-up: server closed: ${frame.text()}`));
        }
      }
    });
  });
}
