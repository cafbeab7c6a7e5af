"""Seeded train / hold-out splits that keep augmented copies of one photo together."""

from __future__ import annotations

import random
import re
from pathlib import Path

from regiondet.data.sample import Sample

# Roboflow names exports <stem>_<ext>.rf.<32 hex>.<ext>; copies of one photo share <stem>.
_ROBOFLOW = re.compile(r"^(?P<stem>.+?)_(?:jpe?g|png|bmp|webp)\.rf\.[0-9a-f]{32}$", re.IGNORECASE)


def group_key(path: Path) -> str:
    """The name shared by all augmented copies of one source photo."""
    stem = Path(path).stem
    m = _ROBOFLOW.match(stem)
    return m.group("stem") if m else stem


def split_by_group(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """(kept, held_out): about `fraction` of the photo groups go to held_out, chosen by seed."""
    groups = sorted({group_key(s.path) for s in samples})
    random.Random(seed).shuffle(groups)
    held = set(groups[: round(len(groups) * fraction)])
    kept = [s for s in samples if group_key(s.path) not in held]
    out = [s for s in samples if group_key(s.path) in held]
    return kept, out
