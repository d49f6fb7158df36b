/**
 * A local `nats-server` with JetStream on loopback ports, for the tests and
 * the benchmark (and a three-node cluster of them): started on free ports,
 * ready when its `/healthz` says so (polled with a deadline), SIGKILLed and
 * restarted on the same ports and storage directory.
 *
 * @module
 */

/** A free loopback TCP port (bound, then released). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Options for {@linkcode NatsServer}. */
export interface NatsServerOptions {
  /** JetStream storage directory (file storage). */
  dir: string;
  /** Server name (unique in a cluster). @default {"n1"} */
  name?: string;
  /** Client port. @default {a free port} */
  port?: number;
  /** Cluster route port and the routes to the others, for a cluster. */
  cluster?: { name: string; port: number; routes: number[] };
  /** TLS for clients (PEM file paths); with `verify`, client certificates are required. */
  tls?: { cert: string; key: string; ca: string; verify?: boolean };
  /** The program. @default {"nats-server"} */
  program?: string;
}

/**
 * One `nats-server -js` process.
 *
 * @example Start, use, stop
 * ```ts ignore
 * import { NatsServer } from "./nats_server.ts";
 * await using server = await NatsServer.start({ dir: await Deno.makeTempDir() });
 * console.log(server.url); // nats://127.0.0.1:PORT
 * ```
 */
export class NatsServer implements AsyncDisposable {
  /** Client port. */
  readonly port: number;
  /** Monitoring port (`/healthz`). */
  readonly monitorPort: number;
  #options: NatsServerOptions;
  #child: Deno.ChildProcess | undefined;

  private constructor(options: NatsServerOptions) {
    this.#options = options;
    this.port = options.port ?? freePort();
    this.monitorPort = freePort();
  }

  /** Starts a server and waits until it is ready. */
  static async start(options: NatsServerOptions, timeoutMs = 20_000): Promise<NatsServer> {
    const server = new NatsServer(options);
    await server.restart(timeoutMs);
    return server;
  }

  /** `nats://127.0.0.1:PORT`. */
  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** Whether the process runs. */
  get running(): boolean {
    return this.#child !== undefined;
  }

  /** (Re)starts the process on the same ports and directory; resolves when ready. */
  async restart(timeoutMs = 20_000): Promise<void> {
    if (this.#child) return;
    const o = this.#options;
    const args = ["-js", "-a", "127.0.0.1", "-p", String(this.port), "-sd", o.dir];
    args.push("-n", o.name ?? "n1", "-m", String(this.monitorPort));
    args.push("-l", `${o.dir}/nats-server.log`);
    Deno.mkdirSync(o.dir, { recursive: true });
    if (o.tls) {
      args.push("--tls", "--tlscert", o.tls.cert, "--tlskey", o.tls.key, "--tlscacert", o.tls.ca);
      if (o.tls.verify) args.push("--tlsverify");
    }
    if (o.cluster) {
      args.push(
        "--cluster_name",
        o.cluster.name,
        "--cluster",
        `nats://127.0.0.1:${o.cluster.port}`,
      );
      args.push("--routes", o.cluster.routes.map((p) => `nats://127.0.0.1:${p}`).join(","));
    }
    this.#child = new Deno.Command(o.program ?? "nats-server", {
      args,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    await this.waitReady(timeoutMs, !o.cluster);
  }

  /**
   * Polls `/healthz` until it answers 200 (with `jsOnly`, JetStream alone;
   * a cluster node is healthy only once the cluster has a meta leader).
   */
  async waitReady(timeoutMs = 20_000, jsOnly = true): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const url = `http://127.0.0.1:${this.monitorPort}/healthz${
      jsOnly ? "?js-enabled-only=true" : ""
    }`;
    let last = "no answer";
    while (Date.now() < deadline) {
      try {
        const response = await fetch(url, { signal: AbortSignal.timeout(1000) });
        last = `${response.status} ${await response.text()}`;
        if (response.ok) return;
      } catch (error) {
        last = String(error);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(
      `nats-server ${this.#options.name ?? "n1"} not ready after ${timeoutMs} ms: ${last}`,
    );
  }

  /** SIGKILLs the process and waits for it to end. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    this.#child = undefined;
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
    await child.status;
  }

  /** Stops the server (SIGKILL: its storage is the test's). Safe twice. */
  close(): Promise<void> {
    return this.kill();
  }

  /** Same as {@linkcode NatsServer.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Starts a cluster of `size` servers routed to each other on loopback.
 *
 * @example A three-node cluster
 * ```ts ignore
 * import { startNatsCluster } from "./nats_server.ts";
 * const nodes = await startNatsCluster(await Deno.makeTempDir(), 3);
 * for (const node of nodes) await node.close();
 * ```
 */
export async function startNatsCluster(dir: string, size: number): Promise<NatsServer[]> {
  const routePorts = Array.from({ length: size }, () => freePort());
  const starts = routePorts.map((port, i) =>
    NatsServer.start({
      dir: `${dir}/n${i + 1}`,
      name: `n${i + 1}`,
      cluster: { name: "reclog", port, routes: routePorts.filter((p) => p !== port) },
    }, 30_000)
  );
  return await Promise.all(starts);
}
