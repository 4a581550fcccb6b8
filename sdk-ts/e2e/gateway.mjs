// End-to-end check of the built SDK (dist/) against a real pike-server over
// its WebSocket transport, in Node with `ws`:
//
//   node e2e/gateway.mjs path/to/pike-server
//
// It starts the gateway on loopback (a temporary config and data dir, a
// kernel-picked HTTP port, an uplink webhook served here), then checks:
// login, three reliable pushes delivered in order, an uplink message reaching
// the webhook (sendSuccess), a room join and publish, a credential refresh
// through the credentialProvider, a graceful gateway restart (SIGTERM:
// GO_AWAY) after which two more pushes arrive and nothing is delivered twice.
// Every wait is bounded; exit status 0 on success, 1 on failure.
import { spawn } from "node:child_process";
import http from "node:http";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
import { PikeChannel, PikeClient, factoryFromConstructor } from "../dist/src/index.js";

const serverBin = process.argv[2];
if (!serverBin) {
  console.error("usage: node e2e/gateway.mjs PATH_TO_PIKE_SERVER");
  process.exit(2);
}
const dir = mkdtempSync(join(tmpdir(), "pike-sdk-e2e-"));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
let gateway;
let log = "";
let hook;

async function freePort() {
  return new Promise((resolve) => {
    const s = http.createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function until(what, condition, ms = 15_000) {
  for (let waited = 0; waited < ms; waited += 50) {
    if (condition()) return;
    await sleep(50);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
  console.log(`ok: ${message}`);
}

async function startGateway(config) {
  gateway = spawn(serverBin, ["--config", config], { stdio: ["ignore", "pipe", "pipe"] });
  gateway.stdout.on("data", (d) => (log += d));
  gateway.stderr.on("data", (d) => (log += d));
  await until("the gateway's ready banner", () => /^pike-server .* ready$/m.test(log), 60_000);
}

async function stopGateway() {
  const exited = new Promise((resolve) => gateway.once("exit", resolve));
  gateway.kill("SIGTERM");
  const timer = setTimeout(() => gateway.kill("SIGKILL"), 30_000);
  await exited;
  clearTimeout(timer);
}

async function main() {
  const httpPort = await freePort();
  const uplinks = [];
  hook = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      uplinks.push({ key: decodeURIComponent(String(req.headers["idempotency-key"] ?? "")), body });
      res.writeHead(200, { "content-type": "application/json" });
      res.end("{}");
    });
  });
  await new Promise((resolve) => hook.listen(0, "127.0.0.1", resolve));
  const apiKey = "pk_sdk_e2e_0123456789abcdef01234567";
  const config = join(dir, "pike.toml");
  writeFileSync(
    config,
    `data_dir = "${dir}/data"

[listen]
tcp = "127.0.0.1:0"
tls = ""
quic = ""
http = "127.0.0.1:${httpPort}"

[[apps]]
id = "shop"
api_key = "${apiKey}"
token_secret = "sdk-e2e-secret-0123456789abcdef"

[[apps.biz]]
id = "chat"
uplink_webhooks = ["http://127.0.0.1:${hook.address().port}/pike/uplink"]
`,
  );
  const api = async (path, body) => {
    const res = await fetch(`http://127.0.0.1:${httpPort}${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${path}: HTTP ${res.status} ${text}`);
    return JSON.parse(text);
  };

  await startGateway(config);
  // A short-lived first credential, so that the login result carries an
  // expiry and the client refreshes it at once (half the time left).
  const { token } = await api("/v1/tokens", { biz: "chat", alias: "u42", ttl_secs: 2 });
  const channel = new PikeChannel({
    url: `ws://127.0.0.1:${httpPort}/v1/ws`,
    appId: "shop",
    deviceId: "sdk-e2e-device",
    webSocket: factoryFromConstructor(WebSocket),
  });
  let minted = 0;
  const client = new PikeClient(channel, {
    biz: "chat",
    alias: "u42",
    credential: token,
    credentialProvider: async () => {
      minted++;
      return (await api("/v1/tokens", { biz: "chat", alias: "u42", ttl_secs: 3600 })).token;
    },
  });
  const received = [];
  const roomPayloads = [];
  const events = [];
  const decode = (bytes) => new TextDecoder().decode(bytes);
  client.on((e) => {
    events.push(e.type);
    if (e.type === "receive") received.push(`${e.message.seq}:${decode(e.message.payload)}`);
    if (e.type === "roomMessages") roomPayloads.push(...e.messages.map((m) => decode(m.payload)));
  });
  const connectivity = [];
  channel.on((e) => connectivity.push(e.type === "disconnected" ? `disconnected:${e.reason.kind}` : e.type));

  client.start();
  await until("running", () => client.state === "running");
  check(true, "logged in over ws://.../v1/ws");

  for (const payload of ["a", "b", "c"]) await api("/v1/push", { biz: "chat", alias: "u42", payload });
  await until("three deliveries", () => received.length === 3);
  check(received.join(" ") === "1:a 2:b 3:c", `reliable pushes in order (${received.join(" ")})`);

  const sent = await client.send(new TextEncoder().encode("hello backend")).result;
  check(sent.ok && uplinks.length === 1 && uplinks[0].key === sent.key && uplinks[0].body === "hello backend", "uplink reached the webhook with its payload and idempotency key");

  const joined = await client.joinRoom("live:1");
  check(joined.ok, "room joined");
  await api("/v1/rooms/live:1/publish", { payload: "room hello" });
  await until("the room message", () => roomPayloads.length === 1);
  check(roomPayloads[0] === "room hello", "room message received");

  await until("the credential refresh", () => events.includes("credentialRefreshed") || events.includes("credentialRefreshFailed"), 20_000);
  check(events.includes("credentialRefreshed") && minted === 1, "credential refreshed through the provider");

  await sleep(100); // let the last acknowledgement go out
  await stopGateway();
  check(connectivity.includes("disconnected:goAway") || connectivity.includes("disconnected:transport"), `the restart was seen (${connectivity.join(",")})`);
  await startGateway(config);
  await until("the reconnect", () => channel.state === "connected", 40_000);
  for (const payload of ["d", "e"]) await api("/v1/push", { biz: "chat", alias: "u42", payload });
  await until("five deliveries", () => received.length >= 5);
  await sleep(300); // a duplicate would arrive now
  check(received.join(" ") === "1:a 2:b 3:c 4:d 5:e", `exactly once across the restart (${received.join(" ")})`);
  check(client.state === "running", "still running");

  client.stop();
  check(channel.state === "idle", "the channel closed with its last client");
}

let status = 0;
try {
  await main();
  console.log("sdk-ts e2e: all checks passed");
} catch (error) {
  status = 1;
  console.error(`sdk-ts e2e FAILED: ${error instanceof Error ? error.message : String(error)}`);
  console.error("the gateway's output:\n" + log);
} finally {
  if (gateway && gateway.exitCode === null) await stopGateway().catch(() => gateway.kill("SIGKILL"));
  hook?.close();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(status);
