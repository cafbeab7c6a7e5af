// A box model run in the page itself (ONNX Runtime Web, WebAssembly): no frame leaves the device.
// The server makes the graphs from its checkpoint (regiondet/serve/device.py); this file does
// what Detector.predict does around them, step for step, so the page's boxes are the CLI's:
// the read size (scale_of), a still's mirrored second reading (averaged), the crop verifier's
// product, one box per object (merged_classes, parts_merged), nested boxes (nested_boxes), the score. The
// runtime's files come from the server too: its WebGPU build where the browser has a GPU (nodes
// WebGPU lacks run in its WebAssembly part), else its WebAssembly build.
import { area, intersection, iou } from "./boxes.js";

let ort = null;  // the runtime module the page loaded (one per page)

const f32 = Math.fround;

// torchvision's resize: the factor for a height x width image at (shorter side, cap on the longer)
export function readSize(height, width, minSize, maxSize) {
  const scale = Math.min(minSize / Math.min(height, width), maxSize / Math.max(height, width));
  return [Math.floor(height * scale), Math.floor(width * scale)];
}

// torchvision.ops.nms: best score first, a box dropped when its IoU with a kept one is > thresh
export function nms(boxes, scores, thresh) {
  const order = scores.map((s, i) => i).sort((i, j) => scores[j] - scores[i] || i - j);
  const kept = [], dropped = new Set();
  for (const i of order) {
    if (dropped.has(i)) continue;
    kept.push(i);
    for (const j of order) if (!dropped.has(j) && j !== i && iou(boxes[i], boxes[j]) > thresh) dropped.add(j);
  }
  return kept;
}

// merged_classes: which boxes stay when boxes of different classes overlap at `thresh` or more,
// and each box's score for every class (a kept box also carries the best score of each other
// class among the boxes it stands for)
export function mergedClasses(boxes, scores, labels, numClasses, thresh) {
  const n = boxes.length;
  const perClass = boxes.map((b, i) => { const row = new Array(numClasses).fill(0); row[labels[i] - 1] = scores[i]; return row; });
  const best = new Array(n).fill(false);
  for (const k of nms(boxes, scores, thresh)) {
    best[k] = true;
    for (let c = 0; c < numClasses; c++) {
      let top = null;
      for (let j = 0; j < n; j++) {
        if (labels[j] !== c + 1) continue;
        const v = iou(boxes[k], boxes[j]) >= thresh && scores[j] <= scores[k] ? scores[j] : 0;
        top = top === null ? v : Math.max(top, v);
      }
      if (top !== null) perClass[k][c] = top;
    }
  }
  return [best, perClass];
}

// reclassified: each box's class scores and label with the verifier's class shares counted in,
// `weight` to the verifier; a box keeps its best score, given to the class the mix favours
export function reclassified(perClass, shares, weight) {
  const rows = perClass.map((row, i) => {
    const best = Math.max(...row), top = Math.max(...shares[i]);
    const mixed = row.map((v, c) => (1 - weight) * (v / Math.max(best, 1e-12)) + weight * (shares[i][c] / Math.max(top, 1e-12)));
    const most = Math.max(...mixed);
    return [best, mixed.map((v) => v / Math.max(most, 1e-12))];
  });
  return [rows.map(([best, mixed]) => mixed.map((v) => f32(best * v))),
    rows.map(([, mixed]) => mixed.indexOf(Math.max(...mixed)) + 1)];
}

// nested_boxes: drop a box with >= `inside` of its area in a larger box of its class that scores
// >= ratio x its score and >= the operating score
export function nestedBoxes(boxes, scores, labels, inside, ratio, minContainer) {
  return boxes.map((a, i) => boxes.some((b, j) => {
    return f32(intersection(a, b)) >= f32(inside * Math.max(area(a), 1e-6)) && area(b) > area(a) && labels[i] === labels[j]
      && scores[j] >= ratio * scores[i] && scores[j] >= minContainer;
  }));
}

// containers_of_other_class: for each box, the best-scoring larger box of another class holding
// >= `inside` of its area and scoring at least as much as it, both >= minScore (-1 for none)
export function containersOfOtherClass(boxes, scores, labels, inside, minScore) {
  return boxes.map((a, i) => {
    let holder = -1;
    boxes.forEach((b, j) => {
      if (f32(intersection(a, b)) >= f32(inside * Math.max(area(a), 1e-6)) && area(b) > area(a) && labels[i] !== labels[j]
        && scores[j] >= scores[i] && scores[i] >= minScore && (holder < 0 || scores[j] > scores[holder])) holder = j;
    });
    return holder;
  });
}

// parts_merged: `keep` without the boxes lying inside a better box of another class, each
// container (followed to the outermost) taking their class scores where higher (in place)
export function partsMerged(boxes, scores, labels, keep, classScores, inside, minScore) {
  const shown = keep.flatMap((k, i) => (k ? [i] : []));
  const holder = containersOfOtherClass(shown.map((i) => boxes[i]), shown.map((i) => scores[i]),
    shown.map((i) => labels[i]), inside, minScore);
  const out = keep.slice();
  holder.forEach((h, part) => {
    if (h < 0) return;
    let whole = h;
    while (holder[whole] >= 0) whole = holder[whole];
    const row = classScores[shown[whole]];
    classScores[shown[part]].forEach((v, c) => { row[c] = Math.max(row[c], v); });
    out[shown[part]] = false;
  });
  return out;
}

const round = (v, digits) => Number(v.toFixed(digits));

// multiscale.merge_outputs: the detections of every reading in one list, best first; a box
// overlapping a better one of its class by more than `thresh` goes, at most `limit` stay
export function mergedReadings(readings, thresh, limit) {
  if (readings.length === 1) return readings[0];
  const boxes = readings.flatMap((r) => r.boxes), labels = readings.flatMap((r) => r.labels);
  const scores = readings.flatMap((r) => r.scores);
  const kept = [];
  for (const c of new Set(labels)) {
    const idx = labels.flatMap((l, i) => (l === c ? [i] : []));
    for (const k of nms(idx.map((i) => boxes[i]), idx.map((i) => scores[i]), thresh)) kept.push(idx[k]);
  }
  kept.sort((i, j) => scores[j] - scores[i] || i - j);
  const top = kept.slice(0, limit);
  return { boxes: top.map((i) => boxes[i]), labels: top.map((i) => labels[i]), scores: top.map((i) => scores[i]) };
}

// multiscale.averaged: two readings of one image as one. Each box of `a` (best first) paired with
// the best-overlapping unpaired box of its class in `b` (IoU >= sameIou) takes the mean box and
// mean score; a box left unpaired in either keeps its box at half its score. Best score first.
export function averaged(a, b, sameIou) {
  const free = b.scores.map(() => true), pair = a.scores.map(() => -1);
  const order = a.scores.map((_, i) => i).sort((i, j) => a.scores[j] - a.scores[i] || i - j);
  for (const i of order) {
    if (!free.some(Boolean)) break;
    let best = 0, most = -1;
    b.boxes.forEach((box, j) => {
      const v = free[j] && b.labels[j] === a.labels[i] ? iou(a.boxes[i], box) : 0;
      if (v > most) { most = v; best = j; }
    });
    if (most >= sameIou) { pair[i] = best; free[best] = false; }
  }
  const boxes = [], labels = [], scores = [];
  a.scores.forEach((v, i) => {
    const j = pair[i];
    boxes.push(j < 0 ? a.boxes[i] : a.boxes[i].map((c, k) => f32(f32(c + b.boxes[j][k]) / 2)));
    scores.push(j < 0 ? f32(v / 2) : f32(f32(v / 2) + f32(b.scores[j] / 2)));
    labels.push(a.labels[i]);
  });
  b.scores.forEach((v, j) => {
    if (free[j]) { boxes.push(b.boxes[j]); scores.push(f32(v / 2)); labels.push(b.labels[j]); }
  });
  const by = scores.map((_, i) => i).sort((i, j) => scores[j] - scores[i] || i - j);
  return { boxes: by.map((i) => boxes[i]), labels: by.map((i) => labels[i]), scores: by.map((i) => scores[i]) };
}

// an image's RGBA bytes mirrored left to right (one 32-bit pixel at a time)
export function mirrored(data, width, height) {
  const aligned = data.byteOffset % 4 === 0 ? data : data.slice();
  const src = new Uint32Array(aligned.buffer, aligned.byteOffset, width * height);
  const out = new Uint32Array(width * height);
  for (let y = 0, row = 0; y < height; y++, row += width) {
    for (let x = 0; x < width; x++) out[row + x] = src[row + width - 1 - x];
  }
  return new Uint8Array(out.buffer);
}

export class DeviceDetector {
  // settings: the server's /v1/device/MODEL/settings.json; files: {detector, verifier} as bytes
  constructor(settings, detector, verifier) {
    this.settings = settings;
    this.detector = detector;
    this.verifier = verifier;
  }

  // backend: "webgpu", "wasm" or "auto" (WebGPU where the browser has a GPU adapter: not its
  // fallback adapter, a CPU emulation far slower than WebAssembly)
  static async load(fetchBytes, settings, threads, backend = "auto") {
    const adapter = backend !== "wasm" && globalThis.navigator && navigator.gpu
      && (await navigator.gpu.requestAdapter().catch(() => null));
    const gpu = adapter && (backend === "webgpu" || !(adapter.info && adapter.info.isFallbackAdapter));
    if (backend === "webgpu" && !gpu) throw new Error("this browser offers no WebGPU adapter");
    const want = gpu ? "webgpu" : "wasm";
    if (!ort || ort.backend !== want) {
      const module = await import(want === "webgpu" ? "./ort/ort.webgpu.min.mjs" : "./ort/ort.wasm.min.mjs");
      ort = { module, backend: want };
    }
    const rt = ort.module;
    rt.env.wasm.wasmPaths = new URL("./ort/", import.meta.url).href;
    // threads need a cross-origin isolated page (the service sends COOP / COEP); else one
    rt.env.wasm.numThreads = globalThis.crossOriginIsolated ? threads : 1;
    const providers = want === "webgpu" ? ["webgpu", "wasm"] : ["wasm"];
    const options = { executionProviders: providers, graphOptimizationLevel: "all" };
    const detector = await rt.InferenceSession.create(await fetchBytes("detector.onnx"), options);
    const verifier = settings.verifier ? await rt.InferenceSession.create(await fetchBytes("verifier.onnx"), options) : null;
    const made = new DeviceDetector(settings, detector, verifier);
    made.backend = want;
    return made;
  }

  get threads() { return ort.module.env.wasm.numThreads; }

  // image: an ImageData (RGBA bytes); score: the floor (default: the model's); live: a video
  // frame, read once (a still is also read mirrored where the model says test_flip). Returns
  // what POST /v1/detect answers: width, height, boxes, labels, scores, class_scores, ms.
  async detect(image, score, live = false) {
    const s = this.settings, floor = score ?? s.score;
    const t0 = performance.now();
    const H = image.height, W = image.width;
    const Tensor = ort.module.Tensor;
    const rgba = new Tensor("uint8", new Uint8Array(image.data.buffer, image.data.byteOffset, image.data.length), [H, W, 4]);
    let found = await this.readSizes(rgba, H, W, live);
    if (s.flip && !live) {
      const back = await this.readSizes(new Tensor("uint8", mirrored(image.data, W, H), [H, W, 4]), H, W, live);
      back.boxes = back.boxes.map((b) => [f32(W - b[2]), b[1], f32(W - b[0]), b[3]]);
      found = averaged(found, back, s.flip_iou);
    }
    let { boxes, labels, scores } = found;
    let shares = null;
    if (this.verifier) [boxes, labels, scores, shares] = await this.verified(rgba, boxes, labels, scores, floor);
    const ms = performance.now() - t0;
    let keep = scores.map((v) => v >= floor);
    let classScores = null;
    if (s.cross_class_iou > 0 && s.classes.length > 1) {
      const [best, perClass] = mergedClasses(boxes, scores, labels, s.classes.length, s.cross_class_iou);
      keep = keep.map((k, i) => k && best[i]);
      classScores = perClass;
      if (shares && s.verify_classes > 0) [classScores, labels] = reclassified(perClass, shares, s.verify_classes);
      if (s.cross_class_inside > 0) keep = partsMerged(boxes, scores, labels, keep, classScores, s.cross_class_inside, s.score);
    }
    if (s.contained_thresh > 0) {
      const shown = keep.flatMap((k, i) => (k ? [i] : []));
      const nested = nestedBoxes(shown.map((i) => boxes[i]), shown.map((i) => scores[i]), shown.map((i) => labels[i]),
        s.contained_thresh, s.contained_score_ratio, s.score);
      shown.forEach((i, k) => { if (nested[k]) keep[i] = false; });
    }
    const idx = keep.flatMap((k, i) => (k ? [i] : []));
    const result = {
      width: W, height: H,
      boxes: idx.map((i) => boxes[i].map((v) => round(v, 2))),
      labels: idx.map((i) => s.classes[labels[i] - 1]),
      scores: idx.map((i) => round(scores[i], 6)),
    };
    if (classScores) {
      result.class_scores = idx.map((i) => Object.fromEntries(
        s.classes.map((c, k) => [c, round(classScores[i][k], 6)]).filter(([, v]) => v > 0)));
    }
    result.ms = round(ms, 1);
    return result;
  }

  // read at the model's size and, for a still (a live frame where the model says scales_live),
  // at each of its extra sizes, the readings merged
  async readSizes(rgba, H, W, live) {
    const s = this.settings;
    const sizes = [[s.min_size, s.max_size], ...(live && !s.scales_live ? [] : s.scales || [])];
    const readings = [];
    for (const [minSize, maxSize] of sizes) readings.push(await this.read(rgba, H, W, minSize, maxSize));
    return mergedReadings(readings, s.nms_thresh, s.limit);
  }

  // the detector's boxes (in the image's pixels), labels and scores for RGBA bytes H x W read at
  // (shorter side, cap on the longer)
  async read(rgba, H, W, minSize, maxSize) {
    const Tensor = ort.module.Tensor;
    const [h, w] = readSize(H, W, minSize, maxSize);
    const out = await this.detector.run({ rgba, size: new Tensor("int64", BigInt64Array.from([BigInt(h), BigInt(w)]), [2]) });
    const rx = f32(W / w), ry = f32(H / h);
    const boxes = [], labels = [], scores = [];
    for (let i = 0; i < out.scores.dims[0]; i++) {
      const b = out.boxes.data.subarray(4 * i, 4 * i + 4);
      boxes.push([f32(b[0] * rx), f32(b[1] * ry), f32(b[2] * rx), f32(b[3] * ry)]);
      labels.push(Number(out.labels.data[i]));
      scores.push(out.scores.data[i]);
    }
    return { boxes, labels, scores };
  }

  // each box at the floor or above scored times the verifier's lens probability, the rest 0,
  // best first; and where the verifier reads classes too, each box's class shares (else null)
  async verified(rgba, boxes, labels, scores, floor) {
    const look = scores.flatMap((v, i) => (v >= floor ? [i] : []));
    const out = scores.map(() => 0);
    const C = this.settings.classes.length;
    let shares = this.verifier.outputNames.includes("classes") ? scores.map(() => new Array(C).fill(0)) : null;
    if (look.length) {
      const flat = Float32Array.from(look.flatMap((i) => boxes[i]));
      const got = await this.verifier.run({ rgba, boxes: new ort.module.Tensor("float32", flat, [look.length, 4]) });
      const p = got.probability.data;
      look.forEach((i, k) => { out[i] = f32(scores[i] * p[k]); });
      if (shares) look.forEach((i, k) => { shares[i] = Array.from(got.classes.data.subarray(C * k, C * k + C)); });
    }
    const order = out.map((v, i) => i).sort((i, j) => out[j] - out[i] || i - j);
    if (shares) shares = order.map((i) => shares[i]);
    return [order.map((i) => boxes[i]), order.map((i) => labels[i]), order.map((i) => out[i]), shares];
  }
}
