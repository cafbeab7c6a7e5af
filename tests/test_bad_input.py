"""User mistakes give one clear line naming the file (and line), never a traceback."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from conftest import CAMERA_VALID, DATA, PHONE_YAML, ROOT
from regiondet.cli import main
from regiondet.data.dataset import ClassMapper, DetectionDataset
from regiondet.data.spec import load_spec
from regiondet.errors import UserError

XML = """<annotation><filename>{img}</filename><size><width>416</width><height>416</height></size>
<object><name>Camera</name><bndbox><xmin>{x1}</xmin><ymin>10</ymin><xmax>{x2}</xmax><ymax>90</ymax></bndbox></object>
</annotation>"""


def _voc_copy(tmp_path, n=2):
    for img in sorted(CAMERA_VALID.glob("*.jpg"))[:n]:
        shutil.copy(img, tmp_path / img.name)
        shutil.copy(img.with_suffix(".xml"), tmp_path / img.with_suffix(".xml").name)
    return sorted(tmp_path.glob("*.xml"))


def test_malformed_xml_names_file(tmp_path):
    xml = _voc_copy(tmp_path)[0]
    xml.write_text("<annotation><object>")
    with pytest.raises(UserError, match=xml.name):
        load_spec(f"voc:{tmp_path}")


def test_missing_image_names_annotation(tmp_path):
    xml = _voc_copy(tmp_path)[0]
    xml.with_suffix(".jpg").unlink()
    with pytest.raises(UserError, match="not found"):
        load_spec(f"voc:{tmp_path}")


def test_boxes_outside_and_zero_area_are_fixed_and_counted(tmp_path, capsys):
    xml = _voc_copy(tmp_path, 1)[0]
    xml.write_text(XML.format(img=xml.with_suffix(".jpg").name, x1=-20, x2=500))
    s = load_spec(f"voc:{tmp_path}")[0]
    assert s.boxes[0].tolist() == [0, 10, 416, 90]
    xml.write_text(XML.format(img=xml.with_suffix(".jpg").name, x1=50, x2=50))
    assert len(load_spec(f"voc:{tmp_path}")[0].boxes) == 0
    assert "zero area skipped" in capsys.readouterr().err


def test_bad_yolo_line_names_file_and_line(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    img = sorted((PHONE_YAML.parent / "train" / "images").glob("*.jpg"))[0]
    shutil.copy(img, tmp_path / "images" / "a.jpg")
    (tmp_path / "labels" / "a.txt").write_text("1 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.1 0.1\n")
    (tmp_path / "data.yaml").write_text("train: images\nnames: [airpods, phone]\n")
    with pytest.raises(UserError, match=r"a\.txt:2: class id 7"):
        load_spec(f"yolo:{tmp_path / 'data.yaml'}")
    (tmp_path / "labels" / "a.txt").write_text("1 0.5 zero 0.2 0.2\n")
    with pytest.raises(UserError, match=r"a\.txt:1: not numbers"):
        load_spec(f"yolo:{tmp_path / 'data.yaml'}")


def test_corrupt_image_is_named(tmp_path):
    xml = _voc_copy(tmp_path, 1)[0]
    jpg = xml.with_suffix(".jpg")
    jpg.write_bytes(jpg.read_bytes()[:300])  # truncated JPEG
    samples = load_spec(f"voc:{tmp_path}")
    ds = DetectionDataset(samples, ["Camera"])
    with pytest.raises(UserError, match=jpg.name):
        ds[0]


def test_unknown_class_is_named():
    samples = load_spec(f"yolo:{PHONE_YAML}?limit=5")
    with pytest.raises(UserError, match="not a model class"):
        ClassMapper(["camera"]).apply_all(samples)
    mapped = ClassMapper(["camera", "phone"], {"airpods": None, "wallet": None}).apply_all(samples)
    assert all(set(s.labels) <= {"phone"} for s in mapped)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["data", "stats", "voc:/nonexistent"], "VOC folder not found"),
        (["data", "stats", "nonsense"], "cannot tell the format"),
        (["detect", "/nonexistent.jpg", "--model", "/nonexistent.pt"], "checkpoint not found"),
        (["detect", "/nonexistent.jpg", "--model", "txt"], "nor a shipped model (default, camera_phone, text"),
        (["train", "/nonexistent.yaml"], "config file not found"),
    ],
)
def test_cli_errors_are_one_line(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err


def test_foreign_checkpoint_rejected(tmp_path, capsys):
    import torch

    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    img = str(sorted(CAMERA_VALID.glob("*.jpg"))[0])
    assert main(["detect", img, "--model", str(tmp_path / "other.pt")]) == 2
    assert "not a regiondet detector checkpoint" in capsys.readouterr().err
    assert main(["detect", img, "--model", str(tmp_path / "junk.pt")]) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err


def test_config_typo_is_named(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  backbone: mobilenet_v2_fpn\n  clases: [camera]\n")
    assert main(["train", str(cfg)]) == 2
    assert "unknown key(s) ['clases']" in capsys.readouterr().err


def test_malformed_yaml_is_one_line_with_its_line(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  backbone: vgg16\n  classes: [camera\n")
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert "c.yaml:" in err and "malformed YAML" in err and "\n" not in err


def test_checkpoint_whose_tensors_do_not_fit_names_the_first_mismatches(trained_run, tmp_path, capsys):
    """A short line: counts per kind and the first names, not torch's pages of keys."""
    import torch

    ckpt = torch.load(trained_run / "best.pt", weights_only=True)
    state = ckpt["model"]
    names = [k for k in state if k.startswith("backbone.")]
    for k in names[:5]:
        del state[k]
    state["roi_heads.box_predictor.cls_score.bias"] = torch.zeros(7)
    state["extra.weight"] = torch.zeros(1)
    bad = tmp_path / "bad.pt"
    torch.save(ckpt, bad)
    assert main(["--quiet", "detect", "--model", str(bad), str(CAMERA_VALID)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and len(err) < 600
    assert "5 missing (" in err and "... 2 more" in err and "1 unexpected (extra.weight)" in err
    assert "1 of another shape (roi_heads.box_predictor.cls_score.bias (7,) vs (2,))" in err
    assert str(bad) in err


@pytest.mark.parametrize(
    ("fmt", "content", "expect"),
    [
        ("txt", "{img},30,40,10,80,camera\n", ":1: malformed box: its x max lies before its x min"),
        ("txt", "{img},nan,40,50,80,camera\n", ":1: malformed box: a coordinate is not a finite number"),
        ("yolo", "0 0.5 0.5 -0.2 0.3\n", ":1: malformed box: negative width or height"),
        ("yolo", "0 0.5 nan 0.2 0.3\n", ":1: malformed box: a value is not a finite number"),
        ("voc", "<xmin>30</xmin><ymin>90</ymin><xmax>60</xmax><ymax>40</ymax>", "<object> 1 ('camera')"),
    ],
)
def test_inverted_and_nan_boxes_are_malformed_with_file_and_line(tmp_path, fmt, content, expect):
    """Not 'boxes with zero area': a reader says the box is malformed, and where."""
    photo = sorted(CAMERA_VALID.glob("*.jpg"))[0]
    img = tmp_path / "images" / "a.jpg"
    img.parent.mkdir()
    shutil.copy(photo, img)
    if fmt == "txt":
        ann = tmp_path / "ann.txt"
        ann.write_text(content.format(img=img))
        spec = f"txt:{ann}"
    elif fmt == "yolo":
        (tmp_path / "labels").mkdir()
        ann = tmp_path / "labels" / "a.txt"
        ann.write_text(content)
        (tmp_path / "data.yaml").write_text("train: images\nnames: [camera]\n")
        spec = f"yolo:{tmp_path / 'data.yaml'}"
    else:
        ann = tmp_path / "images" / "a.xml"
        ann.write_text(
            f"<annotation><filename>a.jpg</filename><object><name>camera</name><bndbox>{content}</bndbox></object></annotation>"
        )
        spec = f"voc:{tmp_path / 'images'}"
    with pytest.raises(UserError) as e:
        load_spec(spec)
    assert str(ann) in str(e.value) and expect in str(e.value)
    if fmt == "voc":
        assert "malformed <bndbox>" in str(e.value) and "y max lies before its y min" in str(e.value)


def test_voc_size_that_disagrees_with_its_image_stops_or_rescales_on_request(tmp_path, capsys):
    """An XML written for 416x416 beside an 832x832 JPEG: an error naming both sizes by default,
    boxes scaled to the image with ?rescale=1, never a silent guess."""
    from PIL import Image

    xml = sorted(CAMERA_VALID.glob("*.xml"))[0]
    original = load_spec(f"voc:{CAMERA_VALID}?limit=1")[0]
    assert original.path.stem == xml.stem and (original.width, original.height) == (416, 416)
    Image.open(xml.with_suffix(".jpg")).resize((832, 832)).save(tmp_path / f"{xml.stem}.jpg")
    shutil.copy(xml, tmp_path)
    with pytest.raises(UserError, match="says 416x416 but the image .* is 832x832"):
        load_spec(f"voc:{tmp_path}")
    scaled = load_spec(f"voc:{tmp_path}?rescale=1")[0]
    assert (scaled.width, scaled.height) == (832, 832)
    assert abs(scaled.boxes - original.boxes * 2).max() < 1.0
    assert "boxes rescaled" in capsys.readouterr().err
    with pytest.raises(UserError, match="voc and coco SPECs only"):
        load_spec(f"yolo:{PHONE_YAML}?rescale=1")


def test_coco_image_size_that_disagrees_with_its_file_stops_or_rescales_on_request(tmp_path, capsys):
    """A COCO entry that says 416x416 for an 832x832 JPEG (the VOC case, in JSON): one line naming
    both sizes, or boxes scaled to the file with ?rescale=1."""
    from PIL import Image

    original = load_spec(f"voc:{CAMERA_VALID}?limit=1")[0]
    Image.open(original.path).resize((832, 832)).save(tmp_path / "a.jpg")
    x1, y1, x2, y2 = (float(v) for v in original.boxes[0])
    data = {
        "images": [{"id": 7, "file_name": "a.jpg", "width": 416, "height": 416}],
        "categories": [{"id": 1, "name": "camera"}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1]}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    assert main(["data", "stats", f"coco:{path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "image 7 (a.jpg) is 416x416 in the file but 832x832 on disk" in err[0], err
    scaled = load_spec(f"coco:{path}?rescale=1")[0]
    assert (scaled.width, scaled.height) == (832, 832)
    assert abs(scaled.boxes[0] - original.boxes[0] * 2).max() < 1e-3
    assert "boxes rescaled" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["detect", "samples", "--score", "2"],
        ["detect", "samples", "--score", "nan"],
        ["detect", "samples", "--score", "-1"],
        ["evaluate", "--data", "x", "--score", "inf"],
        ["evaluate", "--data", "x", "--threads", "-3"],
        ["detect", "samples", "--stride", "0"],
        ["benchmark", "speed", "--runs", "0"],
        ["serve", "--port", "-1"],
        ["serve", "--port", "70000"],
    ],
)
def test_out_of_range_numbers_are_refused_before_any_work(argv, capsys):
    """A score of 2 or nan would silently find nothing, -3 threads or port -1 fail deep inside a
    library: each is refused by the argument parser with one line naming the option."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("regiondet") and f"argument {argv[-2]}" in err[0] and argv[-1] in err[0]


def test_detect_never_writes_over_an_input(tmp_path, capsys):
    """`detect same/ --out same/` would replace each photo with its drawn copy: refused before
    any work, the photos unchanged."""
    photo = tmp_path / "camera_desk.jpg"
    shutil.copy(ROOT / "samples" / "camera_desk.jpg", photo)
    before = photo.read_bytes()
    assert main(["detect", str(tmp_path), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "would write over this input" in err[0] and str(photo) in err[0]
    assert photo.read_bytes() == before and sorted(tmp_path.iterdir()) == [photo]


def test_a_very_elongated_image_is_skipped_in_one_line_and_the_folder_goes_on(tmp_path, capsys):
    from PIL import Image

    Image.new("RGB", (40000, 2)).save(tmp_path / "a_strip.png")
    Image.new("RGB", (2, 100000)).save(tmp_path / "b_post.png")
    shutil.copy(ROOT / "samples" / "camera_desk.jpg", tmp_path / "c_desk.jpg")
    assert main(["detect", str(tmp_path), "--runtime", "torch"]) == 0
    out, err = capsys.readouterr()
    assert [json.loads(line)["file"] for line in out.strip().splitlines()] == [str(tmp_path / "c_desk.jpg")]
    err = err.strip().splitlines()
    assert len(err) == 2 and all("elongated" in line and "skipped" in line for line in err)


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["evaluate", "--model", "default", "--data", "SPEC", "--json", "{dir}"],
            "--json must be a file, and this is a folder",
        ),
        (["detect", "{sample}", "--out", "{file}"], "--out must be a folder, and this is a file"),
        (["detect", "{sample}", "--events", "{dir}"], "--events must be a file, and this is a folder"),
        (["export", "default", "{dir}/"], "the output must be a file, and this is a folder"),
        (["blur", "{sample}", "--out", "{file}"], "--out must be a folder, and this is a file"),
        (["data", "convert", "SPEC", "--out", "{file}/sub.json"], "is a file, so nothing can be written under it"),
        (["detect", "{sample}", "--out", "/proc/regiondet-out"], "--out: nothing can be written in /proc"),
        (["benchmark", "faces", "--data", "SPEC", "--markdown", ""], "--markdown is empty"),
    ],
)
def test_output_paths_are_checked_before_any_work(tmp_path, capsys, args, message):
    """A folder where a file is wanted, a file where a folder is, or a place nothing can be
    written: one line before any data or model is loaded (SPEC is never read)."""
    folder, file = tmp_path / "a_folder", tmp_path / "a_file"
    folder.mkdir()
    file.write_text("keep me")
    sample = ROOT / "samples" / "phone_webcam.jpg"
    argv = [a.format(dir=folder, file=file, sample=sample) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert file.read_text() == "keep me" and not any(folder.iterdir())


def test_report_on_a_missing_grid_folder_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(tmp_path / "nonexistent")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nonexistent" in err[0] and "no such grid folder" in err[0]
    assert not any(tmp_path.iterdir())


def test_evaluate_json_is_strict_json_with_null_for_what_cannot_be_measured(tmp_path, capsys):
    """Phone photos only: camera AP cannot be measured; it is null, never a bare NaN."""

    def refuse(constant):
        raise ValueError(f"bare {constant} in JSON")

    out = tmp_path / "eval.json"
    data = f"yolo:{DATA / 'phone-photos' / 'cellphone' / 'data.yaml'}:valid?labels=phone&limit=3"
    assert (
        main(["--quiet", "evaluate", "--model", "default", "--runtime", "torch", "--data", data, "--json", str(out)])
        == 0
    )
    printed = json.loads(capsys.readouterr().out, parse_constant=refuse)
    saved = json.loads(out.read_text(), parse_constant=refuse)
    assert saved["ap50_per_class"]["camera"] is None and printed["ap50_per_class"]["camera"] is None
    assert 0 <= saved["ap50_per_class"]["phone"] <= 1


def test_export_to_a_name_that_is_neither_checkpoint_nor_onnx_is_refused(tmp_path, capsys):
    out = tmp_path / "model.txt"
    assert main(["export", "default", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.txt" in err[0] and "*.onnx" in err[0]
    assert not out.exists()


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda d: d["categories"].append({"id": 1, "name": "phone"}), "category id 1 is given twice"),
        (lambda d: d["annotations"].append(dict(d["annotations"][0])), "annotation id 1 is given twice"),
        (lambda d: d["images"].append(dict(d["images"][0])), "image id 1 is given twice"),
    ],
)
def test_coco_ids_given_twice_are_refused(tmp_path, capsys, change, message):
    """A second category of one id used to rename every box of the first, silently."""
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 64}],
        "categories": [{"id": 1, "name": "camera"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]}],
    }
    change(data)
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    assert main(["data", "stats", f"coco:{path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and str(path) in err[0]


def test_yolo_nc_that_disagrees_with_names_is_refused(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "data.yaml").write_text("path: .\nval: images\nnc: 3\nnames: [phone]\n")
    assert main(["data", "stats", f"yolo:{tmp_path / 'data.yaml'}:val"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nc: 3 but names 1 classes" in err[0]


def test_a_gif_in_a_folder_is_read_as_it_is_when_named(tmp_path, capsys):
    """A .gif named on its own was read while one inside a folder was skipped without a word."""
    Image.open(ROOT / "samples" / "phone_webcam.jpg").convert("P").save(tmp_path / "phone.gif")
    assert main(["--quiet", "detect", "--runtime", "torch", str(tmp_path)]) == 0
    from_folder = json.loads(capsys.readouterr().out)
    assert main(["--quiet", "detect", "--runtime", "torch", str(tmp_path / "phone.gif")]) == 0
    named = json.loads(capsys.readouterr().out)
    assert from_folder["file"].endswith("phone.gif") and from_folder["labels"] == named["labels"] == ["phone"]
