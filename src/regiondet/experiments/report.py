"""docs/experiments.md generated from a grid's run folders: numbers are read, never typed.

Run folders are big (checkpoints) and live on one machine; a grid runs across days and
machines. So each reported cell is also recorded beside the report (`<media>/cells/<cell>/`:
eval.json and metrics.csv, about 50 KB) and the
report is made from the run folders plus the recorded cells they do not hold: a cell finished
on another machine stays in the table, and `regiondet report` regenerates it from the repo.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from regiondet.config import config_from_dict
from regiondet.engine.history import read_history
from regiondet.errors import UserError
from regiondet.io import atomic_write_text
from regiondet.models.weights import WEIGHT_SOURCES

# The thesis's Models 1-5 (METHODS.md): mAP@0.5, % images without a box, s/image on a K80.
THESIS = [
    ("1", "VGG16, 4 RoIs, 300 px", 0.684, 0.015, 0.62),
    ("2", "ResNet50, 4 RoIs, 300 px", 0.609, 0.245, None),
    ("3", "ResNet50, 50 RoIs, 300 px", 0.77, 0.48, 0.28),
    ("4", "VGG16, 50 RoIs, 300 px", 0.764, 0.045, 0.41),
    ("5", "VGG16, camera+phone, 600 px", 0.70, 0.02, None),
]


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def _num(v, fmt=".3f") -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, fmt)


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


def _pictures(cell: dict, kind: str, media: Path) -> list[Path]:
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


def matched_groups(cells: list[dict], axis: str) -> list[tuple[dict[str, str], list[dict]]]:
    """Cells that differ only in `axis`, grouped by their other axis values (groups of 2 or more).

    A fractional grid confounds means over the other axes; matched cells do not.
    """
    groups: dict[tuple, list[dict]] = {}
    for c in cells:
        rest = tuple(sorted((a, v) for a, v in c["axes"].items() if a != axis))
        groups.setdefault(rest, []).append(c)
    return [(dict(k), sorted(v, key=lambda c: -c["map50"])) for k, v in sorted(groups.items()) if len(v) > 1]


def _failure_counts(cell: dict, shown: list[Path]) -> str:
    """What went wrong on each drawn failure, from the cell's eval.json."""
    rows = {Path(f["file"]).stem[:16]: f for f in cell.get("failures", [])}
    parts = []
    for img in shown:
        f = rows.get(img.stem.removeprefix("fail_"))
        if f:
            parts.append(
                f"`{img.stem.removeprefix('fail_')}` {f['missed']} of {f['objects']} missed, {f['false_alarms']} false"
            )
    return f" ({'; '.join(parts)})" if parts else ""


def findings(cells: list[dict]) -> list[str]:
    """One paragraph per axis: matched cells' mAP50, set beside what the thesis saw."""
    out = []
    best = max(cells, key=lambda c: c["map50"])
    out.append(
        f"**Best cell.** `{best['cell']}` reaches mAP50 {best['map50']:.3f} with {_pct(best['no_detection_rate'])} "
        f"of validation images left without a detection and {_pct(best['negatives_with_detection_rate'])} of "
        f"camera-free images with a false alarm, at {best['latency_ms_median']:.0f} ms per image on this CPU. "
        "The thesis's best was Model 4 (VGG16, 50 RoIs) at 0.764 on a GPU-trained budget of 150 epochs."
    )
    notes = {
        "backbone": "The thesis found VGG16 more reliable than ResNet50 (Model 1 vs 2: 0.684 vs 0.609 mAP, "
        "1.5 % vs 24.5 % images without a box).",
        "rois": "In the thesis, 50 RoIs per image beat 4 for both backbones (VGG16 0.684 -> 0.764, ResNet50 "
        "0.609 -> 0.77), at the price of more images without a box for ResNet50 (24.5 % -> 48 %).",
        "size": "The thesis trained at a 300 px shorter side (600 px for Model 5).",
    }
    axes = sorted({a for c in cells for a in c["axes"]}, key=lambda a: (a == "seed", a))  # the noise floor last
    for axis in axes:
        groups = matched_groups(cells, axis)
        if not groups:
            continue
        if axis == "seed":
            spread = max(g[0]["map50"] - g[-1]["map50"] for _, g in groups)
            notes["seed"] = (
                f"The same cell from another seed differs by up to {spread:.3f} mAP50 here: differences of "
                "that size between the cells above are within the noise of a single run."
            )
            tops = {g[0]["axes"]["seed"] for _, g in groups}
            if len(tops) == 1 and len(groups) > 1:
                notes["seed"] += (
                    f" Seed {tops.pop()} is ahead in all {len(groups)} pairs: a seed moves every cell trained "
                    "with it together, so cells are best compared within one seed, as above."
                )
        parts = []
        for rest, group in groups:
            where = ", ".join(f"{a} {v}" for a, v in rest.items())
            vals = ", ".join(
                f"`{c['axes'][axis]}` {c['map50']:.3f} ({_pct(c['no_detection_rate'])} without a box)" for c in group
            )
            parts.append(f"at {where}: {vals}" if rest else vals)
        out.append(
            f"**{axis}.** Validation mAP50 of cells that differ only in {axis}; {'; '.join(parts)}. "
            f"{notes.get(axis, '')}{seed_agreement(groups, axis)}"
        )
    return out


def seed_agreement(groups: list[tuple[dict[str, str], list[dict]]], axis: str) -> str:
    """Whether the same comparison, run from different seeds, ranks the values the same way:
    an order that holds in every seed is worth more than one run's margin."""
    by_setting: dict[tuple, list[tuple[str, list[str]]]] = {}
    for rest, group in groups:
        if "seed" in rest:
            key = tuple(sorted((a, v) for a, v in rest.items() if a != "seed"))
            by_setting.setdefault(key, []).append((rest["seed"], [c["axes"][axis] for c in group]))
    said = []
    for key, runs in sorted(by_setting.items()):
        same = [r for r in runs if sorted(r[1]) == sorted(runs[0][1])]
        if len(same) < 2:
            continue
        where = ", ".join(f"{a} {v}" for a, v in key)
        seeds = " and ".join(sorted(seed for seed, _ in same))
        agree = all(order == same[0][1] for _, order in same)
        verdict = f"the order is the same in seeds {seeds}" if agree else f"the order changes between seeds {seeds}"
        said.append(f"at {where} {verdict}" if where else verdict)
    return f" Across seeds: {'; '.join(said)}." if said else ""


def plot_curves(cells: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for c in cells:
        h = c["history"]
        ep = [r["epoch"] for r in h]
        axes[0].plot(ep, [r["loss_total"] for r in h], label=c["cell"])
        axes[1].plot(ep, [r["head_accuracy"] for r in h])
        axes[2].plot(ep, [r["val_map50"] if r["val_map50"] is not None else np.nan for r in h])
    for ax, title in zip(axes, ["total training loss", "head accuracy", "validation mAP50"], strict=True):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.legend(loc="lower center", ncol=3, fontsize=7)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _settings(patch: dict) -> str:
    return ", ".join(f"`{k}: {v}`" for section in (patch or {}).values() for k, v in section.items())


def setup_lines(grid: dict) -> list[str]:
    """What every cell shares and what each axis value changes, read from the grid file, so a
    label such as `vgg16_craft` is explained on the page."""
    base = config_from_dict(grid["base"], "grid base")  # the defaults a cell gets, not guesses
    t, ev = base.train, grid["evaluate"]
    budget = f"{t.epochs * t.steps_per_epoch} steps" if t.steps_per_epoch else f"{t.epochs} epochs"

    def specs(values: list[str]) -> str:
        return ", ".join(f"`{d}`" for d in values) or "-"

    lines = [
        "## Setup",
        "",
        f"Every cell: {budget} of {t.batch_size} images, {t.optimizer} lr {t.lr:g}; trained on "
        f"{specs(base.data.train)} with {specs(base.data.negatives)} as negatives; measured on "
        f"{specs(ev.get('data', []))} (negatives rate on {specs(ev.get('negatives', []))}).",
        "",
    ]
    for axis, values in grid["axes"].items():
        lines.append(f"- {axis}: " + "; ".join(f"`{v}` = {_settings(p)}" for v, p in values.items()))
    patches = [grid["base"], *(p or {} for values in grid["axes"].values() for p in values.values())]
    used = dict.fromkeys(str(p["model"]["weights"]) for p in patches if "weights" in p.get("model", {}))
    notes = [f"`{w}` is {WEIGHT_SOURCES[w]}" for w in used if w in WEIGHT_SOURCES]
    return [*lines, "", *([f"Weights: {'; '.join(notes)}.", ""] if notes else [])]


def write_report(
    root: Path,
    out: Path,
    title: str = "Experiments: the thesis's chapter 5 on a CPU",
    pending: list[str] = (),
    grid: dict | None = None,
) -> int:
    """Write the Markdown report and its figures; returns the number of cells reported.
    `pending`: the grid's cell names; those without a result are listed as still to run.
    `grid`: the grid file's settings, to explain each axis value in a Setup section."""
    out = Path(out)
    media = out.parent / out.stem
    record = record_folder(out)
    cells = load_cells(root, record)
    for c in cells:
        if not c["recorded"]:
            record_cell(c, record)
    media.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# {title}",
        "",
        f"Generated by `regiondet report {root}` from the run folders and the cells recorded in "
        f"`{record.relative_to(out.parent).as_posix()}/` (each cell's eval.json and metrics.csv); do not edit by hand.",
        "",
    ]
    if not cells:
        lines.append("No finished cell yet.")
        atomic_write_text(out, "\n".join(lines) + "\n")
        return 0
    axes = list(cells[0]["axes"])
    head = [*axes, "mAP50", "COCO AP", "no detection", "negatives with detection", "ms/image", "train min", "steps"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in sorted(cells, key=lambda c: -c["map50"]):
        row = [c["axes"].get(a, "") for a in axes] + [
            _num(c["map50"]),
            _num(c["coco_ap"]),
            _pct(c["no_detection_rate"]),
            _pct(c["negatives_with_detection_rate"]),
            _num(c["latency_ms_median"], ".0f"),
            _num(c["train_seconds"] / 60, ".0f"),
            str(int(c["steps"])),
        ]
        lines.append("| " + " | ".join(row) + " |")
    score = cells[0].get("score")
    lines += [
        "",
        f"Rates at score {score}; latency is the median model forward per image, batch 1, "
        "on the machine that ran the cell.",
        "",
    ]
    reported = {c["cell"] for c in cells}
    todo = [n for n in pending if n not in reported]
    if todo:
        names = ", ".join(f"`{n}`" for n in todo)
        lines += [f"Still to run ({len(todo)} of the grid's {len(pending)} cells): {names}", ""]
    lines += [
        "Thesis (200 test photos, Tesla K80):",
        "",
        "| model | setting | mAP50 | no detection | s/image |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {m} | {s} | {a} | {_pct(n)} | {t if t else '-'} |" for m, s, a, n, t in THESIS]
    lines += [""] + (setup_lines(grid) if grid else [])
    lines += ["## Findings", ""]
    for p in findings(cells):
        lines += [p, ""]
    plot_curves(cells, media / "curves.png")
    lines += ["## Training curves", "", f"![curves]({media.name}/curves.png)", ""]
    lines += ["## Sample detections and failure cases", ""]
    photos, kept = set(), set()
    for c in sorted(cells, key=lambda c: -c["map50"])[:3]:
        lines += [f"### {c['cell']}", ""]
        drawn = 0
        for kind, caption in (("val", "First validation photos"), ("fail", "Worst failures")):
            shown = _pictures(c, kind, media)
            if not shown:
                continue
            names = [Path(d.name.removeprefix(f"{c['cell']}_")) for d in shown]
            lines += [f"{caption}{_failure_counts(c, names) if kind == 'fail' else ''}:", ""]
            for dest, name in zip(shown, names, strict=True):
                lines.append(f"![{name.stem}]({media.name}/{dest.name})")
                photos.add(name.stem.removeprefix(f"{kind}_"))
            lines.append("")
            kept.update(shown)
            drawn += len(shown)
        if not drawn:
            lines += ["(No drawings: they are made in the run folder, which this machine does not have.)", ""]
    for stale in set(media.glob("*.jpg")) - kept:  # pictures of cells no longer among the best
        stale.unlink()
    lines += [
        "Only validation photos are shown (Open Images, CC BY 2.0: images "
        + ", ".join(f"`{p}`" for p in sorted(photos))
        + "; authors in Open Images' `validation-images-with-rotation.csv`). The false alarms on the "
        "camera-free ICDAR scenes are drawn in each cell's `samples/` folder, not here: ICDAR's terms "
        "forbid redistributing its images.",
        "",
    ]
    atomic_write_text(out, "\n".join(lines) + "\n")
    return len(cells)
