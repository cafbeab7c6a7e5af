"""A two-cell grid trains, evaluates, resumes nothing twice, and reports from its folders."""

from __future__ import annotations

import json

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
        assert len(list((tmp_path / "grid" / cell / "samples").glob("*.jpg"))) == 2
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
