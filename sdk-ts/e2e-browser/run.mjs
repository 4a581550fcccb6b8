// The TypeScript SDK in a real Chromium against a real pike-server:
//
//   node e2e-browser/run.mjs PIKE_SERVER FAULTPROXY CHROMIUM
//
// It starts, all on loopback: the gateway (temporary config and data dir,
// heartbeat 2 s + 2 s so a dead link shows within seconds, the app `shop`
// whose allowed_origins lists only the test page's origin), a node HTTP
// server that serves the test page, the built SDK (dist/, ES modules) and
// @bufbuild/protobuf (an import map, no bundler) and is the uplink webhook,
// and faultproxy between the browser and the gateway's HTTP listener. Then
// Chromium (playwright-core, the system's binary, a fresh profile) opens the
// page, and the page's SDK, with the browser's own WebSocket:
//
//   - logs in over ws:// through the proxy and receives reliable pushes in
//     order;
//   - sends an uplink message, which reaches the webhook with its
//     idempotency key;
//   - joins a room and receives a publish;
//   - loses the network (faultproxy blackholes both ways: nothing closes,
//     the heartbeat finds the link dead), misses a push made meanwhile, and
//     gets it after the network heals and the SDK reconnects;
//   - gets through a gateway restart (SIGTERM, then a new process on the
//     same data dir) and receives every reliable push exactly once;
//
// and a page of an origin the app does not list cannot open the WebSocket
// (the gateway counts it in pike_http_refused_total{reason="origin"}),
// while the listed page can. Every wait is bounded; exit status 0 on
// success, 1 on failure.
import { spawn } from "node:child_process";
import http from "node:http";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const [serverBin, proxyBin, chromiumBin] = process.argv.slice(2);
if (!serverBin || !proxyBin || !chromiumBin) {
  console.error("usage: node e2e-browser/run.mjs PIKE_SERVER FAULTPROXY CHROMIUM");
  process.exit(2);
}
/** The sdk-ts folder: what the page server serves from. */
const root = dirname(dirname(fileURLToPath(import.meta.url)));
const dir = mkdtempSync(join(tmpdir(), "pike-sdk-browser-"));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const apiKey = "pk_browser_e2e_0123456789abcdef0123";

let gateway;
let gatewayLog = "";
let proxy;
let proxyLog = "";
let browser;
const pageLog = [];
const servers = [];

/** `promise`, or an error naming `what` after `ms`. */
async function bounded(what, promise, ms = 15_000) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `condition` (sync or async) until it holds, at most `ms`. */
async function until(what, condition, ms = 15_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
  console.log(`ok: ${message}`);
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = http.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// --- the page server and webhook -------------------------------------------

const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript", ".map": "application/json" };
/** What the page server serves: the page, the built SDK, the protobuf runtime. */
const SERVED = ["/e2e-browser/", "/dist/", "/node_modules/@bufbuild/protobuf/"];
const uplinks = [];

function pageServer(req, res) {
  const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
  if (req.method === "POST" && path === "/pike/uplink") {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      uplinks.push({ key: decodeURIComponent(String(req.headers["idempotency-key"] ?? "")), body });
      res.writeHead(200, { "content-type": "application/json" });
      res.end("{}");
    });
    return;
  }
  const file = path === "/" || path === "/page.html" ? "/e2e-browser/page.html" : path;
  const full = normalize(join(root, file));
  const inside = full.startsWith(root + sep) && SERVED.some((prefix) => file.startsWith(prefix));
  let bytes;
  try {
    bytes = inside && statSync(full).isFile() ? readFileSync(full) : undefined;
  } catch {
    bytes = undefined;
  }
  if (req.method !== "GET" || !bytes) {
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("not found");
    return;
  }
  res.writeHead(200, { "content-type": TYPES[extname(full)] ?? "application/octet-stream", "cache-control": "no-store" });
  res.end(bytes);
}

async function listen() {
  const server = http.createServer(pageServer);
  servers.push(server);
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  return server.address().port;
}

// --- the gateway -------------------------------------------------------------

async function startGateway(config) {
  gatewayLog += "--- start\n";
  gateway = spawn(serverBin, ["--config", config], { stdio: ["ignore", "pipe", "pipe"] });
  gateway.stdout.on("data", (d) => (gatewayLog += d));
  gateway.stderr.on("data", (d) => (gatewayLog += d));
  const started = gateway;
  await until("the gateway's ready banner", () => {
    if (started.exitCode !== null) throw new Error(`the gateway exited (${started.exitCode})`);
    return /^pike-server .* ready$/m.test(gatewayLog.slice(gatewayLog.lastIndexOf("--- start")));
  }, 60_000);
}

async function stopGateway() {
  if (!gateway || gateway.exitCode !== null) return;
  const exited = new Promise((resolve) => gateway.once("exit", resolve));
  gateway.kill("SIGTERM");
  const timer = setTimeout(() => gateway.kill("SIGKILL"), 30_000);
  await exited;
  clearTimeout(timer);
}

// --- faultproxy ------------------------------------------------------------

const proxyAnswers = [];

async function startProxy(upstreamPort) {
  proxy = spawn(proxyBin, ["--listen", "127.0.0.1:0", "--upstream", `127.0.0.1:${upstreamPort}`], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  let out = "";
  proxy.stdout.on("data", (d) => {
    out += d;
    proxyLog += d;
    let newline;
    while ((newline = out.indexOf("\n")) >= 0) {
      proxyAnswers.push(out.slice(0, newline).trim());
      out = out.slice(newline + 1);
    }
  });
  proxy.stderr.on("data", (d) => (proxyLog += d));
  let port;
  await until("faultproxy listening", () => {
    if (proxy.exitCode !== null) throw new Error(`faultproxy exited (${proxy.exitCode})`);
    const m = /faultproxy: tcp 127\.0\.0\.1:(\d+) ->/.exec(proxyLog);
    port = m ? Number(m[1]) : undefined;
    return port !== undefined;
  });
  return port;
}

/** A control line to faultproxy, answered `ok`. */
async function proxyCommand(line) {
  const before = proxyAnswers.length;
  proxy.stdin.write(`${line}\n`);
  await until(`faultproxy's answer to ${line}`, () => proxyAnswers.length > before, 5_000);
  const answer = proxyAnswers[before];
  if (answer !== "ok") throw new Error(`faultproxy: ${line}: ${answer}`);
}

// --- the test ----------------------------------------------------------------

async function main() {
  const httpPort = await freePort();
  const pagePort = await listen();
  const otherPort = await listen();
  const pageOrigin = `http://127.0.0.1:${pagePort}`;
  const config = join(dir, "pike.toml");
  writeFileSync(
    config,
    `data_dir = "${dir}/data"

[listen]
tcp = "127.0.0.1:0"
tls = ""
quic = ""
http = "127.0.0.1:${httpPort}"

[heartbeat]
interval_secs = 2
timeout_secs = 2

[[apps]]
id = "shop"
api_key = "${apiKey}"
token_secret = "browser-e2e-secret-0123456789abcdef"
allowed_origins = ["${pageOrigin}"]

[[apps.biz]]
id = "chat"
uplink_webhooks = ["http://127.0.0.1:${pagePort}/pike/uplink"]
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
  const push = (payload) => api("/v1/push", { biz: "chat", alias: "u42", payload });
  const originRefusals = async () => {
    const res = await fetch(`http://127.0.0.1:${httpPort}/metrics`, { signal: AbortSignal.timeout(10_000) });
    const m = /^pike_http_refused_total\{reason="origin"\} (\d+)/m.exec(await res.text());
    return m ? Number(m[1]) : 0;
  };

  await startGateway(config);
  const proxyPort = await startProxy(httpPort);

  const profile = join(dir, "chromium-profile");
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumBin,
    headless: true,
    timeout: 60_000,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  browser = context;
  const open = async (origin) => {
    const page = await context.newPage();
    page.on("console", (m) => pageLog.push(`[${origin} console.${m.type()}] ${m.text()}`));
    page.on("pageerror", (e) => pageLog.push(`[${origin} error] ${e.message}`));
    await page.goto(`${origin}/page.html`, { timeout: 15_000 });
    await page.waitForFunction(() => window.pikeReady === true, null, { timeout: 15_000 });
    return page;
  };
  const page = await open(pageOrigin);
  const call = (what, fn, arg, ms) => bounded(what, page.evaluate(fn, arg), ms);
  const snapshot = () => call("snapshot", () => window.pikeTest.snapshot());

  const { token } = await api("/v1/tokens", { biz: "chat", alias: "u42", ttl_secs: 3600 });
  await call(
    "start",
    (o) => window.pikeTest.start(o),
    { url: `ws://127.0.0.1:${proxyPort}/v1/ws`, appId: "shop", deviceId: "chromium-1", biz: "chat", alias: "u42", credential: token },
  );
  await until("running", async () => (await snapshot()).client === "running");
  check(true, `Chromium's page logged in over ws:// (through faultproxy), from origin ${pageOrigin}`);

  for (const payload of ["a", "b", "c"]) await push(payload);
  await until("three deliveries", async () => (await snapshot()).received.length === 3);
  let seen = await snapshot();
  check(seen.received.join(" ") === "1:a 2:b 3:c", `reliable pushes in order (${seen.received.join(" ")})`);

  const sent = await call("send", (t) => window.pikeTest.send(t), "hello from chromium");
  check(sent.ok, `uplink acknowledged (${JSON.stringify(sent)})`);
  check(
    uplinks.length === 1 && uplinks[0].key === sent.key && uplinks[0].body === "hello from chromium",
    `uplink reached the webhook once with its payload and idempotency key (${JSON.stringify(uplinks)})`,
  );

  const joined = await call("join", (r) => window.pikeTest.join(r), "live:1");
  check(joined.ok, `room live:1 joined (${JSON.stringify(joined)})`);
  await api("/v1/rooms/live:1/publish", { payload: "room hello" });
  await until("the room message", async () => (await snapshot()).rooms.length === 1);
  check((await snapshot()).rooms[0] === "room hello", "room message received");

  // A network cut: faultproxy holds every byte both ways (nothing closes);
  // the heartbeat finds the link dead and the SDK keeps trying.
  seen = await snapshot();
  const connectedBefore = seen.connectivity.filter((e) => e === "connected").length;
  const eventsBefore = seen.connectivity.length;
  await proxyCommand("blackhole both on");
  await until("the SDK to see the dead link", async () => (await snapshot()).connectivity.slice(eventsBefore).some((e) => e.startsWith("disconnected:")), 20_000);
  await push("d");
  seen = await snapshot();
  check(!seen.received.includes("4:d") && seen.channel !== "connected", `cut off: the push made during the cut is not delivered (${seen.channel}; ${seen.connectivity.slice(eventsBefore).join(",")})`);
  await proxyCommand("heal");
  await until("the reconnect and the missed push", async () => {
    const s = await snapshot();
    return s.channel === "connected" && s.received.includes("4:d");
  }, 30_000);
  seen = await snapshot();
  check(seen.connectivity.filter((e) => e === "connected").length > connectedBefore, "reconnected after the network healed");
  check(seen.received.join(" ") === "1:a 2:b 3:c 4:d", `the push made during the cut arrived once (${seen.received.join(" ")})`);

  // A gateway restart on the same data dir.
  const eventsBeforeRestart = seen.connectivity.length;
  await stopGateway();
  await until("the SDK to see the gateway go", async () => (await snapshot()).connectivity.slice(eventsBeforeRestart).some((e) => e.startsWith("disconnected:")), 20_000);
  await startGateway(config);
  await until("the reconnect after the restart", async () => {
    const s = await snapshot();
    return s.channel === "connected" && s.connectivity.slice(eventsBeforeRestart).includes("connected");
  }, 40_000);
  for (const payload of ["e", "f", "g"]) await push(payload);
  // Pushes reach a stream in order: once `g` is in, a duplicate of an
  // earlier one would have arrived before it.
  await until("the last push", async () => (await snapshot()).received.includes("7:g"), 20_000);
  seen = await snapshot();
  check(seen.received.join(" ") === "1:a 2:b 3:c 4:d 5:e 6:f 7:g", `exactly once across the cut and the restart (${seen.received.join(" ")})`);
  check(seen.client === "running", "the client is still running");

  // The Origin allow-list, from the browser: the listed page may open the
  // WebSocket, a page of another origin may not.
  const direct = `ws://127.0.0.1:${httpPort}/v1/ws`;
  const listed = await call("probe from the listed origin", (u) => window.pikeTest.probe(u), direct, 10_000);
  check(listed === "open", `the listed origin opens a WebSocket (${listed})`);
  const refusedBefore = await originRefusals();
  const otherOrigin = `http://127.0.0.1:${otherPort}`;
  const other = await open(otherOrigin);
  const unlisted = await bounded("probe from an unlisted origin", other.evaluate((u) => window.pikeTest.probe(u), direct), 10_000);
  check(unlisted.startsWith("closed before opening"), `a page of ${otherOrigin} cannot open one (${unlisted})`);
  const refusedAfter = await originRefusals();
  check(refusedAfter === refusedBefore + 1, `the gateway refused it for its origin (pike_http_refused_total{reason="origin"} ${refusedBefore} -> ${refusedAfter})`);

  const state = await call("stop", () => window.pikeTest.stop());
  check(state === "idle", `the channel closed with its last client (${state})`);
}

let status = 0;
try {
  await main();
  console.log("sdk-ts browser e2e: all checks passed");
} catch (error) {
  status = 1;
  console.error(`sdk-ts browser e2e FAILED: ${error instanceof Error ? error.stack : String(error)}`);
  console.error("the page's console:\n" + pageLog.join("\n"));
  console.error("faultproxy's output:\n" + proxyLog);
  console.error("the gateway's output:\n" + gatewayLog);
} finally {
  await bounded("closing Chromium", browser?.close() ?? Promise.resolve(), 20_000).catch(() => {});
  if (proxy && proxy.exitCode === null) proxy.kill("SIGKILL");
  await stopGateway().catch(() => gateway?.kill("SIGKILL"));
  for (const server of servers) server.close();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(status);
