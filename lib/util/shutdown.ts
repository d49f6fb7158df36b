/**
 * Graceful stop: the first SIGINT or SIGTERM aborts a signal so every part
 * closes cleanly; a second one exits at once.
 *
 * @module
 */

import { log } from "./log.ts";

const SIGNALS: Deno.Signal[] = ["SIGINT", "SIGTERM"];

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
export function shutdownSignal(): { signal: AbortSignal } & Disposable {
  const controller = new AbortController();
  const handler = () => {
    if (controller.signal.aborted) {
      log("main").warn("second signal: exiting at once");
      Deno.exit(1);
    }
    log("main").info("stopping (signal received)");
    controller.abort();
  };
  for (const signal of SIGNALS) Deno.addSignalListener(signal, handler);
  return {
    signal: controller.signal,
    [Symbol.dispose]() {
      for (const signal of SIGNALS) Deno.removeSignalListener(signal, handler);
    },
  };
}
