"""`regiondet data stats`: what a dataset holds, before training on it."""

from __future__ import annotations

from collections import Counter

import numpy as np

from regiondet.data.sample import Sample

SIZE_BINS = [0, 16, 32, 64, 128, 256, 512, 10**9]  # sqrt(box area) in pixels
SIZE_LABELS = [f"{a}-{b}" if b < 10**9 else f">={a}" for a, b in zip(SIZE_BINS[:-1], SIZE_BINS[1:], strict=True)]


def dataset_stats(samples: list[Sample]) -> dict:
    """Counts per class, images without boxes, and the box-size distribution."""
    per_class: Counter = Counter()
    ignored: Counter = Counter()
    sides = []
    for s in samples:
        for label, ig, b in zip(s.labels, s.ignore, s.boxes, strict=True):
            (ignored if ig else per_class)[label] += 1
            sides.append(float(np.sqrt(max(b[2] - b[0], 0) * max(b[3] - b[1], 0))))
    hist = np.histogram(sides, SIZE_BINS)[0] if sides else np.zeros(len(SIZE_BINS) - 1, int)
    sizes = Counter((s.width, s.height) for s in samples)
    return {
        "images": len(samples),
        "images_without_boxes": sum(1 for s in samples if s.is_negative),
        "boxes": int(sum(per_class.values())),
        "boxes_per_class": dict(sorted(per_class.items())),
        "ignored_per_class": dict(sorted(ignored.items())),
        "box_side_px_histogram": dict(zip(SIZE_LABELS, (int(v) for v in hist), strict=True)),
        "box_side_px_median": float(np.median(sides)) if sides else None,
        "common_image_sizes": {f"{w}x{h}": n for (w, h), n in sizes.most_common(3)},
    }


def format_stats(name: str, st: dict) -> str:
    lines = [
        f"{name}",
        f"  images: {st['images']} ({st['images_without_boxes']} without boxes)",
        f"  boxes: {st['boxes']}",
    ]
    lines += [f"    {c}: {n}" for c, n in st["boxes_per_class"].items()]
    if st["ignored_per_class"]:
        ignored = ", ".join(f"{c} {n}" for c, n in st["ignored_per_class"].items())
        lines.append(f"  ignored (difficult / do not care): {ignored}")
    lines.append("  box side sqrt(area) px: " + ", ".join(f"{k}: {v}" for k, v in st["box_side_px_histogram"].items()))
    if st["box_side_px_median"] is not None:
        lines.append(f"  median box side: {st['box_side_px_median']:.0f} px")
    lines.append("  image sizes: " + ", ".join(f"{k} ({v})" for k, v in st["common_image_sizes"].items()))
    return "\n".join(lines)
