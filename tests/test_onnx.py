"""ONNX export of a tiny trained detector: same detections in ONNX Runtime, any image size."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import torch
from PIL import Image

from conftest import CAMERA_VALID, ICDAR
from regiondet import Detector
from regiondet.cli import main


def test_onnx_export_gives_the_same_detections_at_any_size(trained_run, tmp_path, capsys):
    onnx_path = tmp_path / "tiny.onnx"
    every_box = ["--set", "model.box_score_thresh=0"]  # an under-trained model scores low
    assert main(["export", str(trained_run / "best.pt"), str(onnx_path), "--score", "0.3", *every_box]) == 0
    assert not list(tmp_path.glob(".*part"))
    onnx_det = Detector.load(onnx_path)
    torch_det = Detector.load(trained_run / "best.pt", overrides=["model.box_score_thresh=0"])
    assert onnx_det.classes == torch_det.classes and onnx_det.score == 0.3
    # the trace used a 224 x 224 image; a wide ICDAR scene and a camera photo must work too
    for path in (sorted(ICDAR.glob("images/*.jpg"))[0], sorted(CAMERA_VALID.glob("*.jpg"))[1]):
        a, b = torch_det.predict(path, score=0.0), onnx_det.predict(path, score=0.0)
        assert len(a.scores) > 0 and len(a.scores) == len(b.scores)
        np.testing.assert_allclose(b.scores, a.scores, atol=1e-3)
        np.testing.assert_allclose(b.boxes, a.boxes, atol=0.5)
        assert b.boxes[:, 2].max() > 224 or b.boxes[:, 3].max() > 224 or max(a.boxes.shape) == 0
    capsys.readouterr()
    argv = ["--quiet", "evaluate", "--data", f"voc:{CAMERA_VALID}?limit=5", "--score", "0.05", "--threads", "1"]
    assert main([*argv, "--model", str(onnx_path)]) == 0
    from_onnx = json.loads(capsys.readouterr().out)
    assert main([*argv, "--model", str(trained_run / "best.pt"), *every_box]) == 0
    from_torch = json.loads(capsys.readouterr().out)
    assert abs(from_onnx["map50"] - from_torch["map50"]) < 0.01 and from_onnx["images"] == 5


def test_onnx_bad_inputs_are_one_line_errors(trained_run, tmp_path, capsys):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model")
    foreign = tmp_path / "foreign.onnx"
    torch.onnx.export(torch.nn.Linear(3, 2), (torch.zeros(1, 3),), str(foreign), dynamo=False)
    cases = [
        (["detect", str(CAMERA_VALID), "--model", str(bad)], "not a readable ONNX model"),
        (["detect", str(CAMERA_VALID), "--model", str(foreign)], "without regiondet's config"),
    ]
    ok = tmp_path / "ok.onnx"
    assert main(["export", str(trained_run / "best.pt"), str(ok)]) == 0
    cases.append((["detect", str(CAMERA_VALID), "--model", str(ok), "--set", "model.box_nms_thresh=0.3"], "fixed"))
    legacy = tmp_path / "legacy.onnx"  # as exported before the resize left the graph: no settings
    proto = onnx.load(str(ok))
    kept = [p for p in proto.metadata_props if p.key != "regiondet_resize"]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    onnx.save(proto, str(legacy))
    cases.append((["detect", str(CAMERA_VALID), "--model", str(legacy), "--set", "model.test_scales=[320]"], "again"))
    newer = tmp_path / "newer.onnx"  # a file from a later regiondet whose layout this one cannot know
    proto = onnx.load(str(ok))
    for prop in proto.metadata_props:
        if prop.key == "regiondet_format":
            prop.value = "99"
    onnx.save(proto, str(newer))
    cases.append((["detect", str(CAMERA_VALID), "--model", str(newer)], "newer regiondet"))
    capsys.readouterr()
    for argv, words in cases:
        assert main(argv) != 0
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err
    # a setting applied after the graph still takes --set on the older file
    assert Detector.load(legacy, overrides=["model.box_contained_thresh=0"]).config.model.box_contained_thresh == 0


def test_text_model_exports_with_its_point_pairs(tmp_path, capsys):
    """The shipped text model in ONNX Runtime: the same words and the same outlines. At score 0.5
    the random image the export traces gets fewer words than the scene, so no detection count
    may be frozen into the graph. CRAFT's frozen batch norms are folded into its convolutions
    (left in, each is a Mul and an Add on a full-size map, and splits an int8 convolution from
    its ReLU)."""
    onnx_path = tmp_path / "text.onnx"
    fewer = ["model.box_score_thresh=0.5"]
    assert main(["export", "text", str(onnx_path), "--set", fewer[0]]) == 0
    ops = [n.op_type for n in onnx.load(str(onnx_path)).graph.node if n.name.startswith("/backbone/body/")]
    assert ops.count("Conv") >= 13 and "Mul" not in ops and "BatchNormalization" not in ops
    onnx_det, torch_det = Detector.load(onnx_path), Detector.load("text", overrides=fewer)
    scene = sorted(ICDAR.glob("images/*.jpg"))[0]  # 1280 x 720, traced at 720 x 720
    a, b = torch_det.predict(scene), onnx_det.predict(scene)
    assert len(a.scores) > 0 and len(b.scores) == len(a.scores)
    np.testing.assert_allclose(b.scores, a.scores, atol=1e-3)
    assert [len(p) for p in b.polygons] == [len(p) for p in a.polygons]  # the same pair counts
    for pa, pb in zip(a.polygons, b.polygons, strict=True):
        np.testing.assert_allclose(pb, pa, atol=0.5)


def test_text_models_in_onnx_runtime_take_an_image_with_no_words(tmp_path):
    """A plain grey frame: every text model in ONNX Runtime (the shipped int8 files and a fresh
    export) answers with no outlines. Run in a child process: with an empty batch, ONNX Runtime's
    LSTM aborts the process rather than raising."""
    blank = tmp_path / "grey.png"
    Image.new("RGB", (1280, 720), (128, 128, 128)).save(blank)
    fresh = tmp_path / "text_fast.onnx"
    assert main(["export", "text_fast", str(fresh)]) == 0
    for model in ("text_fast", "text", str(fresh)):
        argv = [
            sys.executable,
            "-m",
            "regiondet.cli",
            "detect",
            str(blank),
            "--model",
            model,
            "--runtime",
            "onnxruntime",
        ]
        run = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, f"{model}: {run.stderr[-300:]}"
        result = json.loads(run.stdout.strip().splitlines()[-1])
        assert result["polygons"] == [] and result["file"] == str(blank)


def test_a_checkpoint_runs_in_onnx_runtime_exported_in_memory(trained_run, tmp_path, capsys):
    """runtime="onnxruntime": the same detections as PyTorch, without a file written; "auto"
    takes it for a box model."""
    torch_det = Detector.load(trained_run / "best.pt", score=0.05)
    ort_det = Detector.load(trained_run / "best.pt", score=0.05, runtime="onnxruntime")
    assert ort_det.runtime == "onnxruntime" and torch_det.runtime == "torch"
    assert Detector.load(trained_run / "best.pt", runtime="auto").runtime == "onnxruntime"
    for path in sorted(CAMERA_VALID.glob("*.jpg"))[:3]:
        a, b = torch_det.predict(path), ort_det.predict(path)
        assert a.labels == b.labels
        np.testing.assert_allclose(a.boxes, b.boxes, atol=0.05)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
    assert not list(trained_run.glob("*.onnx")) and not list(tmp_path.iterdir())
    assert main(["detect", str(CAMERA_VALID), "--runtime", "tensorrt"]) == 2
    assert "invalid choice: 'tensorrt'" in capsys.readouterr().err
