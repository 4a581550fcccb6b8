// Line charts drawn as SVG, by hand: a time axis over the samples' span,
// a y axis from 0 to a rounded maximum, one line per series (a gap where a
// value is null), a legend when there are several.

const NS = "http://www.w3.org/2000/svg";
const PAD = { left: 52, right: 10, top: 20, bottom: 20 };

function el(name, attrs, text) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A "nice" upper bound at or above `v`: 1, 2 or 5 times a power of ten. */
export function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/**
 * Draws `series` ([{ label, values: [number|null] }], one value per time
 * in `times`, unix ms) into `svg`. `format(v)` labels the y axis; `max`
 * fixes its top (else the data's, rounded up, at least `floor`).
 */
export function lineChart(svg, times, series, { format = String, max, floor = 1 } = {}) {
  const { width, height } = svg.viewBox.baseVal;
  svg.replaceChildren();
  const values = series.flatMap((s) => s.values).filter((v) => v !== null && Number.isFinite(v));
  if (times.length === 0) {
    svg.append(el("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty" }, "no samples yet"));
    return;
  }
  const top = max ?? niceMax(Math.max(floor, ...values));
  const t0 = times[0];
  const t1 = Math.max(times[times.length - 1], t0 + 1);
  const x = (t) => PAD.left + ((t - t0) / (t1 - t0)) * (width - PAD.left - PAD.right);
  const y = (v) => height - PAD.bottom - (Math.min(v, top) / top) * (height - PAD.top - PAD.bottom);

  for (const f of [0, 0.5, 1]) {
    const v = top * f;
    svg.append(el("line", { x1: PAD.left, x2: width - PAD.right, y1: y(v), y2: y(v), class: "grid" }));
    svg.append(el("text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end", class: "label" }, format(v)));
  }
  const minutes = Math.round((t1 - t0) / 60_000);
  const span = minutes >= 1 ? `−${minutes} min` : `−${Math.round((t1 - t0) / 1000)} s`;
  svg.append(el("text", { x: PAD.left, y: height - 4, class: "label" }, span));
  svg.append(el("text", { x: width - PAD.right, y: height - 4, "text-anchor": "end", class: "label" }, "now"));

  series.forEach((s, i) => {
    const cls = `s${(i % 5) + 1}`;
    let d = "";
    let pen = false;
    s.values.forEach((v, j) => {
      if (v === null || !Number.isFinite(v)) {
        pen = false;
        return;
      }
      d += `${pen ? "L" : "M"}${x(times[j]).toFixed(1)},${y(v).toFixed(1)}`;
      const next = s.values[j + 1];
      if (!pen && (next === null || next === undefined)) {
        svg.append(el("circle", { cx: x(times[j]).toFixed(1), cy: y(v).toFixed(1), r: 2.5, class: cls }));
      }
      pen = true;
    });
    if (d) svg.append(el("path", { d, class: `line ${cls}` }));
    if (series.length > 1) {
      const lx = PAD.left + i * 96;
      svg.append(el("rect", { x: lx, y: 4, width: 10, height: 10, class: cls }));
      svg.append(el("text", { x: lx + 14, y: 13, class: `legend label` }, s.label));
    }
  });
}
