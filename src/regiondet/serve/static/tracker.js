// The live alert in the page (device mode), rule for rule regiondet.inference.tracking's
// AlertTracker: ByteTrack's two-stage association (confident detections first, then weak ones),
// an alert episode per lens once it is seen confidently in K of its last N frames, ended only
// after the lens has been out of view for `holdS` seconds; the same event fields as the server's.
// tests/test_browser.py runs both on the same detections and compares ids and events.

import { iou, overlapOfSmaller } from "./boxes.js";

// how near the box's centre is to the track's: 1 on it, 0 at one box size (the larger side of
// either) away, below 0 farther
function nearness(track, box) {
  const a = track.box, b = box;
  const gap = Math.max(Math.abs((a[0] + a[2]) / 2 - (b[0] + b[2]) / 2), Math.abs((a[1] + a[3]) / 2 - (b[1] + b[3]) / 2));
  const size = Math.max(a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1]);
  return size > 0 ? 1 - gap / size : -1;
}

// The assignment of rows to columns with the largest total weight (scipy's
// linear_sum_assignment with maximize): the Hungarian method on the padded square matrix.
export function assign(weight) {
  const rows = weight.length, cols = rows ? weight[0].length : 0, n = Math.max(rows, cols);
  if (!rows || !cols) return [];
  const top = Math.max(0, ...weight.flat());
  const cost = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (i < rows && j < cols ? top - weight[i][j] : top)));
  const u = new Array(n + 1).fill(0), v = new Array(n + 1).fill(0), p = new Array(n + 1).fill(0), way = new Array(n + 1).fill(0);
  for (let i = 1; i <= n; i++) {
    p[0] = i;
    let j0 = 0;
    const minv = new Array(n + 1).fill(Infinity), used = new Array(n + 1).fill(false);
    do {
      used[j0] = true;
      const i0 = p[j0];
      let delta = Infinity, j1 = 0;
      for (let j = 1; j <= n; j++) {
        if (used[j]) continue;
        const cur = cost[i0 - 1][j - 1] - u[i0] - v[j];
        if (cur < minv[j]) { minv[j] = cur; way[j] = j0; }
        if (minv[j] < delta) { delta = minv[j]; j1 = j; }
      }
      for (let j = 0; j <= n; j++) {
        if (used[j]) { u[p[j]] += delta; v[j] -= delta; } else minv[j] -= delta;
      }
      j0 = j1;
    } while (p[j0] !== 0);
    do { const j1 = way[j0]; p[j0] = p[j1]; j0 = j1; } while (j0);
  }
  const pairs = [];
  for (let j = 1; j <= n; j++) if (p[j] - 1 < rows && j - 1 < cols) pairs.push([p[j] - 1, j - 1]);
  return pairs.sort((a, b) => a[0] - b[0]);
}

function match(tracks, boxes, minIou) {
  if (!tracks.length || !boxes.length) return [];
  const w = tracks.map((t) => boxes.map((b) => iou(t.box, b)));
  const ok = w.map((row) => row.map((v) => v >= minIou));
  tracks.forEach((t, r) => {
    if (!(t.alerting && t.misses > 0)) return;
    boxes.forEach((b, c) => {
      const k = nearness(t, b);  // the nearest box first, any overlap before it
      if (k >= 0) { ok[r][c] = true; w[r][c] = Math.max(w[r][c], (1e-3 * (1 + Math.min(k, 1))) / 2); }
    });
  });
  return assign(w.map((row, r) => row.map((v, c) => (ok[r][c] ? v : 0)))).filter(([r, c]) => ok[r][c]);
}

const round = (v, digits) => Number(v.toFixed(digits));

export class AlertTracker {
  constructor({ k = 3, n = 5, high = 0.5, low = 0.1, minIou = 0.2, maxMisses = 10, holdS = 2.0 } = {}) {
    Object.assign(this, { k, n, high, low, minIou, maxMisses, holdS });
    this.tracks = [];
    this.nextId = 1;
  }

  get alert() { return this.tracks.some((t) => t.alerting); }

  // one frame's detections -> [each detection's track id (0: too weak to track), events]
  update(boxes, scores, labels, frame, seconds) {
    const ids = boxes.map(() => 0);
    const strong = [], weak = [];
    scores.forEach((s, i) => { if (s >= this.high) strong.push(i); else if (s >= this.low) weak.push(i); });
    const matched = new Set();
    for (const group of [strong, weak]) {
      const free = this.tracks.map((t, i) => i).filter((i) => !matched.has(i));
      for (const [r, c] of match(free.map((i) => this.tracks[i]), group.map((d) => boxes[d]), this.minIou)) {
        const track = this.tracks[free[r]], d = group[c];
        matched.add(free[r]);
        this.hit(track, boxes[d], scores[d], labels[d], frame, seconds, group === strong);
        ids[d] = track.id;
      }
    }
    this.tracks.forEach((track, i) => {
      if (matched.has(i)) return;
      track.misses += 1;
      track.seen.push(false);
      if (track.seen.length > this.n) track.seen.shift();
    });
    for (const d of strong) {
      if (ids[d] !== 0) continue;
      const same = this.sameLens(boxes[d]);
      if (same) { ids[d] = same.id; continue; }
      const track = {
        id: this.nextId++, label: labels[d], box: boxes[d], bestScore: scores[d], firstFrame: frame, firstTime: seconds,
        lastFrame: frame, lastTime: seconds, seen: [true], misses: 0, alerting: false, episodeStart: 0,
      };
      this.tracks.push(track);
      ids[d] = track.id;
    }
    const events = [];
    for (const track of this.tracks) {
      if (!track.alerting && track.seen.filter(Boolean).length >= this.k) {
        track.alerting = true;
        track.episodeStart = seconds;
        events.push(this.event("alert_start", track, frame, seconds));
      } else if (track.alerting && track.misses && seconds - track.lastTime >= this.holdS - 1e-6) {
        track.alerting = false;
        events.push(this.event("alert_end", track, frame, seconds));
        track.misses = this.maxMisses;
      }
    }
    this.tracks = this.tracks.filter((t) => t.alerting || t.misses < this.maxMisses);
    return [ids, events];
  }

  sameLens(box) {
    return this.tracks.find((t) => t.misses === 0 && (iou(t.box, box) >= 0.3 || overlapOfSmaller(t.box, box) >= 0.5)) || null;
  }

  hit(track, box, score, label, frame, seconds, strong) {
    track.box = box;
    track.misses = 0;
    track.seen.push(strong);
    if (track.seen.length > this.n) track.seen.shift();
    if (score > track.bestScore) { track.bestScore = score; track.label = label; }
    track.lastFrame = frame;
    track.lastTime = seconds;
  }

  // the end of the stream: every alert still on ends here
  close(frame, seconds) {
    const events = this.tracks.filter((t) => t.alerting).map((t) => this.event("alert_end", t, frame, seconds));
    this.tracks = [];
    return events;
  }

  event(kind, track, frame, seconds) {
    const e = {
      event: kind, track: track.id, label: track.label, best_score: round(track.bestScore, 4),
      first_time_s: round(track.firstTime, 3), last_time_s: round(track.lastTime, 3),
      episode_start_s: round(track.episodeStart, 3), frame, time_s: round(seconds, 3),
    };
    if (kind === "alert_end") {
      const end = Math.max(track.lastTime, track.episodeStart);
      e.episode_end_s = round(end, 3);
      e.duration_s = round(end - track.episodeStart, 3);
    }
    return e;
  }
}
