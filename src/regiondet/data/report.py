"""Counting what readers fixed or skipped, so nothing is dropped silently."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from regiondet.data.sample import Sample


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
