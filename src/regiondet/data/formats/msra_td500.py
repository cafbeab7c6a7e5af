"""MSRA-TD500 text lines: `index difficult x y w h theta` rotated rectangles per line."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from regiondet.data.images import list_images
from regiondet.data.report import LoadReport
from regiondet.data.sample import Sample
from regiondet.errors import UserError

from .icdar2015 import polygon_sample


def rotated_rect(x: float, y: float, w: float, h: float, theta: float) -> np.ndarray:
    """Corners (clockwise from top-left) of the w x h rectangle at (x, y) turned by theta about its centre."""
    cx, cy = x + w / 2, y + h / 2
    c, s = math.cos(theta), math.sin(theta)
    corners = [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]
    return np.array([[cx + c * dx - s * dy, cy + s * dx + c * dy] for dx, dy in corners], np.float32)


def read_msra_td500(path: str, extra: str | None, report: LoadReport) -> list[Sample]:
    """A folder of IMG_*.JPG with IMG_*.gt beside them; difficult lines are ignore regions."""
    root = Path(path)
    if not root.is_dir():
        raise UserError("MSRA-TD500 folder not found", root)
    samples = []
    for img in list_images(root):
        gt = img.with_suffix(".gt")
        polys, texts = [], []
        if gt.is_file():
            for n, line in enumerate(gt.read_text().splitlines(), 1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 7:
                    raise UserError("expected 'index difficult x y w h theta'", gt, n)
                try:
                    _, difficult, x, y, w, h, theta = (float(v) for v in fields)
                except ValueError:
                    raise UserError("values are not numbers", gt, n) from None
                polys.append(rotated_rect(x, y, w, h, theta))
                texts.append("###" if difficult else "")
        samples.append(polygon_sample(img, polys, texts))
    if not samples:
        raise UserError("no images found", root)
    return samples
