// Line charts as inline SVG: no charting library, so the page works offline and loads nothing from elsewhere.
"use strict";

const Plot = (() => {
  const W = 420, H = 220, M = { l: 48, r: 12, t: 26, b: 34 };

  function niceTicks(lo, hi, n) {
    if (!(hi > lo)) { hi = lo + 1; }
    const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => s >= raw) || raw;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toFixed(10));
    return out;
  }

  function fmt(v) {
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    if (a >= 1000) return v.toFixed(0);
    if (a >= 10) return v.toFixed(a >= 100 ? 0 : 1);
    return +v.toFixed(2) + "";
  }

  function esc(s) {
    return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
  }

  // spec: {title, xlabel, series: [{label, color, points: [[x, y], ...], dots}], ymin, ymax, hlines: [{y, label}], marks: [x, ...]}
  function line(el, spec) {
    const series = spec.series.filter((s) => s.points.length);
    if (!series.length) {
      el.innerHTML = `<svg viewBox="0 0 ${W} ${H}" class="chart"><text x="${W / 2}" y="${H / 2}" text-anchor="middle" class="muted">${esc(spec.title)}: no data yet</text></svg>`;
      return;
    }
    const xs = series.flatMap((s) => s.points.map((p) => p[0]));
    const ys = series.flatMap((s) => s.points.map((p) => p[1])).filter(Number.isFinite);
    let x0 = Math.min(...xs), x1 = Math.max(...xs);
    if (x1 === x0) x1 = x0 + 1;
    let y0 = spec.ymin ?? Math.min(...ys), y1 = spec.ymax ?? Math.max(...ys);
    if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
    const pad = spec.ymin === undefined && spec.ymax === undefined ? (y1 - y0) * 0.05 : 0;
    y0 -= pad; y1 += pad;
    const X = (x) => M.l + ((x - x0) / (x1 - x0)) * (W - M.l - M.r);
    const Y = (y) => H - M.b - ((Math.min(Math.max(y, y0), y1) - y0) / (y1 - y0)) * (H - M.t - M.b);
    const parts = [`<svg viewBox="0 0 ${W} ${H}" class="chart" role="img" aria-label="${esc(spec.title)}">`];
    parts.push(`<text x="${M.l}" y="16" class="title">${esc(spec.title)}</text>`);
    for (const t of niceTicks(y0, y1, 4)) {
      parts.push(`<line x1="${M.l}" x2="${W - M.r}" y1="${Y(t)}" y2="${Y(t)}" class="grid"/>`);
      parts.push(`<text x="${M.l - 5}" y="${Y(t) + 4}" text-anchor="end" class="tick">${fmt(t)}</text>`);
    }
    for (const t of niceTicks(x0, x1, 5)) {
      parts.push(`<text x="${X(t)}" y="${H - M.b + 15}" text-anchor="middle" class="tick">${fmt(t)}</text>`);
    }
    parts.push(`<text x="${(M.l + W - M.r) / 2}" y="${H - 4}" text-anchor="middle" class="tick">${esc(spec.xlabel || "kimg")}</text>`);
    for (const m of spec.marks || []) {
      parts.push(`<line x1="${X(m)}" x2="${X(m)}" y1="${M.t}" y2="${H - M.b}" class="mark"/>`);
    }
    for (const h of spec.hlines || []) {
      parts.push(`<line x1="${M.l}" x2="${W - M.r}" y1="${Y(h.y)}" y2="${Y(h.y)}" class="hline"/>`);
      if (h.label) parts.push(`<text x="${W - M.r - 2}" y="${Y(h.y) - 3}" text-anchor="end" class="tick">${esc(h.label)}</text>`);
    }
    let lx = W - M.r;
    series.slice().reverse().forEach((s) => {
      const pts = s.points.filter((p) => Number.isFinite(p[1]));
      const d = pts.map((p, i) => `${i ? "L" : "M"}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join("");
      parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.6"/>`);
      if (s.dots || pts.length === 1) pts.forEach((p) => parts.push(`<circle cx="${X(p[0])}" cy="${Y(p[1])}" r="2.5" fill="${s.color}"/>`));
      const label = `${s.label} ${fmt(pts.length ? pts[pts.length - 1][1] : NaN)}`;
      parts.push(`<text x="${lx}" y="16" text-anchor="end" fill="${s.color}" class="legend">${esc(label)}</text>`);
      lx -= 8 + 6.2 * label.length;
    });
    parts.push("</svg>");
    el.innerHTML = parts.join("");
  }

  return { line };
})();
