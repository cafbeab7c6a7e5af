"""One lens, one box: a camera the model also boxes as a phone is shown once, as the likelier
class, with both scores (`model.box_cross_class_iou`), in detect's JSON and in `evaluate`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import box_iou

from conftest import ROOT
from regiondet.data.sample import Sample
from regiondet.evaluation.detection import evaluate
from regiondet.inference.nesting import containers_of_other_class
from regiondet.inference.prediction import Prediction
from regiondet.inference.predictor import Detector, merged_classes, parts_merged

COMPACT = ROOT / "samples" / "camera_compact.jpg"  # boxed as both camera and phone


@pytest.fixture(scope="module")
def detectors():
    """The default model merging and not merging classes, each box named by the detector's class
    scores alone (the verifier's class reading is tested below)."""
    alone = "model.verify_classes=0"
    merged = Detector.load("default", runtime="torch", overrides=["model.box_cross_class_iou=0.5", alone])
    apart = Detector.load("default", runtime="torch", overrides=["model.box_cross_class_iou=0", alone])
    return merged, apart


def test_the_verifier_calls_the_compact_camera_a_camera(detectors):
    """The detector's scores call the sample compact camera a phone; the shipped model, which
    also weighs its verifier's reading of the crop, calls it a camera, at the same score."""
    merged, _ = detectors
    shipped = Detector.load("default", runtime="torch")
    a, b = merged.predict(COMPACT, score=0.1), shipped.predict(COMPACT, score=0.1)
    assert a.labels[0] == "phone" and b.labels[0] == "camera"
    assert b.scores[0] == pytest.approx(a.scores[0], abs=1e-6)
    camera, phone = b.class_scores[0]["camera"], b.class_scores[0]["phone"]
    assert camera == pytest.approx(b.scores[0]) and camera > phone


def test_a_camera_boxed_as_both_classes_is_one_box_with_both_scores(detectors):
    merged, apart = detectors
    both = apart.predict(COMPACT, score=0.1)
    overlap = box_iou(torch.as_tensor(both.boxes), torch.as_tensor(both.boxes)).numpy()
    pairs = [(i, j) for i in range(len(both.labels)) for j in range(i) if overlap[i, j] >= 0.5]
    assert any(both.labels[i] != both.labels[j] for i, j in pairs), "the sample is no longer boxed as both"
    assert both.class_scores is None

    one = merged.predict(COMPACT, score=0.1)
    overlap = box_iou(torch.as_tensor(one.boxes), torch.as_tensor(one.boxes)).numpy()
    assert (overlap[np.triu_indices(len(one.labels), 1)] < 0.5).all(), one
    scores = one.class_scores[0]
    assert set(scores) == {"camera", "phone"}, scores
    assert one.labels[0] == max(scores, key=scores.get) and scores[one.labels[0]] == pytest.approx(one.scores[0])
    # the scores are those the unmerged model gave the two boxes
    given = list(zip(both.labels, both.scores.tolist(), strict=True))
    for label, score in scores.items():
        assert any(lab == label and s == pytest.approx(score, abs=1e-5) for lab, s in given)

    line = json.loads(json.dumps(one.to_json()))
    assert line["class_scores"][0] == {k: round(v, 6) for k, v in scores.items()}
    back = Prediction.from_json(line, ["camera", "phone"])
    assert back.class_scores[0] == pytest.approx(line["class_scores"][0])
    with pytest.raises(Exception, match="differ in length"):
        Prediction.from_json(line | {"class_scores": []}, ["camera", "phone"])


def test_evaluate_scores_a_merged_box_for_each_class_it_stands_for(detectors):
    """The compact camera labelled as a camera where the model's box is: the merged model
    labels that box `phone`, yet its camera score still finds the camera (AP 1), as unmerged."""
    merged, apart = detectors
    box = apart.predict(COMPACT, score=0.1)
    camera_box = box.boxes[box.labels.index("camera")]
    with Image.open(COMPACT) as im:
        w, h = im.size
    sample = Sample(COMPACT, w, h, camera_box[None].astype(np.float32), ["camera"], np.zeros(1, bool))
    for detector in (merged, apart):
        result = evaluate(detector, [sample], progress=False)
        assert result["ap50_per_class"]["camera"] == pytest.approx(1.0), result["ap50_per_class"]
        bands = [b for b in result["recall_by_size"].values() if b["objects"]]
        assert [b["objects"] for b in bands] == [1] and bands[0]["recall"] == 1.0, result["recall_by_size"]
    assert merged.predict(COMPACT, score=0.1).labels[0] == "phone"  # why the test means something


def test_a_kept_box_carries_no_score_above_its_own():
    """A chain of overlaps: a camera (0.9) suppresses a phone box (0.6) that overlaps a third box
    (phone, 0.2) the camera does not reach; the third box stays, and it stands for itself only:
    the 0.6 belongs to the box the camera stands for."""
    out = {
        "boxes": torch.tensor([[0.0, 0, 100, 100], [30.0, 0, 130, 100], [60.0, 0, 160, 100]]),
        "scores": torch.tensor([0.9, 0.6, 0.2]),
        "labels": torch.tensor([1, 2, 2]),
    }
    assert box_iou(out["boxes"][:1], out["boxes"][2:])[0, 0] < 0.5 <= box_iou(out["boxes"][1:2], out["boxes"][2:])[0, 0]
    best, per_class = merged_classes(out, 2, 0.5)
    assert best.tolist() == [True, False, True]
    torch.testing.assert_close(per_class[0], torch.tensor([0.9, 0.6]))
    torch.testing.assert_close(per_class[2], torch.tensor([0.0, 0.2]))


def test_a_box_of_another_class_inside_a_better_box_is_part_of_it():
    """A phone box within a camera box (IoU 0.42, all of it inside) that scores less is the
    camera's screen: dropped, its score kept among the camera's; a lens box (camera) inside the
    screen goes to the camera too. A phone scoring more than the camera box around it, a phone
    only partly over it, or a box under the operating score keep their boxes."""
    boxes = torch.tensor([[0.0, 0, 100, 100], [10.0, 10, 70, 80], [20.0, 20, 40, 40]])
    out = {"boxes": boxes, "scores": torch.tensor([0.63, 0.5, 0.4]), "labels": torch.tensor([1, 2, 1])}
    assert box_iou(boxes[:1], boxes[1:2])[0, 0] < 0.5
    best, class_scores = merged_classes(out, 2, 0.5)
    assert best.all()
    keep = parts_merged(out, best, class_scores, 0.7, 0.3)
    assert keep.tolist() == [True, False, False]
    torch.testing.assert_close(class_scores[0], torch.tensor([0.63, 0.5]))
    assert containers_of_other_class(boxes, out["scores"], out["labels"], 0.7).tolist() == [-1, 0, 1]
    assert containers_of_other_class(boxes, out["scores"], out["labels"], 0.7, 0.45).tolist() == [-1, 0, -1]
    out["scores"] = torch.tensor([0.5, 0.63, 0.4])  # the phone scores more than the camera box
    assert containers_of_other_class(boxes, out["scores"], out["labels"], 0.7).tolist() == [-1, -1, 1]
    moved = boxes.clone()
    moved[1] = torch.tensor([60.0, 60, 130, 130])  # a phone only partly over the camera
    assert containers_of_other_class(moved, torch.tensor([0.63, 0.5, 0.4]), out["labels"], 0.7)[1] == -1


def test_the_pointed_camera_is_one_box():
    """The sample camera pointed at the viewer: the model also boxes its front as a phone (IoU
    under 0.5, mostly inside the camera's box, scoring less); the shipped setting shows one box,
    the camera, with the phone's score among its class scores. Evaluated, nothing moves: the
    dropped box was never a camera."""
    path = ROOT / "samples" / "camera_pointed.jpg"
    apart = Detector.load("default", runtime="torch", overrides=["model.box_cross_class_inside=0"]).predict(path)
    assert sorted(apart.labels) == ["camera", "phone"], "the sample is no longer boxed as both"
    camera, phone = apart.labels.index("camera"), apart.labels.index("phone")
    boxes = torch.as_tensor(apart.boxes)
    assert box_iou(boxes[[camera]], boxes[[phone]])[0, 0] < 0.5 and apart.scores[phone] < apart.scores[camera]
    one = Detector.load("default", runtime="torch").predict(path)
    assert one.labels == ["camera"] and one.scores[0] == pytest.approx(apart.scores[camera])
    assert one.boxes[0] == pytest.approx(apart.boxes[camera])
    assert one.class_scores[0]["phone"] == pytest.approx(
        max(apart.class_scores[phone]["phone"], apart.class_scores[camera]["phone"])
    )
