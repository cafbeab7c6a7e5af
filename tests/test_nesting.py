"""Nested-box suppression: a lens boxed inside its own camera is dropped, the camera kept."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import box_iou

from conftest import CAMERA_VALID
from regiondet.data.spec import load_spec
from regiondet.inference.nesting import nested_boxes
from regiondet.inference.predictor import Detector

CAMERA = [0.0, 0.0, 100.0, 80.0]


@pytest.mark.parametrize(
    ("inner", "inner_label", "camera_score", "dropped"),
    [
        ([10.0, 10.0, 40.0, 40.0], 1, 0.9, True),  # wholly inside, camera confident
        ([10.0, 10.0, 40.0, 40.0], 1, 0.3, False),  # camera under the operating score
        ([10.0, 10.0, 40.0, 40.0], 2, 0.9, False),  # another class (a phone held at a camera)
        ([80.0, 10.0, 120.0, 40.0], 1, 0.9, False),  # half outside: 0.5 of it inside
    ],
)
def test_a_box_inside_a_larger_confident_box_of_its_class_is_dropped(inner, inner_label, camera_score, dropped):
    boxes = torch.tensor([CAMERA, inner])
    scores = torch.tensor([camera_score, 0.95])
    mask = nested_boxes(boxes, scores, torch.tensor([1, inner_label]), 0.7, 0.5, min_container_score=0.5)
    assert mask.tolist() == [False, dropped]  # the larger box is never the one dropped


def test_shipped_model_drops_the_box_nested_in_a_camera_and_keeps_the_one_that_finds_it():
    """A validation photo of one camera on which the shipped model also boxes a part of it."""
    sample = next(s for s in load_spec(f"voc:{CAMERA_VALID}") if s.path.name.startswith("ec8a1d627681117d"))
    alone = "model.verify=false"  # the detector's own boxes (its crop verifier lowers the nested one's score)
    plain = Detector.load("default", overrides=["model.box_contained_thresh=0", alone]).predict(sample.path)
    nested = Detector.load("default", overrides=[alone]).predict(sample.path)  # shipped with the suppression on
    assert len(plain.scores) == 2 and len(nested.scores) == 1
    assert nested.scores[0] == pytest.approx(plain.scores.max())
    assert box_iou(torch.as_tensor(nested.boxes), torch.as_tensor(sample.boxes)).item() >= 0.5
