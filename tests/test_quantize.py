"""int8 ONNX export: calibrated on real images, smaller, the same detections as the float model."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from torchvision.ops import box_iou

from conftest import CAMERA_TRAIN, CAMERA_VALID, ICDAR
from regiondet import Detector
from regiondet.cli import main
from regiondet.data.spec import load_spec
from regiondet.errors import UserError
from regiondet.evaluation.text import match_image
from regiondet.inference.export import export_model
from regiondet.inference.multiscale import scale_sizes
from regiondet.inference.predictor import model_from_checkpoint
from regiondet.inference.quantize import Calibration, calibration_images, quantized_nodes
from regiondet.models.sizes import test_sizes as model_sizes
from regiondet.models.zoo import resolve_model_path, shipped_onnx


def test_int8_export_is_calibrated_smaller_and_keeps_the_detections(tmp_path, capsys):
    """The shipped camera model in int8: a quarter of the file, and its lenses found in the same
    places on validation photos that did not calibrate it."""
    fp32, int8 = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    assert main(["export", "default", str(fp32)]) == 0
    calibrate = ["--calibrate", f"voc:{CAMERA_TRAIN}?limit=40", "--calibrate-images", "8"]
    assert main(["export", "default", str(int8), "--int8", *calibrate]) == 0
    assert int8.stat().st_size < 0.35 * fp32.stat().st_size
    proto = onnx.load(str(int8))
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in proto.graph.node}
    # the trunk's pooling runs in int8; the heads' ReLUs stay float (folding them cost words)
    float_nodes = onnx.load(str(fp32)).graph.node
    chosen = set(quantized_nodes(onnx.load(str(fp32))))
    assert any(n.op_type == "MaxPool" and n.name in chosen for n in float_nodes)
    head_relus = [n.name for n in float_nodes if n.op_type == "Relu" and not n.name.startswith("/backbone/")]
    assert head_relus and not chosen & set(head_relus)
    about = json.loads({p.key: p.value for p in proto.metadata_props}["regiondet_int8"])
    assert about["images"] == 8 and about["layers"] > 20 and "openimages-camera" in about["calibration"]
    sides = [m for m, _ in scale_sizes(model_from_checkpoint(resolve_model_path("default"))[1].model)]
    assert len(sides) > 1 and about["calibration"].endswith("read at " + " + ".join(f"{m} px" for m in sides)), about
    a, b = Detector.load(fp32), Detector.load(int8)
    assert b.runtime == "onnxruntime" and b.classes == a.classes and b.score == a.score
    ious = []
    for path in sorted(CAMERA_VALID.glob("*.jpg"))[:12]:
        # int8 moves a score by a few hundredths, so a box just over the threshold is looked for in
        # the int8 model's readings at half of it (the CPU's int8 kernels differ between machines)
        fa, fb = a.predict(path), b.predict(path, score=a.score / 2)
        if len(fa.scores):
            best = box_iou(torch.tensor(fa.boxes), torch.tensor(fb.boxes)).max(1).values if len(fb.scores) else None
            ious += best.tolist() if best is not None else [0.0] * len(fa.scores)
    found = [i for i in ious if i > 0.5]
    assert len(ious) > 12 and len(found) >= 0.75 * len(ious) and np.median(found) > 0.8, ious


def test_calibration_images_are_read_at_the_sizes_asked_for():
    """Calibration at other sizes than the model reads (`--calibrate-size`): each image's shorter
    side is the size asked for, sizes taken in turn, the longer side capped in the model's proportion."""
    _, cfg, _ = model_from_checkpoint(resolve_model_path("default"))
    base_min, base_max = model_sizes(cfg.model)
    spec = [f"voc:{CAMERA_TRAIN}?limit=6"]
    own = calibration_images(spec, 3, cfg)

    def read_at(x: np.ndarray, side: int) -> bool:  # torchvision's resize floors: a pixel short
        return abs(min(x.shape[-2:]) - side) <= 1 or abs(max(x.shape[-2:]) - base_max * side / base_min) <= 1

    sides = [m for m, _ in scale_sizes(cfg.model)]  # a still's sizes, each image at one in turn
    assert sides[0] == base_min and len(sides) > 1
    assert all(read_at(x, sides[i % len(sides)]) for i, x in enumerate(own))
    images = calibration_images(spec, 4, cfg, [320, 480])
    for x, side in zip(images, [320, 480, 320, 480], strict=True):
        assert read_at(x, side) and not read_at(x, 480 if side == 320 else 320), (x.shape, side)


def activation_steps(path) -> dict[str, float]:
    """Each quantized activation's step (QuantizeLinear scale) by tensor name."""
    proto = onnx.load(str(path))
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    return {n.input[0]: float(weights[n.input[1]]) for n in proto.graph.node if n.op_type == "QuantizeLinear"}


def test_histogram_calibration_clips_the_rare_large_values(tmp_path, capsys):
    """--calibrate-method percentile sets each activation range from a histogram: no step is wider
    than min/max's on the same images, many are narrower, the file says how it was calibrated and
    the command's output stays the file line."""
    steps = {}
    for method in ("minmax", "percentile"):
        out = tmp_path / f"{method}.onnx"
        calibrate = ["--calibrate", f"voc:{CAMERA_TRAIN}?limit=8", "--calibrate-images", "3"]
        capsys.readouterr()
        assert main(["export", "default", str(out), "--int8", *calibrate, "--calibrate-method", method]) == 0
        assert capsys.readouterr().out.strip().splitlines() == [f"{out}: {out.stat().st_size / 1e6:.1f} MB"]
        about = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}["regiondet_int8"])
        assert about["method"] == method and about["images"] == 3
        steps[method] = activation_steps(out)
    assert steps["minmax"].keys() == steps["percentile"].keys() and len(steps["minmax"]) > 20
    ratio = np.array([steps["percentile"][k] / steps["minmax"][k] for k in steps["minmax"]])
    assert (ratio <= 1 + 1e-3).all() and (ratio < 0.99).mean() > 0.5 and (ratio < 0.9).any(), np.round(ratio, 2)


def test_int8_export_mistakes_are_one_line_errors(trained_run, tmp_path, capsys):
    best = str(trained_run / "best.pt")
    spec = f"voc:{CAMERA_VALID}?limit=2"
    cases = [
        (["export", best, str(tmp_path / "a.onnx"), "--int8"], "--int8 needs --calibrate"),
        (["export", best, str(tmp_path / "a.onnx"), "--calibrate", spec], "add --int8"),
        (["export", best, str(tmp_path / "a.pt"), "--int8", "--calibrate", spec], "*.onnx"),
        (["export", best, str(tmp_path / "a.onnx"), "--int8", "--calibrate", f"voc:{tmp_path}"], str(tmp_path)),
        (["export", best, str(tmp_path / "a.onnx"), "--calibrate-size", "320"], "add --int8"),
        (["export", best, str(tmp_path / "a.onnx"), "--int8", "--calibrate", spec, "--calibrate-size", "8"], "32"),
        (["export", best, str(tmp_path / "a.onnx"), "--calibrate-method", "entropy"], "add --int8"),
        (["export", best, str(tmp_path / "a.onnx"), "--int8", "--calibrate", spec, "--calibrate-images", "0"], "0"),
    ]
    capsys.readouterr()
    for argv, words in cases:
        assert main(argv) != 0
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob("*.pt"))
    # the Python API: an empty list of calibration specs or an unknown method is a mistake, not a float export
    with pytest.raises(UserError, match="calibration data"):
        export_model(best, tmp_path / "a.onnx", int8=Calibration([]))
    with pytest.raises(UserError, match="minmax"):
        export_model(best, tmp_path / "a.onnx", int8=Calibration([spec], method="kl"))
    assert not list(tmp_path.glob("*.onnx"))


def test_shipped_text_model_runs_int8_and_finds_the_same_words(capsys):
    """`text` runs its shipped int8 ONNX file unless told otherwise, and finds the words the float
    model finds on held-out scenes (none of them calibrated it)."""
    assert shipped_onnx("text") is not None
    fast, exact = Detector.load("text", runtime="auto"), Detector.load("text", runtime="torch")
    assert fast.runtime == "onnxruntime" and exact.runtime == "torch"
    assert fast.score == exact.score and fast.config.model.test_scales == exact.config.model.test_scales
    words = same = 0
    for sample in load_spec(f"icdar2015:{ICDAR}?part=holdout&fraction=0.2&seed=0&limit=3"):
        a, b = exact.predict(sample.path), fast.predict(sample.path)
        words += max(len(a.scores), len(b.scores))
        same += match_image(a.polygons, np.zeros(len(a.polygons), bool), b.polygons).matched
    assert words > 20 and same >= 0.9 * words, (same, words)
    # detect uses it by default, and --runtime torch still runs the float checkpoint
    scene = str(sorted(ICDAR.glob("images/*.jpg"))[0])
    capsys.readouterr()
    assert main(["--quiet", "detect", scene, "--task", "text"]) == 0
    assert main(["--quiet", "detect", scene, "--task", "text", "--runtime", "torch"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2 and min(len(line["polygons"]) for line in lines) > 5
    assert np.isclose(len(lines[0]["polygons"]), len(lines[1]["polygons"]), rtol=0.2)


def test_shipped_text_file_runs_its_trunk_relus_in_int8():
    """CRAFT's ReLUs fold into their convolutions' output ranges: no float ReLU between two int8
    layers of the trunk (each was a dequantize and a quantize on a full-size map)."""
    nodes = onnx.load(str(shipped_onnx("text"))).graph.node
    trunk = [n.op_type for n in nodes if n.name.startswith("/backbone/body/")]
    assert trunk.count("Conv") >= 13 and "Relu" not in trunk
