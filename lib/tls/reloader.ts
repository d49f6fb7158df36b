/**
 * Certificates that change while reclog runs: `--cert`, `--key` and `--ca`
 * are read again on SIGHUP and when the files change on disk. A bad new set
 * is refused with a clear log line and the old one stays in use; a good one
 * is handed to the role (new connections use it, established ones go on).
 * A certificate that expires within 30 days is warned about at start and
 * daily.
 *
 * @module
 */

import { errorMessage } from "../util/errors.ts";
import { log } from "../util/log.ts";
import { loadTlsMaterial, type TlsFiles, type TlsMaterial } from "./policy.ts";

/** Options for {@linkcode TlsReloader}. */
export interface TlsReloaderOptions {
  /** Called with each accepted new set of material. */
  onReload?: (material: TlsMaterial) => void;
  /**
   * How often the files are looked at for changes, ms.
   * @default {2000}
   */
  intervalMs?: number;
  /**
   * Warn when the certificate expires within this many days.
   * @default {30}
   */
  warnDays?: number;
}

const DAY_MS = 86_400_000;

/**
 * Holds the current TLS material and reloads it.
 *
 * @example Reload a server's certificate
 * ```ts
 * import { loadTlsMaterial } from "./policy.ts";
 * import { TlsReloader } from "./reloader.ts";
 * const files = { cert: "s.pem", key: "s.key", ca: "ca.pem" };
 * using reloader = new TlsReloader(await loadTlsMaterial(files), {
 *   onReload: (material) => console.log("new certificate until", material.notAfter),
 * });
 * ```
 */
export class TlsReloader implements Disposable {
  #current: TlsMaterial;
  readonly #options: TlsReloaderOptions;
  readonly #files: TlsFiles;
  #fingerprint = "";
  readonly #timer: ReturnType<typeof setInterval>;
  readonly #daily: ReturnType<typeof setInterval>;
  readonly #onSignal = () => {
    log("tls").info("SIGHUP: reading --cert, --key and --ca again");
    this.reload();
  };
  #reloading: Promise<void> = Promise.resolve();

  /**
   * Starts watching the files `material` came from (every `intervalMs`, and
   * on SIGHUP outside Windows); warns at once if the certificate expires
   * within `warnDays`. Call {@linkcode TlsReloader.close} to stop.
   */
  constructor(material: TlsMaterial, options: TlsReloaderOptions = {}) {
    this.#current = material;
    this.#files = material.files;
    this.#options = options;
    this.#warnExpiry();
    this.#fingerprint = this.#stamp();
    this.#timer = setInterval(() => {
      const stamp = this.#stamp();
      if (stamp !== this.#fingerprint) {
        this.#fingerprint = stamp;
        log("tls").info("certificate files changed on disk: reading them again");
        this.reload();
      }
    }, options.intervalMs ?? 2000);
    this.#daily = setInterval(() => this.#warnExpiry(), DAY_MS);
    if (Deno.build.os !== "windows") Deno.addSignalListener("SIGHUP", this.#onSignal);
  }

  /** Reads the files again; keeps the old material if the new one is bad. */
  reload(): Promise<void> {
    this.#reloading = this.#reloading.then(async () => {
      try {
        const material = await loadTlsMaterial(this.#files);
        if (
          material.cert === this.#current.cert && material.key === this.#current.key &&
          material.ca === this.#current.ca
        ) {
          return;
        }
        this.#current = material;
        this.#options.onReload?.(material);
        log("tls").info("new certificate material in use (certificate valid until {date})", {
          date: material.notAfter.toISOString(),
        });
        this.#warnExpiry();
      } catch (error) {
        log("tls").error("refused the new certificate material, keeping the old: {error}", {
          error: errorMessage(error),
        });
      }
    });
    return this.#reloading;
  }

  #warnExpiry(): void {
    const days = Math.floor((this.#current.notAfter.getTime() - Date.now()) / DAY_MS);
    if (days < (this.#options.warnDays ?? 30)) {
      log("tls").warn("--cert '{file}' expires on {date} ({days} days left)", {
        file: this.#files.cert,
        date: this.#current.notAfter.toISOString().slice(0, 10),
        days,
      });
    }
  }

  /** Size, mtime and inode of the three files, to notice a change. */
  #stamp(): string {
    return [this.#files.cert, this.#files.key, this.#files.ca].map((path) => {
      try {
        const info = Deno.statSync(path);
        return `${info.ino}:${info.size}:${info.mtime?.getTime()}`;
      } catch {
        return "missing";
      }
    }).join("|");
  }

  /** Stops watching; safe to call twice. */
  close(): void {
    clearInterval(this.#timer);
    clearInterval(this.#daily);
    if (Deno.build.os !== "windows") {
      try {
        Deno.removeSignalListener("SIGHUP", this.#onSignal);
      } catch {
        // already removed
      }
    }
  }

  /** Stops watching, like {@linkcode TlsReloader.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}
