"""Multi-scale testing: an image read at several sizes, detections merged, on shipped models."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from shapely.geometry import Polygon
from torchvision.ops import box_iou

from conftest import CAMERA_VALID, ICDAR, ROOT
from regiondet.cli import main
from regiondet.data.point_pairs import pairs_to_polygon
from regiondet.data.spec import load_spec
from regiondet.inference.multiscale import (
    FOCUS_MARGIN,
    averaged,
    focus_regions,
    merge_outputs,
    reading_at,
    run_scales,
    scale_sizes,
)
from regiondet.inference.predictor import Detector, to_tensor

SCENE = f"icdar2015:{ICDAR}?part=holdout&fraction=0.2&seed=0&limit=1"


def test_each_scale_caps_the_longer_side_in_proportion():
    sizes = ["model.test_min_size=720", "model.test_max_size=1280", "model.test_scales=[900, 720, 540]"]
    det = Detector.load("text_fast", overrides=sizes)
    assert scale_sizes(det.config.model) == [(720, 1280), (900, 1600), (540, 960)]  # 720 is not read twice


def test_reading_at_a_size_changes_the_input_and_restores_it():
    det = Detector.load("text_fast")
    transform = det.model.transform
    x = torch.rand(3, 720, 1280)
    own = transform(x.unsqueeze(0))[0].image_sizes  # as the model reads it
    assert own != [(360, 640)]
    with reading_at(det.model, 360, 640):
        assert transform(x.unsqueeze(0))[0].image_sizes == [(360, 640)]
    assert transform(x.unsqueeze(0))[0].image_sizes == own
    with pytest.raises(RuntimeError), reading_at(det.model, 360, 640):
        raise RuntimeError
    assert transform(x.unsqueeze(0))[0].image_sizes == own


def test_overlapping_boxes_of_two_readings_keep_the_better_one_per_class():
    a = {
        "boxes": torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60]]),
        "scores": torch.tensor([0.9, 0.4]),
        "labels": torch.tensor([1, 1]),
    }
    b = {
        "boxes": torch.tensor([[1.0, 0, 10, 10], [0, 0, 10, 10]]),
        "scores": torch.tensor([0.95, 0.8]),
        "labels": torch.tensor([1, 2]),
    }
    out = merge_outputs([a, b], nms_thresh=0.5, limit=10)
    assert out["scores"].tolist() == pytest.approx([0.95, 0.8, 0.4])  # the 0.9 duplicate is gone
    assert out["labels"].tolist() == [1, 2, 1]  # another class at the same place stays
    assert merge_outputs([a, b], nms_thresh=0.5, limit=2)["scores"].numel() == 2


def test_camera_model_at_two_sizes_keeps_each_camera_once():
    """A photo of eight cameras read at 416 and 320 px: every 416 box is in the merged result or
    lies under a better-scoring box of its class there (IoU > 0.5, the model's box NMS), the
    320 reading adds boxes of its own, and no two merged boxes of a class overlap that much."""
    path = next(CAMERA_VALID.glob("18da9dc27d97dde5*.jpg"))
    plain = ["model.box_contained_thresh=0"]  # nested-box suppression off: the merge alone
    one = Detector.load("default", score=0.05, overrides=[*plain, "model.test_scales=[]"]).predict(path)
    two = Detector.load("default", score=0.05, overrides=[*plain, "model.test_scales=[320]"]).predict(path)
    assert len(one.scores) >= 3 and set(two.scores.tolist()) - set(one.scores.tolist())
    merged = torch.as_tensor(two.boxes)
    for box, label, score in zip(torch.as_tensor(one.boxes), one.labels, one.scores, strict=True):
        iou = box_iou(box[None], merged)[0]
        same = torch.tensor([name == label for name in two.labels])
        better = torch.as_tensor(two.scores) >= score - 1e-4
        assert bool((((iou > 0.99) | ((iou > 0.5) & better)) & same).any())
    for label in set(two.labels):
        rows = [i for i, name in enumerate(two.labels) if name == label]
        assert float(box_iou(merged[rows], merged[rows]).fill_diagonal_(0).max()) <= 0.5


def test_text_at_two_sizes_keeps_every_word_of_either_reading_once():
    """Every outline found at the model's size or at 900 is in the merged result, or overlaps a better-scoring one
    there by more than the polygon NMS threshold; no two merged outlines overlap that much."""
    path = load_spec(SCENE)[0].path
    two = Detector.load("text_fast", overrides=["model.test_scales=[900]"])
    assert len(scale_sizes(two.config.model)) == 2
    readings = [
        Detector.load("text_fast", overrides=[f"model.test_min_size={s}", f"model.test_max_size={c}"])
        for s, c in scale_sizes(two.config.model)
    ]
    merged = two.predict(path)
    shapes = [Polygon(p).buffer(0) for p in merged.polygons]
    assert len(shapes) > 0

    def iou(p, q):
        return p.intersection(q).area / max(p.union(q).area, 1e-9)

    for det in readings:
        pred = det.predict(path)
        for poly, score in zip(pred.polygons, pred.scores, strict=True):
            p = Polygon(poly).buffer(0)
            assert any(
                iou(p, q) > 0.99 or (iou(p, q) > 0.3 and s >= score - 1e-4)
                for q, s in zip(shapes, merged.scores, strict=True)
            )
    assert all(iou(p, q) <= 0.3 for i, p in enumerate(shapes) for q in shapes[i + 1 :])


def test_bad_scales_are_one_line_errors(capsys):
    assert main(["detect", "--set", "model.test_scales=900", str(ROOT / "samples")]) == 2
    assert "model.test_scales is a list" in capsys.readouterr().err
    assert main(["detect", "--set", "model.test_scales_focus=-5", str(ROOT / "samples")]) == 2
    assert "model.test_scales_focus must be at least 0 (got -5)" in capsys.readouterr().err


def _outlines(out: dict) -> list[Polygon]:
    """The outlines of a model output's point pairs, as the predictor draws them."""
    pairs = out["keypoints"][..., :2].unflatten(1, (-1, 2)).numpy()
    return [Polygon(pairs_to_polygon(p[:n])).buffer(0) for p, n in zip(pairs, out["num_pairs"].tolist(), strict=True)]


@torch.inference_mode()
def test_focused_reading_finds_the_whole_readings_small_words_where_they_are():
    """With test_scales_focus the second reading reads crops around the first reading's small
    words: the small words the whole second reading finds inside those crops come back at the
    same place in the image (crop offsets undone), nothing comes from outside the crops, and
    the crops cover less of the image than the whole reading."""
    focus = 24
    det = Detector.load("text_fast", overrides=["model.test_scales=[1000]"])
    model, cfg = det.model, det.config.model
    focused_cfg = dataclasses.replace(cfg, test_scales_focus=focus)
    checked, area = 0, []
    for sample in load_spec(f"icdar2015:{ICDAR}?part=holdout&fraction=0.2&seed=0&limit=4"):
        x = to_tensor(sample.path)
        h, w = x.shape[-2:]
        (first_size, second_size) = scale_sizes(cfg)
        with reading_at(model, *first_size):
            first = model([x])[0]
        scale = first_size[0] / min(h, w)
        rects = focus_regions(first["boxes"], focus / scale, FOCUS_MARGIN / scale, h, w)
        area.append(sum((r[2] - r[0]) * (r[3] - r[1]) for r in rects) / (h * w))
        with reading_at(model, *second_size):
            whole = model([x])[0]
        got = run_scales(model, x, focused_cfg)
        from_crops = got["scores"].numel() - first["scores"].numel()
        inside = torch.zeros(len(got["boxes"]), dtype=torch.bool)
        for x0, y0, x1, y1 in rects:
            b = got["boxes"]
            inside |= (b[:, 0] >= x0 - 1) & (b[:, 1] >= y0 - 1) & (b[:, 2] <= x1 + 1) & (b[:, 3] <= y1 + 1)
        assert int(inside.sum()) >= from_crops  # every crop detection lies in its crop
        new = _outlines(got)
        for box, word, score in zip(whole["boxes"], _outlines(whole), whole["scores"], strict=True):
            small = float((box[2:] - box[:2]).min()) * scale < focus
            deep = any(
                box[0] >= r[0] + FOCUS_MARGIN and box[1] >= r[1] + FOCUS_MARGIN
                and box[2] <= r[2] - FOCUS_MARGIN and box[3] <= r[3] - FOCUS_MARGIN
                for r in rects
            )  # fmt: skip
            if score < 0.7 or not small or not deep:
                continue
            assert max(word.intersection(q).area / max(word.union(q).area, 1e-9) for q in new) > 0.5
            checked += 1
    assert checked >= 3 and max(area) > 0 and sum(area) / len(area) < 0.5


def test_focus_below_every_word_reads_once():
    """A focus height no detection is under asks for no crops: the first reading alone."""
    det = Detector.load("text_fast", overrides=["model.test_scales=[1000]", "model.test_scales_focus=1"])
    one = Detector.load("text_fast")
    path = load_spec(SCENE)[0].path
    got, want = det.predict(path), one.predict(path)
    assert len(want.scores) > 0 and got.scores.tolist() == want.scores.tolist()


def test_onnx_reads_at_several_sizes_like_pytorch(tmp_path, capsys):
    """Multi-scale testing in ONNX Runtime: baked in at export, or set when loading a plain export
    (the resize happens before the graph), it gives PyTorch's merged detections."""
    path = next(CAMERA_VALID.glob("18da9dc27d97dde5*.jpg"))
    scales = ["model.test_scales=[320]"]
    baked, plain = tmp_path / "two.onnx", tmp_path / "one.onnx"
    assert main(["export", "default", str(baked), "--set", scales[0]]) == 0
    assert main(["export", "default", str(plain)]) == 0
    alone = ["model.verify=false"]  # an .onnx file holds the detector without its crop verifier
    want = Detector.load("default", overrides=[*scales, *alone]).predict(path, score=0.05)
    single = Detector.load("default", overrides=alone).predict(path, score=0.05)
    assert set(want.scores.tolist()) - set(single.scores.tolist())  # the second reading adds boxes
    for det in (Detector.load(baked), Detector.load(plain, overrides=scales)):
        got = det.predict(path, score=0.05)
        assert det.config.model.test_scales == [320] and len(got.scores) == len(want.scores)
        torch.testing.assert_close(torch.as_tensor(got.scores), torch.as_tensor(want.scores), atol=1e-3, rtol=0)
        torch.testing.assert_close(torch.as_tensor(got.boxes), torch.as_tensor(want.boxes), atol=0.5, rtol=0)
    smaller = Detector.load(plain, overrides=["model.test_min_size=320", "model.test_max_size=320"])
    assert smaller.model.test_sizes == (320, 320)  # the test size too is chosen outside the graph
    capsys.readouterr()
    assert main(["detect", str(path), "--model", str(plain), "--set", "model.box_nms_thresh=0.3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "fixed in the ONNX graph" in err and "model.test_scales" in err


def test_a_flipped_reading_is_the_mirror_of_the_mirrored_photos():
    """With test_flip the detector reads the photo both ways, so the mirrored photo must give the
    mirrored answer (a box unmirrored to the wrong side would break it; the crop verifier reads
    its crops one way only and is left out), and a photo's cameras keep their place: every plain
    box at the default score is still there (IoU >= 0.5)."""
    path = next(CAMERA_VALID.glob("18da9dc27d97dde5*.jpg"))
    image = Image.open(path).convert("RGB")
    mirror = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    both = ["model.test_flip=true", "model.verify=false", "model.test_scales=[]"]  # the flip alone
    flip = Detector.load("default", runtime="torch", score=0.05, overrides=both)
    a, b = flip.predict(image), flip.predict(mirror)
    assert len(a.scores) >= 3 and len(a.scores) == len(b.scores)
    back = b.boxes.copy()
    back[:, [0, 2]] = image.width - b.boxes[:, [2, 0]]
    order_a, order_b = a.boxes[:, 0].argsort(), back[:, 0].argsort()
    np.testing.assert_allclose(a.boxes[order_a], back[order_b], atol=0.05)
    np.testing.assert_allclose(a.scores[order_a], b.scores[order_b], atol=1e-4)
    one_size = ["model.test_flip=false", "model.test_scales=[]"]
    plain = Detector.load("default", runtime="torch", overrides=one_size).predict(image)
    flipped = Detector.load("default", runtime="torch", score=0.05, overrides=[both[0], both[2]]).predict(image)
    iou = box_iou(torch.as_tensor(plain.boxes), torch.as_tensor(flipped.boxes))
    assert len(plain.scores) and bool((iou.max(1).values >= 0.5).all())


def test_flipped_readings_pair_boxes_of_one_class_and_halve_the_rest():
    a = {"boxes": torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60]]), "scores": torch.tensor([0.9, 0.6]),
         "labels": torch.tensor([1, 1])}  # fmt: skip
    b = {"boxes": torch.tensor([[1.0, 0, 11, 10], [50, 50, 60, 60]]), "scores": torch.tensor([0.7, 0.8]),
         "labels": torch.tensor([1, 2])}  # fmt: skip
    out = averaged(a, b)
    assert out["scores"].tolist() == pytest.approx([0.8, 0.4, 0.3])  # paired; class 2 alone; class 1 alone
    assert out["boxes"][0].tolist() == pytest.approx([0.5, 0, 10.5, 10]) and out["labels"].tolist() == [1, 2, 1]


def test_a_flip_is_refused_for_text_models_in_one_line(capsys):
    assert main(["detect", "--model", "text_fast", "--set", "model.test_flip=true", str(ROOT / "samples")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.test_flip reads box models only" in err[0]


def test_an_exported_onnx_file_keeps_the_flip_and_takes_it_as_a_setting(tmp_path):
    """The flip is read outside the graph: an .onnx export of the default model reads a photo
    both ways as the checkpoint does, and `--set model.test_flip=false` still reads it once."""
    path = next(CAMERA_VALID.glob("18da9dc27d97dde5*.jpg"))
    onnx = tmp_path / "default.onnx"
    assert main(["--quiet", "export", "default", str(onnx)]) == 0
    both = Detector.load(onnx, score=0.05)
    once = Detector.load(onnx, score=0.05, overrides=["model.test_flip=false"])
    assert both.config.model.test_flip and not once.config.model.test_flip
    plain = Detector.load("default", score=0.05, runtime="torch", overrides=["model.verify=false"])
    a, b = both.predict(path), once.predict(path)
    assert len(a.scores) and len(b.scores) and not np.allclose(np.sort(a.scores)[-1], np.sort(b.scores)[-1])
    want = plain.predict(path)  # the .onnx file holds the detector alone, as verify=false reads it
    np.testing.assert_allclose(np.sort(a.scores), np.sort(want.scores), atol=2e-3)


def test_a_live_frame_skips_the_stills_extra_sizes_unless_told():
    """test_scales_live false (the default model's): a still is read at the extra sizes too, a
    live frame at the model's size only (the live path keeps its time); true: both read them all."""
    path = next(CAMERA_VALID.glob("18da9dc27d97dde5*.jpg"))
    apart = ["model.verify=false", "model.test_flip=false", "model.test_scales=[]"]
    plain = Detector.load("default", runtime="torch", score=0.05, overrides=apart)
    stills = apart[:2] + ["model.test_scales=[320, 640]", "model.test_scales_live=false"]
    still_only = Detector.load("default", runtime="torch", score=0.05, overrides=stills)
    every = Detector.load(
        "default", runtime="torch", score=0.05, overrides=[*stills[:3], "model.test_scales_live=true"]
    )
    once = plain.predict(path, live=True)
    frame, still = still_only.predict(path, live=True), still_only.predict(path)
    np.testing.assert_array_equal(frame.boxes, once.boxes)
    np.testing.assert_array_equal(frame.scores, once.scores)
    # the other sizes add boxes and scores the model's size has not
    assert len(still.scores) != len(once.scores) or not np.allclose(still.scores, once.scores)
    np.testing.assert_array_equal(every.predict(path, live=True).scores, still.scores)
