"""SCUT-CTW1500 curved text lines, in its three published layouts.

- train txt (`text_label_curve/NNNN.txt`): 32 integers per line, the box xmin,ymin,xmax,ymax
  then 14 points as offsets from (xmin, ymin);
- test / later txt: absolute `x1,y1,...,xn,yn[,####transcription]` per line;
- xml (`ctw1500_train_labels/NNNN.xml`): <box> elements with a <segs> list of 14 points.
'###' transcriptions are do-not-care regions.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from regiondet.data.images import list_images
from regiondet.data.report import LoadReport
from regiondet.data.sample import Sample
from regiondet.errors import UserError

from .icdar2015 import first_dir, polygon_sample

IMAGE_DIRS = ("images", "text_image", "train_images", "test_images", "imgs")
LABEL_DIRS = ("gt", "text_label_curve", "ctw1500_train_labels", "labels", "ctw1500_test_labels")


def parse_ctw1500_line(line: str, path: Path, n: int) -> tuple[np.ndarray, str]:
    """One txt line to (points (N, 2), transcription)."""
    text = ""
    if "####" in line:
        line, text = line.split("####", 1)
    try:
        values = [float(v) for v in line.strip().strip(",").split(",") if v.strip()]
    except ValueError:
        raise UserError("coordinates are not numbers", path, n) from None
    if len(values) == 32 and not text:  # box + 14 offsets
        x0, y0 = values[0], values[1]
        pts = np.array(values[4:], np.float32).reshape(14, 2) + np.array([x0, y0], np.float32)
    elif len(values) >= 8 and len(values) % 2 == 0:
        pts = np.array(values, np.float32).reshape(-1, 2)
    else:
        raise UserError(f"expected 32 values or an even number >= 8, got {len(values)}", path, n)
    return pts, text.strip()


def _parse_xml(path: Path) -> list[tuple[np.ndarray, str]]:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise UserError(f"malformed XML ({e})", path) from None
    out = []
    for box in root.iter("box"):
        segs = box.findtext("segs")
        if not segs:
            raise UserError("<box> without <segs>", path)
        try:
            pts = np.array([float(v) for v in segs.split(",")], np.float32).reshape(-1, 2)
        except ValueError:
            raise UserError("malformed <segs>", path) from None
        out.append((pts, (box.findtext("label") or "").strip()))
    return out


def read_ctw1500(path: str, extra: str | None, report: LoadReport) -> list[Sample]:
    """A folder with an image folder and a label folder (names of the official releases)."""
    root = Path(path)
    img_dir, gt_dir = first_dir(root, IMAGE_DIRS), first_dir(root, LABEL_DIRS)
    if img_dir is None or gt_dir is None:
        raise UserError(f"expected an image folder {IMAGE_DIRS} and a label folder {LABEL_DIRS}", root)
    samples = []
    for img in list_images(img_dir):
        polys, texts = [], []
        xml, txt = gt_dir / f"{img.stem}.xml", gt_dir / f"{img.stem}.txt"
        if xml.is_file():
            entries = _parse_xml(xml)
        elif txt.is_file():
            lines = txt.read_text(encoding="utf-8-sig").splitlines()
            entries = [parse_ctw1500_line(ln, txt, n) for n, ln in enumerate(lines, 1) if ln.strip()]
        else:
            report.add("images without a label file read as negatives", str(img))
            entries = []
        for pts, text in entries:
            polys.append(pts)
            texts.append(text)
        samples.append(polygon_sample(img, polys, texts))
    if not samples:
        raise UserError("no images found", img_dir)
    return samples
