"""Proposal recall: the RPN's boxes are recorded during evaluation and scored against the objects."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import CAMERA_VALID
from regiondet.config import ModelConfig
from regiondet.data.sample import Sample
from regiondet.data.spec import load_spec
from regiondet.evaluation.proposals import ProposalRecorder, proposal_recall
from regiondet.models.faster_rcnn import build_model


def test_recorder_keeps_each_pass_in_the_input_pixels():
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="mobilenet_v2_fpn", weights="none", min_size=64, max_size=96, rpn_post_nms_top_n_test=20)
    model = build_model(cfg, load_weights=False).eval()
    with ProposalRecorder(model) as rec, torch.no_grad():
        model([torch.rand(3, 200, 300)])  # resized to 64x96 inside; proposals come back at 200x300
        model([torch.rand(3, 120, 90)])
    model([torch.rand(3, 100, 100)])  # after the block: no longer recorded
    assert [size for _, size in rec.proposals] == [(300, 200), (90, 120)]
    boxes = rec.proposals[0][0]
    assert len(boxes) == 20 and boxes[:, 2].max() > 96 and boxes[:, 2].max() <= 300 and boxes[:, 3].max() <= 200


def test_recall_counts_care_objects_at_each_iou_and_size():
    s = Sample(
        "x.jpg",
        400,
        200,
        np.array([[0, 0, 20, 20], [100, 50, 300, 150], [0, 100, 50, 150]]),  # small, large, do-not-care
        ["a", "a", "a"],
        np.array([False, False, True]),
    )
    # recorded on the image read at half size (200x100): the large box exactly, a 0.6-IoU box near the small one
    props = np.array([[50, 25, 150, 75], [0, 0, 6, 10]], np.float32)
    res = proposal_recall([s], [(props, (200, 100))])
    assert res["objects"] == 2 and res["proposals_per_image"] == 2
    assert (res["0.5"], res["0.7"]) == (1.0, 0.5)
    assert res["by_size"]["<32"] == {"objects": 1, "0.5": 1.0, "0.7": 0.0}
    assert res["by_size"][">=96"] == {"objects": 1, "0.5": 1.0, "0.7": 1.0}
    assert res["by_size"]["32-96"]["objects"] == 0
    empty = proposal_recall([s], [(np.zeros((0, 4), np.float32), (400, 200))])
    assert empty["0.5"] == 0.0


def test_evaluate_reports_proposal_recall_of_a_trained_model(trained_run):
    from regiondet.data.dataset import ClassMapper
    from regiondet.evaluation.detection import evaluate
    from regiondet.inference.predictor import Detector

    det = Detector.load(trained_run / "best.pt")
    samples = ClassMapper(det.classes, {}).apply_all(load_spec(f"voc:{CAMERA_VALID}?limit=6"))
    res = evaluate(det, samples, score=0.05, progress=False)["proposal_recall"]
    assert res["objects"] == sum(int((~s.ignore).sum()) for s in samples)
    assert res["proposals_per_image"] == pytest.approx(det.config.model.rpn_post_nms_top_n_test, abs=1)
    assert 0 < res["0.7"] <= res["0.5"] <= 1
    assert sum(b["objects"] for b in res["by_size"].values()) == res["objects"]


def test_multi_scale_proposals_are_the_union_of_the_readings(trained_run):
    """Read at two sizes, an image's proposals are both readings' (twice as many); every object
    the single reading proposed stays proposed, and per_image refuses passes that do not divide."""
    from regiondet.data.dataset import ClassMapper
    from regiondet.evaluation.detection import evaluate
    from regiondet.inference.predictor import Detector

    one = Detector.load(trained_run / "best.pt")
    two = Detector.load(trained_run / "best.pt", overrides=["model.test_scales=[320]"])
    samples = ClassMapper(one.classes, {}).apply_all(load_spec(f"voc:{CAMERA_VALID}?limit=6"))
    single = evaluate(one, samples, score=0.05, progress=False)["proposal_recall"]
    union = evaluate(two, samples, score=0.05, progress=False)["proposal_recall"]
    per_reading = one.config.model.rpn_post_nms_top_n_test
    assert union["proposals_per_image"] == pytest.approx(2 * per_reading, abs=2)
    for iou in ("0.5", "0.7"):
        assert single[iou] <= union[iou]
    rec = ProposalRecorder(one.model)
    rec.proposals = [(np.zeros((1, 4), np.float32), (10, 10))] * 3
    assert rec.per_image(2) is None and len(rec.per_image(3)) == 3 and rec.per_image(0) is None
