"""YOLO txt labels described by an Ultralytics-style data.yaml."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from regiondet.data.images import image_size, list_images
from regiondet.data.report import LoadReport
from regiondet.data.sample import Sample
from regiondet.errors import UserError
from regiondet.io import read_yaml

SPLIT_ALIASES = {"valid": "val", "validation": "val"}


def _names(cfg: dict, yaml_path: Path) -> list[str]:
    names = cfg.get("names")
    if isinstance(names, dict) and names:
        names = [str(names[k]) for k in sorted(names)]
    elif isinstance(names, list) and names:
        names = [str(n) for n in names]
    else:
        raise UserError("data.yaml has no 'names' list", yaml_path)
    nc = cfg.get("nc")
    if nc is not None and nc != len(names):
        raise UserError(f"data.yaml says nc: {nc} but names {len(names)} classes ({', '.join(names)})", yaml_path)
    return names


def _label_path(image: Path) -> Path:
    """Ultralytics convention: .../images/x.jpg -> .../labels/x.txt."""
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def read_yolo(path: str, split: str | None, report: LoadReport) -> list[Sample]:
    """Read one split (default train) of a YOLO dataset; a missing label file is a negative."""
    yaml_path = Path(path)
    cfg = read_yaml(yaml_path, "data.yaml")
    names = _names(cfg, yaml_path)
    split = split or "train"
    key = SPLIT_ALIASES.get(split, split)
    if key not in cfg:
        raise UserError(f"split '{split}' not in data.yaml (has {sorted(cfg)})", yaml_path)
    base = yaml_path.parent / str(cfg.get("path", "."))
    entries = cfg[key] if isinstance(cfg[key], list) else [cfg[key]]
    images: list[Path] = []
    for entry in entries:
        folder = base / str(entry)
        if not folder.exists() and str(entry).startswith("../"):
            folder = base / str(entry)[3:]  # Roboflow writes ../train/images beside data.yaml
        if folder.is_file() and folder.suffix == ".txt":
            images += [base / ln.strip() for ln in folder.read_text().splitlines() if ln.strip()]
        elif folder.is_dir():
            images += list_images(folder)
        else:
            raise UserError(f"image folder for split '{split}' not found: {folder}", yaml_path)
    if not images:
        raise UserError(f"split '{split}' lists no images", yaml_path)
    return [_read_label(img, names, report) for img in images]


def _read_label(image: Path, names: list[str], report: LoadReport) -> Sample:
    width, height = image_size(image)
    label_file = _label_path(image)
    boxes, labels = [], []
    if not label_file.is_file():
        report.add("images without a label file read as negatives", str(image))
    else:
        for n, line in enumerate(label_file.read_text().splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            try:
                values = [float(v) for v in fields]
            except ValueError:
                raise UserError(f"not numbers: {line.strip()!r}", label_file, n) from None
            if len(values) < 5 or (len(values) > 5 and len(values) % 2 == 0):
                raise UserError("expected 'class cx cy w h' or a polygon", label_file, n)
            cls = int(values[0])
            if cls != values[0] or not 0 <= cls < len(names):
                raise UserError(f"class id {fields[0]} not in data.yaml names", label_file, n)
            if not all(math.isfinite(v) for v in values):
                raise UserError(f"malformed box: a value is not a finite number {line.strip()!r}", label_file, n)
            if len(values) == 5:
                cx, cy, w, h = values[1:]
                if w < 0 or h < 0:
                    raise UserError(f"malformed box: negative width or height {line.strip()!r}", label_file, n)
                box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
            else:  # segmentation polygon: its bounding box
                xs, ys = values[1::2], values[2::2]
                box = [min(xs), min(ys), max(xs), max(ys)]
            boxes.append([box[0] * width, box[1] * height, box[2] * width, box[3] * height])
            labels.append(names[cls])
    return Sample(image, width, height, np.array(boxes, np.float32).reshape(-1, 4), labels)
