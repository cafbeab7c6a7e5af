"""Counting what readers fixed or skipped, so nothing is dropped silently."""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from regiondet.data.sample import Sample
from regiondet.errors import UserError


@dataclass
class LoadReport:
    """Tallies of documented repairs and skips while reading a dataset."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, what: str, where: str, n: int = 1) -> None:
        if n:
            self.counts[what] += n
            self.examples.setdefault(what, where)

    def print(self, name: str) -> None:
        for what, n in sorted(self.counts.items()):
            print(f"regiondet: {name}: {n} {what} (e.g. {self.examples[what]})", file=sys.stderr)


def check_box(box: Sequence[float], path: Path, line: int | None = None, what: str = "box") -> None:
    """A box with a coordinate that is not a finite number, or whose max lies before its min,
    is malformed: a UserError naming file and line, never a box quietly skipped as empty."""
    if not all(math.isfinite(v) for v in box):
        raise UserError(f"malformed {what}: a coordinate is not a finite number {list(box)}", path, line)
    x1, y1, x2, y2 = box
    if x2 < x1 or y2 < y1:
        axis = "x" if x2 < x1 else "y"
        raise UserError(f"malformed {what}: its {axis} max lies before its {axis} min {list(box)}", path, line)


def clean_boxes(sample: Sample, report: LoadReport) -> Sample:
    """Clip boxes to the image and drop those left with no area; both are counted."""
    if len(sample.boxes) == 0:
        return sample
    b = sample.boxes
    clipped = np.stack(
        [
            b[:, 0].clip(0, sample.width),
            b[:, 1].clip(0, sample.height),
            b[:, 2].clip(0, sample.width),
            b[:, 3].clip(0, sample.height),
        ],
        axis=1,
    )
    moved = np.any(np.abs(clipped - b) > 0.5, axis=1)
    report.add("boxes clipped to the image border", str(sample.path), int(moved.sum()))
    sample.boxes = clipped
    keep = (clipped[:, 2] - clipped[:, 0] >= 1) & (clipped[:, 3] - clipped[:, 1] >= 1)
    report.add("boxes with zero area skipped", str(sample.path), int((~keep).sum()))
    return sample if keep.all() else sample.subset(keep)
