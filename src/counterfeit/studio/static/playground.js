// The 2D playground: the server trains a few steps per request; the page draws D's verdict, reals and fakes.
"use strict";

// `ticket` numbers the session requests: a reply for a session the form has since replaced is dropped.
const PG = { id: null, running: false, busy: false, reals: [], centres: [], view: null, ticket: 0, creating: null };

function pgSettings() {
  const v = formValues($("#pg-form"));
  return { data: v.data, loss: v.loss, remedy: v.remedy, seed: v.seed || "0" };
}

function pgColour(v) {
  // D's verdict: 1 = real (blue), 0 = fake (orange), 0.5 = can't tell (white)
  const t = Math.max(-1, Math.min(1, (v - 0.5) * 2));
  const [r, g, b] = t >= 0 ? [127, 176, 230] : [240, 165, 138];
  const a = Math.abs(t);
  return [255 + (r - 255) * a, 255 + (g - 255) * a, 255 + (b - 255) * a];
}

function pgDraw() {
  const v = PG.view, cv = $("#pg-canvas"), ctx = cv.getContext("2d"), W = cv.width, H = cv.height;
  if (!v) return;
  const n = v.heat.n, img = new ImageData(n, n);
  v.heat.values.forEach((val, i) => {
    const [r, g, b] = pgColour(val);
    img.data.set([r, g, b, 255], i * 4);
  });
  const off = document.createElement("canvas");
  off.width = off.height = n;
  off.getContext("2d").putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(off, 0, 0, W, H);
  const X = (x) => ((x + v.lim) / (2 * v.lim)) * W, Y = (y) => ((v.lim - y) / (2 * v.lim)) * H;
  ctx.fillStyle = "rgba(60,60,60,0.55)";
  for (const [x, y] of PG.reals) ctx.fillRect(X(x) - 1, Y(y) - 1, 2, 2);
  ctx.fillStyle = "rgba(23,163,74,0.85)";
  for (const [x, y] of v.fakes) {
    ctx.beginPath();
    ctx.arc(X(x), Y(y), 2.2, 0, 2 * Math.PI);
    ctx.fill();
  }
  ctx.strokeStyle = "#222";
  for (const [x, y] of PG.centres) {
    ctx.beginPath();
    ctx.moveTo(X(x) - 5, Y(y)); ctx.lineTo(X(x) + 5, Y(y)); ctx.moveTo(X(x), Y(y) - 5); ctx.lineTo(X(x), Y(y) + 5);
    ctx.stroke();
  }
  $("#pg-stepno").textContent = v.step;
  $("#pg-modes").textContent = `${v.modes.covered} / ${v.modes.total}`;
  $("#pg-hq").textContent = v.modes.high_quality_pct;
  const l = v.last;
  $("#pg-losses").textContent = v.diverged ? "diverged: a loss became NaN or infinite; press Reset (or lower the learning rate)"
    : "loss_D" in l ? `loss D ${l.loss_D}, G ${l.loss_G} \u00b7 D(x) ${l["D(x)"]}, D(G(z)) ${l["D(G(z))"]}` : "not trained yet";
  const h = v.history;
  Plot.line($("#pg-chart"), { title: "Modes covered", xlabel: "step", ymin: 0, ymax: v.modes.total,
    series: [{ label: "modes", color: "#1f6f43", points: h.map((r) => [r.step, r.modes]) }] });
}

function pgTake(view) {
  if (view.id !== PG.id) return;  // a step of a session the form no longer shows
  if (view.reals) { PG.reals = view.reals; PG.centres = view.centres; }
  PG.view = view;
  showError("#pg-error", null);
  pgDraw();
}

// A new session for the form's settings; `pause` false when Train itself asks for one and goes on training.
function pgNew(pause = true) {
  if (pause) pgPause();
  const ticket = ++PG.ticket;
  PG.id = null;  // from now on, replies about the old session are dropped
  PG.creating = (async () => {
    try {
      const view = await api("/api/playground", pgSettings());
      if (ticket !== PG.ticket) return;  // the form changed again while this one was made
      PG.id = view.id;
      pgTake(view);
      if (!PG.running) $("#pg-status").textContent = "ready";
    } catch (e) {
      if (ticket === PG.ticket) showError("#pg-error", e);
    } finally {
      if (ticket === PG.ticket) PG.creating = null;
    }
  })();
  return PG.creating;
}

async function pgStep() {
  if (PG.busy) return false;
  PG.busy = true;
  try {
    if (!PG.id) await (PG.creating || pgNew(false));  // one session, even when Train is pressed while it is being made
    if (!PG.id) return false;  // making the session failed (its error is shown)
    checkNumber($("#pg-form [name=steps]"));
    const steps = $("#pg-form [name=steps]").value || "20";
    pgTake(await api(`/api/playground/${PG.id}/step`, { steps }));
    return true;
  } catch (e) {
    showError("#pg-error", e);
    return false;
  } finally {
    PG.busy = false;
  }
}

async function pgLoop() {
  while (PG.running) {
    const ok = await pgStep();
    if (!ok) { pgPause(); break; }
    if (Studio.tab !== "playground") { pgPause(); break; }
  }
}

function pgPause() {
  PG.running = false;
  $("#pg-train").textContent = "Train";
  $("#pg-status").textContent = PG.id ? "paused" : "";
}

$("#pg-train").addEventListener("click", () => {
  if (PG.running) { pgPause(); return; }
  PG.running = true;
  $("#pg-train").textContent = "Pause";
  $("#pg-status").textContent = "training";
  pgLoop();
});
$("#pg-step").addEventListener("click", async () => { pgPause(); await pgStep(); });
$("#pg-reset").addEventListener("click", async () => {
  pgPause();
  let same = false;
  try {
    same = PG.id && PG.view && JSON.stringify(pgSettings()) === JSON.stringify({ data: PG.view.data, loss: PG.view.loss, remedy: PG.view.remedy, seed: String(PG.view.seed) });
  } catch (e) {
    showError("#pg-error", e);
    return;
  }
  if (!same) {
    await pgNew();
    return;
  }
  try {
    pgTake(await api(`/api/playground/${PG.id}/reset`, {}));
  } catch (e) {
    await pgNew();
  }
});
document.querySelectorAll("#pg-form select, #pg-form [name=seed]").forEach((el) => el.addEventListener("change", () => pgNew()));
$("#pg-form").addEventListener("submit", (ev) => ev.preventDefault());

Studio.onTab.playground = () => { if (!PG.id && !PG.creating) pgNew(); };

document.addEventListener("studio-ready", () => {
  const o = Studio.options;
  if (!o) return;
  fillSelect("#pg-form [name=data]", o.toys, false);
  fillSelect("#pg-form [name=loss]", o.losses, false);
  fillSelect("#pg-form [name=remedy]", o.remedies, false);
  $("#pg-form [name=steps]").max = o.limits.steps;
});
