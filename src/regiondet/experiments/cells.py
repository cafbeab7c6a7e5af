"""A grid's finished cells: read from run folders, and recorded beside the report.

Run folders are big (checkpoints) and live on one machine; a grid runs across days and
machines. So each reported cell is also recorded beside the report (`<media>/cells/<cell>/`:
eval.json and metrics.csv, about 50 KB), and the report is made from the run folders plus the
recorded cells they do not hold: a cell finished on another machine stays in the table.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from regiondet.engine.history import read_history
from regiondet.errors import UserError
from regiondet.io import atomic_write_text

RECORDED = ("eval.json", "metrics.csv")


def record_folder(page: Path) -> Path:
    """Where the report at `page` records its cells: docs/experiments.md -> docs/experiments/cells/."""
    page = Path(page)
    return page.parent / page.stem / "cells"


def _read_cell(folder: Path, recorded: bool) -> dict:
    try:
        res = json.loads((folder / "eval.json").read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"unreadable cell result ({e.__class__.__name__})", folder / "eval.json") from None
    if not isinstance(res, dict) or "cell" not in res or "map50" not in res:
        raise UserError("not a grid cell's eval.json (no 'cell' or 'map50')", folder / "eval.json")
    res.update(dir=folder, history=read_history(folder / "metrics.csv"), recorded=recorded)
    return res


def load_cells(root: Path, record: Path | None = None) -> list[dict]:
    """The finished cells in the run folders under `root`, then those recorded in `record`
    (a report's cells folder) that `root` does not hold; a run folder wins over its record."""
    cells = {c["cell"]: c for c in (_read_cell(ev.parent, False) for ev in sorted(Path(root).glob("*/eval.json")))}
    if record is not None:
        for ev in sorted(Path(record).glob("*/eval.json")):
            if ev.parent.name not in cells:
                c = _read_cell(ev.parent, True)
                cells[c["cell"]] = c
    return list(cells.values())


def record_cell(cell: dict, record: Path) -> None:
    """Copy a run folder's result into the report's cells folder (what the repo keeps)."""
    dest = Path(record) / cell["cell"]
    for name in RECORDED:
        if (cell["dir"] / name).is_file():
            atomic_write_text(dest / name, (cell["dir"] / name).read_text())


def pictures(cell: dict, kind: str, media: Path) -> list[Path]:
    """A top cell's drawings in the page's folder: copied from its run folder, or, for a cell
    known only from its record, those an earlier report copied (drawings are not recorded:
    the repo keeps a few pictures, not four per cell)."""
    if cell["recorded"]:
        return sorted(media.glob(f"{cell['cell']}_{kind}_*.jpg"))
    shown = []
    for img in sorted((cell["dir"] / "samples").glob(f"{kind}_*.jpg")):
        shown.append(media / f"{cell['cell']}_{img.name}")
        shutil.copy(img, shown[-1])
    return shown
