// The dashboard: sign in with an app's API key, then poll GET /v1/stats
// and GET /v1/rooms every sample interval; presence, trace and push on
// demand. See docs/dashboard.md.
import { ApiError, api, session } from "./api.js";
import { renderPresence, renderRooms, renderStats, renderTrace } from "./panels.js";

const $ = (id) => document.getElementById(id);
/** Bounds of the polling period, milliseconds. */
const MIN_POLL_MS = 1_000;
const MAX_POLL_MS = 60_000;

let timer = null;

function message(error) {
  return error instanceof ApiError ? error.message : String(error);
}

function show(signedIn, app = "") {
  $("signin").hidden = signedIn;
  $("board").hidden = !signedIn;
  $("sign-out").hidden = !signedIn;
  $("app-name").textContent = signedIn ? `app ${app}` : "";
}

function signOut(reason = "") {
  clearTimeout(timer);
  timer = null;
  session.clear();
  show(false);
  $("signin-error").textContent = reason;
  $("status").textContent = "";
}

async function refresh() {
  timer = null;
  let period = 5_000;
  try {
    const [stats, rooms] = await Promise.all([api("stats"), api("rooms")]);
    renderStats(stats);
    renderRooms(rooms);
    period = stats.interval_ms;
    $("status").textContent = `updated ${new Date().toLocaleTimeString("en-GB", { hour12: false })}`;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return signOut(e.message);
    $("status").textContent = `refresh failed: ${message(e)}`;
  }
  if (session.key !== null) timer = setTimeout(refresh, Math.min(MAX_POLL_MS, Math.max(MIN_POLL_MS, period)));
}

async function signIn(key) {
  $("signin-error").textContent = "";
  try {
    const stats = await api("stats", { key });
    session.set(key);
    show(true, stats.app);
    clearTimeout(timer);
    await refresh();
  } catch (e) {
    session.clear();
    show(false);
    $("signin-error").textContent = message(e);
  }
}

/** Runs `action` on submit of `form`, writing a failure into `out`. */
function onSubmit(form, out, action) {
  $(form).addEventListener("submit", async (event) => {
    event.preventDefault();
    $(out).textContent = "…";
    $(out).className = "muted";
    try {
      await action();
    } catch (e) {
      $(out).textContent = message(e);
      $(out).className = "error";
    }
  });
}

async function trace(token) {
  $("trace-token").value = token;
  $("trace-result").className = "muted";
  $("trace-table").tBodies[0].replaceChildren();
  renderTrace(await api(`connections/${encodeURIComponent(token)}/trace`));
}

function wire() {
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn($("key").value.trim());
  });
  $("sign-out").addEventListener("click", () => signOut());
  onSubmit("presence-form", "presence-result", async () => {
    $("presence-table").tBodies[0].replaceChildren();
    const q = new URLSearchParams({ biz: $("presence-biz").value, alias: $("presence-alias").value });
    renderPresence(await api(`presence?${q}`), (token) =>
      trace(token).catch((e) => {
        $("trace-result").textContent = message(e);
        $("trace-result").className = "error";
      }),
    );
  });
  onSubmit("trace-form", "trace-result", () => trace($("trace-token").value.trim()));
  onSubmit("push-form", "push-result", async () => {
    const body = { biz: $("push-biz").value, alias: $("push-alias").value, payload: $("push-payload").value };
    if ($("push-transient").checked) body.reliable = false;
    const r = await api("push", { body });
    $("push-result").textContent = `pushed: message ${r.message_id}, stored ${r.stored}, online ${r.online}, dropped ${r.dropped}`;
    $("push-result").className = "ok";
  });
  const key = session.key;
  if (key) signIn(key);
}

wire();
