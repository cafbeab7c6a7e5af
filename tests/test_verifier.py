"""The crop verifier: fitted on a model's own hits and false alarms, carried in its checkpoint,
and only ever lowering the detector's scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import CAMERA_TRAIN, CAMERA_VALID, DATA, ICDAR, main
from regiondet.data.images import load_rgb
from regiondet.data.spec import load_spec
from regiondet.engine.verifier_fit import crop_rows, kept_crops
from regiondet.errors import UserError
from regiondet.inference.predictor import Detector, reclassified
from regiondet.models.checkpoint import read_checkpoint
from regiondet.models.weights import build_lite0, lite0_weights_path
from regiondet.models.zoo import resolve_model_path

COCO = DATA / "coco-people" / "data.yaml"
FIT_DATA = [
    "--data",
    f"yolo:{COCO}:train?labels=phone&objects=some&limit=12",
    "--data",
    f"voc:{CAMERA_TRAIN}?labels=camera&limit=6",
    "--negatives",
    f"yolo:{COCO}:train?objects=none&limit=12",
    "--negatives",
    f"icdar2015:{ICDAR}?limit=4",
]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple:
    out = tmp_path_factory.mktemp("verifier") / "verified.pt"
    assert main(["--quiet", "fit-verifier", "--model", "default", *FIT_DATA, "--out", str(out), "--threads", "2"]) == 0
    return out, read_checkpoint(out)


def test_fitted_checkpoint_carries_the_probe_and_what_it_was_fitted_on(fitted):
    _, ckpt = fitted
    fit = ckpt["verifier_fit"]
    assert fit["lens_crops"] > 0 and fit["other_crops"] > 0 and fit["images"] == 12 + 6 + 12 + 4
    assert ckpt["verifier"]["weight"].shape == (1280,) and ckpt["verifier"]["crop"] == 160
    shipped = read_checkpoint(resolve_model_path("default"))["model"]
    assert ckpt["model"].keys() == shipped.keys()
    assert all(torch.equal(ckpt["model"][k], shipped[k]) for k in shipped)  # the detector is left as it was


def test_the_probe_read_back_scores_its_training_crops_as_reported(fitted):
    """Save and load round trip: the loaded verifier classifies the crops it was fitted on with
    the accuracy the fit reported (a probe lost or mangled on the way would score 0.5 or so)."""
    path, ckpt = fitted
    det = Detector.load(path, runtime="torch", fold=False)
    plain = Detector.load(path, runtime="torch", overrides=["model.verify=false"])
    samples = load_spec(f"yolo:{COCO}:train?labels=phone&objects=some&limit=12")
    feats, targets = crop_rows(plain, det.verifier, samples, progress=False)
    with torch.inference_mode():
        guess = torch.sigmoid(det.verifier.head(feats).squeeze(1)) > 0.5
    assert targets.sum() > 0
    accuracy = float((guess == targets.bool()).float().mean())
    assert accuracy >= ckpt["verifier_fit"]["train_accuracy"] - 0.1  # a subset of its training crops


def test_verifier_only_lowers_scores_and_switches_off(fitted):
    path, _ = fitted
    # each class's own boxes, none dropped as nested: both steps pick by the scores compared here
    apart = ["model.box_cross_class_iou=0", "model.box_contained_thresh=0"]
    verified = Detector.load(path, runtime="torch", overrides=apart)
    plain = Detector.load(path, runtime="torch", overrides=["model.verify=false", *apart])
    default = Detector.load("default", runtime="torch", overrides=["model.verify=false", *apart])
    lowered = 0
    for s in load_spec(f"yolo:{COCO}:valid?limit=8"):
        pixels = load_rgb(s.path)
        a, b, c = (d.predict(pixels, score=0.0) for d in (verified, plain, default))
        np.testing.assert_array_equal(b.boxes, c.boxes)  # verify=false: the shipped detector alone
        np.testing.assert_array_equal(b.scores, c.scores)
        for box, score in zip(a.boxes, a.scores, strict=True):
            same = np.flatnonzero(np.abs(b.boxes - box).max(1) < 1e-3)
            assert len(same) and score <= b.scores[same].max() + 1e-6
        lowered += int(a.scores.sum() < b.scores.sum() - 1e-3)
        at = verified.predict(pixels, score=0.3)  # looking only at boxes that can still pass: the same answer
        np.testing.assert_allclose(at.scores, a.above(0.3).scores, atol=1e-5)
    assert lowered > 0


def test_export_keeps_the_verifier_and_onnx_says_it_does_not(fitted, tmp_path, capsys):
    path, ckpt = fitted
    out = tmp_path / "exported.pt"
    assert main(["--quiet", "export", str(path), str(out)]) == 0
    torch.testing.assert_close(read_checkpoint(out)["verifier"]["weight"], ckpt["verifier"]["weight"])
    assert main(["--quiet", "export", str(path), str(tmp_path / "m.onnx")]) == 0
    assert "holds the detector alone" in capsys.readouterr().err


def test_fit_verifier_refusals_are_one_line(fitted, tmp_path, capsys):
    path, _ = fitted
    assert main(["--quiet", "fit-verifier", "--model", str(path), *FIT_DATA, "--out", str(path)]) == 2
    assert "--out is the model it starts from" in capsys.readouterr().err
    assert main(["--quiet", "fit-verifier", "--out", str(tmp_path / "x.pt")]) == 2
    assert "--data" in capsys.readouterr().err
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not weights")
    with pytest.raises(UserError, match="junk.pth"):
        build_lite0(junk)
    assert lite0_weights_path().is_file()


def test_the_shipped_default_boxes_fewer_everyday_photos_than_its_detector_alone():
    """Everyday photos without a lens (bags, cups, clocks, laptops): the verifier must clear
    boxes the detector alone raises at the default score, and add none."""
    verified = Detector.load("default", runtime="torch")
    alone = Detector.load("default", runtime="torch", overrides=["model.verify=false"])
    assert verified.verifier is not None and alone.verifier is None
    fired = {"verified": 0, "alone": 0}
    for s in load_spec(f"yolo:{COCO}:valid?objects=none&limit=40"):
        pixels = load_rgb(s.path)
        fired["verified"] += bool(len(verified.predict(pixels).boxes))
        fired["alone"] += bool(len(alone.predict(pixels).boxes))
    assert 2 * fired["verified"] <= fired["alone"], fired


def test_kept_crops_are_read_back_for_another_l2_and_refused_for_other_settings(tmp_path, capsys):
    """--crops keeps the crops' features: a second fit with the same model, data and crop
    settings reads them back (same crops, the same probe for the same --l2, another for
    another), a fit with other crop settings is refused in one line and the file is kept."""
    data = [
        "--data",
        f"yolo:{COCO}:train?labels=phone&objects=some&limit=4",
        "--negatives",
        f"icdar2015:{ICDAR}?limit=2",
    ]
    crops = tmp_path / "crops.pt"
    fit = ["--quiet", "fit-verifier", "--model", "default", *data, "--crops", str(crops), "--threads", "2"]
    assert main([*fit, "--out", str(tmp_path / "a.pt")]) == 0
    first = capsys.readouterr().out
    assert crops.is_file() and "read back" not in first
    kept = crops.read_bytes()
    assert main([*fit, "--out", str(tmp_path / "b.pt")]) == 0
    assert main([*fit, "--out", str(tmp_path / "c.pt"), "--l2", "1"]) == 0
    again = capsys.readouterr().out.strip().splitlines()
    assert all(f"read back from {crops}" in line for line in again) and len(again) == 2
    a, b, c = (read_checkpoint(tmp_path / f"{n}.pt") for n in "abc")
    assert a["verifier_fit"]["lens_crops"] == c["verifier_fit"]["lens_crops"] > 0
    torch.testing.assert_close(a["verifier"]["weight"], b["verifier"]["weight"])
    assert not torch.allclose(a["verifier"]["weight"], c["verifier"]["weight"])
    assert main([*fit, "--out", str(tmp_path / "d.pt"), "--grow", "0.4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "crops.pt" in err[0] and "grow" in err[0]
    assert crops.read_bytes() == kept and not (tmp_path / "d.pt").exists()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not torch")
    assert main([*fit[:-4], "--crops", str(junk), "--out", str(tmp_path / "e.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "junk.pt" in err[0] and junk.read_bytes() == b"not torch"


def test_the_class_probe_tells_its_cameras_from_its_phones(fitted):
    """Fitted on lens crops of both classes, the class probe is carried in the checkpoint and,
    read back, names the class of the crops it was fitted on as often as the fit reported."""
    path, ckpt = fitted
    fit = ckpt["verifier_fit"]
    assert ckpt["verifier"]["class_weight"].shape == (2, 1280) and min(fit["class_crops"].values()) > 0
    det = Detector.load(path, runtime="torch", fold=False)
    plain = Detector.load(path, runtime="torch", overrides=["model.verify=false"])
    samples = load_spec(f"voc:{CAMERA_TRAIN}?labels=camera&limit=6") + load_spec(
        f"yolo:{COCO}:train?labels=phone&objects=some&limit=12"
    )
    feats, targets = crop_rows(plain, det.verifier, samples, progress=False)
    lens = targets > 0
    with torch.inference_mode():
        guess = det.verifier.kinds(feats[lens]).argmax(1) + 1
    assert set(targets[lens].tolist()) == {1, 2}
    assert float((guess == targets[lens]).float().mean()) >= fit["class_train_accuracy"] - 0.1


def test_reclassified_keeps_each_box_score_and_weighs_the_verifier_as_told():
    # two boxes: the detector calls the first a phone (camera at a fifth of it) and the second a
    # camera alone; the verifier reads the first as a camera, the second as a camera too
    scores = torch.tensor([[0.1, 0.5], [0.8, 0.0]])
    shares = torch.tensor([[0.9, 0.1], [0.7, 0.3]])
    same, labels = reclassified(scores, shares, 0.0)
    torch.testing.assert_close(same, scores)
    assert labels.tolist() == [2, 1]
    mixed, labels = reclassified(scores, shares, 0.5)
    torch.testing.assert_close(mixed.max(1).values, scores.max(1).values)  # each box keeps its score
    assert labels.tolist() == [1, 1]  # (0.2 + 1) / 2 > (1 + 0.11) / 2: the verifier's camera wins
    verifier, _ = reclassified(scores, shares, 1.0)
    torch.testing.assert_close(verifier[0], torch.tensor([0.5, 0.5 / 9]))


def test_the_verifier_names_the_class_without_moving_a_box():
    """verify_classes changes which class a box is shown as, never where it is or its score (the
    nested-box steps, which compare classes, are off here): on Open Images camera photos the
    shipped default calls some lenses its detector calls phones cameras."""
    flat = ["model.box_contained_thresh=0", "model.box_cross_class_inside=0"]
    alone = Detector.load("default", runtime="torch", overrides=["model.verify_classes=0", *flat])
    mixed = Detector.load("default", runtime="torch", overrides=flat)
    assert mixed.verifier.kinds is not None and mixed.config.model.verify_classes > 0
    relabelled = []
    for s in load_spec(f"voc:{CAMERA_VALID}?labels=camera&limit=40"):
        pixels = load_rgb(s.path)
        a, b = alone.predict(pixels, score=0.1), mixed.predict(pixels, score=0.1)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)
        relabelled += [(x, y) for x, y in zip(a.labels, b.labels, strict=True) if x != y]
        for row, label, score in zip(b.class_scores, b.labels, b.scores, strict=True):
            assert abs(row[label] - score) < 1e-6 and max(row.values()) <= score + 1e-6
    assert ("phone", "camera") in relabelled


def test_a_crops_file_kept_without_classes_is_refused(tmp_path):
    """A crops file of regiondet 0.14.0 holds lens / not-lens targets only: refused, kept as it was."""
    key = {"model": "x", "data": [], "negatives": [], "class_map": {}, "crop": 160, "grow": 0.2, "empty_frames": True}
    old = tmp_path / "crops.pt"
    torch.save({"key": key, "features": torch.zeros(2, 1280), "targets": torch.tensor([0.0, 1.0])}, old)
    kept = old.read_bytes()
    with pytest.raises(UserError, match="without their classes") as refused:
        kept_crops(old, key | {"targets": "class ids"})
    assert "crops.pt" in str(refused.value) and old.read_bytes() == kept
