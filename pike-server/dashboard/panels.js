// What each panel shows, from the API's answers. Values are written with
// textContent only (never as HTML).
import { lineChart } from "./charts.js";

const $ = (id) => document.getElementById(id);

export const TRANSPORTS = ["tcp", "tls", "quic", "ws", "mqtt"];
export const RATES = ["pushes", "downlink_sent", "downlink_acked", "uplink_received", "room_messages_sent"];
const RATE_LABELS = ["pushes", "dl sent", "dl acked", "uplink", "room msgs"];
const SLA = {
  uplink_success_ratio: "ratio",
  uplink_ack_p99_secs: "secs",
  downlink_success_ratio: "ratio",
  downlink_ack_p99_secs: "secs",
  channel_ready_p99_secs: "secs",
  messages_delivered: "count",
};

export const format = {
  count: (v) => (v === null || v === undefined ? "–" : Math.round(v).toLocaleString("en-US")),
  rate: (v) => (v === null || v === undefined ? "–" : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)),
  ratio: (v) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(v >= 0.9995 || v === 0 ? 0 : 1)} %`),
  secs: (v) => (v === null || v === undefined ? "–" : v < 1 ? `${(v * 1000).toFixed(v < 0.01 ? 2 : 0)} ms` : `${v.toFixed(2)} s`),
  time: (ms) => new Date(ms).toLocaleTimeString("en-GB", { hour12: false }),
};

function row(tbody, cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    if (cell instanceof Node) td.append(cell);
    else td.textContent = String(cell);
    tr.append(td);
  }
  tbody.append(tr);
  return tr;
}

/** Connections, rates and SLA from a `GET /v1/stats` answer. */
export function renderStats(stats) {
  for (const t of TRANSPORTS) $(`conn-${t}`).textContent = format.count(stats.connections[t] ?? 0);
  // Every transport the gateway names, a handed one without a tile too.
  const total = Object.values(stats.connections).reduce((a, b) => a + b, 0);
  $("conn-total").textContent = format.count(total);

  const samples = stats.samples;
  const times = samples.map((s) => s.at_ms);
  lineChart(
    $("chart-connections"),
    times,
    TRANSPORTS.map((t) => ({ label: t, values: samples.map((s) => s.connections[t] ?? 0) })),
    { format: format.count },
  );

  const latest = [...samples].reverse().find((s) => s.rates);
  for (const r of RATES) $(`rate-${r}`).textContent = format.rate(latest ? latest.rates[r] : null);
  lineChart(
    $("chart-rates"),
    times,
    RATES.map((r, i) => ({ label: RATE_LABELS[i], values: samples.map((s) => (s.rates ? s.rates[r] : null)) })),
    { format: format.rate },
  );

  for (const [name, kind] of Object.entries(SLA)) {
    const values = samples.map((s) => (s.sla ? s.sla[name] : null));
    const known = values.filter((v) => v !== null && v !== undefined);
    const out = $(`sla-${name}`);
    if (kind === "count") {
      const sum = known.reduce((a, b) => a + b, 0);
      out.textContent = known.length ? `${format.count(sum)} in ${Math.max(1, Math.round((known.length * stats.interval_ms) / 60_000))} min` : "–";
    } else {
      out.textContent = format[kind](known.length ? known[known.length - 1] : null);
    }
    const options = kind === "ratio" ? { format: format.ratio, max: 1 } : kind === "secs" ? { format: format.secs, floor: 0.001 } : { format: format.count };
    lineChart($(`chart-sla-${name}`), times, [{ label: name, values }], options);
  }
}

/** The connections of a `GET /v1/presence` answer; `onToken(token)` traces one. */
export function renderPresence(answer, onToken) {
  const tbody = $("presence-table").tBodies[0];
  tbody.replaceChildren();
  $("presence-result").textContent = answer.online
    ? `online on ${answer.connections.length} connection${answer.connections.length === 1 ? "" : "s"}`
    : "offline";
  for (const c of answer.connections) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "link";
    button.textContent = c.token;
    button.title = "show its trace";
    button.addEventListener("click", () => onToken(c.token));
    row(tbody, [button, c.device_id, c.transport, c.peer, format.time(c.connected_at_ms)]);
  }
}

/** The events of a `GET /v1/connections/{token}/trace` answer. */
export function renderTrace(answer) {
  const tbody = $("trace-table").tBodies[0];
  tbody.replaceChildren();
  $("trace-result").textContent = `${answer.events.length} signal${answer.events.length === 1 ? "" : "s"}`;
  for (const e of answer.events) row(tbody, [format.time(e.at_ms), e.signal, e.detail]);
}

/** The rooms of a `GET /v1/rooms` answer. */
export function renderRooms(answer) {
  const tbody = $("rooms-table").tBodies[0];
  tbody.replaceChildren();
  $("rooms-result").textContent = answer.rooms.length ? "" : "no live rooms";
  for (const r of answer.rooms) {
    const tr = row(tbody, [r.room, r.members, r.connections, r.effective_mode, format.rate(r.publish_rate)]);
    tr.dataset.room = r.room;
    tr.cells[1].className = tr.cells[2].className = "num";
  }
}
