// Counterfeit Studio: tabs, the Runs panel (list, run page with live charts, start/stop) and the Generate panel.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const Studio = { options: null, tab: null, timers: {}, onTab: {} };

// Every API error comes back as {"error": "one line"}; show it where the user looked.
async function api(path, body) {
  const opts = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const r = await fetch(path, opts);
  const type = r.headers.get("content-type") || "";
  if (!r.ok) {
    let msg = `${r.status} ${r.statusText}`;
    if (type.includes("json")) msg = (await r.json()).error || msg;
    throw new Error(msg);
  }
  return type.includes("json") ? r.json() : r.blob();
}

// Grids of 28-pixel tiles are tiny: show them enlarged by a whole factor (sharp pixels), at most ~560 px wide.
function enlarge(img) {
  const k = Math.max(1, Math.min(6, Math.floor(560 / img.naturalWidth)));
  img.style.width = `${img.naturalWidth * k}px`;
}

function showError(sel, e) {
  const el = $(sel);
  el.textContent = e ? String(e.message || e) : "";
  el.hidden = !e;
}

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function every(name, ms, fn) {
  clearInterval(Studio.timers[name]);
  Studio.timers[name] = ms ? setInterval(fn, ms) : undefined;
}

function fillSelect(sel, values, keepFirst = true) {
  const el = typeof sel === "string" ? $(sel) : sel;
  const first = keepFirst && el.options.length && el.options[0].value === "" ? el.options[0].outerHTML : "";
  el.innerHTML = first + values.map((v) => `<option value="${esc(v)}">${esc(v)}</option>`).join("");
}

// A number field the browser cannot parse ("1e", "-") reads as "": refuse it rather than send nothing (the default).
function checkNumber(el) {
  if (el.validity && el.validity.badInput) {
    const label = ((el.closest("label") || {}).firstChild || {}).textContent || el.getAttribute("aria-label") || el.name;
    throw new Error(`${label.trim()}: not a number; correct it or clear the field`);
  }
}

// Non-empty form fields as typed JSON (numbers stay strings: the server checks and converts them).
function formValues(form) {
  const out = {};
  for (const el of form.elements) {
    if (!el.name) continue;
    checkNumber(el);
    if (el.type === "checkbox") { if (el.checked) out[el.name] = true; }
    else if (el.value !== "") out[el.name] = el.value;
  }
  return out;
}

// The button stays disabled while its request runs, so a double click cannot start two runs.
async function whileBusy(button, fn) {
  if (!button || button.disabled) return undefined;
  button.disabled = true;
  try {
    return await fn();
  } finally {
    button.disabled = false;
  }
}

// ---- tabs (#runs, #run/NAME, #generate, #latent, #playground) ----

function route() {
  let hash = location.hash.slice(1) || "runs";
  try { hash = decodeURIComponent(hash); } catch (e) { hash = "runs"; }  // a malformed %-escape: no such page
  const [tab, arg] = hash.split("/", 2);
  // #run/ without a plain run name (empty, or a path) is no page: show the list
  const runName = /^[^/\\]+$/.test(arg || "") && !/^\.+$/.test(arg);
  const known = ["runs", "run", "generate", "latent", "playground"].includes(tab) && (tab !== "run" || runName);
  const name = known ? tab : "runs";
  document.querySelectorAll("main > section").forEach((s) => { s.hidden = s.id !== `tab-${name}`; });
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.tab === (name === "run" ? "runs" : name)));
  Object.keys(Studio.timers).forEach((k) => every(k, 0));
  Studio.tab = name;
  (Studio.onTab[name] || (() => {}))(arg);
  const h2 = $(`#tab-${name} h2`);  // keyboard and screen-reader users land on the new section
  if (h2) { h2.tabIndex = -1; h2.focus({ preventScroll: true }); }
}

// ---- Runs list and jobs ----

async function loadRuns() {
  try {
    const data = await api("/api/runs");
    showError("#runs-error", null);
    $("#runs-table tbody").innerHTML = data.runs.map((r) => `<tr class="${r.training ? "live" : ""}">
      <td><a href="#run/${encodeURIComponent(r.run)}">${esc(r.run)}</a></td><td>${esc(r.data)}</td><td>${esc(r.model)}</td>
      <td>${esc(r.kimg)}</td><td>${esc(r.losses)}</td><td>${esc(r.covered)}</td><td>${r.training ? "training" : esc(r.status)}</td></tr>`).join("");
    $("#runs-empty").hidden = data.runs.length > 0;
    $("#runs-table").hidden = data.runs.length === 0;
    $("#jobs-table tbody").innerHTML = data.jobs.map((j) => `<tr class="${j.alive ? "live" : ""}">
      <td>${esc(j.started)}</td><td>${j.run && j.run_exists ? `<a href="#run/${encodeURIComponent(j.run)}">${esc(j.run)}</a>` : esc(j.run || "-")}</td>
      <td>${esc(j.state)}</td><td class="muted">${esc(j.message)}</td>
      <td>${j.alive ? `<button class="secondary" data-stop="${esc(j.id)}"${j.state === "stopping" ? " disabled" : ""}>Stop</button>` : ""}</td></tr>`).join("");
    $("#jobs-empty").hidden = data.jobs.length > 0;
    $("#jobs-table").hidden = data.jobs.length === 0;
  } catch (e) {
    showError("#runs-error", e);
  }
}

async function stopJob(id, errSel) {
  try {
    await api(`/api/jobs/${encodeURIComponent(id)}/stop`, {});
  } catch (e) {
    showError(errSel, e);
  }
}

$("#jobs-table").addEventListener("click", async (ev) => {
  const id = ev.target.dataset.stop;
  if (!id) return;
  ev.target.disabled = true;
  await stopJob(id, "#runs-error");
  loadRuns();
});

$("#train-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  whileBusy($("#train-form button[type=submit]"), async () => {
    showError("#train-error", null);
    $("#train-note").hidden = true;
    try {
      const job = await api("/api/train", formValues(ev.target));
      $("#train-note").textContent = `Started job ${job.id} (pid ${job.pid}): ${job.argv.slice(1).join(" ")}. It appears in the list once its run folder exists.`;
      $("#train-note").hidden = false;
      loadRuns();
    } catch (e) {
      showError("#train-error", e);
    }
  });
});

// The form's empty fields take the chosen model's defaults: say which.
function trainDefaults() {
  const o = Studio.options, v = $("#train-form");
  if (!o) return;
  const data = v.elements.data.value, kind = o.toys.includes(data) ? "points" : "images";
  const model = v.elements.model.value || o.default_model[kind], d = (o.models[model] || {}).defaults || {};
  v.elements.loss.options[0].textContent = d.loss ? `(default: ${d.loss})` : "(none: not a GAN)";
  v.elements.kimg.placeholder = d.kimg ? `${d.kimg} (default)` : "default";
}
["data", "model"].forEach((n) => $(`#train-form [name=${n}]`).addEventListener("change", trainDefaults));

Studio.onTab.runs = () => {
  loadRuns();
  every("runs", 3000, loadRuns);
};

// ---- one run: live charts, alarm, sample slider, stop/resume ----

// `visit` counts openings of the run page: a reply from an earlier visit (even to the same run) is dropped.
const RunPage = { name: null, stats: [], grids: [], detail: null, visit: 0 };

function series(key, label, color, rows = RunPage.stats) {
  return { label, color, points: rows.filter((r) => Number.isFinite(r[key])).map((r) => [r.kimg, r[key]]) };
}

function drawRun() {
  const d = RunPage.detail, rows = RunPage.stats;
  const marks = d.alarm.kimg;
  const ae = rows.some((r) => "loss_rec" in r);
  if (ae) {
    Plot.line($("#chart-loss"), { title: "Loss per image", series: [series("loss", "total", "#1f6f43"), series("loss_rec", "reconstruction", "#3367d6"), series("loss_kl", "KL", "#c2571a")] });
    $("#chart-d").innerHTML = "";
  } else {
    // Where the losses sit when D cannot tell (the server's loss_levels, from counterfeit.losses)
    Plot.line($("#chart-loss"), { title: "Losses", series: [series("loss_D", "D", "#c2571a"), series("loss_G", "G", "#1f6f43")],
      hlines: (d.loss_levels || []).filter(Boolean).map(([y, label]) => ({ y, label })) });
    // D's verdicts meet when D cannot tell; only some losses put that at a fixed level (the server's d_level)
    Plot.line($("#chart-d"), { title: "D's verdicts", ymin: 0, ymax: 1, series: [series("D(x)", "D(x)", "#3367d6"), series("D(G(z))", "D(G(z))", "#c2571a")],
      hlines: d.d_level ? [{ y: d.d_level[0], label: "can't tell" }] : [] });
  }
  const toy = rows.some((r) => "toy/modes" in r);
  if (toy) {
    Plot.line($("#chart-fid"), { title: "High-quality samples (%)", ymin: 0, ymax: 100, series: [series("toy/hq", "% within 3 sigma", "#3367d6")], marks });
    const total = (rows.find((r) => "toy/modes_total" in r) || {})["toy/modes_total"];
    Plot.line($("#chart-cov"), { title: "Modes covered", ymin: 0, ymax: total, series: [{ ...series("toy/modes", "modes", "#1f6f43"), dots: true }], marks });
  } else {
    Plot.line($("#chart-fid"), { title: "Quick FID (2,000 samples)", ymin: 0, series: [{ ...series("cov/fid", "FID", "#3367d6"), dots: true }], marks });
    const total = (rows.find((r) => "cov/num_classes" in r) || {})["cov/num_classes"];
    Plot.line($("#chart-cov"), { title: "Classes covered", ymin: 0, ymax: total, marks,
      series: [{ ...series("cov/classes", "classes", "#1f6f43"), dots: true }] });
  }
}

function drawGrid() {
  const g = RunPage.grids, i = +$("#grid-slider").value;
  if (!g.length) {
    $("#grid-img").removeAttribute("src");
    $("#grid-label").textContent = "(no grid yet)";
    return;
  }
  const item = g[Math.min(i, g.length - 1)];
  $("#grid-img").src = `/api/runs/${encodeURIComponent(RunPage.name)}/samples/${encodeURIComponent(item.file)}`;
  $("#grid-label").textContent = `at ${item.kimg} kimg (${Math.min(i, g.length - 1) + 1} of ${g.length})`;
}

function drawJob() {
  const d = RunPage.detail, job = d.job, el = $("#run-job");
  const live = job && job.alive;
  let html = live ? `<span class="status">training (job ${esc(job.id)}, ${esc(job.state)})</span> <button id="run-stop" class="secondary"${job.state === "stopping" ? " disabled" : ""}>Stop</button>`
    : job ? `<span class="status">last job (${esc(job.state)}): ${esc(job.message)}</span>` : "";
  if (!live && d.checkpoints.length) {
    html += ` <label>train on to <input id="resume-kimg" type="number" step="any" min="0" placeholder="kimg"></label> <button id="run-resume" class="secondary">Resume</button>`;
  }
  el.innerHTML = html;
  const stop = $("#run-stop");
  if (stop) stop.onclick = async () => { stop.disabled = true; await stopJob(job.id, "#run-error"); refreshRun(); };
  const res = $("#run-resume");
  if (res) {
    res.onclick = () => whileBusy(res, async () => {
      showError("#run-error", null);
      try {
        checkNumber($("#resume-kimg"));
        const kimg = $("#resume-kimg").value;
        await api(`/api/runs/${encodeURIComponent(RunPage.name)}/resume`, kimg ? { kimg } : {});
        setTimeout(refreshRun, 800);
      } catch (e) {
        showError("#run-error", e);
      }
    });
  }
}

async function refreshRun(first = false) {
  const name = RunPage.name, visit = RunPage.visit;
  try {
    const d = await api(`/api/runs/${encodeURIComponent(name)}?since=${first ? 0 : RunPage.stats.length}`);
    if (visit !== RunPage.visit) return;
    if (!first && d.stats_total < RunPage.stats.length) return refreshRun(true);  // a resumed run dropped rows: start over
    showError("#run-error", null);
    RunPage.stats = first ? d.stats : RunPage.stats.concat(d.stats);
    RunPage.detail = d;
    const s = d.summary, status = d.job && d.job.alive ? "training" : s.status;  // the job knows before the files do
    $("#run-summary").textContent = `${s.data} \u00b7 ${s.model} \u00b7 ${s.kimg} kimg \u00b7 ${s.losses} ${s.covered ? "\u00b7 " + s.covered : ""} \u00b7 ${status}`;
    const alarm = $("#run-alarm");
    alarm.hidden = !d.alarm.last;
    alarm.classList.toggle("past", !d.alarm.now);
    alarm.textContent = d.alarm.now ? `Collapse alarm: ${d.alarm.now}` : d.alarm.last ? `The collapse alarm fired at ${d.alarm.kimg.join(", ")} kimg (last: ${d.alarm.last}); it is quiet now.` : "";
    const slider = $("#grid-slider"), atEnd = +slider.value >= RunPage.grids.length - 1;
    RunPage.grids = d.grids;
    slider.max = Math.max(0, d.grids.length - 1);
    if (first || atEnd) slider.value = slider.max;
    drawRun();
    drawGrid();
    drawJob();
    $("#run-config").textContent = JSON.stringify(d.config, null, 2);
    const m = d.metrics;
    $("#run-metrics").innerHTML = Object.keys(m).length ? `<h3>Last evaluation (counterfeit eval)</h3><p>${Object.entries(m).map(([k, v]) =>
      `<b>${esc(k)}</b> ${Object.entries(v).map(([a, b]) => `${esc(a)} ${typeof b === "number" ? +b.toFixed(4) : esc(b)}`).join(", ")}`).join(" &middot; ")}</p>` : "";
    const live = d.job && d.job.alive;
    // Only while this page shows this run: a reply that arrives after the user left must not start polling again.
    if (Studio.tab === "run" && visit === RunPage.visit) every("run", live ? 2000 : 0, () => refreshRun());
  } catch (e) {
    if (visit === RunPage.visit) showError("#run-error", e);
  }
}

$("#grid-slider").addEventListener("input", drawGrid);
$("#grid-img").addEventListener("load", (ev) => enlarge(ev.target));
$("#gen-img").addEventListener("load", (ev) => enlarge(ev.target));

Studio.onTab.run = (name) => {
  RunPage.visit += 1;
  RunPage.name = name;
  RunPage.stats = [];
  RunPage.grids = [];
  RunPage.detail = null;
  $("#run-name").textContent = name || "";
  // Nothing of the previous run may stay on the page, even if this one cannot be loaded.
  ["#chart-loss", "#chart-d", "#chart-fid", "#chart-cov", "#run-job", "#run-metrics"].forEach((s) => { $(s).innerHTML = ""; });
  ["#run-summary", "#grid-label", "#run-config"].forEach((s) => { $(s).textContent = ""; });
  $("#run-alarm").hidden = true;
  $("#grid-img").removeAttribute("src");
  refreshRun(true);
};

// ---- Generate ----

const Gen = { runs: [], info: null };

function genQuery(fmt) {
  const v = formValues($("#gen-form"));
  // An empty count is the server's default for the run: 64 images, or 2,500 points as `counterfeit sample` draws them
  const q = new URLSearchParams({ run: v.run || "", seed: v.seed || "0", n: v.n || "", truncation: v.truncation || "1", ema: v.ema ? "true" : "false", format: fmt });
  if (v.class) q.set("class", v.class);
  return q;
}

async function loadGenRuns(selected) {
  try {
    const data = await api("/api/runs");
    Gen.runs = data.runs.filter((r) => r.has_checkpoint).map((r) => r.run);
    const sel = $("#gen-form [name=run]"), keep = selected || sel.value;
    fillSelect(sel, Gen.runs, false);
    if (Gen.runs.includes(keep)) sel.value = keep;
    if (!Gen.runs.length) showError("#gen-error", "No run has a checkpoint yet: train one on the Runs tab first.");
    else await loadGenInfo();
  } catch (e) {
    showError("#gen-error", e);
  }
}

async function loadGenInfo() {
  const run = $("#gen-form [name=run]").value;
  if (!run) return;
  try {
    const info = await api(`/api/runs/${encodeURIComponent(run)}/model`);
    if ($("#gen-form [name=run]").value !== run) return;  // another run was picked meanwhile: its reply sets the form
    const n = $("#gen-form [name=n]"), was = Gen.info ? Gen.info.default_count : +n.defaultValue;
    // A count the user chose stays while it fits; the last run's default becomes this one's (a toy's 2,500 points)
    if (!n.value || +n.value === was || +n.value > info.max_count) n.value = info.default_count;
    n.max = info.max_count;
    Gen.info = info;
    showError("#gen-error", null);
    $("#gen-class-label").hidden = !info.conditional;
    fillSelect($("#gen-form [name=class]"), info.classes);
    $("#gen-info").textContent = `${info.model} (${info.family}), z of ${info.z_dim}, ${info.checkpoint} (${info.kimg} kimg)`;
  } catch (e) {
    showError("#gen-error", e);
  }
}

async function doGenerate() {
  showError("#gen-error", null);
  try {
    const q = genQuery("png");  // the links below are made from these very parameters, whatever the form says later
    const blob = await api(`/api/generate?${q}`);
    const img = $("#gen-img");
    if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(blob);
    img.hidden = false;
    const png = new URLSearchParams(q), zip = new URLSearchParams(q);
    png.set("download", "1");
    zip.set("format", "zip");
    $("#gen-png").href = `/api/generate?${png}`;
    $("#gen-zip").href = `/api/generate?${zip}`;
    $("#gen-links").hidden = false;
  } catch (e) {
    $("#gen-links").hidden = true;  // the picture and its downloads must not pass for the failed request's
    $("#gen-img").hidden = true;
    showError("#gen-error", e);
  }
}

$("#gen-form").addEventListener("submit", (ev) => { ev.preventDefault(); whileBusy($("#gen-form button[type=submit]"), doGenerate); });
$("#gen-form [name=run]").addEventListener("change", loadGenInfo);
$("#gen-form [name=truncation]").addEventListener("input", (ev) => { $("#gen-trunc").textContent = (+ev.target.value).toFixed(2); });

Studio.onTab.generate = (run) => loadGenRuns(run);

// ---- start ----

(async () => {
  try {
    Studio.options = await api("/api/options");
    const o = Studio.options;
    $("#runs-dir").textContent = `runs folder: ${o.runs_dir}`;
    fillSelect("#train-form [name=data]", o.datasets, false);
    fillSelect("#train-form [name=model]", Object.keys(o.models));
    fillSelect("#train-form [name=loss]", o.losses);
    trainDefaults();
    $("#gen-form [name=n]").max = o.limits.count;
  } catch (e) {
    showError("#runs-error", e);
  }
  document.dispatchEvent(new Event("studio-ready"));  // the other panels fill their menus first
  window.addEventListener("hashchange", route);
  route();
})();
