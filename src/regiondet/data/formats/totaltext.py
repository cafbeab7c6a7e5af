"""Total-Text polygons: the legacy `x: [[...]], y: [[...]], ..., transcriptions: [u'..']` lines
or plain `x1,y1,...,xn,yn,transcription`. '#' (legacy) and '###' are do-not-care."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from regiondet.data.images import list_images
from regiondet.data.report import LoadReport
from regiondet.data.sample import Sample
from regiondet.errors import UserError

from .icdar2015 import first_dir, polygon_sample

_LEGACY = re.compile(
    r"x:\s*\[\[(?P<x>[^\]]*)\]\],\s*y:\s*\[\[(?P<y>[^\]]*)\]\].*?transcriptions:\s*\[u?['\"](?P<t>.*?)['\"]\]",
    re.DOTALL,
)


def parse_totaltext(text: str, path: Path) -> list[tuple[np.ndarray, str]]:
    """All polygons of one ground-truth file."""
    if "x: [[" in text or "x:[[" in text:
        out = []
        for m in _LEGACY.finditer(text):
            xs = [float(v) for v in m.group("x").split()]
            ys = [float(v) for v in m.group("y").split()]
            if len(xs) != len(ys) or len(xs) < 3:
                raise UserError("x and y lists differ in length or have under 3 points", path)
            t = m.group("t")
            out.append((np.array([xs, ys], np.float32).T, "###" if t == "#" else t))
        if not out:
            raise UserError("no 'x: [[...]], y: [[...]]' polygon could be read", path)
        return out
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.strip().split(",")
        nums = []
        for f in fields:
            try:
                nums.append(float(f))
            except ValueError:
                break
        t = ",".join(fields[len(nums) :])
        if len(nums) < 6 or len(nums) % 2:
            raise UserError("expected x1,y1,...,xn,yn[,transcription] with n >= 3", path, n)
        out.append((np.array(nums, np.float32).reshape(-1, 2), t))
    return out


def read_totaltext(path: str, extra: str | None, report: LoadReport) -> list[Sample]:
    """DIR/images (or Images/Train) and DIR/gt with poly_gt_<image>.txt, gt_<image>.txt or <image>.txt."""
    root = Path(path)
    img_dir = first_dir(root, ("images", "Images", "Train", "Test"))
    gt_dir = first_dir(root, ("gt", "Groundtruth", "Txts"))
    if img_dir is None or gt_dir is None:
        raise UserError("expected images/ and gt/ folders", root)
    samples = []
    for img in list_images(img_dir):
        gt = next(
            (
                gt_dir / f"{p}{img.stem}.txt"
                for p in ("poly_gt_", "gt_", "")
                if (gt_dir / f"{p}{img.stem}.txt").is_file()
            ),
            None,
        )
        entries = parse_totaltext(gt.read_text(encoding="utf-8-sig"), gt) if gt else []
        if gt is None:
            report.add("images without a label file read as negatives", str(img))
        samples.append(polygon_sample(img, [p for p, _ in entries], [t for _, t in entries]))
    if not samples:
        raise UserError("no images found", img_dir)
    return samples
