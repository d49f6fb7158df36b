// The NATS flags of serve --publish and pull --from: options out, one-line
// ConfigErrors naming the flag.
import nodeAssert from "node:assert/strict";
import { ConfigError } from "../lib/cli/flags.ts";
import {
  natsFromOptions,
  natsPublishOptions,
  parseDurationMs,
} from "../lib/transport/nats_flags.ts";

Deno.test("nats flags: serve --publish with --nats-create limits", () => {
  const options = natsPublishOptions({
    publish: ["nats://n1:4222", "tls://n2:4222"],
    "nats-stream": "LOGS",
    "nats-create": true,
    "nats-replicas": "3",
    "nats-max-age": "30d",
    "nats-max-bytes": "10GiB",
  }, { cert: "s.pem", key: "s.key", ca: "ca.pem" });
  nodeAssert.deepStrictEqual(options, {
    servers: ["nats://n1:4222", "tls://n2:4222"],
    stream: "LOGS",
    tls: { cert: "s.pem", key: "s.key", ca: "ca.pem" },
    createStream: { replicas: 3, maxAgeMs: 30 * 86_400_000, maxBytes: 10 * 1024 ** 3 },
  });
  nodeAssert.equal(natsPublishOptions({}), undefined);
  nodeAssert.equal(parseDurationMs("90", "--x"), 90_000);
});

Deno.test("nats flags: errors name the flag", () => {
  const cases: [() => unknown, RegExp][] = [
    [() => natsPublishOptions({ publish: ["nats://h:1"] }), /--publish needs --nats-stream/],
    [
      () => natsPublishOptions({ publish: ["http://h:1"], "nats-stream": "S" }),
      /--publish: not a NATS/,
    ],
    [() => natsPublishOptions({ "nats-stream": "S" }), /--nats-stream needs --publish/],
    [
      () =>
        natsPublishOptions({ publish: ["nats://h:1"], "nats-stream": "S", "nats-replicas": "3" }),
      /--nats-replicas needs --nats-create/,
    ],
    [
      () =>
        natsPublishOptions({
          publish: ["nats://h:1"],
          "nats-stream": "S",
          "nats-create": true,
          "nats-max-age": "soon",
        }),
      /--nats-max-age 'soon'/,
    ],
    [() => natsFromOptions({ from: ["nats://h:1"], "nats-stream": "S" }), /needs --durable/],
    [
      () => natsFromOptions({ from: ["nats://h:1"], "nats-stream": "S", durable: "a.b" }),
      /--durable 'a.b'/,
    ],
    [
      () =>
        natsFromOptions({
          from: ["nats://h:1"],
          "nats-stream": "S",
          durable: "d",
          "nats-cert": "c",
        }),
      /--nats-cert and --nats-key/,
    ],
  ];
  for (const [run, message] of cases) {
    nodeAssert.throws(run, (e: unknown) => e instanceof ConfigError && message.test(e.message));
  }
  nodeAssert.deepStrictEqual(
    natsFromOptions({
      from: ["nats://h:1"],
      "nats-stream": "S",
      durable: "d",
      "nats-filter": "reclog.web1.>",
    }),
    { servers: ["nats://h:1"], stream: "S", durable: "d", filter: "reclog.web1.>" },
  );
});
