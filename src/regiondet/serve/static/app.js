// regiondet's page. On this device (box models): the model runs in the page (device.js, ONNX
// Runtime Web), and no image or frame leaves the browser. On the server: an image goes to
// POST /v1/detect; a video or the webcam streams JPEG frames over the WebSocket /v1/live, one
// frame in flight at a time, so the boxes are always of a recent frame. Nothing is stored,
// here or on the server.
"use strict";

const token = new URLSearchParams(location.search).get("token");
const $ = (id) => document.getElementById(id);
const view = $("view"), ctx = view.getContext("2d", { willReadFrequently: true }), video = $("video");
const COLOURS = { camera: "#e53935", phone: "#fb8c00", text: "#43a047" };
let live = null;        // {ws, stream, timer}
let last = null;        // the newest detections, in the sent frame's pixels
let still = null;       // the image shown when not live
let current = null;     // the file shown (an image or a video), re-run when the model changes
let alertOn = false;    // the banner's state: a lens's alert episode is on
let device = null;      // {model, detector}: the model loaded into the page, for "on this device"
let devicePending = null;  // the load in progress: {model, promise}

function api(path) {
  const url = new URL(path, location.href);
  if (token) url.searchParams.set("token", token);
  return url;
}

function status(text) {
  $("status").textContent = text;
  $("privacy").textContent = onDevice()
    ? "The model runs in this page: no image or frame leaves this device, and nothing is stored."
    : "Images and frames go to the server, are processed in memory there and never stored.";
}

function onDevice() { return $("where").value === "device"; }

// The page's cache (sw.js): what the page fetched before its service worker took over is kept
// too, so that the first visit is enough to start without the network.
async function remember(url, response) {
  if (!("caches" in window) || !response.ok) return;
  try { await (await caches.open("regiondet-page")).put(url, response.clone()); } catch (err) { /* a full disk: no offline start */ }
}

// The runtime build the page runs on, kept for starting offline (the other build is not fetched).
const RUNTIME = {
  wasm: ["ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"],
  webgpu: ["ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm-simd-threaded.asyncify.wasm"],
};

async function rememberRuntime(backend) {
  if (!("caches" in window)) return;
  try {
    const cache = await caches.open("regiondet-page");
    await cache.addAll(RUNTIME[backend].map((name) => `/static/ort/${name}`));
  } catch (err) { /* a full disk: no offline start */ }
}

async function deviceBytes(model, file) {
  const url = api(`v1/device/${encodeURIComponent(model)}/${file}`);
  const res = await fetch(url);
  await remember(url, res);
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    throw new Error(body.error || `${file}: ${res.status}`);
  }
  return file.endsWith(".json") ? res.json() : new Uint8Array(await res.arrayBuffer());
}

// The model of the list loaded into the page (once per model): its graphs and settings from the
// server, run by ONNX Runtime Web from then on.
async function deviceModel() {
  const model = $("model").value;
  if (device && device.model === model) return device.detector;
  if (!devicePending || devicePending.model !== model) {
    status(`loading ${model} onto this device...`);
    const promise = (async () => {
      const { DeviceDetector } = await import("./device.js")  // beside this script;
      const settings = await deviceBytes(model, "settings.json");
      const threads = Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1));
      // ?backend=wasm|webgpu in the address forces one; else WebGPU where the browser has it
      const backend = new URLSearchParams(location.search).get("backend") || "auto";
      return DeviceDetector.load((file) => deviceBytes(model, file), settings, threads, backend);
    })();
    devicePending = { model, promise };
  }
  const pending = devicePending;
  try {
    const detector = await pending.promise;
    device = { model: pending.model, detector };
    await rememberRuntime(detector.backend);  // "ready" then means it can start offline
    return detector;
  } finally {
    if (devicePending === pending) devicePending = null;
  }
}

// Slower than this per frame, the page runs the model on the server unless told otherwise: an
// alert that comes a second late is no alert.
const SLOW_MS = 1000;

// ms the model takes for a 640x480 frame here (the second of two: the first includes set-up)
async function frameTime(detector) {
  const frame = new ImageData(640, 480);
  await detector.detect(frame, undefined, true);
  const t0 = performance.now();
  await detector.detect(frame, undefined, true);
  return performance.now() - t0;
}

function whereText() {
  if (!onDevice()) return "on the server";
  if (device && device.detector.backend === "webgpu") return "on this device (WebGPU)";
  const threads = device ? device.detector.threads : 1;
  return `on this device (WebAssembly, ${threads} thread${threads === 1 ? "" : "s"})`;
}

function scoreAsked() {
  const score = parseFloat($("score").value);
  return Number.isNaN(score) ? undefined : score;
}

function query() {
  const q = new URLSearchParams({ model: $("model").value });
  const score = scoreAsked();
  if (score !== undefined) q.set("score", score);
  return q;
}

// A service started with --token: the page asks for it once and carries it in its address.
function askToken() {
  const form = document.createElement("form");
  form.id = "token-form";
  form.innerHTML = '<label>This service needs its token <input id="token" type="password" autocomplete="off" required></label> <button>Open</button>';
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const url = new URL(location.href);
    url.searchParams.set("token", $("token").value);
    location.replace(url);
  });
  $("drop").prepend(form);
  status(token ? "that token is not this service's" : "a token is needed");
}

async function loadModels() {
  const res = await fetch(api("v1/models")).catch(() => null);
  if (!res) { status("the server cannot be reached, and this page has not been opened here before"); return; }
  await remember(api("v1/models"), res);
  if (res.status === 401) { askToken(); return; }
  const body = await res.json();
  if (!res.ok) { status(body.error || "cannot list the models"); return; }
  for (const m of body.models) {
    const opt = new Option(`${m.name}: ${m.about}`, m.name, m.default, m.default);
    $("model").add(opt);
  }
  // where the model runs: ?run=device|server in the address, else the last choice, else the
  // device if it reads a 640x480 frame within SLOW_MS
  const saved = new URLSearchParams(location.search).get("run") || localStorage.getItem("regiondet-where");
  const chosen = saved === "server" || saved === "device";
  if (chosen) $("where").value = saved;
  if (onDevice()) {
    try {
      const detector = await deviceModel();
      const ms = chosen ? 0 : await frameTime(detector);
      if (ms > SLOW_MS) {
        $("where").value = "server";
        status(`ready, on the server: this device took ${Math.round(ms)} ms a frame (pick "on this device" to run it here)`);
        return;
      }
    } catch (err) {
      $("where").value = "server";
      status(`on the server: this device cannot run the model (${err.message})`);
      return;
    }
  }
  status(`ready, ${whereText()}: drop an image or a video, or use the webcam`);
}

function drawDetections(result, sx, sy) {
  const list = $("detections");
  list.replaceChildren();
  // sizes in screen pixels: a 4000 px photo shown 350 px wide still gets readable labels
  const perScreenPx = view.width / Math.max(1, view.getBoundingClientRect().width || view.width);
  ctx.lineWidth = 2.5 * perScreenPx;
  ctx.font = `${Math.round(14 * perScreenPx)}px system-ui, sans-serif`;
  const placed = []; // label rectangles drawn so far: a label never covers another
  result.boxes.forEach((b, i) => {
    const label = result.labels[i], score = result.scores[i];
    const colour = COLOURS[label] || "#1e88e5";
    ctx.strokeStyle = colour;
    const poly = result.polygons && result.polygons[i];
    if (poly) {
      ctx.beginPath();
      poly.forEach(([x, y], k) => (k ? ctx.lineTo(x * sx, y * sy) : ctx.moveTo(x * sx, y * sy)));
      ctx.closePath();
      ctx.stroke();
    } else {
      ctx.strokeRect(b[0] * sx, b[1] * sy, (b[2] - b[0]) * sx, (b[3] - b[1]) * sy);
    }
    const text = labelText(label, score, result.class_scores && result.class_scores[i]);
    ctx.fillStyle = colour;
    const w = ctx.measureText(text).width + 8, h = parseInt(ctx.font, 10) + 6;
    const [x, y] = labelPlace(b[0] * sx, b[1] * sy, w, h, placed);
    ctx.fillRect(x, y, w, h);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, x + 4, y + h - 6);
    const li = document.createElement("li");
    li.textContent = text;
    list.append(li);
  });
  view.dataset.labels = JSON.stringify(placed); // where the labels went (the browser tests read it)
}

// "phone 0.92 (camera 0.77)": one object boxed once, with the score of each class it was called
function labelText(label, score, classScores) {
  const others = Object.entries(classScores || {}).filter(([c]) => c !== label);
  const more = others.map(([c, v]) => `${c} ${v.toFixed(2)}`).join(", ");
  return `${label} ${score.toFixed(2)}` + (more ? ` (${more})` : "");
}

// Where a box's label goes: above the box, else just inside its top, else below the labels it
// would cover; `placed` collects the rectangles taken (canvas pixels).
function labelPlace(left, top, w, h, placed) {
  const over = (x, y) => placed.filter((r) => x < r.x + r.w && r.x < x + w && y < r.y + r.h && r.y < y + h);
  const x = Math.max(0, Math.min(left, view.width - w));
  let y = top - h >= 0 ? top - h : top;
  if (over(x, y).length && !over(x, top).length) y = top;
  for (let k = 0; k <= placed.length && over(x, y).length; k++) y = Math.max(...over(x, y).map((r) => r.y + r.h));
  y = Math.min(y, Math.max(0, view.height - h));
  placed.push({ x, y, w, h });
  return [x, y];
}

function showAlert(on) { alertOn = on; $("alert").hidden = !on; }

// What the page can say: the model sees a camera or a phone, not which way its lens faces.
function alertText(labels) {
  const kinds = [...new Set(labels.filter((l) => l === "camera" || l === "phone"))];
  return kinds.length ? `In view: ${kinds.join(" and ")} (a lens may be pointed this way)` : "";
}

// After an error nothing of the previous picture stays: no photo, boxes, list or banner.
function clearView() {
  ctx.clearRect(0, 0, view.width, view.height);
  $("detections").replaceChildren();
  still = null;
  last = null;
  showAlert(false);
}

function timeline(events) {
  for (const e of events || []) {
    const li = document.createElement("li");
    li.className = e.event;
    const what = e.event === "alert_start" ? `lens in view: ${e.label} #${e.track}` : `lens gone: ${e.label} #${e.track}`;
    const best = e.event === "alert_end" ? `, best score ${e.best_score.toFixed(2)}` : "";
    li.textContent = `${what} at ${e.time_s.toFixed(1)} s (frame ${e.frame}${best})`;
    $("timeline").prepend(li);
  }
}

// An image detected in the page: drawn at its own size, read back as RGBA, nothing sent.
async function detectOnDevice(file) {
  // the file's own pixels, as regiondet reads them: upright (EXIF), no colour-profile conversion
  const bitmap = await createImageBitmap(file, { colorSpaceConversion: "none" }).catch(() => null);
  if (!bitmap) { clearView(); status(`${file.name}: not an image this browser can read`); return; }
  let detector;
  try {
    detector = await deviceModel();
  } catch (err) { clearView(); status(`cannot run on this device: ${err.message}`); return; }
  const pixels = bitmap.width * bitmap.height, limit = detector.settings.max_pixels;
  if (limit && pixels > limit) {
    clearView();
    status(`${file.name}: ${(pixels / 1e6).toFixed(0)} Mpx is over the limit of ${(limit / 1e6).toFixed(0)} Mpx`);
    return;
  }
  status(`detecting on ${file.name} ${whereText()}...`);
  view.width = bitmap.width; view.height = bitmap.height;
  ctx.drawImage(bitmap, 0, 0);
  still = bitmap;
  const body = await detector.detect(ctx.getImageData(0, 0, view.width, view.height), scoreAsked());
  showResult(file, body, device.model);
}

function showResult(file, body, model) {
  drawDetections(body, 1, 1);
  view.dataset.result = JSON.stringify(body); // what was found (the browser tests read it)
  $("alert").textContent = alertText(body.labels);
  showAlert(alertText(body.labels) !== "");
  status(`${file.name}: ${body.labels.length} found in ${body.ms} ms (${model}, ${whereText()})`);
}

async function detectImage(file) {
  stopLive();
  if (onDevice()) return detectOnDevice(file);
  const bitmap = await createImageBitmap(file).catch(() => null);
  status(`detecting on ${file.name}...`);
  const res = await fetch(api("v1/detect?" + query()), { method: "POST", body: file });
  const body = await res.json().catch(() => ({ error: "the server's answer was not JSON" }));
  if (!res.ok) { clearView(); status(`${file.name}: ${res.status}: ${body.error}`); return; }
  if (bitmap) {
    view.width = bitmap.width; view.height = bitmap.height;
    ctx.drawImage(bitmap, 0, 0);
    still = bitmap;
  }
  showResult(file, body, body.model);
}

function frameLoop() {
  if (!live) return;
  if (video.readyState >= 2) {
    if (view.width !== video.videoWidth || view.height !== video.videoHeight) {
      view.width = video.videoWidth; view.height = video.videoHeight;  // a new shape: never stretched
    }
    ctx.drawImage(video, 0, 0, view.width, view.height);
    if (last) drawDetections(last, view.width / last.width, view.height / last.height);
  }
  requestAnimationFrame(frameLoop);
}

function sendFrame() {
  if (!live || live.ws.readyState !== WebSocket.OPEN || video.readyState < 2 || video.ended) {
    if (live && video.ended) status("the video has ended");
    return;
  }
  const grab = document.createElement("canvas");
  grab.width = video.videoWidth; grab.height = video.videoHeight;
  grab.getContext("2d").drawImage(video, 0, 0);
  grab.toBlob((blob) => blob && live && live.ws.readyState === WebSocket.OPEN && live.ws.send(blob), "image/jpeg", 0.85);
}

// One live frame's answer (from the server or the page's own model): boxes, alert, events.
function liveResult(result) {
  last = result;
  // frames answered and model time so far (the page's speed figures: docs/scripts/page_speed.py)
  const stats = JSON.parse(view.dataset.live || '{"frames":0,"ms":0}');
  view.dataset.live = JSON.stringify({ frames: stats.frames + 1, ms: stats.ms + result.ms });
  if (result.alert) $("alert").textContent = alertText(result.labels) || $("alert").textContent;
  showAlert(result.alert);
  timeline(result.events);
  status(`live ${whereText()}: frame ${result.frame}, ${result.labels.length} found in ${result.ms} ms`);
}

// The alert rule of the server's live socket (alert=3/5, hold 2 s), here in the page.
const ALERT_K = 3, ALERT_N = 5, ALERT_HOLD_S = 2.0;

// Device mode, live: each frame read from the video into the page's model, then followed by
// the page's own tracker (tracker.js: the server's rules and events); nothing is sent.
async function startDeviceLive(source) {
  let detector, AlertTracker;
  try {
    detector = await deviceModel();
    ({ AlertTracker } = await import("./tracker.js"));
  } catch (err) { status(`cannot run on this device: ${err.message}`); return; }
  const score = scoreAsked() ?? detector.settings.score;
  const tracker = new AlertTracker({ k: ALERT_K, n: ALERT_N, high: score, low: Math.min(0.1, score), holdS: ALERT_HOLD_S });
  live = { device: true, stream: source.stream || null, detector, tracker, score, frame: -1, start: performance.now() };
  $("stop").disabled = false;
  status(`live ${whereText()}: detecting`);
  requestAnimationFrame(frameLoop);
  deviceStep(live);
}

async function deviceStep(mine) {
  if (live !== mine) return;
  if (video.ended) { status("the video has ended"); return; }
  if (video.readyState < 2) { setTimeout(() => deviceStep(mine), 30); return; }
  const grab = mine.grab || (mine.grab = document.createElement("canvas"));
  const g = mine.graphics || (mine.graphics = grab.getContext("2d", { willReadFrequently: true }));
  grab.width = video.videoWidth; grab.height = video.videoHeight;
  g.drawImage(video, 0, 0);
  const frame = g.getImageData(0, 0, grab.width, grab.height);
  const index = ++mine.frame, seconds = Number(((performance.now() - mine.start) / 1000).toFixed(3));
  const found = await mine.detector.detect(frame, Math.min(mine.tracker.low, mine.score), true);
  if (live !== mine) return;
  const [ids, events] = mine.tracker.update(found.boxes, found.scores, found.labels, index, seconds);
  const keep = found.scores.map((v) => v >= mine.score);
  const pick = (list) => list.filter((_, i) => keep[i]);
  const result = { ...found, boxes: pick(found.boxes), labels: pick(found.labels), scores: pick(found.scores), frame: index, time_s: seconds };
  if (found.class_scores) result.class_scores = pick(found.class_scores);
  result.tracks = pick(ids);
  result.alert = mine.tracker.alert;
  result.events = events;
  liveResult(result);
  setTimeout(() => deviceStep(mine), 0);
}

function startLive(source) {
  stopLive();
  delete view.dataset.live;
  if (onDevice()) { startDeviceLive(source); return; }
  const url = api("v1/live?" + query());
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  live = { ws, stream: source.stream || null };
  $("stop").disabled = false;
  ws.onopen = () => { live.opened = true; status("live: detecting"); sendFrame(); };
  ws.onmessage = (msg) => {
    const result = JSON.parse(msg.data);
    if (result.error && result.boxes === undefined) status(result.error); else liveResult(result);
    setTimeout(sendFrame, 0);  // the next frame only now: one in flight, never a backlog
  };
  ws.onclose = (e) => {
    if (!live || live.ws !== ws) return;
    // a refused handshake (401: no or wrong token) reaches a page only as a close before opening
    status(e.reason || (live.opened ? "live stopped" : "the live connection was refused (is the token in the address right?)"));
  };
  requestAnimationFrame(frameLoop);
}

function stopLive() {
  if (!live) return;
  const { ws, stream, tracker, frame } = live;
  const seconds = live.device ? (performance.now() - live.start) / 1000 : 0;
  live = null;
  if (ws) ws.close();
  if (tracker) {  // the page's own tracker ends its episodes as the server's does at a stream's end
    timeline(tracker.close(frame, Number(seconds.toFixed(3))));
  } else if (alertOn) {  // the server drops the episode with the connection: the timeline closes it here
    const li = document.createElement("li");
    li.className = "alert_end";
    li.textContent = "alert ended: stopped";
    $("timeline").prepend(li);
  }
  if (stream) stream.getTracks().forEach((t) => t.stop());
  video.pause();
  $("stop").disabled = true;
  showAlert(false);
}

async function useFile(file) {
  if (!file) return;
  current = file;
  if (file.type.startsWith("video/")) {
    video.srcObject = null;
    video.src = URL.createObjectURL(file);
    await video.play();
    startLive({});
  } else {
    await detectImage(file);
  }
}

$("file").addEventListener("change", (e) => {
  useFile(e.target.files[0]);
  e.target.value = "";  // picking the same file again runs it again
});
$("model").addEventListener("change", () => { if (current && !live) useFile(current); });
$("where").addEventListener("change", async () => {
  localStorage.setItem("regiondet-where", $("where").value);
  stopLive();
  if (onDevice()) {
    try { await deviceModel(); } catch (err) { status(`cannot run on this device: ${err.message}`); return; }
  }
  if (current) useFile(current); else status(`ready, ${whereText()}`);
});
$("webcam").addEventListener("click", async () => {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    video.src = "";
    video.srcObject = stream;
    await video.play();
    startLive({ stream });
  } catch (err) {
    status(`no webcam: ${err.message}`);
  }
});
$("stop").addEventListener("click", () => { stopLive(); status("stopped"); });
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); useFile(e.dataTransfer.files[0]); });

// installable and able to start offline (service workers need https or this machine's own address)
if ("serviceWorker" in navigator) navigator.serviceWorker.register("/sw.js").catch(() => {});
loadModels();
