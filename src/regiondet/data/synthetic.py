"""Synthetic curved scene text with exact polygon labels, on real backgrounds.

No curved-text set ships with the project, so this renders words along arcs, waves and
straight lines onto real photos (ICDAR 2015 scenes, their own text regions avoided and kept
as do-not-care) and writes the 14-point polygon of each word (7 point pairs, as CTW1500).
The output folder reads back with the `totaltext:DIR` SPEC.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from shapely.geometry import Polygon, box
from tqdm import tqdm

from regiondet.data.images import load_rgb
from regiondet.data.sample import Sample
from regiondet.errors import UserError
from regiondet.io import atomic_write_text

WORDS = (
    "open",
    "sale",
    "coffee",
    "market",
    "street",
    "hotel",
    "bakery",
    "pizza",
    "station",
    "garden",
    "bridge",
    "museum",
    "cinema",
    "fresh",
    "books",
    "music",
    "grand",
    "royal",
    "central",
    "city",
    "north",
    "south",
    "river",
    "park",
    "village",
    "kitchen",
    "studio",
    "fashion",
    "sport",
    "games",
    "happy",
    "golden",
    "bistro",
    "cafe",
    "welcome",
    "exit",
    "parking",
    "pharmacy",
    "bank",
    "office",
    "tower",
    "plaza",
    "express",
    "burger",
    "noodle",
    "sushi",
    "dream",
    "smile",
    "travel",
    "world",
    "local",
    "daily",
    "night",
    "star",
    "lucky",
)
CURVES = ("arc_up", "arc_down", "wave", "straight")


def _font_path() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"


def centerline(kind: str, length: float, rng: np.random.Generator, n: int = 400) -> np.ndarray:
    """A curve of the given arc length starting at (0, 0), as n points (dense polyline)."""
    if kind == "straight":
        angle = rng.uniform(-0.3, 0.3)
        s = np.linspace(0, length, n)
        return np.stack([s * math.cos(angle), s * math.sin(angle)], 1)
    if kind in ("arc_up", "arc_down"):
        sweep = rng.uniform(0.6, 2.2)  # radians of circle the word spans
        radius = length / sweep
        t = np.linspace(-sweep / 2, sweep / 2, n)
        sign = -1 if kind == "arc_up" else 1  # arc_up bulges upwards (image y grows down)
        pts = np.stack([radius * np.sin(t), sign * (radius * (1 - np.cos(t)))], 1)
        return pts - pts[0]
    amplitude = rng.uniform(0.08, 0.2) * length
    wavelength = rng.uniform(0.7, 1.3) * length
    x = np.linspace(0, length, n * 4)
    y = amplitude * np.sin(2 * math.pi * x / wavelength + rng.uniform(0, 2 * math.pi))
    pts = np.stack([x, y], 1)
    seg = np.r_[0, np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))]
    s = np.linspace(0, seg[-1], n)
    pts = np.stack([np.interp(s, seg, pts[:, 0]), np.interp(s, seg, pts[:, 1])], 1)
    return (pts - pts[0]) * (length / seg[-1])


def _at(line: np.ndarray, s: float) -> tuple[np.ndarray, float]:
    """Point and tangent angle at arc length s of a dense polyline."""
    seg = np.r_[0, np.cumsum(np.linalg.norm(np.diff(line, axis=0), axis=1))]
    i = int(np.clip(np.searchsorted(seg, s) - 1, 0, len(line) - 2))
    f = (s - seg[i]) / max(seg[i + 1] - seg[i], 1e-9)
    p = line[i] + f * (line[i + 1] - line[i])
    d = line[i + 1] - line[i]
    return p, math.atan2(d[1], d[0])


def render_word(
    canvas: Image.Image,
    word: str,
    origin: np.ndarray,
    kind: str,
    size: int,
    color: tuple,
    rng: np.random.Generator,
    pairs: int = 7,
) -> np.ndarray:
    """Draw word along a curve starting at origin; returns its (2 * pairs, 2) polygon."""
    font = ImageFont.truetype(str(_font_path()), size)
    ascent, descent = font.getmetrics()
    advances = [font.getlength(c) for c in word]
    length = sum(advances)
    line = centerline(kind, length, rng) + origin
    height = ascent + descent
    s = 0.0
    for ch, adv in zip(word, advances, strict=True):
        glyph = Image.new("L", (max(1, math.ceil(adv)), height), 0)
        ImageDraw.Draw(glyph).text((0, 0), ch, font=font, fill=255)
        p, angle = _at(line, s + adv / 2)
        rotated = glyph.rotate(-math.degrees(angle), resample=Image.BICUBIC, expand=True)
        top_left = (round(p[0] - rotated.width / 2), round(p[1] - rotated.height / 2))
        canvas.paste(Image.new("RGB", rotated.size, color), top_left, rotated)
        s += adv
    half = 0.5 * (ascent * 0.85 + descent * 0.6)  # ink band around the line through mid-height
    top, bottom = [], []
    for t in np.linspace(0, length, pairs):
        p, angle = _at(line, t)
        up = np.array([math.sin(angle), -math.cos(angle)])
        top.append(p + half * up)
        bottom.append(p - half * up)
    return np.array(top + bottom[::-1], np.float32)


def synth_image(
    background: Sample, rng: np.random.Generator, crop: int = 640, words: tuple[int, int] = (2, 5)
) -> tuple[Image.Image, list[np.ndarray], list[str]]:
    """One training image: a crop of background with 2-5 rendered words; real text is '###'."""
    pixels = load_rgb(background.path)
    h, w = pixels.shape[:2]
    size = min(crop, h, w)
    x0, y0 = int(rng.integers(0, w - size + 1)), int(rng.integers(0, h - size + 1))
    image = Image.fromarray(pixels[y0 : y0 + size, x0 : x0 + size].copy())
    window = box(0, 0, size, size)
    polys, texts, taken = [], [], []
    for p in background.polygons or []:
        shape = Polygon(p - [x0, y0]).buffer(0).intersection(window)
        if shape.area > 4:
            bx = shape.bounds
            polys.append(np.array([[bx[0], bx[1]], [bx[2], bx[1]], [bx[2], bx[3]], [bx[0], bx[3]]], np.float32))
            texts.append("###")
            taken.append(shape.buffer(4))
    for _ in range(int(rng.integers(words[0], words[1] + 1))):
        for _attempt in range(30):
            word = str(rng.choice(WORDS)).upper() if rng.random() < 0.4 else str(rng.choice(WORDS))
            kind = str(rng.choice(CURVES, p=[0.3, 0.3, 0.25, 0.15]))
            font_size = int(rng.integers(22, 56))
            origin = rng.uniform([0.05 * size, 0.15 * size], [0.6 * size, 0.85 * size])
            trial = image.copy()
            color = tuple(int(v) for v in rng.integers(0, 256, 3))
            poly = render_word(trial, word, origin, kind, font_size, color, rng)
            shape = Polygon(poly).buffer(0)
            inside = window.buffer(-2).contains(shape)
            if inside and shape.area > 50 and not any(shape.intersects(t) for t in taken):
                region = np.asarray(image)[tuple(np.clip(poly.mean(0)[::-1].astype(int), 0, size - 1))]
                if np.abs(np.array(color, float) - region).sum() < 150:  # too close to the background
                    continue
                image = trial
                polys.append(poly)
                texts.append(word)
                taken.append(shape.buffer(6))
                break
    return image, polys, texts


def write_synthetic_set(backgrounds: list[Sample], out: Path, count: int, seed: int = 0, crop: int = 640) -> int:
    """Write count images to out/images, their polygons to out/gt (Total-Text plain format) and
    out/sources.csv: the background photo of each image, for its credit and licence."""
    if not backgrounds:
        raise UserError("no background images")
    rng = np.random.default_rng(seed)
    (Path(out) / "images").mkdir(parents=True, exist_ok=True)
    (Path(out) / "gt").mkdir(parents=True, exist_ok=True)
    sources = ["image,background"]
    for k in tqdm(range(count), desc="synthesise"):
        bg = backgrounds[int(rng.integers(0, len(backgrounds)))]
        image, polys, texts = synth_image(bg, rng, crop)
        name = f"synth_{k:05d}"
        image.save(Path(out) / "images" / f"{name}.jpg", quality=92)
        lines = [",".join(f"{v:.1f}" for v in p.reshape(-1)) + f",{t}" for p, t in zip(polys, texts, strict=True)]
        atomic_write_text(Path(out) / "gt" / f"{name}.txt", "\n".join(lines) + "\n")
        sources.append(f"{name}.jpg,{bg.path}")
    atomic_write_text(Path(out) / "sources.csv", "\n".join(sources) + "\n")
    return count
