"""Readers on the real shared data and on small hand-made files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import CAMERA_TRAIN, CAMERA_VALID, ICDAR, MSRA, PHONE_YAML
from regiondet.data.formats.coco import write_coco
from regiondet.data.formats.msra_td500 import rotated_rect
from regiondet.data.spec import load_spec, parse_spec
from regiondet.data.stats import dataset_stats
from regiondet.errors import UserError


def test_voc_camera_counts():
    train = dataset_stats(load_spec(f"voc:{CAMERA_TRAIN}"))
    assert (train["images"], train["boxes_per_class"]) == (2100, {"Camera": 2727})
    valid = dataset_stats(load_spec(f"voc:{CAMERA_VALID}"))
    assert (valid["images"], valid["boxes_per_class"]) == (200, {"Camera": 243})


def test_voc_images_without_xml_are_negatives(tmp_path, capsys):
    xmls = sorted(CAMERA_VALID.glob("*.xml"))[:2]
    for x in xmls:
        shutil.copy(x, tmp_path)
        shutil.copy(x.with_suffix(".jpg"), tmp_path)
    shutil.copy(ICDAR / "images" / "img_1.jpg", tmp_path / "street.jpg")
    samples = load_spec(f"voc:{tmp_path}")
    assert len(samples) == 3 and all(len(s.boxes) > 0 for s in samples[:2])
    street = samples[2]
    assert street.path.name == "street.jpg" and len(street.boxes) == 0 and (street.width, street.height) == (1280, 720)
    assert "1 images without an XML read as negatives" in capsys.readouterr().err


def test_yolo_phone_counts_and_boxes():
    samples = load_spec(f"yolo:{PHONE_YAML}")
    st = dataset_stats(samples)
    assert st["images"] == 300
    assert st["boxes_per_class"] == {"airpods": 90, "phone": 88, "wallet": 122}
    s = samples[0]
    assert (s.width, s.height) == (640, 640)
    b = s.boxes[0]
    assert 0 <= b[0] < b[2] <= 640 and 0 <= b[1] < b[3] <= 640
    assert len(load_spec(f"yolo:{PHONE_YAML}:valid")) == 32


def test_icdar2015_care_and_dont_care():
    samples = load_spec(f"icdar2015:{ICDAR}")
    assert len(samples) == 1000
    care = sum(int((~s.ignore).sum()) for s in samples)
    dont = sum(int(s.ignore.sum()) for s in samples)
    assert (care, dont) == (4468, 7418)
    first = samples[0]
    assert first.path.name == "img_1.jpg" and first.polygons[0].shape == (4, 2)


def test_msra_td500_lines():
    samples = load_spec(f"msra-td500:{MSRA}")
    assert len(samples) == 300
    assert sum(len(s.boxes) for s in samples) == 1068
    assert sum(int(s.ignore.sum()) for s in samples) == 101


def test_rotated_rect_turns_about_centre():
    pts = rotated_rect(0, 0, 4, 2, np.pi / 2)
    np.testing.assert_allclose(pts.mean(0), [2, 1], atol=1e-5)
    np.testing.assert_allclose(np.ptp(pts, 0), [2, 4], atol=1e-5)


def test_coco_round_trip(tmp_path):
    samples = load_spec(f"voc:{CAMERA_VALID}?limit=5")
    write_coco(samples, ["Camera"], tmp_path / "ann.json")
    back = load_spec(f"coco:{tmp_path / 'ann.json'}")
    assert [s.path for s in back] == [s.path for s in samples]
    for a, b in zip(samples, back, strict=True):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
        assert a.labels == b.labels


def test_plaintext_with_negative(tmp_path):
    img = sorted(CAMERA_VALID.glob("*.jpg"))[0]
    ann = tmp_path / "ann.txt"
    ann.write_text(f"{img},10,20,110,120,camera\n{img},5,5,50,50,phone\n{sorted(CAMERA_VALID.glob('*.jpg'))[1]},,,,,\n")
    samples = load_spec(f"txt:{ann}")
    assert [len(s.boxes) for s in samples] == [2, 0]
    assert samples[0].labels == ["camera", "phone"]


def test_spec_guessing_and_options():
    assert parse_spec(str(PHONE_YAML)).format == "yolo"
    assert parse_spec(str(CAMERA_VALID)).format == "voc"
    s = parse_spec(f"yolo:{PHONE_YAML}:val?limit=3")
    assert (s.path, s.extra, s.limit) == (str(PHONE_YAML), "val", 3)
    with pytest.raises(UserError, match="unknown SPEC option"):
        parse_spec(f"voc:{CAMERA_VALID}?colour=red")


def test_holdout_and_rest_partition_the_images():
    rest = load_spec(f"icdar2015:{ICDAR}?part=rest&fraction=0.2&seed=0")
    hold = load_spec(f"icdar2015:{ICDAR}?part=holdout&fraction=0.2&seed=0")
    assert len(hold) == 200 and len(rest) == 800
    assert not {s.path for s in rest} & {s.path for s in hold}


def test_repeat_weights_a_source_in_a_training_mix():
    msra = "msra-td500:" + str(MSRA)
    full = load_spec(msra)
    third = load_spec(msra + "?repeat=0.3&seed=1")
    assert len(third) == round(0.3 * len(full)) and len({s.path for s in third}) == len(third)
    assert {s.path for s in third} < {s.path for s in full}
    assert [s.path for s in load_spec(msra + "?repeat=0.3&seed=1")] == [s.path for s in third]
    assert {s.path for s in load_spec(msra + "?repeat=0.3&seed=2")} != {s.path for s in third}
    twice = load_spec(msra + "?repeat=2.5")
    assert len(twice) == 2 * len(full) + round(0.5 * len(full))
    assert parse_spec(msra + "?repeat=0.3").text.endswith("repeat=0.3")
    with pytest.raises(UserError, match="repeat must be above 0"):
        parse_spec(msra + "?repeat=0")


def test_coco_file_is_valid_json(tmp_path):
    samples = load_spec(f"icdar2015:{ICDAR}?limit=2")
    write_coco(samples, ["text"], tmp_path / "t.json")
    d = json.loads((tmp_path / "t.json").read_text())
    assert len(d["images"]) == 2 and d["annotations"][0]["segmentation"]
    assert {a["iscrowd"] for a in d["annotations"]} == {0, 1}


PHONE_PHOTOS = PHONE_YAML.parents[1] / "phone-photos"


def test_phone_photos_counts_and_file_names_beginning_with_a_dash():
    """Both real-scene phone sets read by split; Roboflow names some files '-1100_png...'."""
    expected = {
        "oi-mobile-phone": {"train": (206, 290), "valid": (60, 86), "test": (30, 36)},
        "cellphone": {"train": (471, 772), "valid": (64, 82), "test": (49, 72)},
    }
    for name, splits in expected.items():
        for split, (images, boxes) in splits.items():
            st = dataset_stats(load_spec(f"yolo:{PHONE_PHOTOS / name / 'data.yaml'}:{split}"))
            assert (st["images"], sum(st["boxes_per_class"].values())) == (images, boxes), (name, split)
    dashed = [s for s in load_spec(f"yolo:{PHONE_PHOTOS / 'cellphone' / 'data.yaml'}:test") if s.path.name[0] == "-"]
    assert dashed and all(len(s.boxes) for s in dashed)


def test_cli_takes_an_image_whose_name_begins_with_a_dash(tmp_path, monkeypatch, capsys):
    from regiondet.cli import main

    src = next((PHONE_PHOTOS / "cellphone" / "test" / "images").glob("-*.jpg"))
    shutil.copy(src, tmp_path / src.name)
    monkeypatch.chdir(tmp_path)
    assert main(["--quiet", "detect", src.name, "--score", "0.9"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["file"].endswith(src.name)
    assert main(["--quiet", "data", "stats", f"yolo:{PHONE_PHOTOS / 'cellphone' / 'data.yaml'}:test"]) == 0
