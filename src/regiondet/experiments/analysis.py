"""What a grid's cells say: cells matched on every axis but one, the findings per axis set
beside the grid's reference (the thesis's own results), and whether seeds agree."""

from __future__ import annotations

from pathlib import Path

from regiondet.experiments.formatting import pct


def matched_groups(cells: list[dict], axis: str) -> list[tuple[dict[str, str], list[dict]]]:
    """Cells that differ only in `axis`, grouped by their other axis values (groups of 2 or more).

    A fractional grid confounds means over the other axes; matched cells do not.
    """
    groups: dict[tuple, list[dict]] = {}
    for c in cells:
        rest = tuple(sorted((a, v) for a, v in c["axes"].items() if a != axis))
        groups.setdefault(rest, []).append(c)
    return [(dict(k), sorted(v, key=lambda c: -c["map50"])) for k, v in sorted(groups.items()) if len(v) > 1]


def failure_counts(cell: dict, shown: list[Path]) -> str:
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


def findings(cells: list[dict], reference: dict | None = None) -> list[str]:
    """One paragraph per axis: matched cells' mAP50, set beside what the reference (the grid
    file's `reference`: its `best` sentence and a note per axis) saw."""
    reference = reference or {}
    out = []
    best = max(cells, key=lambda c: c["map50"])
    out.append(
        f"**Best cell.** `{best['cell']}` reaches mAP50 {best['map50']:.3f} with {pct(best['no_detection_rate'])} "
        f"of validation images left without a detection and {pct(best['negatives_with_detection_rate'])} of "
        f"camera-free images with a false alarm, at {best['latency_ms_median']:.0f} ms per image on this CPU."
        + (f" {reference['best']}" if reference.get("best") else "")
    )
    notes = {str(k): str(v) for k, v in (reference.get("axes") or {}).items()}
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
                f"`{c['axes'][axis]}` {c['map50']:.3f} ({pct(c['no_detection_rate'])} without a box)" for c in group
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
