"""VOC AP against cases computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from regiondet.evaluation.voc import iou_matrix, voc_ap

A = [0, 0, 10, 10]
B = [20, 20, 40, 40]
FAR = [100, 100, 110, 110]


def gt(*boxes, ignore=None):
    b = np.array(boxes, np.float32).reshape(-1, 4)
    return b, np.array(ignore if ignore is not None else [False] * len(b), bool)


def det(*pairs):
    if not pairs:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    return np.array([p[0] for p in pairs], np.float32), np.array([p[1] for p in pairs], np.float32)


def test_perfect():
    r = voc_ap([det((A, 0.9)), det((B, 0.8))], [gt(A), gt(B)])
    assert r.ap == pytest.approx(1.0)


def test_duplicate_is_a_false_positive_after_the_hit():
    r = voc_ap([det((A, 0.9), (A, 0.8))], [gt(A)])
    np.testing.assert_allclose(r.precision, [1.0, 0.5])
    assert r.ap == pytest.approx(1.0)


def test_duplicate_between_hits_costs_precision():
    r = voc_ap([det((A, 0.9), (A, 0.8), (B, 0.7))], [gt(A, B)])
    # tp, fp, tp: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    assert r.ap == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_missed_object_halves_recall():
    r = voc_ap([det((A, 0.9)), det()], [gt(A), gt(B)])
    assert r.ap == pytest.approx(0.5)


def test_voc07_eleven_points():
    dets = [det((A, 0.9), (FAR, 0.8), (B, 0.7))]
    all_point = voc_ap(dets, [gt(A, B)]).ap
    eleven = voc_ap(dets, [gt(A, B)], voc07=True).ap
    assert all_point == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert eleven == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)


def test_difficult_boxes_are_neither_hits_nor_misses():
    r = voc_ap([det((B, 0.9), (A, 0.8))], [gt(A, B, ignore=[False, True])])
    assert r.num_gt == 1
    assert r.ap == pytest.approx(1.0)
    np.testing.assert_allclose(r.precision, [0.0, 1.0])  # the difficult hit is skipped, not counted


def test_iou_threshold_is_inclusive_at_half():
    half = [0, 0, 10, 5]  # IoU with A = 0.5 exactly
    assert iou_matrix(np.array([half], float), np.array([A], float))[0, 0] == pytest.approx(0.5)
    assert voc_ap([det((half, 0.9))], [gt(A)]).ap == pytest.approx(1.0)
    below = [0, 0, 10, 4.9]
    assert voc_ap([det((below, 0.9))], [gt(A)]).ap == pytest.approx(0.0)


def test_detections_on_negative_images_are_false_positives():
    r = voc_ap([det((A, 0.95)), det((FAR, 0.99))], [gt(A), gt()])
    np.testing.assert_allclose(r.precision, [0.0, 0.5])
    assert r.ap == pytest.approx(0.5)


def _areas(s) -> np.ndarray:
    return (s.boxes[:, 2] - s.boxes[:, 0]) * (s.boxes[:, 3] - s.boxes[:, 1])


def test_coco_size_splits_find_the_missed_large_objects():
    """Real camera photos without small boxes: answer the medium boxes exactly, miss the large ones."""
    from regiondet.data.spec import load_spec
    from regiondet.evaluation.coco import coco_metrics

    samples = [
        s for s in load_spec("voc:../shared/data/openimages-camera/valid?limit=40") if (_areas(s) >= 32**2).all()
    ]
    large = np.concatenate([_areas(s) > 96**2 for s in samples])
    assert large.any() and (~large).any()  # the slice holds both kinds
    preds, k = [], 0
    for s in samples:
        keep = ~large[k : k + len(s.boxes)]
        k += len(s.boxes)
        preds.append({"boxes": s.boxes[keep], "scores": np.ones(keep.sum()), "labels": np.ones(keep.sum(), int)})
    m = coco_metrics(samples, preds, ["camera"])
    assert m["coco_ap_large"] == 0.0 and m["coco_ar_large"] == 0.0
    assert m["coco_ap_medium"] == pytest.approx(1.0) and m["coco_ar_medium"] == pytest.approx(1.0)
    assert m["coco_ar100"] == pytest.approx((~large).mean(), abs=1e-6)
    assert m["coco_ap_small"] is None and m["coco_ar_small"] is None  # no small object: None, not COCO's -1
    nothing = [{"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, int)} for _ in samples]
    m = coco_metrics(samples, nothing, ["camera"])
    assert m["coco_ap_large"] == m["coco_ar_medium"] == m["coco_ar100"] == 0.0 and m["coco_ap_small"] is None
