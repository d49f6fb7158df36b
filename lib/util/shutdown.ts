/**
 * Graceful stop for every role: the first SIGINT or SIGTERM aborts a signal
 * so every part closes cleanly; a second one stops at once.
 *
 * @module
 */

import { log } from "./log.ts";

const SIGNALS: Deno.Signal[] = ["SIGINT", "SIGTERM"];

/** Options for {@linkcode shutdownSignal}. */
export interface ShutdownOptions {
  /**
   * Called on the first signal, with its name, before the returned signal
   * aborts (e.g. `send` forwards it to its COMMAND).
   */
  onFirst?: (signal: Deno.Signal) => void;
  /**
   * What a second signal does.
   * @default {exits at once with code 1}
   */
  onSecond?: (signal: Deno.Signal) => void;
}

/**
 * Returns an AbortSignal that aborts on the first SIGINT/SIGTERM; dispose it
 * to remove the handlers.
 *
 * @example Stop a role on a signal
 * ```ts
 * import { shutdownSignal } from "./shutdown.ts";
 * using shutdown = shutdownSignal();
 * shutdown.signal.addEventListener("abort", () => console.error("stopping"));
 * ```
 */
export function shutdownSignal(
  options: ShutdownOptions = {},
): { signal: AbortSignal } & Disposable {
  const controller = new AbortController();
  const handlers = SIGNALS.map((name) => {
    const handler = () => {
      if (controller.signal.aborted) {
        if (options.onSecond) return options.onSecond(name);
        log("main").warn("second signal: exiting at once");
        Deno.exit(1);
      }
      log("main").info("stopping (signal received)");
      options.onFirst?.(name);
      controller.abort();
    };
    Deno.addSignalListener(name, handler);
    return [name, handler] as const;
  });
  return {
    signal: controller.signal,
    [Symbol.dispose]() {
      for (const [name, handler] of handlers) Deno.removeSignalListener(name, handler);
    },
  };
}
