// Box arithmetic shared by device.js and tracker.js (x1, y1, x2, y2 in pixels), as torchvision's
// box_iou and regiondet.data.overlap compute it (a box without area overlaps nothing).

export function area(b) { return Math.max(0, b[2] - b[0]) * Math.max(0, b[3] - b[1]); }

export function intersection(a, b) {
  return Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0])) * Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
}

export function iou(a, b) {
  const inter = intersection(a, b), union = area(a) + area(b) - inter;
  return union > 0 ? inter / union : 0;
}

export function overlapOfSmaller(a, b) {
  return intersection(a, b) / Math.max(Math.min(area(a), area(b)), 1e-6);
}
