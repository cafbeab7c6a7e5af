"""How much two boxes overlap, as the share of the smaller one: the measure for "one object
inside or on another" (a pasted object on an earlier one, a lens boxed inside its camera),
where IoU is small because the boxes differ in size."""

from __future__ import annotations

from collections.abc import Sequence


def overlap_of_smaller(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection of two xyxy boxes over the smaller box's area (0 to 1)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(iw * ih / max(small, 1e-6))
