"""The one in-memory record every reader produces: an image and what is annotated on it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Sample:
    """One image and its annotations.

    boxes are xyxy in pixels of the image file as stored; labels are class names
    (as written in the source, mapped later); ignore marks "difficult" / "do not care"
    objects that neither count as misses nor as false positives. polygons, when the
    source has them, are (N, 2) float arrays in pixels, one per box. labelled names the
    classes this image's source annotates (None: all of them); an object of another class may
    be in the picture unboxed, so it must be taught neither as an object nor as background.
    """

    path: Path
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: list[str] = field(default_factory=list)
    ignore: np.ndarray = field(default_factory=lambda: np.zeros((0,), bool))
    polygons: list[np.ndarray] | None = None
    texts: list[str] | None = None
    labelled: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        if len(self.ignore) != len(self.boxes):
            self.ignore = np.zeros(len(self.boxes), bool) if len(self.ignore) == 0 else self.ignore
        self.ignore = np.asarray(self.ignore, bool)
        if len(self.labels) != len(self.boxes) or len(self.ignore) != len(self.boxes):
            raise ValueError(f"{self.path}: boxes, labels and ignore flags differ in length")

    def outlines(self) -> list[np.ndarray]:
        """Polygons when the source has them, else each box as a 4-point outline."""
        if self.polygons is not None:
            return self.polygons
        return [np.array([[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]]], np.float32) for b in self.boxes]

    @property
    def is_negative(self) -> bool:
        """True when the image has no object at all (a background / distractor image)."""
        return len(self.boxes) == 0

    def subset(self, keep: np.ndarray) -> Sample:
        """A copy holding only the objects where keep is True."""
        keep = np.asarray(keep, bool)
        idx = np.flatnonzero(keep)
        return Sample(
            path=self.path,
            width=self.width,
            height=self.height,
            boxes=self.boxes[keep],
            labels=[self.labels[i] for i in idx],
            ignore=self.ignore[keep],
            polygons=None if self.polygons is None else [self.polygons[i] for i in idx],
            texts=None if self.texts is None else [self.texts[i] for i in idx],
            labelled=self.labelled,
        )

    def labels_class(self, name: str) -> bool:
        """True when this image's source annotates class `name` (so a missing box means absent)."""
        return self.labelled is None or name.lower() in self.labelled
