"""Copy-paste for context: objects cut from labelled photos pasted into object-free scenes.

The camera photos are close-ups; a lens across a room is small and surrounded by a scene.
Pasting training objects, soft-edged, at realistic sizes into real rooms and streets (Dwibedi
et al. 2017, "Cut, Paste and Learn"; Ghiasi et al. 2021, "Simple Copy-Paste") shows the model
small lenses in context and teaches the scene around them as background.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from regiondet.data.images import load_rgb
from regiondet.data.overlap import overlap_of_smaller
from regiondet.data.sample import Sample

# The model reads images at this longer side; pasted sizes are drawn in its pixels.
READ_SIDE = 416


@dataclass(frozen=True)
class Piece:
    path: Path
    box: tuple[float, float, float, float]  # xyxy in the file's pixels as annotated
    label: str
    width: int  # the annotation's image size (the decoded file may differ: boxes are scaled)
    height: int


class PasteBank:
    """Every counted box of the labelled training images, to cut out when pasting.

    sizes: the pasted object's longer side, in pixels of the image as the model reads it
    (longer side READ_SIDE), drawn log-uniformly; at most `most` objects per scene."""

    def __init__(
        self, samples: list[Sample], sizes: tuple[float, float] = (12.0, 160.0), most: int = 3, min_side: float = 12.0
    ):
        self.pieces = [
            Piece(s.path, tuple(float(v) for v in b), label, s.width, s.height)
            for s in samples
            for b, label, ig in zip(s.boxes, s.labels, s.ignore, strict=True)
            if not ig and min(b[2] - b[0], b[3] - b[1]) >= min_side
        ]
        self.sizes, self.most = sizes, most

    def __len__(self) -> int:
        return len(self.pieces)

    def cut(self, piece: Piece) -> np.ndarray:
        pixels = load_rgb(piece.path)
        h, w = pixels.shape[:2]
        sx, sy = w / piece.width, h / piece.height
        x1, y1, x2, y2 = piece.box
        x1, x2 = int(math.floor(x1 * sx)), int(math.ceil(x2 * sx))
        y1, y2 = int(math.floor(y1 * sy)), int(math.ceil(y2 * sy))
        return pixels[max(0, y1) : min(h, y2), max(0, x1) : min(w, x2)]

    def __call__(self, pixels: np.ndarray, sample: Sample) -> tuple[np.ndarray, Sample]:
        """1..most objects pasted at free places of the scene; the new sample boxes them."""
        h, w = pixels.shape[:2]
        out = pixels.copy()
        boxes: list[list[float]] = []
        labels: list[str] = []
        count = int(torch.randint(1, self.most + 1, ()))
        lo, hi = (math.log(v) for v in self.sizes)
        for _ in range(count):
            piece = self.pieces[int(torch.randint(len(self.pieces), ()))]
            crop = self.cut(piece)
            ch, cw = crop.shape[:2]
            if ch < 2 or cw < 2:
                continue
            side = math.exp(float(torch.empty(()).uniform_(lo, hi))) * max(h, w) / READ_SIDE
            scale = min(side / max(ch, cw), (w - 1) / cw, (h - 1) / ch)
            nw, nh = max(2, round(cw * scale)), max(2, round(ch * scale))
            for _try in range(10):
                x = int(torch.randint(0, w - nw + 1, ()))
                y = int(torch.randint(0, h - nh + 1, ()))
                if all(overlap_of_smaller((x, y, x + nw, y + nh), b) < 0.1 for b in boxes):
                    break
            else:
                continue
            piece_px = np.asarray(Image.fromarray(crop).resize((nw, nh), Image.Resampling.BILINEAR), np.float32)
            alpha = soft_mask(nh, nw)[..., None]
            region = out[y : y + nh, x : x + nw].astype(np.float32)
            out[y : y + nh, x : x + nw] = np.clip(alpha * piece_px + (1 - alpha) * region + 0.5, 0, 255).astype(
                np.uint8
            )
            boxes.append([x, y, x + nw, y + nh])
            labels.append(piece.label)
        pasted = Sample(sample.path, w, h, np.array(boxes, np.float32).reshape(-1, 4), labels)
        return out, pasted


def soft_mask(h: int, w: int) -> np.ndarray:
    """1 inside, falling to 0 over the outer ~12 % of the shorter side: a rounded, feathered
    rectangle, so the paste has no hard seam for the model to learn instead of the object."""
    feather = max(1.0, 0.12 * min(h, w))
    ys = np.minimum(np.arange(h) + 0.5, h - np.arange(h) - 0.5)[:, None]
    xs = np.minimum(np.arange(w) + 0.5, w - np.arange(w) - 0.5)[None, :]
    dy, dx = np.clip(1 - ys / feather, 0, 1), np.clip(1 - xs / feather, 0, 1)
    return np.clip(1 - np.sqrt(dy**2 + dx**2), 0, 1).astype(np.float32)
