"""A two-cell grid trains, evaluates, resumes nothing twice, and reports from its folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from conftest import CAMERA_VALID, ICDAR, tiny_config
from regiondet.cli import main


def test_grid_and_report(tmp_path, capsys):
    base = tiny_config(tmp_path / "unused", epochs=1, steps_per_epoch=2)
    base["train"].pop("out")
    base["data"]["val"] = []
    grid = {
        "out": str(tmp_path / "grid"),
        "evaluate": {
            "data": [f"voc:{CAMERA_VALID}?limit=3"],
            "negatives": [f"icdar2015:{ICDAR}?limit=2"],
            "score": 0.05,
            "draw": 1,
        },
        "base": base,
        "axes": {
            "rois": {"4": {"model": {"box_batch_size_per_image": 4}}, "16": {"model": {"box_batch_size_per_image": 16}}}
        },
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    assert main(["--quiet", "grid", str(path)]) == 0
    for cell in ("rois-4", "rois-16"):
        res = json.loads((tmp_path / "grid" / cell / "eval.json").read_text())
        assert res["axes"] == {"rois": cell.split("-")[1]} and res["steps"] == 2 and res["train_seconds"] > 0
        drawn = sorted(x.name.split("_")[0] for x in (tmp_path / "grid" / cell / "samples").glob("*.jpg"))
        first = sorted(CAMERA_VALID.glob("*.xml"))[0].stem[:16]
        labelled = [f for f in res["failures"] if f["objects"]]
        assert all(f["missed"] + f["false_alarms"] > 0 for f in res["failures"])
        assert [f["missed"] for f in labelled] == sorted((f["missed"] for f in labelled), reverse=True)
        worst = min(2, len([f for f in labelled if not Path(f["file"]).stem.startswith(first)]))
        assert drawn == ["fail"] * worst + ["negative", "val"]
    capsys.readouterr()
    assert main(["grid", str(path), "--list"]) == 0
    assert capsys.readouterr().out.split() == ["done", "rois-4", "done", "rois-16"]
    out = tmp_path / "docs" / "experiments.md"
    assert main(["report", str(tmp_path / "grid"), "--out", str(out)]) == 0
    text = out.read_text()
    lines = text.splitlines()
    start = lines.index(next(x for x in lines if x.startswith("| rois |")))
    rows = [x.split(" | ")[0] for x in lines[start + 2 : start + 4]]
    assert sorted(rows) == ["| 16", "| 4"] and not lines[start + 4]
    assert "## Findings" in text and "**rois.**" in text
    assert (tmp_path / "docs" / "experiments" / "curves.png").is_file()
    shown = sorted(x.name for x in (tmp_path / "docs" / "experiments").glob("*.jpg"))
    assert all("_val_" in x or "_fail_" in x for x in shown)  # negatives (ICDAR) are never redistributed
    assert sum("_val_" in x for x in shown) == 2
    assert ("Worst failures (`" in text) == any("_fail_" in x for x in shown)
    (tmp_path / "docs" / "experiments" / "stale_val_x.jpg").write_bytes(b"")
    assert main(["report", str(tmp_path / "grid"), "--out", str(out)]) == 0
    assert not (tmp_path / "docs" / "experiments" / "stale_val_x.jpg").exists()

    cell = tmp_path / "grid" / "rois-4"
    trained = (cell / "last.pt").stat().st_mtime_ns
    grid["evaluate"].update(draw=2, draw_failures=0)
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    assert main(["--quiet", "grid", str(path), "--reevaluate", "--only", "rois-4"]) == 0
    drawn = sorted(x.name.split("_")[0] for x in (cell / "samples").glob("*.jpg"))
    assert drawn == ["negative", "negative", "val", "val"]  # both negatives: those that fired, else the first
    assert (cell / "last.pt").stat().st_mtime_ns == trained  # nothing trained again
    assert len(list((tmp_path / "grid" / "rois-16" / "samples").glob("val_*.jpg"))) == 1

    # The report records each cell beside itself, so a cell whose run folder is gone (another
    # machine, a deleted runs/) stays in the table; a run folder wins over its record.
    record = tmp_path / "docs" / "experiments" / "cells"
    assert main(["report", str(tmp_path / "grid"), "--out", str(out)]) == 0
    before = out.read_text()
    assert sorted(x.name for x in (record / "rois-16").iterdir()) == ["eval.json", "metrics.csv"]
    pictures = sorted((tmp_path / "docs" / "experiments").glob("rois-16_*.jpg"))
    assert pictures  # a top cell's drawings stay on the page when its run folder is gone
    kept = json.loads((record / "rois-16" / "eval.json").read_text())
    shutil.rmtree(tmp_path / "grid" / "rois-16")
    assert main(["report", str(tmp_path / "grid"), "--out", str(out)]) == 0
    assert out.read_text() == before
    assert sorted((tmp_path / "docs" / "experiments").glob("rois-16_*.jpg")) == pictures
    assert json.loads((record / "rois-16" / "eval.json").read_text()) == kept
    (record / "rois-4" / "eval.json").write_text(json.dumps({**kept, "cell": "rois-4", "map50": 2.0}))
    assert main(["report", str(tmp_path / "grid"), "--out", str(out)]) == 0
    assert out.read_text() == before and json.loads((record / "rois-4" / "eval.json").read_text())["map50"] <= 1
    assert "## Setup" not in before  # without the grid file the labels cannot be explained
    assert main(["report", str(tmp_path / "grid"), "--out", str(out), "--grid", str(path)]) == 0
    text = out.read_text()
    assert "Still to run" not in text
    assert "- rois: `4` = `box_batch_size_per_image: 4`; `16` = `box_batch_size_per_image: 16`" in text
    assert "Every cell: 2 steps of 2 images" in text and f"measured on `voc:{CAMERA_VALID}?limit=3`" in text
    assert "`deepsort` is ImageNet MobileNetV2 features" in text  # the base config's weights, in words
    # A grid that names its report counts recorded cells as finished: nothing is trained again.
    path.write_text(yaml.safe_dump({**grid, "report": str(out)}, sort_keys=False))
    capsys.readouterr()
    assert main(["grid", str(path), "--list"]) == 0
    assert capsys.readouterr().out.split() == ["done", "rois-4", "recorded", "rois-16"]
    assert main(["--quiet", "grid", str(path)]) == 0
    assert not (tmp_path / "grid" / "rois-16").exists()
    shutil.rmtree(record / "rois-16")
    assert main(["report", str(tmp_path / "grid"), "--out", str(out), "--grid", str(path)]) == 0
    assert "Still to run (1 of the grid's 2 cells): `rois-16`" in out.read_text()
    (record / "rois-16").mkdir()
    (record / "rois-16" / "eval.json").write_text("{")
    capsys.readouterr()
    assert main(["report", str(tmp_path / "grid"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "rois-16/eval.json" in err and "unreadable" in err


def test_grid_cells_pick_a_fractional_design_and_bad_cells_name_the_file(tmp_path, capsys):
    base = tiny_config(tmp_path / "unused", epochs=1, steps_per_epoch=2)
    grid = {
        "out": str(tmp_path / "grid"),
        "evaluate": {"data": [f"voc:{CAMERA_VALID}?limit=3"]},
        "base": base,
        "axes": {
            "rois": {4: {"model": {"box_batch_size_per_image": 4}}, 16: {"model": {"box_batch_size_per_image": 16}}},
            "size": {"96": {"model": {"min_size": 96}}, "128": {"model": {"min_size": 128}}},
        },
    }
    path = tmp_path / "grid.yaml"

    def listed(cells):
        path.write_text(yaml.safe_dump({**grid, "cells": cells}, sort_keys=False))
        code = main(["grid", str(path), "--list"])
        out, err = capsys.readouterr()
        return code, out.split()[1::2], err

    code, names, _ = listed([{"rois": 4, "size": 128}, {"rois": "16", "size": "96"}])
    assert code == 0 and names == ["rois-4_size-128", "rois-16_size-96"]
    for bad, words in (
        ([{"rois": 8, "size": 96}], "rois '8' is not one of"),
        ([{"rois": 4}], "one value for each axis"),
        ([{"rois": 4, "size": 96}, {"rois": 4, "size": 96}], "twice"),
        ([], "no cell"),
    ):
        code, _, err = listed(bad)
        assert code != 0 and words in err and str(path) in err and "Traceback" not in err


def result(axes: dict[str, str], map50: float) -> dict:
    """A cell's eval.json as the report reads it, named by its axis values."""
    return {
        "cell": "-".join(axes.values()),
        "axes": axes,
        "map50": map50,
        "no_detection_rate": 0.1,
        "negatives_with_detection_rate": 0.0,
        "latency_ms_median": 100.0,
    }


def test_findings_compare_only_cells_that_differ_in_one_axis():
    """In a fractional grid, a mean over the other axes would mix settings; matched cells do not."""
    from regiondet.experiments.analysis import findings, matched_groups

    def cell(backbone, rois, m):
        return result({"backbone": backbone, "rois": rois}, m)

    cells = [cell("vgg", "4", 0.5), cell("vgg", "50", 0.7), cell("mnv2", "50", 0.6), cell("mnv2", "256", 0.2)]
    by_backbone = matched_groups(cells, "backbone")
    assert [(rest, [c["cell"] for c in g]) for rest, g in by_backbone] == [({"rois": "50"}, ["vgg-50", "mnv2-50"])]
    by_rois = matched_groups(cells, "rois")
    assert [[c["cell"] for c in g] for _, g in by_rois] == [["mnv2-50", "mnv2-256"], ["vgg-50", "vgg-4"]]
    text = " ".join(findings(cells))
    assert "at rois 50: `vgg` 0.700" in text and "`mnv2` 0.600" in text and "at backbone mnv2: `50` 0.600" in text
    # the grid file's reference (the thesis's results) is set beside the cells, not typed into the code
    told = findings(cells, {"best": "The reference reached 0.9.", "axes": {"rois": "More RoIs helped there."}})
    assert told[0].endswith("The reference reached 0.9.") and "More RoIs helped there." in told[2]
    assert "reference" not in " ".join(findings(cells)) and "thesis" not in " ".join(findings(cells))


def test_a_seed_axis_states_the_noise_floor_after_the_other_findings():
    from regiondet.experiments.analysis import findings

    def cell(rois, seed, m):
        return result({"rois": rois, "seed": seed}, m)

    paragraphs = findings([cell("4", "0", 0.5), cell("4", "1", 0.44), cell("50", "0", 0.7), cell("50", "1", 0.68)])
    assert [p.split(".**")[0] for p in paragraphs] == ["**Best cell", "**rois", "**seed"]
    assert "differs by up to 0.060 mAP50" in paragraphs[-1] and "Seed 0 is ahead in all 2 pairs" in paragraphs[-1]
    assert paragraphs[1].endswith(" Across seeds: the order is the same in seeds 0 and 1.")
    paragraphs = findings([cell("4", "0", 0.5), cell("4", "1", 0.69), cell("50", "0", 0.7), cell("50", "1", 0.68)])
    assert "the order changes between seeds 0 and 1" in paragraphs[1] and "is ahead in all" not in paragraphs[-1]
