"""The ICDAR 2015 protocol against cases worked out by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from regiondet.evaluation.text import match_image, text_metrics


def rect(x1, y1, x2, y2):
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], float)


def test_one_to_one_at_iou_over_half():
    gt = [rect(0, 0, 100, 20), rect(0, 50, 100, 70)]
    dets = [rect(0, 0, 100, 20), rect(0, 0, 90, 20), rect(0, 50, 40, 70)]  # hit, duplicate, IoU 0.4
    m = match_image(gt, [False, False], dets)
    assert (m.matched, m.gt_care, m.det_care) == (1, 2, 3)
    r = text_metrics([m])
    assert r["precision"] == pytest.approx(1 / 3) and r["recall"] == pytest.approx(0.5)
    assert r["hmean"] == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))


def test_iou_exactly_half_does_not_match():
    m = match_image([rect(0, 0, 100, 20)], [False], [rect(0, 0, 50, 20)])
    assert m.matched == 0


def test_detection_on_dont_care_is_set_aside():
    gt = [rect(0, 0, 100, 20), rect(200, 0, 300, 20)]
    dets = [rect(0, 0, 100, 20), rect(190, 0, 290, 20), rect(500, 500, 600, 520)]
    m = match_image(gt, [False, True], dets)
    assert (m.matched, m.gt_care, m.det_care) == (1, 1, 2)  # 90 % of det 2 lies on '###'


def test_totals_are_summed_over_images_and_curved_polygons_work():
    t = np.linspace(0, np.pi, 8)
    arc = np.concatenate(
        [np.stack([100 * np.cos(t), 100 * np.sin(t)], 1), np.stack([80 * np.cos(t[::-1]), 80 * np.sin(t[::-1])], 1)]
    )
    box = rect(-100, 0, 100, 100)  # the arc's bounding box: IoU far below 0.5
    a = match_image([arc], [False], [arc])
    b = match_image([arc], [False], [box])
    assert (a.matched, b.matched) == (1, 0)
    r = text_metrics([a, b])
    assert (r["precision"], r["recall"]) == (0.5, 0.5)


def test_score_ladder_from_one_pass_matches_filtering(monkeypatch):
    import regiondet.evaluation.text_detection as td
    from regiondet.data.sample import Sample

    square = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], np.float32)
    far = square + 50
    sample = Sample(Path(__file__), 100, 100, np.array([[0, 0, 10, 10]], np.float32), ["text"])
    polys, scores = [square, far], np.array([0.9, 0.4])

    def detect(_pixels):
        return polys, scores

    monkeypatch.setattr(td, "load_rgb", lambda _p: np.zeros((100, 100, 3), np.uint8))  # pixels unused
    res = td.evaluate_polygons(detect, [sample], progress=False, score=0.5, ladder=(0.3, 0.95))
    assert (res["precision"], res["recall"]) == (1.0, 1.0)  # the 0.4 false alarm is below 0.5
    assert res["by_score"]["0.3"]["precision"] == 0.5 and res["by_score"]["0.95"]["recall"] == 0.0
    assert td.evaluate_polygons(lambda _p: polys, [sample], progress=False)["precision"] == 0.5  # peers: no scores


def test_stricter_iou_tells_a_tight_outline_from_a_loose_one(monkeypatch):
    """Both outlines pass at 0.5; only the tight one still matches at 0.8, and the mean IoU says why."""
    import regiondet.evaluation.text_detection as td
    from regiondet.data.sample import Sample

    sample = Sample(Path(__file__), 200, 200, np.array([[0, 0, 100, 20], [0, 50, 100, 70]], np.float32), ["t", "t"])
    tight, loose = rect(0, 0, 95, 20), rect(0, 50, 100, 84)  # IoU 0.95 and 20/34 = 0.59
    monkeypatch.setattr(td, "load_rgb", lambda _p: np.zeros((200, 200, 3), np.uint8))
    res = td.evaluate_polygons(lambda _p: [tight, loose], [sample], progress=False)
    assert res["hmean"] == 1.0 and res["mean_iou"] == pytest.approx((0.95 + 20 / 34) / 2)
    assert res["by_iou"]["0.5"]["recall"] == 1.0 and res["by_iou"]["0.6"]["recall"] == 0.5
    assert res["by_iou"]["0.8"]["precision"] == 0.5


def test_recall_by_height_shows_where_the_misses_are():
    from regiondet.evaluation.text import recall_by_height, text_height

    tilted = np.array([[0, 0], [70.71, 70.71], [63.64, 77.78], [-7.07, 7.07]])  # 100 x 10 at 45 degrees
    assert text_height(rect(0, 0, 100, 20)) == pytest.approx(20) and text_height(tilted) == pytest.approx(10, abs=0.01)
    gt = [rect(0, 0, 60, 6), rect(0, 20, 100, 32), rect(0, 50, 100, 90), rect(0, 100, 50, 112)]
    m = match_image(gt, [False, False, False, True], [rect(0, 20, 100, 32), rect(0, 50, 100, 90)])
    assert m.care_found.tolist() == [False, True, True]  # the do-not-care word is not counted
    heights = [np.array([text_height(g) for g in gt[:3]])]
    r = recall_by_height([m], heights)
    assert r["<8"] == {"words": 1, "recall": 0.0} and r["8-16"] == {"words": 1, "recall": 1.0}
    assert r["16-32"] == {"words": 0, "recall": None} and r[">=32"] == {"words": 1, "recall": 1.0}
