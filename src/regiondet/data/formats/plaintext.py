"""The seeds' plain annotation text: one object per line, `path,x1,y1,x2,y2,class`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from regiondet.data.images import image_size
from regiondet.data.report import LoadReport, check_box
from regiondet.data.sample import Sample
from regiondet.errors import UserError


def read_plaintext(path: str, extra: str | None, report: LoadReport) -> list[Sample]:
    """Lines of `path,x1,y1,x2,y2,class`; `path,,,,,` marks an image with no objects.

    Relative image paths are resolved against the annotation file's folder.
    """
    ann = Path(path)
    if not ann.is_file():
        raise UserError("annotation file not found", ann)
    grouped: dict[Path, tuple[list, list]] = {}
    for n, line in enumerate(ann.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 6:
            raise UserError("expected 'path,x1,y1,x2,y2,class'", ann, n)
        img = Path(fields[0])
        img = img if img.is_absolute() else ann.parent / img
        boxes, labels = grouped.setdefault(img, ([], []))
        if not any(fields[1:]):
            continue
        try:
            box = [float(v) for v in fields[1:5]]
        except ValueError:
            raise UserError(f"coordinates are not numbers: {line.strip()!r}", ann, n) from None
        check_box(box, ann, n)
        boxes.append(box)
        if not fields[5]:
            raise UserError("missing class name", ann, n)
        labels.append(fields[5])
    samples = []
    for img, (boxes, labels) in grouped.items():
        w, h = image_size(img)
        samples.append(Sample(img, w, h, np.array(boxes, np.float32).reshape(-1, 4), labels))
    return samples
