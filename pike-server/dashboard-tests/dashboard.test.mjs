// The dashboard (/dashboard/) in headless Chromium against a live
// pike-server:
//
//   node dashboard.test.mjs TARGET_DIR [CHROMIUM]
//
// TARGET_DIR holds the debug `pike-server` and `pike` binaries; CHROMIUM is
// the browser (default /usr/bin/chromium, Debian's: `.ci/chromium.sh`).
// It starts the gateway on loopback (a temporary config and data dir,
// kernel-picked ports, the dev app), connects devices with `pike listen`
// over TCP, TLS, QUIC and WebSocket and one room member with `pike room
// join`, then signs in and checks by clicks, reading the page's values
// against the HTTP API: a wrong key shows the API's error; the connection
// counts per transport; a presence lookup; a connection's trace; a push
// from the form reaching its device; the rooms and their members; the
// rates and SLA charts filled from the sampled history; no console error
// (a Content-Security-Policy violation is one).
//
// Screenshots (fixed viewport, PNG) go to a temporary directory, or to
// PIKE_DASHBOARD_SCREENSHOTS when set (docs/dashboard/ to refresh the
// docs': `PIKE_DASHBOARD_SCREENSHOTS=docs/dashboard bash .ci/dashboard.sh`).
// Every wait is bounded; exit status 0 on success, 1 on failure.
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";

const [targetDir, chromiumPath = "/usr/bin/chromium"] = process.argv.slice(2);
if (!targetDir) {
  console.error("usage: node dashboard.test.mjs TARGET_DIR [CHROMIUM]");
  process.exit(2);
}
const serverBin = join(targetDir, "pike-server");
const pikeBin = join(targetDir, "pike");
const dir = mkdtempSync(join(tmpdir(), "pike-dashboard-"));
const shots = resolve(process.env.PIKE_DASHBOARD_SCREENSHOTS || join(dir, "screenshots"));
mkdirSync(shots, { recursive: true });

/** Longest wait for one thing, milliseconds. */
const PATIENCE_MS = 30_000;
const VIEWPORT = { width: 1280, height: 900 };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const children = [];
let browser;

async function until(what, condition, ms = PATIENCE_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
  console.log(`ok: ${message}`);
}

/** Starts `bin` with `args`; its output collects in `.out`. */
function start(bin, args) {
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  child.out = "";
  child.stdout.on("data", (d) => (child.out += d));
  child.stderr.on("data", (d) => (child.out += d));
  children.push(child);
  return child;
}

async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

async function main() {
  const config = join(dir, "pike.toml");
  writeFileSync(
    config,
    `data_dir = "${dir}/data"

[listen]
tcp = "127.0.0.1:0"
tls = "127.0.0.1:0"
quic = "127.0.0.1:0"
http = "127.0.0.1:0"
`,
  );
  const gateway = start(serverBin, ["--config", config]);
  await until("the gateway's ready banner", () => /^pike-server .* ready$/m.test(gateway.out) && /api key +pk_/.test(gateway.out), 60_000);
  const addr = (name) => gateway.out.match(new RegExp(`^  ${name} +(127\\.0\\.0\\.1:\\d+)$`, "m"))?.[1];
  const [tcp, tls, quic, http] = ["tcp", "tls", "quic", "http"].map(addr);
  const apiKey = gateway.out.match(/api key +(pk_\w+)/)[1];
  check(tcp && tls && quic && http, `listening: tcp ${tcp}, tls ${tls}, quic ${quic}, http ${http}`);
  const base = `http://${http}`;

  const api = async (path, { key = apiKey, body } = {}) => {
    const res = await fetch(`${base}/v1/${path}`, {
      method: body ? "POST" : "GET",
      headers: { authorization: `Bearer ${key}`, ...(body ? { "content-type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(10_000),
    });
    return { status: res.status, body: await res.json() };
  };

  // Devices: one per transport, plus a room member over TCP.
  const common = ["--data-dir", `${dir}/data`, "--connect-timeout", "30"];
  const devices = {
    tcp: start(pikeBin, ["listen", "--alias", "chat:alice", "--transport", "tcp", "--server", tcp, "--device", "dev-tcp", ...common]),
    tls: start(pikeBin, ["listen", "--alias", "chat:bob", "--transport", "tls", "--server", tls, "--device", "dev-tls", ...common]),
    quic: start(pikeBin, ["listen", "--alias", "chat:carol", "--transport", "quic", "--server", quic, "--device", "dev-quic", ...common]),
    ws: start(pikeBin, ["listen", "--alias", "chat:dave", "--transport", "ws", "--server", http, "--device", "dev-ws", ...common]),
  };
  start(pikeBin, ["room", "join", "--alias", "chat:erin", "--transport", "tcp", "--server", tcp, "--device", "dev-room", ...common, "live:1"]);
  const listed = await until("5 connections in /v1/connections", async () => {
    const r = await api("connections?limit=100");
    return r.body.total === 5 && r.body.connections.every((c) => c.logins.length > 0) ? r.body : null;
  });
  const byTransport = { tcp: 0, tls: 0, quic: 0, ws: 0, mqtt: 0 };
  for (const c of listed.connections) byTransport[c.transport]++;
  check(JSON.stringify(byTransport) === JSON.stringify({ tcp: 2, tls: 1, quic: 1, ws: 1, mqtt: 0 }), `devices connected ${JSON.stringify(byTransport)}`);
  await until("the room member", async () => (await api("rooms")).body.rooms.some((r) => r.room === "live:1" && r.members === 1));

  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    timeout: PATIENCE_MS,
  });
  const context = await browser.newContext({ viewport: VIEWPORT, deviceScaleFactor: 1, locale: "en-GB", timezoneId: "UTC", reducedMotion: "reduce" });
  context.setDefaultTimeout(PATIENCE_MS);
  const page = await context.newPage();
  const problems = [];
  // Console errors (a CSP violation is one), except the browser's note of
  // each failed request: those are checked by URL below (the API's 4xx
  // answers are this test's own wrong key and unknown token).
  page.on("console", (m) => m.type() === "error" && !m.text().startsWith("Failed to load resource") && problems.push(`console: ${m.text()}`));
  page.on("response", (r) => r.status() >= 400 && !r.url().startsWith(`${base}/v1/`) && problems.push(`${r.status()} for ${r.url()}`));
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  const text = (selector) => page.locator(selector).textContent();

  const response = await page.goto(`${base}/dashboard`);
  check(response.url() === `${base}/dashboard/`, "/dashboard redirects to /dashboard/");
  check((response.headers()["content-security-policy"] ?? "").startsWith("default-src 'self'"), "the page has its Content-Security-Policy");

  // A wrong key: the API's own message.
  const wrong = await api("stats", { key: "pk_not_a_key" });
  await page.fill("#key", "pk_not_a_key");
  await page.click("#signin-form button[type=submit]");
  await page.locator("#signin-error").filter({ hasText: /\S/ }).waitFor();
  check((await text("#signin-error")) === wrong.body.error.message, `a wrong key shows the API's message ("${wrong.body.error.message}")`);
  check(await page.locator("#board").isHidden(), "the board stays hidden");
  await page.screenshot({ path: join(shots, "signin.png") });

  // Signed in: the counts per transport are the API's.
  await page.fill("#key", apiKey);
  await page.click("#signin-form button[type=submit]");
  await page.locator("#board").waitFor({ state: "visible" });
  check((await text("#app-name")) === "app demo", "signed in as the dev app");
  check((await page.evaluate(() => sessionStorage.getItem("pike.dashboard.key"))) === apiKey, "the key is kept in sessionStorage");
  await until("the counts", async () => (await text("#conn-total")) === "5");
  for (const t of ["tcp", "tls", "quic", "ws", "mqtt"]) {
    check((await text(`#conn-${t}`)) === String(byTransport[t]), `${t} connections on the page: ${byTransport[t]}, as /v1/connections`);
  }

  // Presence by alias, then the connection's trace by a click on its token.
  const presence = (await api("presence?biz=chat&alias=dave")).body;
  await page.fill("#presence-alias", "dave");
  await page.click("#presence-form button[type=submit]");
  await page.locator("#presence-table tbody tr").first().waitFor();
  const cells = await page.locator("#presence-table tbody tr").first().locator("td").allTextContents();
  check((await page.locator("#presence-table tbody tr").count()) === presence.connections.length, `presence lists ${presence.connections.length} connection`);
  check(cells[0] === presence.connections[0].token && cells[1] === "dev-ws" && cells[2] === "ws", `dave's connection: ${cells.slice(0, 3).join(" ")}`);
  // An unknown token: the API's message.
  await page.fill("#trace-token", "no-such-token");
  await page.click("#trace-form button[type=submit]");
  const unknown = (await api("connections/no-such-token/trace")).body.error.message;
  await page.locator("#trace-result.error").waitFor();
  check((await text("#trace-result")) === unknown, "an unknown token shows the API's message");

  await page.click("#presence-table tbody tr button");
  await page.locator("#trace-table tbody tr").first().waitFor();
  check((await page.inputValue("#trace-token")) === presence.connections[0].token, "the token went to the trace form");
  const shown = await page.locator("#trace-table tbody tr td:nth-child(2)").allTextContents();
  const trace = (await api(`connections/${encodeURIComponent(presence.connections[0].token)}/trace`)).body;
  const signals = trace.events.map((e) => e.signal);
  check(shown.length > 0 && shown.every((s, i) => s === signals[i]), `the trace shows the API's signals (${shown.join(", ")})`);
  // A push from the form reaches alice's device.
  await page.fill("#push-alias", "alice");
  await page.fill("#push-payload", "hello from the dashboard");
  await page.click("#push-form button[type=submit]");
  await page.locator("#push-result.ok").waitFor();
  const receipt = await text("#push-result");
  check(/stored 1, online 1, dropped 0$/.test(receipt), `the push's receipt: ${receipt}`);
  await until("alice's device to print the push", () => devices.tcp.out.includes('"payload":"hello from the dashboard"'));
  check(true, "the device received the push");

  // Rooms and their members.
  const rooms = (await api("rooms")).body.rooms;
  await page.locator('#rooms-table tbody tr[data-room="live:1"]').waitFor();
  const roomCells = await page.locator('#rooms-table tbody tr[data-room="live:1"] td').allTextContents();
  const live = rooms.find((r) => r.room === "live:1");
  check(roomCells[1] === String(live.members) && roomCells[2] === String(live.connections), `room live:1: ${roomCells[1]} member(s), as /v1/rooms`);

  // Traffic for the charts: pushes to every device and room messages
  // over a few sample intervals (5 s each), until the page shows rates
  // and SLA values from the sampled history.
  const traffic = (async () => {
    for (let i = 0; i < 40; i++) {
      for (const alias of ["alice", "bob", "carol", "dave"]) await api("push", { body: { biz: "chat", alias, payload: `m${i}` } });
      await api("rooms/live:1/publish", { body: { payload: `room ${i}` } });
      await sleep(400);
    }
  })();
  await until("a downlink success rate on the page", async () => /%$/.test(await text("#sla-downlink_success_ratio")), 60_000);
  await until("a message rate on the page", async () => Number(await text("#rate-pushes")) > 0, 30_000);
  await traffic;
  await until("the interval after the traffic", async () => {
    const stats = (await api("stats")).body;
    return stats.samples.filter((s) => s.rates).length >= 4;
  }, 30_000);
  // One more refresh of the page (every 5 s) after that.
  const before = await text("#status");
  await until("the page's next refresh", async () => (await text("#status")) !== before, 15_000);
  const stats = (await api("stats")).body;
  check((await text("#conn-total")) === "5", "still 5 connections");
  check((await page.locator("#chart-rates path.line").count()) >= 1, "the rates chart has lines");
  check((await page.locator("#chart-sla-downlink_ack_p99_secs path.line, #chart-sla-downlink_ack_p99_secs circle").count()) >= 1, "the downlink latency chart has data");
  check(/ms$|s$/.test(await text("#sla-downlink_ack_p99_secs")), `downlink latency p99: ${await text("#sla-downlink_ack_p99_secs")}`);
  check(/^\d[\d,]* in \d+ min$/.test(await text("#sla-messages_delivered")), `messages delivered: ${await text("#sla-messages_delivered")}`);
  check(stats.metrics === "gateway" && stats.samples.length >= 5, `the history has ${stats.samples.length} samples`);

  await page.screenshot({ path: join(shots, "dashboard.png"), fullPage: true });
  await page.locator("section.card", { hasText: "Presence" }).screenshot({ path: join(shots, "presence.png") });
  await page.locator("section.card", { hasText: "Connection trace" }).screenshot({ path: join(shots, "trace.png") });

  // Sign out: the key is gone.
  await page.click("#sign-out");
  await page.locator("#signin").waitFor({ state: "visible" });
  check((await page.evaluate(() => sessionStorage.getItem("pike.dashboard.key"))) === null, "signing out forgets the key");
  check(problems.length === 0, `no console errors${problems.length ? `: ${problems.join("; ")}` : ""}`);
  console.log(`screenshots in ${shots}`);
}

let status = 0;
try {
  await main();
  console.log("dashboard: all checks passed");
} catch (error) {
  status = 1;
  console.error(`dashboard FAILED: ${error instanceof Error ? error.stack : String(error)}`);
  for (const child of children) console.error(`--- ${child.spawnargs.slice(0, 4).join(" ")}:\n${child.out}`);
} finally {
  await browser?.close().catch(() => {});
  for (const child of children.reverse()) await stop(child).catch(() => child.kill("SIGKILL"));
  // The screenshots stay when PIKE_DASHBOARD_SCREENSHOTS put them elsewhere.
  rmSync(dir, { recursive: true, force: true });
}
process.exit(status);
