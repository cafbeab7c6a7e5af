"""ATRR text model: point-pair encoding, losses, the LSTM head inside torchvision, end to end."""

from __future__ import annotations

import json

import numpy as np
import torch

from conftest import ICDAR, write_config
from regiondet import Detector
from regiondet.cli import main
from regiondet.config import ModelConfig
from regiondet.models.faster_rcnn import build_model
from regiondet.models.text_heads import decode_pairs, encode_pairs, pair_counts, pair_losses


def test_pairs_round_trip_relative_to_box():
    pts = torch.tensor([[[[10.0, 20.0], [10.0, 40.0]], [[90.0, 25.0], [90.0, 45.0]]]])  # (1, 2, 2, 2)
    ref = torch.tensor([[10.0, 20.0, 90.0, 45.0]])
    rel = encode_pairs(pts, ref)
    torch.testing.assert_close(rel[0, 0], torch.tensor([0.0, 0.0, 0.0, 0.8]))
    torch.testing.assert_close(decode_pairs(rel, ref), pts)


def test_pair_counts_and_losses():
    go, halt = [5.0, -5.0], [-5.0, 5.0]
    stop = torch.tensor([[go, halt, halt], [go, go, go], [halt, go, halt]])
    assert pair_counts(stop).tolist() == [2, 3, 3]  # runs to the end without a stop; never stops at pair 1
    consistent = torch.tensor([[go, halt, go], [go, go, halt]])
    rel = torch.rand(2, 3, 4)
    lp, ls = pair_losses(rel, consistent, rel.clone(), torch.tensor([2, 3]))
    assert lp.item() == 0.0 and ls.item() < 0.01
    lp, ls = pair_losses(rel, consistent, rel + 1, torch.tensor([3, 2]))
    assert lp.item() > 0.9 and ls.item() > 3


def text_config(**kw) -> ModelConfig:
    settings = dict(
        backbone="mobilenet_v3_fpn",
        classes=["text"],
        task="text",
        min_size=128,
        max_size=160,
        representation_size=64,
        max_pairs=4,
        aspect_ratios=[0.2, 0.5, 1.0],
        box_batch_size_per_image=16,
    )
    return ModelConfig(**{**settings, **kw})


def test_text_heads_train_and_predict_polygons():
    torch.manual_seed(0)
    model = build_model(text_config(box_score_thresh=0.0))
    kp = torch.zeros(2, 8, 2)
    kp[0, :4] = torch.tensor([[10.0, 10], [10, 40], [100, 12], [100, 42]])
    kp[1, :4] = torch.tensor([[120.0, 100], [120, 120], [150, 100], [150, 120]])
    target = {
        "boxes": torch.tensor([[10.0, 10, 100, 42], [120, 100, 150, 120]]),
        "labels": torch.tensor([1, -1]),
        "keypoints": kp,
        "num_pairs": torch.tensor([2, 2]),
    }
    model.train()
    losses = model([torch.rand(3, 128, 160)], [target])
    assert {"loss_points", "loss_stop", "loss_classifier"} <= set(losses)
    sum(losses.values()).backward()
    assert model.roi_heads.pair_head.lstm.weight_hh_l0.grad.abs().sum() > 0
    model.eval()
    first, second = torch.rand(3, 256, 320), torch.rand(3, 200, 240)
    with torch.no_grad():
        out = model([first])[0]  # resized inside; outlines come back in input pixels
        both = model([first, second])  # the larger image first: its padded tensor is the same
    n = len(out["boxes"])
    assert out["keypoints"].shape == (n, 8, 2) and out["num_pairs"].shape == (n,)
    assert ((out["num_pairs"] >= 2) & (out["num_pairs"] <= 4)).all()
    assert torch.allclose(both[0]["keypoints"], out["keypoints"], atol=1e-4)  # each image gets its own rows
    assert torch.equal(both[0]["num_pairs"], out["num_pairs"])
    assert both[1]["keypoints"].shape == (len(both[1]["boxes"]), 8, 2)


def test_text_training_evaluate_detect(tmp_path, capsys):
    cfg = {
        "model": {
            "backbone": "mobilenet_v2_fpn",
            "weights": "deepsort",
            "task": "text",
            "classes": ["text"],
            "min_size": 256,
            "max_size": 256,
            "max_pairs": 5,
            "aspect_ratios": [0.2, 0.5, 1.0],
            "anchor_sizes": [16, 32, 64, 128, 256],
            "representation_size": 128,
            "box_batch_size_per_image": 32,
            "rpn_post_nms_top_n_train": 200,
            "rpn_post_nms_top_n_test": 100,
            "box_score_thresh": 0.01,
        },
        "data": {"train": [f"icdar2015:{ICDAR}?limit=6"], "val": [f"icdar2015:{ICDAR}?part=holdout&limit=3"]},
        "train": {
            "out": str(tmp_path / "run"),
            "epochs": 2,
            "steps_per_epoch": 3,
            "batch_size": 2,
            "crop": 256,
            "scale_range": [0.5, 1.0],
            "workers": 0,
            "warmup_steps": 1,
            "eval_score": 0.01,
        },
    }
    assert main(["--quiet", "train", str(write_config(tmp_path / "t.yaml", cfg))]) == 0
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    last = dict(zip(header, rows[-1].split(","), strict=True))
    assert float(last["loss_points"]) > 0 and last["val_hmean"] != ""
    model = str(tmp_path / "run" / "best.pt")
    capsys.readouterr()
    assert (
        main(["--quiet", "evaluate", "--model", model, "--data", f"icdar2015:{ICDAR}?limit=2", "--score", "0.01"]) == 0
    )
    res = json.loads(capsys.readouterr().out)
    for key in ("precision", "recall", "hmean", "latency_ms_median"):
        assert res[key] >= 0 and (key == "latency_ms_median" or res[key] <= 1)
    heights = res["proposal_recall"]["by_size"]  # the RPN's share, by the same bands as recall_by_height
    assert list(heights) == list(res["recall_by_height"])
    assert [b["objects"] for b in heights.values()] == [b["words"] for b in res["recall_by_height"].values()]
    assert (
        main(
            [
                "detect",
                str(ICDAR / "images" / "img_1.jpg"),
                "--model",
                model,
                "--score",
                "0.0",
                "--out",
                str(tmp_path / "drawn"),
            ]
        )
        == 0
    )
    line = json.loads(capsys.readouterr().out.splitlines()[0])
    assert len(line["polygons"]) == len(line["boxes"])
    assert all(len(p) % 2 == 0 and len(p) >= 4 for p in line["polygons"])
    det = Detector.load(model, score=0.0)
    pred = det.predict(ICDAR / "images" / "img_1.jpg")
    if pred.polygons:
        poly = pred.polygons[0]
        assert np.all(poly[:, 0] > -50) and np.all(poly[:, 0] < 1330)  # in the 1280 px frame


def test_text_rpn_ignores_anchors_on_do_not_care_regions():
    model = build_model(text_config())
    anchors = torch.tensor(
        [[10.0, 10, 100, 40], [200, 200, 300, 230], [400, 10, 450, 40], [205, 200, 300, 230]]
    )  # on the word, on the '###', far from both, mostly on the '###'
    target = {"boxes": torch.tensor([[10.0, 10, 100, 40], [200, 200, 300, 230]]), "labels": torch.tensor([1, -1])}
    labels, matched = model.rpn.assign_targets_to_anchors([anchors], [target])
    assert labels[0].tolist() == [1.0, -1.0, 0.0, -1.0]
    torch.testing.assert_close(matched[0][0], target["boxes"][0])  # never matched to the '###' box
    only_dont_care = {"boxes": target["boxes"][1:], "labels": torch.tensor([-1])}
    labels, _ = model.rpn.assign_targets_to_anchors([anchors], [only_dont_care])
    assert labels[0].tolist() == [0.0, -1.0, 0.0, -1.0]


def test_test_size_differs_from_training_size():
    model = build_model(text_config(test_min_size=256, test_max_size=400))
    image = [torch.rand(3, 120, 150)]
    model.train()
    assert model.transform(image)[0].image_sizes == [(128, 160)]
    model.eval()
    assert model.transform(image)[0].image_sizes == [(256, 320)]
    assert build_model(text_config()).eval().transform(image)[0].image_sizes == [(128, 160)]


def test_a_list_of_sizes_jitters_training_and_tests_at_the_last():
    """The cap on the longer side scales with the picked size, so wide images are jittered too."""
    model = build_model(text_config(min_size=[64, 96, 128], max_size=160))
    model.train()
    torch.manual_seed(0)
    wide = [torch.rand(3, 100, 200)]  # capped by max_size at every size: torchvision would not jitter it
    seen = {model.transform(wide)[0].image_sizes[0] for _ in range(30)}
    assert seen == {(40, 80), (60, 120), (80, 160)}
    square = [torch.rand(3, 100, 100)]
    assert {model.transform(square)[0].image_sizes[0] for _ in range(30)} == {(64, 64), (96, 96), (128, 128)}
    model.eval()
    assert model.transform(wide)[0].image_sizes == [(80, 160)] and model.transform(square)[0].image_sizes == [
        (128, 128)
    ]
