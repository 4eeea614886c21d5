// The zoo explorer's page: plain JavaScript, no build step, no network beyond this server.
"use strict";

const $ = (id) => document.getElementById(id);
let runs = [];
let run = null; // the selected run's description

// ---------------------------------------------------------------- plumbing
async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  };
  const r = await fetch(path, opts);
  let data;
  try { data = await r.json(); } catch (e) { data = { error: `HTTP ${r.status}` }; }
  if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
  return data;
}

function act(action, body) {
  return api(`/api/runs/${encodeURIComponent(run.name)}/${action}`, body);
}

function showError(e) {
  const box = $("error");
  box.textContent = e ? String(e.message || e) : "";
  box.hidden = !e;
}

function status(text) { $("status").textContent = text || ""; }

function setImage(img, url) {
  img.src = url;
  img.dataset.version = String(Number(img.dataset.version || 0) + 1);
}

// Only the newest request of each kind may update the page (sliders fire many).
const latest = {};
async function newest(kind, fn, apply) {
  const ticket = (latest[kind] = (latest[kind] || 0) + 1);
  try {
    const out = await fn();
    if (ticket === latest[kind]) { showError(null); apply(out); }
  } catch (e) {
    if (ticket === latest[kind]) showError(e);
  }
}

function debounce(fn, ms) {
  let t = null;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

function downloadJSON(anchor, value) {
  const blob = new Blob([JSON.stringify(value, null, 1)], { type: "application/json" });
  if (anchor.href.startsWith("blob:")) URL.revokeObjectURL(anchor.href);
  anchor.href = URL.createObjectURL(blob);
}

// ---------------------------------------------------------------- runs
async function loadRuns() {
  runs = await api("/api/runs");
  const nav = $("runs");
  nav.innerHTML = "";
  for (const r of runs) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = `${r.name} (${r.family})`;
    b.dataset.run = r.name;
    b.addEventListener("click", () => select(r.name));
    nav.appendChild(b);
  }
  const wanted = new URLSearchParams(location.search).get("run");
  if (runs.length) select(runs.some((r) => r.name === wanted) ? wanted : runs[0].name);
  else status("No runs: start the server with --workdir RUN or --runs FOLDER.");
}

function select(name) {
  run = runs.find((r) => r.name === name);
  for (const b of $("runs").children) b.classList.toggle("active", b.dataset.run === name);
  for (const p of document.querySelectorAll(".page")) p.hidden = true;
  showError(null);
  status(`${run.name}: ${run.family}, step ${run.step}`);
  $(`page-${run.kind}`).hidden = false;
  ({ generator: initGenerator, translate: initTranslate, sketch: initSketch })[run.kind]();
}

// ---------------------------------------------------------------- generators
let edit = null; // {layer, channels, region, delta} of the local edit, or null
let mouthTimer = null;

function genBody(extra) {
  const body = { seed: Number($("seed").value) || 0 };
  if (run.caption !== null) body.caption = $("caption").value;
  if (run.truncation) body.psi = Number($("psi").value);
  const attrs = {};
  for (const s of document.querySelectorAll("#attributes input")) {
    if (Number(s.value) !== 0) attrs[s.dataset.name] = Number(s.value);
  }
  body.attributes = attrs;
  const mix = $("mix-range").value;
  if (mix) {
    const [lo, hi] = run.mixing[mix];
    body.mix = { seed: Number($("mix-seed").value) || 0, lo, hi };
  }
  return Object.assign(body, extra || {});
}

function refreshImage() {
  const body = genBody();
  newest("image", () => act("image", body), (out) => {
    setImage($("gen-image"), out.image);
    $("download-image").href = out.image;
    downloadJSON($("download-latent"), { run: run.name, step: run.step, ...body, z: out.z, edit });
  });
  if (run.layers.length) refreshFeatures();
}

function refreshFeatures() {
  const body = genBody({ layer: Number($("layer").value) });
  newest("features", () => act("features", body), (out) => {
    const tiles = $("tiles");
    tiles.innerHTML = "";
    out.tiles.forEach((url, c) => {
      const img = document.createElement("img");
      img.src = url;
      img.className = "tile";
      img.dataset.channel = String(c);
      img.title = `channel ${c}`;
      img.draggable = false;
      tiles.appendChild(img);
    });
    tiles.dataset.layer = String(out.layer);
    applyEdit();
  });
}

function applyEdit() {
  if (mouthTimer) { clearInterval(mouthTimer); mouthTimer = null; }
  if (edit) {
    const sign = Number(document.querySelector("input[name=edit-sign]:checked").value);
    edit.delta = sign * Number($("edit-strength").value);
  }
  const body = genBody(edit ? { edit } : {});
  newest("edited", () => act("image", body), (out) => setImage($("edited-image"), out.image));
}

function tilePoint(ev, img) {
  const r = img.getBoundingClientRect();
  return [
    Math.min(Math.max((ev.clientY - r.top) / r.height, 0), 1),
    Math.min(Math.max((ev.clientX - r.left) / r.width, 0), 1),
  ];
}

function initTileEditing() {
  const tiles = $("tiles");
  let start = null;
  tiles.addEventListener("pointerdown", (ev) => {
    if (ev.target.tagName !== "IMG") return;
    start = { img: ev.target, p: tilePoint(ev, ev.target), shift: ev.shiftKey };
    ev.preventDefault();
  });
  window.addEventListener("pointerup", (ev) => {
    if (!start) return;
    const { img, p, shift } = start;
    start = null;
    const q = tilePoint(ev, img);
    const layer = Number($("tiles").dataset.layer);
    const [h] = run.layers[layer];
    const cell = 1 / h;
    let region;
    if (Math.abs(q[0] - p[0]) < cell && Math.abs(q[1] - p[1]) < cell) {
      region = [p[0] - 1.5 * cell, p[1] - 1.5 * cell, p[0] + 1.5 * cell, p[1] + 1.5 * cell];
    } else {
      region = [Math.min(p[0], q[0]), Math.min(p[1], q[1]), Math.max(p[0], q[0]), Math.max(p[1], q[1])];
    }
    region = region.map((v) => Math.min(Math.max(v, 0), 1));
    if (shift) document.querySelector("input[name=edit-sign][value='-1']").checked = true;
    for (const t of tiles.children) t.classList.toggle("picked", t === img);
    edit = { layer, channels: [Number(img.dataset.channel)], region, delta: 0 };
    applyEdit();
  });
}

async function playMouth() {
  status("finding the mouth edit (the first time classifies a few hundred samples)...");
  try {
    const out = await act("mouth", genBody({ frames: 16 }));
    status(`mouth edit at layer ${out.layer}`);
    if (mouthTimer) clearInterval(mouthTimer);
    let i = 0;
    const img = $("edited-image");
    img.dataset.frames = String(out.frames.length);
    mouthTimer = setInterval(() => { img.src = out.frames[i++ % out.frames.length]; }, 90);
  } catch (e) { showError(e); status(""); }
}

function buildAttributes(names, source) {
  const box = $("attributes");
  box.innerHTML = "";
  for (const name of names) {
    const row = document.createElement("label");
    row.className = "attr";
    row.innerHTML = `<span></span><input type="range" min="-3" max="3" step="0.25" value="0"><output>0</output>`;
    row.querySelector("span").textContent = name;
    const s = row.querySelector("input");
    s.dataset.name = name;
    s.addEventListener("input", () => { row.querySelector("output").textContent = s.value; refreshSoon(); });
    box.appendChild(row);
  }
  $("attr-source").textContent = names.length
    ? `from ${source}` : "none yet: compute them from samples labelled by the face classifier";
}

const refreshSoon = debounce(refreshImage, 60);
let generatorWired = false;

function initGenerator() {
  $("caption-row").hidden = run.caption === null;
  if (run.caption !== null && !$("caption").value) $("caption").value = run.caption;
  $("psi-row").hidden = !run.truncation;
  $("mix-row").hidden = !Object.keys(run.mixing).length;
  const mix = $("mix-range");
  mix.innerHTML = `<option value="">nothing</option>`;
  for (const [k, [lo, hi]] of Object.entries(run.mixing)) {
    mix.insertAdjacentHTML("beforeend", `<option value="${k}">${k} (layers ${lo}-${hi - 1})</option>`);
  }
  $("features-section").hidden = !run.layers.length;
  const layer = $("layer");
  layer.innerHTML = "";
  run.layers.forEach(([h, w, c], l) => {
    layer.insertAdjacentHTML("beforeend", `<option value="${l}">${l}: ${h}x${w}, ${c} channels</option>`);
  });
  if (run.layers.length) layer.value = String(Math.max(0, run.layers.length - 2));
  buildAttributes(run.attributes, run.attributes_source);
  edit = null;
  if (!generatorWired) {
    generatorWired = true;
    for (const id of ["seed", "mix-range", "mix-seed"]) $(id).addEventListener("change", () => { edit = null; refreshImage(); });
    $("caption").addEventListener("input", debounce(refreshImage, 300));
    $("psi").addEventListener("input", () => { $("psi-value").textContent = $("psi").value; refreshSoon(); });
    $("random-seed").addEventListener("click", () => {
      $("seed").value = String(Math.floor(Math.random() * 100000));
      edit = null;
      refreshImage();
    });
    $("layer").addEventListener("change", () => { edit = null; refreshFeatures(); });
    $("edit-strength").addEventListener("input", () => {
      $("edit-strength-value").textContent = $("edit-strength").value;
      if (edit) debounce(applyEdit, 60)();
    });
    for (const r of document.querySelectorAll("input[name=edit-sign]")) r.addEventListener("change", () => edit && applyEdit());
    $("edit-reset").addEventListener("click", () => {
      edit = null;
      for (const t of $("tiles").children) t.classList.remove("picked");
      applyEdit();
    });
    $("mouth-play").addEventListener("click", playMouth);
    $("interp-go").addEventListener("click", interpolateGenerator);
    $("compute-attributes").addEventListener("click", async () => {
      status("labelling samples with the face classifier...");
      try {
        const out = await act("attributes", { n: 2000, method: $("vector-method").value, caption: run.caption === null ? undefined : $("caption").value });
        run.attributes = out.attributes;
        run.attributes_source = out.attributes_source;
        buildAttributes(out.attributes, out.attributes_source);
        status(`${out.attributes.length} attribute vectors`);
      } catch (e) { showError(e); status(""); }
    });
    initTileEditing();
  }
  refreshImage();
}

function interpolateGenerator() {
  const body = genBody({
    seed_a: Number($("interp-a").value) || 0,
    seed_b: Number($("interp-b").value) || 0,
    steps: Number($("interp-steps").value) || 8,
  });
  newest("interp", () => act("interpolate", body), (out) => {
    const strip = $("interp-strip");
    strip.innerHTML = "";
    for (const url of out.images) {
      const img = document.createElement("img");
      img.src = url;
      strip.appendChild(img);
    }
  });
}

// ---------------------------------------------------------------- pix2pix
const drawing = { strokes: [], current: null };
let translateWired = false;

function redrawCanvas() {
  const c = $("draw-canvas");
  const ctx = c.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, c.width, c.height);
  ctx.strokeStyle = "#000";
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  for (const s of drawing.strokes) {
    ctx.lineWidth = s.size;
    ctx.beginPath();
    s.points.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    if (s.points.length === 1) ctx.lineTo(s.points[0][0] + 0.1, s.points[0][1]);
    ctx.stroke();
  }
}

function canvasPoint(ev, canvas) {
  const r = canvas.getBoundingClientRect();
  return [(ev.clientX - r.left) * (canvas.width / r.width), (ev.clientY - r.top) * (canvas.height / r.height)];
}

// The drawing at the model's size, thresholded to pure black lines on white, as the
// edge maps it was trained on are (a soft, downscaled pen stroke reads as grey).
function drawingAtModelSize() {
  const [h, w] = run.size;
  const small = document.createElement("canvas");
  small.width = w;
  small.height = h;
  const ctx = small.getContext("2d");
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage($("draw-canvas"), 0, 0, w, h);
  const img = ctx.getImageData(0, 0, w, h);
  const d = img.data;
  for (let i = 0; i < d.length; i += 4) {
    const v = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2] < 200 ? 0 : 255;
    d[i] = d[i + 1] = d[i + 2] = v;
    d[i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return small.toDataURL("image/png");
}

function translateNow() {
  const url = $("threshold").checked ? drawingAtModelSize() : $("draw-canvas").toDataURL("image/png");
  newest("translate", () => act("translate", { image: url }), (out) => {
    setImage($("translated"), out.image);
    $("download-translated").href = out.image;
  });
}

function initTranslate() {
  if (!translateWired) {
    translateWired = true;
    const c = $("draw-canvas");
    c.addEventListener("pointerdown", (ev) => {
      c.setPointerCapture(ev.pointerId);
      drawing.current = { size: Number($("brush").value), points: [canvasPoint(ev, c)] };
      drawing.strokes.push(drawing.current);
      redrawCanvas();
    });
    c.addEventListener("pointermove", (ev) => {
      if (!drawing.current) return;
      drawing.current.points.push(canvasPoint(ev, c));
      redrawCanvas();
    });
    const end = () => { if (drawing.current) { drawing.current = null; translateNow(); } };
    c.addEventListener("pointerup", end);
    c.addEventListener("pointercancel", end);
    $("draw-undo").addEventListener("click", () => { drawing.strokes.pop(); redrawCanvas(); translateNow(); });
    $("draw-clear").addEventListener("click", () => { drawing.strokes = []; redrawCanvas(); translateNow(); });
    $("threshold").addEventListener("change", translateNow);
  }
  redrawCanvas();
  translateNow();
}

// ---------------------------------------------------------------- Sketch-RNN
const sketch = { strokes: [], current: null, last: [] };
let sketchWired = false;
const INK = ["#e53935", "#1e88e5", "#43a047", "#8e24aa", "#fb8c00", "#00897b", "#6d4c41", "#3949ab"];

// Canvas pixels -> the model's data units: a drawing the size of the test sketches.
function sketchScale() { return run.extent ? run.extent / 200 : 1; }

function strokesToRows(strokes, scale) {
  const rows = [];
  let last = null;
  for (const s of strokes) {
    for (const p of s) {
      rows.push(last ? [(p[0] - last[0]) * scale, (p[1] - last[1]) * scale, 0] : [0, 0, 0]);
      last = p;
    }
    if (rows.length) rows[rows.length - 1][2] = 1;
  }
  return rows;
}

function rowsToStrokes(rows) {
  const strokes = [];
  let x = 0, y = 0, cur = [];
  for (const [dx, dy, pen] of rows) {
    x += dx; y += dy;
    cur.push([x, y]);
    if (pen > 0.5) { strokes.push(cur); cur = []; }
  }
  if (cur.length) strokes.push(cur);
  return strokes;
}

function redrawSketch() {
  const c = $("sketch-canvas");
  const ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  ctx.strokeStyle = "#000";
  ctx.lineWidth = 2.5;
  ctx.lineCap = "round";
  for (const s of sketch.strokes) {
    ctx.beginPath();
    s.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.stroke();
  }
}

// Draws stroke-3 rows fitted into a canvas, `upto` rows; the first `prefix` rows in black.
function drawRows(canvas, rows, upto, prefix, colour) {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  let x = 0, y = 0;
  const pts = [[0, 0]];
  for (const [dx, dy] of rows) { x += dx; y += dy; pts.push([x, y]); }
  const xs = pts.slice(1).map((p) => p[0]), ys = pts.slice(1).map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const m = 8, s = Math.min((canvas.width - 2 * m) / Math.max(x1 - x0, 1e-6), (canvas.height - 2 * m) / Math.max(y1 - y0, 1e-6));
  const ox = m + ((canvas.width - 2 * m) - s * (x1 - x0)) / 2 - s * x0;
  const oy = m + ((canvas.height - 2 * m) - s * (y1 - y0)) / 2 - s * y0;
  ctx.lineWidth = 2;
  ctx.lineCap = "round";
  for (let i = 1; i < Math.min(upto, rows.length); i++) {
    if (rows[i - 1][2] > 0.5) continue; // the pen was lifted after the previous point
    ctx.strokeStyle = i < prefix ? "#000" : colour;
    ctx.beginPath();
    ctx.moveTo(ox + s * pts[i][0], oy + s * pts[i][1]);
    ctx.lineTo(ox + s * pts[i + 1][0], oy + s * pts[i + 1][1]);
    ctx.stroke();
  }
}

function showSketches(sketches, prefix) {
  const box = $("completions");
  box.innerHTML = "";
  sketch.last = sketches;
  const canvases = sketches.map((rows, k) => {
    const c = document.createElement("canvas");
    c.width = c.height = 160;
    c.className = "completion";
    c.dataset.rows = String(rows.length);
    c.dataset.done = "0";
    box.appendChild(c);
    return c;
  });
  let t = prefix; // animate the model's part point by point
  const step = () => {
    t += 2;
    sketches.forEach((rows, k) => drawRows(canvases[k], rows, t, prefix, INK[k % INK.length]));
    if (sketches.some((r) => t < r.length)) requestAnimationFrame(step);
    else canvases.forEach((c) => (c.dataset.done = "1"));
  };
  step();
  const js = sketches.map((rows) => [
    ...rows.map(([dx, dy, p]) => [dx, dy, p > 0.5 ? 0 : 1, p > 0.5 ? 1 : 0, 0]), [0, 0, 0, 0, 1]]);
  downloadJSON($("sketch-export"), js);
}

function temperature() { return Number($("temperature").value); }
function randomSeed() { return Math.floor(Math.random() * 1e6); }

function completeNow() {
  const rows = strokesToRows(sketch.strokes, sketchScale());
  if (!rows.length) return;
  // Lifting the pen ends the stroke; with "continue", the model is told the pen is
  // still down, so it carries on the stroke instead of (often) ending the drawing.
  if ($("continue-stroke").checked) rows[rows.length - 1][2] = 0;
  const body = { strokes: rows, n: 4, temperature: temperature(), seed: randomSeed() };
  status("completing...");
  newest("complete", () => act("complete", body), (out) => { status(""); showSketches(out.sketches, out.prefix_rows); });
}

function importSketch(text) {
  let data = JSON.parse(text);
  if (Array.isArray(data) && Array.isArray(data[0]) && Array.isArray(data[0][0])) data = data[0];
  const rows = [];
  for (const r of data) {
    if (r.length === 5) { if (r[4] === 1) break; rows.push([r[0], r[1], r[3]]); } else rows.push(r);
  }
  // Into canvas pixels, centred.
  const scale = 1 / sketchScale();
  let strokes = rowsToStrokes(rows.map(([dx, dy, p]) => [dx * scale, dy * scale, p]));
  const all = strokes.flat();
  const cx = (Math.min(...all.map((p) => p[0])) + Math.max(...all.map((p) => p[0]))) / 2;
  const cy = (Math.min(...all.map((p) => p[1])) + Math.max(...all.map((p) => p[1]))) / 2;
  const c = $("sketch-canvas");
  strokes = strokes.map((s) => s.map(([x, y]) => [x - cx + c.width / 2, y - cy + c.height / 2]));
  sketch.strokes = strokes;
  redrawSketch();
  completeNow();
}

function initSketch() {
  if (!sketchWired) {
    sketchWired = true;
    const c = $("sketch-canvas");
    c.addEventListener("pointerdown", (ev) => {
      c.setPointerCapture(ev.pointerId);
      sketch.current = [canvasPoint(ev, c)];
      sketch.strokes.push(sketch.current);
    });
    c.addEventListener("pointermove", (ev) => {
      if (!sketch.current) return;
      const p = canvasPoint(ev, c), q = sketch.current[sketch.current.length - 1];
      if (Math.hypot(p[0] - q[0], p[1] - q[1]) < 3) return; // a point every few pixels
      sketch.current.push(p);
      redrawSketch();
    });
    const end = () => { if (sketch.current) { sketch.current = null; redrawSketch(); completeNow(); } };
    c.addEventListener("pointerup", end);
    c.addEventListener("pointercancel", end);
    $("sketch-undo").addEventListener("click", () => { sketch.strokes.pop(); redrawSketch(); completeNow(); });
    $("sketch-clear").addEventListener("click", () => { sketch.strokes = []; redrawSketch(); $("completions").innerHTML = ""; });
    $("temperature").addEventListener("input", () => { $("temperature-value").textContent = $("temperature").value; });
    $("sketch-sample").addEventListener("click", () => {
      newest("complete", () => act("sample", { n: 4, temperature: temperature(), seed: randomSeed() }),
        (out) => showSketches(out.sketches, 0));
    });
    $("sketch-interpolate").addEventListener("click", () => {
      const rows = strokesToRows(sketch.strokes, sketchScale());
      const body = { steps: 6, temperature: temperature(), seed: randomSeed() };
      if (rows.length) body.a = rows;
      newest("complete", () => act("interpolate", body), (out) => showSketches(out.sketches, 0));
    });
    $("sketch-import").addEventListener("change", async (ev) => {
      const f = ev.target.files[0];
      if (!f) return;
      try { importSketch(await f.text()); } catch (e) { showError(new Error(`not a sketch-rnn-js JSON file: ${e.message}`)); }
      ev.target.value = "";
    });
  }
  $("sketch-interpolate").hidden = !run.conditional;
  $("temperature").value = String(run.temperature);
  $("temperature-value").textContent = String(run.temperature);
  redrawSketch();
}

loadRuns().catch(showError);
