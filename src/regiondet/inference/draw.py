"""Drawing detections on an image for people to look at."""

from __future__ import annotations

from PIL import Image, ImageDraw

from regiondet.inference.prediction import Prediction

COLORS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240)]


def draw_prediction(image: Image.Image, pred: Prediction, classes: list[str]) -> Image.Image:
    """A copy of the image with each box and 'label score' drawn in a per-class colour."""
    out = image.convert("RGB").copy()
    d = ImageDraw.Draw(out)
    width = max(2, round(max(out.size) / 300))
    polygons = pred.polygons if pred.polygons is not None else [None] * len(pred.boxes)
    for box, label, score, poly in zip(pred.boxes, pred.labels, pred.scores, polygons, strict=True):
        color = COLORS[classes.index(label) % len(COLORS)] if label in classes else COLORS[0]
        x1, y1, x2, y2 = (float(v) for v in box)
        if poly is None:
            d.rectangle([x1, y1, x2, y2], outline=color, width=width)
        else:
            d.line([tuple(map(float, p)) for p in [*poly, poly[0]]], fill=color, width=width)
            x1, y1 = (float(v) for v in poly.min(0))
        text = f"{label} {score:.2f}"
        tw, th = d.textbbox((0, 0), text)[2:]
        ty = y1 - th - 2 if y1 - th - 2 >= 0 else y1
        d.rectangle([x1, ty, x1 + tw + 4, ty + th + 2], fill=color)
        d.text((x1 + 2, ty), text, fill=(255, 255, 255))
    return out
