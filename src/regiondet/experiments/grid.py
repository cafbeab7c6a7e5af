"""A grid of training runs (the thesis's chapter 5 at CPU scale): every cell the same budget.

A grid file holds a base config (inline, or the path of a config file), named axes whose values are
partial configs, and the evaluation sets; optionally `cells`, the axis combinations to run (a
fractional design) when the full product would cost too much; optionally `report`, the page
`regiondet report` writes, whose recorded cells count as finished. Each cell trains into
<out>/<cell>/, then writes eval.json and a few drawn detections; finished cells are skipped,
interrupted ones resumed, so a grid can run across days and machines.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

from regiondet.config import config_from_dict, merge_sections, read_config_dict
from regiondet.data.images import load_upright
from regiondet.engine.history import read_history
from regiondet.engine.train import train
from regiondet.errors import UserError
from regiondet.evaluation.scoring import evaluate_model, load_eval_sets
from regiondet.experiments.cells import record_folder
from regiondet.inference.draw import draw_prediction
from regiondet.inference.predictor import Detector
from regiondet.io import atomic_write_text, read_yaml
from regiondet.models.checkpoint import read_checkpoint


def record_dir(g: dict) -> Path | None:
    """Where `regiondet report` records finished cells, if the grid names its report."""
    return record_folder(g["report"]) if g.get("report") else None


def cell_state(g: dict, cell: Cell) -> str:
    """done (eval.json in its run folder), recorded (only in the report's record: finished on
    another machine), started (a checkpoint) or todo."""
    out = Path(cell.config["train"]["out"])
    record = record_dir(g)
    if (out / "eval.json").is_file():
        return "done"
    if record is not None and (record / cell.name / "eval.json").is_file():
        return "recorded"
    return "started" if (out / "last.pt").is_file() else "todo"


@dataclass
class Cell:
    name: str
    axes: dict[str, str]  # axis -> value name
    config: dict


def _combos(g: dict, path: Path) -> list[list[tuple[str, dict]]]:
    """Every combination of axis values, or only the listed `cells` (a fractional design)."""
    axes: dict[str, dict] = g["axes"]
    if "cells" not in g:
        return [list(c) for c in itertools.product(*[list(v.items()) for v in axes.values()])]
    combos = []
    for i, cell in enumerate(g["cells"] or []):
        if not isinstance(cell, dict) or set(map(str, cell)) != set(axes):
            raise UserError(f"cells[{i}] must give one value for each axis {list(axes)}", path)
        combo = []
        for axis, values in axes.items():
            named = {str(k): v for k, v in values.items()}
            value = str(cell[axis])
            if value not in named:
                raise UserError(f"cells[{i}]: {axis} '{value}' is not one of {list(named)}", path)
            combo.append((value, named[value]))
        combos.append(combo)
    if not combos:
        raise UserError("'cells' lists no cell", path)
    return combos


def load_grid(path: Path) -> tuple[dict, list[Cell]]:
    """(grid settings, cells) from a grid YAML; every cell's config is validated up front."""
    path = Path(path)
    g = read_yaml(path, "grid file")
    for key in ("base", "axes", "out", "evaluate"):
        if key not in g:
            raise UserError(f"grid file needs '{key}'", path)
    axes: dict[str, dict] = g["axes"]
    base = g["base"]
    if isinstance(base, str):  # a config file (relative to the grid file) instead of inline values
        base = read_config_dict(path.parent / base, (path,))
    cells = []
    for combo in _combos(g, path):
        cfg = base
        chosen = {}
        for axis, (value, patch) in zip(axes, combo, strict=True):
            cfg = merge_sections(cfg, patch or {})
            chosen[axis] = str(value)
        name = "_".join(f"{a}-{v}" for a, v in chosen.items())
        cfg = merge_sections(cfg, {"train": {"out": str(Path(g["out"]) / name)}})
        config_from_dict(cfg, f"{path} cell {name}")
        cells.append(Cell(name, chosen, cfg))
    if len({c.name for c in cells}) < len(cells):
        raise UserError("'cells' lists a cell twice", path)
    return g, cells


def run_grid(path: Path, only: list[str] | None = None, progress: bool = True, reevaluate: bool = False) -> list[Path]:
    """Train and evaluate every unfinished cell (or those whose name contains one of `only`).
    With `reevaluate`, only evaluate the trained cells again (after the `evaluate` section
    changed), training nothing."""
    g, cells = load_grid(path)
    done = []
    for cell in cells:
        if only and not any(o in cell.name for o in only):
            continue
        out = Path(cell.config["train"]["out"])
        if reevaluate:
            if (out / "eval.json").is_file():
                evaluate_cell(out, cell, g["evaluate"], progress)
                done.append(out)
            continue
        state = cell_state(g, cell)
        if state == "done":
            done.append(out)
            continue
        if state == "recorded":  # finished elsewhere: its numbers are in the report's record
            continue
        cfg = config_from_dict(cell.config, cell.name)
        resume = (out / "last.pt").is_file()
        if not resume or not _finished(out, cfg.train.epochs):
            train(cfg, resume=resume, progress=progress)
        evaluate_cell(out, cell, g["evaluate"], progress)
        done.append(out)
    return done


def _finished(out: Path, epochs: int) -> bool:
    return read_checkpoint(out / "last.pt")["epoch"] >= epochs


def evaluate_cell(out: Path, cell: Cell, ev: dict, progress: bool) -> dict:
    """eval.json (the report's numbers) and drawn samples for the cell's best model."""
    det = Detector.load(out / "best.pt")
    samples, negatives = load_eval_sets(det, ev["data"], ev.get("negatives", []))
    res = evaluate_model(det, samples, negatives, ev.get("score"), plot_path=out / "pr_curve.png", progress=progress)
    rows = read_history(out / "metrics.csv")
    res.update(
        cell=cell.name,
        axes=cell.axes,
        train_seconds=sum(r["seconds"] or 0 for r in rows),
        steps=rows[-1]["steps"] if rows else 0,
    )
    atomic_write_text(out / "eval.json", json.dumps(res, indent=2) + "\n")
    draw, worst = ev.get("draw", 4), ev.get("draw_failures", 2)
    by_path = {str(s.path): s for s in samples + negatives}
    failed = [by_path[f["file"]] for f in res["failures"] if f["file"] in by_path]
    shown = samples[:draw]
    groups = {
        "val": shown,
        "fail": [s for s in failed if not s.is_negative and s.path not in {x.path for x in shown}][:worst],
        "negative": [s for s in failed if s.is_negative][:draw] or negatives[:draw],
    }
    draw_samples(det, groups, out / "samples")
    return res


def draw_samples(det, groups: dict, folder: Path) -> None:
    """Detections on the first labelled images (the same in every cell), on the worst failures
    (most objects missed, then most false alarms) and on negatives that fired."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.jpg"):
        stale.unlink()
    for kind, group in groups.items():
        for s in group:
            image = load_upright(s.path)
            image.thumbnail((416, 416))
            draw_prediction(image, det.predict(image), det.classes).save(folder / f"{kind}_{s.path.stem[:16]}.jpg")
