"""ICDAR 2015 incidental text: gt_img_N.txt with `x1,y1,...,x4,y4,transcription` per word."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from regiondet.data.images import image_size, list_images
from regiondet.data.report import LoadReport
from regiondet.data.sample import Sample
from regiondet.errors import UserError

DONT_CARE = "###"


def _natural_key(p: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def first_dir(root: Path, names: tuple[str, ...]) -> Path | None:
    """The first of these sub-folders of root that exists (datasets ship under several names)."""
    return next((root / d for d in names if (root / d).is_dir()), None)


def read_icdar2015(path: str, extra: str | None, report: LoadReport) -> list[Sample]:
    """Read DIR/images + DIR/gt (also ch4_* official folder names); label is 'text'.

    `###` transcriptions become ignore (do-not-care) regions. UTF-8 BOM and CRLF are fine.
    """
    root = Path(path)
    img_dir = first_dir(root, ("images", "imgs", "ch4_training_images"))
    gt_dir = first_dir(root, ("gt", "gts", "ch4_training_localization_transcription_gt"))
    if img_dir is None or gt_dir is None:
        raise UserError("expected images/ and gt/ folders", root)
    samples = []
    for img in sorted(list_images(img_dir), key=_natural_key):
        gt = gt_dir / f"gt_{img.stem}.txt"
        polys, texts = [], []
        if gt.is_file():
            for n, line in enumerate(gt.read_text(encoding="utf-8-sig").splitlines(), 1):
                line = line.strip().lstrip("\ufeff")
                if not line:
                    continue
                fields = line.split(",", 8)
                if len(fields) < 8:
                    raise UserError("expected 8 coordinates and a transcription", gt, n)
                try:
                    pts = np.array([float(v) for v in fields[:8]], np.float32).reshape(4, 2)
                except ValueError:
                    raise UserError("coordinates are not numbers", gt, n) from None
                polys.append(pts)
                texts.append(fields[8] if len(fields) > 8 else "")
        else:
            report.add("images without a gt file read as negatives", str(img))
        samples.append(polygon_sample(img, polys, texts))
    if not samples:
        raise UserError("no images found", img_dir)
    return samples


def polygon_sample(img: Path, polys: list[np.ndarray], texts: list[str]) -> Sample:
    """A text Sample from polygons: boxes are their extents, '###' means ignore."""
    w, h = image_size(img)
    boxes = np.array([[p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()] for p in polys], np.float32).reshape(
        -1, 4
    )
    ignore = np.array([t.strip() == DONT_CARE for t in texts], bool)
    return Sample(img, w, h, boxes, ["text"] * len(polys), ignore, polygons=polys, texts=texts)
