"""Text polygons as boundary point pairs, the label form of Adaptive Text Region Representation.

A text polygon with 2k vertices (top edge left to right, then bottom edge right to left, as
ICDAR 2015, CTW1500 and Total-Text write them) becomes k pairs (top_i, bottom_i) in reading
order. Curved text then has its pairs reduced adaptively: the flattest pair is dropped while
the polygon still covers > 0.93 of the original (Wang et al., CVPR 2019, section 3.3).
"""

from __future__ import annotations

import numpy as np
from shapely.geometry import Polygon


def polygon_to_pairs(poly: np.ndarray) -> np.ndarray:
    """(2k, 2) polygon -> (k, 2, 2) pairs; pairs[i] = (top point i, bottom point i)."""
    poly = np.asarray(poly, np.float32)
    n = len(poly)
    if n < 4 or n % 2:
        raise ValueError(f"a polygon with {n} vertices cannot be split into top/bottom point pairs")
    k = n // 2
    return np.stack([poly[:k], poly[k:][::-1]], axis=1)


def pairs_to_polygon(pairs: np.ndarray) -> np.ndarray:
    """(k, 2, 2) pairs -> (2k, 2) polygon: top points left to right, bottom points right to left."""
    pairs = np.asarray(pairs)
    return np.concatenate([pairs[:, 0], pairs[::-1, 1]], axis=0)


def _angle(prev: np.ndarray, at: np.ndarray, nxt: np.ndarray) -> float:
    a, b = prev - at, nxt - at
    cos = float(np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-9))
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def pair_angles(pairs: np.ndarray) -> np.ndarray:
    """Inner angle of each inner pair: the mean of the polygon's angles at its top and bottom
    points (180 = the pair lies on straight edges, so it carries no shape). Ends get 0."""
    out = np.zeros(len(pairs))
    for i in range(1, len(pairs) - 1):
        top = _angle(pairs[i - 1, 0], pairs[i, 0], pairs[i + 1, 0])
        bottom = _angle(pairs[i - 1, 1], pairs[i, 1], pairs[i + 1, 1])
        out[i] = (top + bottom) / 2
    return out


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    pa, pb = Polygon(a).buffer(0), Polygon(b).buffer(0)
    union = pa.union(pb).area
    return pa.intersection(pb).area / union if union > 0 else 0.0


def reduce_pairs(pairs: np.ndarray, min_overlap: float = 0.93) -> np.ndarray:
    """Drop inner pairs, flattest first, while the reduced polygon's IoU with the original
    stays above min_overlap. The two end pairs always stay (a region needs >= 2 pairs)."""
    pairs = np.asarray(pairs, np.float32)
    original = pairs_to_polygon(pairs)
    keep = list(range(len(pairs)))
    changed = True
    while changed and len(keep) > 2:
        changed = False
        angles = pair_angles(pairs[keep])
        for j in np.argsort(-angles[1:-1]) + 1:  # inner pairs, largest angle first
            trial = keep[:j] + keep[j + 1 :]
            if _overlap(pairs_to_polygon(pairs[trial]), original) > min_overlap:
                keep = trial
                changed = True
                break
    return pairs[keep]
