// JetStreamSink and JetStreamSource over TLS with client certificates to a
// real nats-server (`--tlsverify`); certificates made here with openssl.
// The server certificate names localhost too: for a tls://127.0.0.1 URL the
// client (node:tls under Deno) checks the name localhost.
import nodeAssert from "node:assert/strict";
import { JetStreamSink } from "../lib/sinks/nats.ts";
import { JetStreamSource } from "../lib/sources/nats.ts";
import { NatsServer } from "../lib/transport/nats_server.ts";
import { collect, publishAll, type Received, waitFor } from "./nats_helpers_test.ts";

async function openssl(cwd: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd, stdout: "null", stderr: "piped" })
    .output();
  if (!out.success) throw new Error(`openssl ${args[0]}: ${new TextDecoder().decode(out.stderr)}`);
}

async function makePki(dir: string): Promise<void> {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await openssl(
    dir,
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=test ca",
  );
  for (
    const [name, ext] of [["server", "subjectAltName=IP:127.0.0.1,DNS:localhost"], [
      "client",
      "extendedKeyUsage=clientAuth",
    ]]
  ) {
    await openssl(
      dir,
      "req",
      ...ec,
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.csr`,
      "-subj",
      `/CN=${name}`,
    );
    await Deno.writeTextFile(`${dir}/${name}.ext`, `${ext}\n`);
    await openssl(
      dir,
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      `${name}.pem`,
      "-days",
      "2",
      "-extfile",
      `${name}.ext`,
    );
  }
}

Deno.test({
  name: "JetStream over TLS with client certificates: sink and source (PEM paths and PEM text)",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "reclog_nats_tls_" });
    await makePki(dir);
    await using server = await NatsServer.start({
      dir: `${dir}/nats`,
      tls: {
        cert: `${dir}/server.pem`,
        key: `${dir}/server.key`,
        ca: `${dir}/ca.pem`,
        verify: true,
      },
    });
    const servers = [`tls://127.0.0.1:${server.port}`];
    await using sink = new JetStreamSink({
      servers,
      stream: "LOGS",
      host: "web1",
      createStream: {},
      tls: { cert: `${dir}/client.pem`, key: `${dir}/client.key`, ca: `${dir}/ca.pem` },
    });
    await publishAll(sink, 1000, 250);
    const got: Received[] = [];
    await using source = new JetStreamSource({
      servers,
      stream: "LOGS",
      durable: "home",
      onBatch: collect(got),
      tls: {
        cert: await Deno.readTextFile(`${dir}/client.pem`),
        key: await Deno.readTextFile(`${dir}/client.key`),
        ca: await Deno.readTextFile(`${dir}/ca.pem`),
      },
    });
    await source.listen();
    await waitFor("the durable", () => got.length >= 1000);
    await source.close();
    nodeAssert.deepStrictEqual(got.map((r) => r.seq), [...Array(1000).keys()]);
    await Deno.remove(dir, { recursive: true });
  },
});
