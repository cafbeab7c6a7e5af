"""Text samples as training targets for ATRR: point pairs, do-not-care rows, random crops.

Each care polygon becomes adaptive point pairs (reduce_pairs), at most max_pairs (evenly
thinned, ends kept). Do-not-care regions become ground-truth rows with label -1, which the
RoI sampler leaves out. Training crops a window (text detectors train on crops), after a
random rescale and an optional random rotation; a word the crop cuts becomes do-not-care.
Rotation turns the point pairs with the image and keeps their order, so a pair stays
(top, bottom) in the word's own reading direction, as the labels define it.
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from shapely.geometry import Polygon, box
from torch.utils.data import Dataset
from torchvision import tv_tensors

from regiondet.data.images import load_rgb
from regiondet.data.point_pairs import polygon_to_pairs, reduce_pairs
from regiondet.data.sample import Sample


def polygon_pairs(poly: np.ndarray, max_pairs: int, min_overlap: float = 0.93) -> np.ndarray:
    """Adaptive pairs of one polygon, (k, 2, 2) with 2 <= k <= max_pairs.

    A polygon with an odd vertex count (some Total-Text words) falls back to its bounding
    rectangle's two pairs.
    """
    poly = np.asarray(poly, np.float32)
    if len(poly) % 2 or len(poly) < 4:
        x1, y1 = poly.min(0)
        x2, y2 = poly.max(0)
        poly = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32)
    pairs = polygon_to_pairs(poly)
    if len(pairs) > 2:
        pairs = reduce_pairs(pairs, min_overlap)
    if len(pairs) > max_pairs:
        pairs = pairs[np.round(np.linspace(0, len(pairs) - 1, max_pairs)).astype(int)]
    return pairs


def rotate_sample(pixels: np.ndarray, pairs: list[np.ndarray], degrees: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """Turn an HxWx3 image and its point pairs by `degrees` (counter-clockwise), canvas
    enlarged so no text is cut; the new corners are black."""
    h, w = pixels.shape[:2]
    pixels = pixels if pixels.flags.writeable else pixels.copy()  # decoded images may be read-only
    image = TF.rotate(
        tv_tensors.Image(torch.from_numpy(pixels).permute(2, 0, 1)),
        degrees,
        interpolation=TF.InterpolationMode.BILINEAR,
        expand=True,
    )
    if pairs:
        flat = np.concatenate([p.reshape(-1, 2) for p in pairs])
        turned = TF.rotate(tv_tensors.KeyPoints(torch.from_numpy(flat), canvas_size=(h, w)), degrees, expand=True)
        turned = turned.numpy().astype(np.float32)
        sizes = np.cumsum([p.size // 2 for p in pairs])[:-1]
        pairs = [t.reshape(p.shape) for t, p in zip(np.split(turned, sizes), pairs, strict=True)]
    return image.permute(1, 2, 0).numpy(), pairs


class TextDataset(Dataset):
    """Yields (image float CxHxW, target) with boxes, labels (1 text, -1 do not care),
    keypoints (G, 2 * max_pairs, 2) and num_pairs (G,)."""

    def __init__(
        self,
        samples: list[Sample],
        max_pairs: int,
        crop: int | None = None,
        scale_range: tuple[float, float] = (1.0, 1.0),
        rotate: float = 0.0,
        seed: int = 0,
    ):
        self.samples = samples
        self.max_pairs = max_pairs
        self.crop = crop
        self.scale_range = scale_range
        self.rotate = rotate
        self.seed = seed
        self._pairs: dict[int, list[np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def pairs_of(self, i: int) -> list[np.ndarray]:
        if i not in self._pairs:
            s = self.samples[i]
            self._pairs[i] = [polygon_pairs(p, self.max_pairs) for p in s.outlines()]
        return self._pairs[i]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s = self.samples[i]
        pixels = load_rgb(s.path)
        pairs = [p.copy() for p in self.pairs_of(i)]
        ignore = list(s.ignore)
        sx, sy = pixels.shape[1] / s.width, pixels.shape[0] / s.height
        scale = float(torch.empty(()).uniform_(*self.scale_range)) if self.scale_range != (1.0, 1.0) else 1.0
        if scale != 1.0 or (sx, sy) != (1.0, 1.0):
            h, w = pixels.shape[:2]
            pixels = np.asarray(Image.fromarray(pixels).resize((round(w * scale), round(h * scale)), Image.BILINEAR))
            pairs = [p * np.array([sx * scale, sy * scale], np.float32) for p in pairs]
        if self.rotate:
            pixels, pairs = rotate_sample(pixels, pairs, float(torch.empty(()).uniform_(-self.rotate, self.rotate)))
        if self.crop:
            pixels, pairs, ignore = self._random_crop(pixels, pairs, ignore)
        return torch.from_numpy(pixels.copy()).permute(2, 0, 1).float().div_(255), self.target(pairs, ignore)

    def _random_crop(self, pixels, pairs, ignore):
        h, w = pixels.shape[:2]
        c = self.crop
        ch, cw = min(c, h), min(c, w)
        care = [k for k, ig in enumerate(ignore) if not ig]
        if care and torch.rand(()) < 0.8:  # centre on a random word most of the time
            centre = pairs[care[int(torch.randint(len(care), ()))]].reshape(-1, 2).mean(0)
            x0 = int(np.clip(centre[0] - cw / 2 + float(torch.randint(-cw // 4, cw // 4 + 1, ())), 0, w - cw))
            y0 = int(np.clip(centre[1] - ch / 2 + float(torch.randint(-ch // 4, ch // 4 + 1, ())), 0, h - ch))
        else:
            x0, y0 = int(torch.randint(0, w - cw + 1, ())), int(torch.randint(0, h - ch + 1, ()))
        window = box(x0, y0, x0 + cw, y0 + ch)
        out_pairs, out_ignore = [], []
        for p, ig in zip(pairs, ignore, strict=True):
            poly = Polygon(np.concatenate([p[:, 0], p[::-1, 1]])).buffer(0)
            if poly.area <= 0:
                continue
            inside = poly.intersection(window).area / poly.area
            if inside <= 0.05:
                continue
            moved = p - np.array([x0, y0], np.float32)
            if inside < 0.9 and not ig:  # cut by the crop: do not care
                ig = True
            if ig:
                moved = np.clip(moved, 0, [cw, ch])
            out_pairs.append(moved)
            out_ignore.append(ig)
        return pixels[y0 : y0 + ch, x0 : x0 + cw], out_pairs, out_ignore

    def target(self, pairs: list[np.ndarray], ignore: list[bool]) -> dict[str, torch.Tensor]:
        T = self.max_pairs
        kp = np.zeros((len(pairs), T, 2, 2), np.float32)
        boxes = np.zeros((len(pairs), 4), np.float32)
        for k, p in enumerate(pairs):
            kp[k, : len(p)] = p
            kp[k, len(p) :] = p[-1]
            pts = p.reshape(-1, 2)
            boxes[k] = [*pts.min(0), *pts.max(0)]
        keep = (boxes[:, 2] - boxes[:, 0] >= 2) & (boxes[:, 3] - boxes[:, 1] >= 2)
        return {
            "boxes": torch.from_numpy(boxes[keep]).reshape(-1, 4),
            "labels": torch.tensor(
                [-1 if ig else 1 for ig, k in zip(ignore, keep, strict=True) if k], dtype=torch.int64
            ),
            "keypoints": torch.from_numpy(kp[keep].reshape(-1, 2 * T, 2)),
            "num_pairs": torch.tensor([len(p) for p, k in zip(pairs, keep, strict=True) if k], dtype=torch.int64),
        }
