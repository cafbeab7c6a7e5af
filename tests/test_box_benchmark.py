"""`regiondet benchmark boxes`: the shipped model beside TensorFlow's COCO SSD, one table."""

from __future__ import annotations

import json

import pytest

from conftest import CAMERA_VALID, DATA, ICDAR, main
from regiondet.benchmark.box_peers import CocoSSDPeer
from regiondet.data.images import load_rgb
from regiondet.data.spec import load_spec
from regiondet.errors import UserError
from regiondet.evaluation.detection import image_outcome

CELLPHONE = DATA / "phone-photos" / "cellphone" / "data.yaml"


def test_coco_ssd_peer_finds_real_phones_as_phone():
    peer = CocoSSDPeer(["camera", "phone"], score=0.3, threads=1)
    samples = load_spec(f"yolo:{CELLPHONE}:test?limit=10")
    found = 0
    for s in samples:
        p = peer.predict(load_rgb(s.path))
        assert set(p.labels) <= {"phone"} and (p.class_ids == 2).all()
        s.labels = ["phone"] * len(s.labels)
        missed, _ = image_outcome(
            s, {"boxes": p.boxes, "scores": p.scores, "labels": p.class_ids}, ["camera", "phone"], 0.3
        )
        found += len(s.boxes) - missed
    assert found >= 5  # COCO's cell phone class finds real phones


def test_peer_needs_a_phone_class():
    with pytest.raises(UserError, match="phone"):
        CocoSSDPeer(["camera"])


def test_benchmark_boxes_table_and_json(tmp_path, capsys):
    out = tmp_path / "b.json"
    argv = [
        "--quiet",
        "benchmark",
        "boxes",
        "--threads",
        "1",
        "--json",
        str(out),
        "--markdown",
        str(tmp_path / "b.md"),
        "--data",
        f"yolo:{CELLPHONE}:test?labels=phone&limit=6",
        "--data",
        f"voc:{CAMERA_VALID}?labels=camera&limit=4",
        "--negatives",
        f"icdar2015:{ICDAR}?part=holdout&limit=3",
        "--class-map",
        "mobile-phone=phone",
    ]
    assert main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["method"] for r in rows] == ["regiondet (default)"] * 3 + ["coco-ssd"] * 3
    phone = rows[3]
    assert phone["images"] == 6 and phone["ap50_per_class"]["phone"] > 0.3 and phone["lens_ap50"] is not None
    assert phone["ap50_per_class"]["camera"] is None  # null (strict JSON, not NaN): this set boxes no camera
    assert rows[5]["negatives"] == 3 and 0 <= rows[5]["negatives_with_detection_rate"] <= 1
    cameras = rows[1]  # a photo with a lens box of either class is not without a box for the alert
    assert cameras["lens_no_detection_rate"] <= cameras["no_detection_rate"]
    table = capsys.readouterr().out
    assert "| coco-ssd | cellphone/data.yaml:test | 6 |" in table and "lens AP50" in table and "no lens box" in table
    # objects boxed as the other class: the confusion matrix's off-diagonal, as counted in the JSON
    said = {r["method"] + r["data"]: r["confusion"] for r in rows if "confusion" in r}
    assert len(said) == 4
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] + cells[1] in said:
            counts = said[cells[0] + cells[1]]
            wrong = sum(n for t, row in counts.items() for p, n in row.items() if "background" not in (t, p) and t != p)
            shown = sum(int(w.split()[0]) for w in cells[6].split(", "))  # "0" or "7 camera as phone, ..."
            assert shown == wrong, (cells, counts)
    assert (tmp_path / "b.md").read_text().strip() == table.strip()
