"""evaluate and detect end to end on a tiny trained model, and the Python API."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict

import numpy as np
from PIL import Image

from conftest import CAMERA_VALID, ICDAR, PHONE_YAML
from regiondet import Detector
from regiondet.cli import main
from regiondet.models import zoo
from regiondet.models.zoo import CARDS, MODELS, shipped_onnx, shipped_path


def test_evaluate_json_keys(trained_run, tmp_path, capsys):
    out = tmp_path / "m.json"
    argv = [
        "--quiet",
        "evaluate",
        "--model",
        str(trained_run / "best.pt"),
        "--data",
        f"voc:{CAMERA_VALID}?limit=8",
        "--negatives",
        f"icdar2015:{ICDAR}?limit=3",
        "--score",
        "0.05",
        "--json",
        str(out),
    ]
    assert main(argv) == 0
    res = json.loads(out.read_text())
    for key in (
        "map50",
        "ap50_per_class",
        "coco_ap",
        "coco_ap50",
        "coco_ap75",
        "no_detection_rate",
        "negatives_with_detection_rate",
        "latency_ms_median",
        "latency_ms_p90",
    ):
        assert key in res, key
    assert set(res["ap50_per_class"]) == {"camera"}  # VOC "Camera" matched case-insensitively
    assert 0 <= res["map50"] <= 1 and 0 <= res["no_detection_rate"] <= 1
    assert res["images"] == 8 and res["negatives"] == 3 and res["latency_ms_median"] > 0
    assert out.with_suffix(".pr.png").is_file()
    fired = [f for f in res["failures"] if f["objects"] == 0]
    assert len(fired) == round(res["negatives_with_detection_rate"] * 3) and all(f["false_alarms"] for f in fired)
    printed = capsys.readouterr()
    assert json.loads(printed.out)["map50"] == res["map50"] and "failures" not in json.loads(printed.out)


def test_evaluate_unknown_class_needs_a_map(trained_run, capsys):
    argv = ["--quiet", "evaluate", "--model", str(trained_run / "best.pt"), "--data", f"yolo:{PHONE_YAML}?limit=4"]
    assert main(argv) == 2
    assert "class_map" in capsys.readouterr().err
    argv += ["--class-map", "phone=camera", "--class-map", "airpods=", "--class-map", "wallet="]
    assert main(argv) == 0


def test_detect_writes_json_lines_and_images(trained_run, tmp_path, capsys):
    images = sorted(CAMERA_VALID.glob("*.jpg"))[:2]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really")
    argv = [
        "detect",
        str(images[0]),
        str(images[1]),
        str(bad),
        "--model",
        str(trained_run / "best.pt"),
        "--score",
        "0.0",
        "--out",
        str(tmp_path / "drawn"),
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    lines = [json.loads(x) for x in captured.out.splitlines()]
    assert [x["file"] for x in lines] == [str(p) for p in images]
    assert all(len(x["boxes"]) == len(x["labels"]) == len(x["scores"]) for x in lines)
    assert "broken.jpg" in captured.err
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == sorted(p.stem + ".jpg" for p in images)


def test_python_api_accepts_paths_arrays_and_pil(trained_run):
    det = Detector.load(trained_run / "best.pt", score=0.0)
    path = sorted(CAMERA_VALID.glob("*.jpg"))[0]
    a = det.predict(path)
    b = det.predict(np.array(Image.open(path).convert("RGB")))
    c = det.predict(Image.open(path))
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
    np.testing.assert_allclose(a.scores, c.scores, atol=1e-5)
    assert set(a.labels) <= {"camera"} and a.boxes.shape[1] == 4


def test_export_half_precision(trained_run, tmp_path):
    out = tmp_path / "small.pt"
    assert main(["export", str(trained_run / "best.pt"), str(out)]) == 0
    assert out.stat().st_size < (trained_run / "best.pt").stat().st_size * 0.6
    path = sorted(CAMERA_VALID.glob("*.jpg"))[0]
    dets = [Detector.load(trained_run / "best.pt", score=0.0), Detector.load(out, score=0.0)]
    for d in dets:  # keep every box: an under-trained model scores below the usual 0.05
        d.model.roi_heads.score_thresh = 0.0
    full, half = (d.predict(path) for d in dets)
    assert len(half.scores) > 0
    np.testing.assert_allclose(half.scores[:3], full.scores[:3], atol=0.02)


def test_export_gzip_compressed(trained_run, tmp_path, capsys):
    """A name ending in .gz is written compressed and loads back to the same detections; a
    damaged one is a one-line error naming it."""
    plain, packed = tmp_path / "m.pt", tmp_path / "m.pt.gz"
    for out in (plain, packed):
        assert main(["export", str(trained_run / "best.pt"), str(out)]) == 0
    assert packed.stat().st_size < plain.stat().st_size
    path = sorted(CAMERA_VALID.glob("*.jpg"))[0]
    a, b = (Detector.load(p, score=0.0).predict(path) for p in (plain, packed))
    np.testing.assert_array_equal(a.boxes, b.boxes)
    (tmp_path / "cut.pt.gz").write_bytes(packed.read_bytes()[:1000])
    capsys.readouterr()
    assert main(["detect", str(path), "--model", str(tmp_path / "cut.pt.gz")]) == 2
    err = capsys.readouterr().err.strip()
    assert "cut.pt.gz" in err and "cannot read checkpoint" in err and "\n" not in err


def test_inference_settings_change_at_load_and_export_but_weights_shapes_do_not(trained_run, tmp_path, capsys):
    from regiondet.models.checkpoint import read_checkpoint

    fewer = ["model.rpn_post_nms_top_n_test=7", "model.box_detections_per_img=3"]
    det = Detector.load(trained_run / "best.pt", score=0.0, overrides=fewer)
    assert det.model.rpn.post_nms_top_n() == 7 and det.model.roi_heads.detections_per_img == 3
    det.model.roi_heads.score_thresh = 0.0
    assert 0 < len(det.predict(sorted(CAMERA_VALID.glob("*.jpg"))[0]).scores) <= 3
    out = tmp_path / "fast.pt"
    assert main(["export", str(trained_run / "best.pt"), str(out), "--set", fewer[0]]) == 0
    assert read_checkpoint(out)["config"]["model"]["rpn_post_nms_top_n_test"] == 7
    assert Detector.load(out).model.rpn.post_nms_top_n() == 7
    capsys.readouterr()
    for bad in ("model.representation_size=64", "train.lr=1", "model.rpn_post_nms_top_n_test"):
        assert main(["export", str(trained_run / "best.pt"), str(tmp_path / "x.pt"), "--set", bad]) != 0
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and ("inference settings" in err or "key=value" in err), err
    assert not (tmp_path / "x.pt").exists()


def test_loaded_detector_is_folded_and_channels_last_with_the_same_outputs(trained_run):
    import torch
    from torchvision.ops.misc import FrozenBatchNorm2d

    from regiondet.models.checkpoint import load_model_state, read_checkpoint
    from regiondet.models.faster_rcnn import build_model

    det = Detector.load(trained_run / "best.pt", score=0.0)
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in det.model.modules())
    convs = [m for m in det.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    ckpt = read_checkpoint(trained_run / "best.pt")
    plain = build_model(det.config.model, load_weights=False)
    load_model_state(plain, ckpt["model"], trained_run / "best.pt")
    plain.eval()
    x = torch.from_numpy(np.asarray(Image.open(sorted(CAMERA_VALID.glob("*.jpg"))[0]).convert("RGB").copy()))
    x = x.permute(2, 0, 1).float() / 255
    with torch.no_grad():
        feats_plain, feats_folded = plain.backbone(x[None]), det.model.backbone(x[None])
        for k in feats_plain:
            torch.testing.assert_close(feats_folded[k], feats_plain[k], rtol=1e-4, atol=1e-4)
        a, b = plain([x])[0], det.model([x])[0]
    n = min(len(a["scores"]), len(b["scores"]), 5)
    torch.testing.assert_close(b["scores"][:n], a["scores"][:n], rtol=1e-3, atol=1e-3)


def test_speed_benchmark_times_both_variants_and_every_stage(trained_run, tmp_path, capsys):
    assert any(
        "FrozenBatchNorm2d" in type(m).__name__
        for m in Detector.load(trained_run / "best.pt", fold=False).model.modules()
    )
    images = sorted(CAMERA_VALID.glob("*.jpg"))[:2]
    out = tmp_path / "speed.json"
    code = main(
        [
            "--quiet",
            "benchmark",
            "speed",
            "--model",
            str(trained_run / "best.pt"),
            "--images",
            *map(str, images),
            "--size",
            "160x120",
            "--faces",
            "--baseline",
            "default",
            "--runs",
            "3",
            "--threads",
            "1",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    res = json.loads(out.read_text())
    assert res["images"] == 2 and res["size"] == "160x120" and res["threads"] == 1
    blur = res["face_blur"]
    assert blur["detector"] == "centerface" and blur["ms_median"] > 0 and blur["photo_ms_median"] > 0
    onnx = "ONNX Runtime (regiondet export model.onnx)"  # onnx and onnxruntime are in the dev extra
    assert list(res["variants"]) == ["as loaded", "no channels-last", "plain (no folding, no channels-last)", onnx]
    assert res["variants"][onnx]["ms_median"] > 0 and not res["variants"][onnx]["stages_ms_median"]
    for name, variant in res["variants"].items():
        if name == onnx:
            continue
        stages = variant["stages_ms_median"]
        assert {"transform", "backbone.body", "backbone.fpn", "rpn", "roi_heads"} <= set(stages)
        assert 0 < sum(stages.values()) <= variant["ms_p90"] * 1.5
    assert res["speedup"] > 0
    side = res["side_by_side"]  # --baseline: the shipped model timed in turn with the trained one
    assert list(side) == [str(trained_run / "best.pt"), "default"] and side["default"]["ms_median"] > 0
    assert side[str(trained_run / "best.pt")]["relative"] == 1.0
    printed = capsys.readouterr().out
    assert "| as loaded |" in printed and "| backbone.body |" in printed and "| frames per second |" in printed
    assert "| default |" in printed and "taking turns" in printed
    assert main(["benchmark", "speed", "--baseline", "default", "--images", str(images[0]), "--runs", "1"]) != 0
    assert "each model once" in capsys.readouterr().err
    assert main(["benchmark", "speed", "--size", "640by480"]) != 0
    assert "--size takes N or WxH" in capsys.readouterr().err
    assert main(["benchmark", "speed", "--images", str(tmp_path / "missing")]) != 0
    assert "no such file or folder" in capsys.readouterr().err


def test_every_shipped_model_loads_with_its_card_and_fits_its_size_limit():
    """Each name in MODELS resolves to an installed file that loads (weights_only), has a model
    card in regiondet/zoo, and stays within its size limit (camera 25 MB, text 60 MB, int8 ONNX files
    40 MB and 20 MB); the weights of each distribution stay under 95 MB (PyPI takes files up to 100 MB)."""
    limits = {"camera_phone.pt": 25e6, "text.pt.gz": 60e6, "text_fast.pt": 60e6}
    limits |= {"text.int8.onnx": 40e6, "text_fast.int8.onnx": 20e6}
    assert {m.file for m in MODELS.values()} | {m.onnx for m in MODELS.values() if m.onnx} == set(limits)
    files = defaultdict(set)
    for name, shipped in MODELS.items():
        det = Detector.load(name)
        path = shipped_path(name)
        assert path.stat().st_size <= limits[shipped.file], shipped.file
        assert (CARDS / shipped.card).is_file(), shipped.card
        assert det.config.model.task == ("text" if name.startswith("text") else "box")
        files[shipped.package] |= {path}
        if shipped.onnx:
            files[shipped.package] |= {shipped_onnx(name)}
            assert shipped_onnx(name).stat().st_size <= limits[shipped.onnx], shipped.onnx
            onnx_det = Detector.load(name, runtime="onnxruntime")
            assert onnx_det.runtime == "onnxruntime" and onnx_det.classes == det.classes
    assert set(files) == {"regiondet.zoo", "regiondet_text_models"}
    for package, paths in files.items():
        assert sum(p.stat().st_size for p in paths) < 95e6, package


def test_a_text_model_without_its_package_names_the_extra(monkeypatch, capsys):
    """Without regiondet-text-models installed, `--model text` says which extra brings it."""
    real = zoo.find_spec
    monkeypatch.setattr(zoo, "find_spec", lambda name: None if name == "regiondet_text_models" else real(name))
    assert main(["detect", str(sorted(CAMERA_VALID.glob("*.jpg"))[0]), "--model", "text"]) != 0
    assert "pip install 'regiondet[text]'" in capsys.readouterr().err


def test_detect_out_never_writes_one_drawn_file_over_another(trained_run, tmp_path, capsys):
    """x.jpg and x.png would both be drawn as x.jpg: each keeps its suffix in the name."""
    src = sorted(CAMERA_VALID.glob("*.jpg"))[:2]
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(src[0], folder / "x.jpg")
    Image.open(src[1]).save(folder / "x.png")
    shutil.copy(src[1], folder / "y.jpg")
    out = tmp_path / "drawn"
    assert main(["--quiet", "detect", "--model", str(trained_run / "best.pt"), str(folder), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["x_jpg.jpg", "x_png.jpg", "y.jpg"]
    assert (
        main(
            ["--quiet", "detect", "--model", str(trained_run / "best.pt"), str(folder / "y.jpg"), str(folder / "y.jpg")]
        )
        == 2
    )
    assert "named twice" in capsys.readouterr().err


def test_equal_file_names_in_different_folders_are_all_detected_and_drawn(tmp_path, capsys):
    """a/x.jpg and b/x.jpg are two inputs, not one named twice: both run, both drawn, apart."""
    src = sorted(CAMERA_VALID.glob("*.jpg"))[:2]
    for folder, photo in zip(("a", "b"), src, strict=True):
        (tmp_path / folder).mkdir()
        shutil.copy(photo, tmp_path / folder / "x.jpg")
    out = tmp_path / "drawn"
    args = ["--quiet", "detect", "--runtime", "torch", str(tmp_path / "a"), str(tmp_path / "b")]
    assert main(args) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["file"] for line in lines] == [str(tmp_path / "a" / "x.jpg"), str(tmp_path / "b" / "x.jpg")]
    assert main([*args, "--out", str(out), "--no-blur-faces"]) == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.jpg")) == ["a/x.jpg", "b/x.jpg"]
