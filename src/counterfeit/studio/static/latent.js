// The Latent explorer: an interpolation slider, latent arithmetic, and a few z dimensions on sliders.
"use strict";

const Lat = { frames: [], walk: "", dims: null, pending: false, again: false };

function latBase() {
  const v = formValues($("#lat-run-form"));
  const q = new URLSearchParams({ run: v.run || "", seed: v.seed || "0" });
  if (v.class) q.set("class", v.class);
  return q;
}

async function latLoadRuns(selected) {
  try {
    const data = await api("/api/runs");
    const runs = data.runs.filter((r) => r.has_checkpoint && r.kind === "images").map((r) => r.run);
    const sel = $("#lat-run-form [name=run]"), keep = selected || sel.value;
    fillSelect(sel, runs, false);
    if (runs.includes(keep)) sel.value = keep;
    if (!runs.length) { showError("#latent-error", "No image run has a checkpoint yet: train one on the Runs tab first."); return; }
    await latRunChanged();
  } catch (e) {
    showError("#latent-error", e);
  }
}

async function latRunChanged() {
  const run = $("#lat-run-form [name=run]").value;
  try {
    const info = await api(`/api/runs/${encodeURIComponent(run)}/model`);
    showError("#latent-error", null);
    $("#lat-class-label").hidden = !info.conditional;
    fillSelect($("#lat-run-form [name=class]"), info.classes);
    $("#lat-info").textContent = `${info.model}: z of ${info.z_dim}${info.conditional ? ", class names act on the class code, seeds on z" : ""}`;
    if (info.classes.length >= 3) $("#lat-arith-form [name=expr]").placeholder = `${info.classes[0]} - ${info.classes[1]} + ${info.classes[2]}`;
    Lat.dims = null;
    await latDims();
  } catch (e) {
    showError("#latent-error", e);
  }
}

function latShowFrame() {
  const i = +$("#lat-slider").value, n = Lat.frames.length;
  if (!n) return;
  $("#lat-frame").src = Lat.frames[i];
  $("#lat-frame").hidden = false;
  $("#lat-t").textContent = `t = ${(i / (n - 1)).toFixed(2)} (frame ${i + 1} of ${n}) \u00b7 ${Lat.walk}`;
}

// An error shows beside the section that asked, and that section's old result goes, so the two never pass for each other.
function latFailed(sel, e, clear) {
  clear();
  showError(sel, e);
  $(sel).scrollIntoView({ block: "nearest" });
}

$("#lat-interp-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  whileBusy($("#lat-interp-form button[type=submit]"), () => latWalk(ev.target));
});

async function latWalk(form) {
  showError("#lat-interp-error", null);
  try {
    const q = latBase(), v = formValues(form);
    for (const k of ["a", "b", "mode", "steps"]) if (v[k] !== undefined) q.set(k, v[k]);
    const out = await api(`/api/latent/interpolate?${q}`);
    Lat.frames = out.frames;
    Lat.walk = `${out.labels[0]} \u2192 ${out.labels[1]} (${out.mode})`;
    const s = $("#lat-slider");
    s.max = out.frames.length - 1;
    s.value = 0;
    latShowFrame();
  } catch (e) {
    latFailed("#lat-interp-error", e, () => { Lat.frames = []; $("#lat-frame").hidden = true; $("#lat-t").textContent = ""; });
  }
}
$("#lat-slider").addEventListener("input", latShowFrame);

$("#lat-arith-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  whileBusy($("#lat-arith-form button[type=submit]"), () => latArith(ev.target));
});

async function latArith(form) {
  showError("#lat-arith-error", null);
  try {
    const q = latBase(), v = formValues(form);
    q.set("expr", v.expr || "");
    if (v.rows) q.set("rows", v.rows);
    const out = await api(`/api/latent/arithmetic?${q}`);
    const parts = out.terms.map((t, i) => {
      const sign = t.coef < 0 ? "\u2212" : i ? "+" : "";
      const size = Math.abs(t.coef) === 1 ? "" : `${+Math.abs(t.coef).toFixed(3)} \u00d7`;
      return `${sign || size ? `<span class="op">${sign} ${size}</span>` : ""}<div class="term"><img src="${t.image}" alt="${esc(t.label)}">${esc(t.label)}</div>`;
    });
    parts.push(`<span class="op">=</span><div class="term"><img src="${out.result}" alt="result">result</div>`);
    $("#lat-arith").innerHTML = parts.join("");
    $("#lat-arith-notes").textContent = out.notes.join("; ");
  } catch (e) {
    latFailed("#lat-arith-error", e, () => { $("#lat-arith").innerHTML = ""; $("#lat-arith-notes").textContent = ""; });
  }
}

// The sliders: one request at a time; moves made meanwhile are sent together when it returns.
async function latDims(values) {
  if (Lat.pending) { Lat.again = true; return; }
  Lat.pending = true;
  try {
    const q = latBase();
    checkNumber($("#lat-dims-form [name=first]"));
    q.set("first", $("#lat-dims-form [name=first]").value || "0");
    if (values) q.set("values", values.join(","));
    const out = await api(`/api/latent/dims?${q}`);
    showError("#lat-dims-error", null);
    $("#lat-dims-img").src = out.image;
    $("#lat-dims-img").hidden = false;
    const same = Lat.dims && Lat.dims.join() === out.dims.join();
    Lat.dims = out.dims;
    if (!same) {
      $("#lat-sliders").innerHTML = out.dims.map((d, i) => `<div class="slider-row"><span>z[${d}]</span>
        <input type="range" min="${-out.range}" max="${out.range}" step="0.05" value="${out.values[i]}" data-i="${i}" aria-label="z dimension ${d}">
        <output>${out.values[i].toFixed(2)}</output></div>`).join("");
    }
  } catch (e) {
    latFailed("#lat-dims-error", e, () => { $("#lat-dims-img").hidden = true; });
  } finally {
    Lat.pending = false;
    if (Lat.again) { Lat.again = false; latDims(latSliderValues()); }
  }
}

function latSliderValues() {
  return [...document.querySelectorAll("#lat-sliders input")].map((el) => el.value);
}

$("#lat-sliders").addEventListener("input", (ev) => {
  if (ev.target.type !== "range") return;
  ev.target.nextElementSibling.textContent = (+ev.target.value).toFixed(2);
  latDims(latSliderValues());
});
$("#lat-dims-form [name=first]").addEventListener("change", () => { Lat.dims = null; latDims(); });
$("#lat-dims-reset").addEventListener("click", () => { Lat.dims = null; latDims(); });
$("#lat-dims-form").addEventListener("submit", (ev) => ev.preventDefault());
$("#lat-run-form").addEventListener("submit", (ev) => ev.preventDefault());
$("#lat-run-form [name=run]").addEventListener("change", latRunChanged);
$("#lat-run-form [name=seed]").addEventListener("change", () => { Lat.dims = null; latDims(); });
$("#lat-run-form [name=class]").addEventListener("change", () => latDims(Lat.dims ? latSliderValues() : undefined));

Studio.onTab.latent = (run) => latLoadRuns(run);
