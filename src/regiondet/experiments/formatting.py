"""Numbers as the report's tables print them."""

from __future__ import annotations

import numpy as np


def pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def num(v, fmt=".3f") -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, fmt)
