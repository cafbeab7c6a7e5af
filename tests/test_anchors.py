"""Anchor sizes per feature map, and how well a config's anchors reach a dataset's boxes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import CAMERA_VALID, ICDAR, ROOT
from regiondet.cli import main
from regiondet.config import ModelConfig, load_config
from regiondet.data.sample import Sample
from regiondet.data.spec import load_spec
from regiondet.errors import UserError
from regiondet.models.anchor_fit import anchor_fit, best_anchor_iou, suggest_anchor_sizes
from regiondet.models.anchors import anchor_shapes
from regiondet.models.faster_rcnn import build_model

HOLDOUT = f"icdar2015:{ICDAR}?part=holdout&fraction=0.2&seed=0&limit=40"
SMALL = dict(min_size=128, max_size=128, representation_size=64, rpn_post_nms_top_n_test=20)


def test_several_sizes_per_map_reach_the_rpn():
    cfg = ModelConfig(backbone="vgg16_fpn", fpn_strides=[8, 16], anchor_sizes=[[16, 24], [32, 48], [64, 96]], **SMALL)
    model = build_model(cfg, load_weights=False).eval()
    assert model.rpn.anchor_generator.num_anchors_per_location() == [6, 6, 6]  # 2 sizes x 3 ratios
    with torch.no_grad():
        assert len(model([torch.rand(3, 128, 128)])) == 1
    too_few = ModelConfig(backbone="vgg16_fpn", fpn_strides=[8, 16], anchor_sizes=[[16, 24], [32, 48]], **SMALL)
    with pytest.raises(UserError, match="2 size lists; the backbone has 3 feature maps"):
        build_model(too_few, load_weights=False)


def test_best_anchor_iou_is_the_shape_overlap():
    cfg = ModelConfig(anchor_sizes=[64], aspect_ratios=[1.0])
    assert anchor_shapes(cfg).tolist() == [[64.0, 64.0]]
    iou = best_anchor_iou(np.array([[64.0, 64.0], [64.0, 32.0], [128.0, 128.0]]), anchor_shapes(cfg))
    assert iou == pytest.approx([1.0, 0.5, 0.25])


def test_fit_counts_care_boxes_at_the_test_size():
    # one 200x100 box (and a do-not-care one) on a 800x400 image; at test size 200 it is 100x50
    s = Sample("x.jpg", 800, 400, np.array([[0, 0, 200, 100], [0, 0, 50, 50]]), ["t", "t"], np.array([False, True]))
    fit = anchor_fit([s], ModelConfig(min_size=200, max_size=1000, anchor_sizes=[71], aspect_ratios=[0.5]))
    assert fit["boxes"] == 1 and fit["best_iou_median"] > 0.98 and fit["reach_fg"] == 1.0
    fit = anchor_fit([s], ModelConfig(min_size=400, max_size=1000, anchor_sizes=[71], aspect_ratios=[0.5]))
    assert fit["best_iou_median"] == pytest.approx(0.25, abs=0.01) and fit["reach_fg"] == 0.0


def test_two_sizes_per_level_fit_icdar_words_better_than_the_shipped_text_anchors():
    samples = load_spec(HOLDOUT)
    cfg = load_config(ROOT / "configs" / "text_atrr_craft_decoder.yaml").model
    shipped = anchor_fit(samples, cfg)
    cfg.anchor_sizes = [[s, round(s * 1.5)] for s in cfg.anchor_sizes]
    finer = anchor_fit(samples, cfg)
    care = sum(int((~s.ignore).sum()) for s in samples)
    assert shipped["boxes"] == finer["boxes"] == care == sum(b["boxes"] for b in shipped["by_side"].values())
    assert finer["reach_fg"] > shipped["reach_fg"] + 0.2  # words fall between octave-spaced anchors
    assert finer["best_iou_median"] > shipped["best_iou_median"]


def test_data_stats_reports_the_anchor_fit(capsys):
    cfg = str(ROOT / "configs" / "camera_phone_mnv2.yaml")
    assert main(["data", "stats", f"voc:{CAMERA_VALID}?limit=30", "--config", cfg]) == 0
    assert "anchor fit (15 shapes, shape only):" in capsys.readouterr().out
    assert main(["data", "stats", f"voc:{CAMERA_VALID}?limit=30", "--config", cfg, "--json"]) == 0
    fit = json.loads(capsys.readouterr().out)["anchor_fit"]
    assert fit["boxes"] == sum(b["boxes"] for b in fit["by_side"].values()) > 30
    assert 0 < fit["reach_fg"] <= fit["reach_0.5"] <= 1
    finer = ["--set", "model.anchor_sizes=[32,45,64,90,128,181,256,362,512]"]
    assert main(["data", "stats", f"voc:{CAMERA_VALID}?limit=30", "--config", cfg, *finer]) == 0
    assert "anchor fit (27 shapes, shape only):" in capsys.readouterr().out
    assert main(["data", "stats", f"voc:{CAMERA_VALID}?limit=30", *finer]) == 2
    assert "--set works on the config given with --config" in capsys.readouterr().err


def test_suggested_sizes_keep_the_form_and_reach_boxes_the_config_misses():
    boxes = np.array([[0, 0, 40, 40], [100, 100, 180, 180], [0, 100, 80, 180]])
    s = Sample("x.jpg", 400, 400, boxes, ["c"] * 3, np.zeros(3, bool))
    cfg = ModelConfig(min_size=400, max_size=400, anchor_sizes=[200, 400], aspect_ratios=[1.0])
    assert anchor_fit([s], cfg)["reach_0.5"] == 0.0
    sizes = suggest_anchor_sizes([s], cfg)
    assert len(sizes) == 2 and all(isinstance(v, int) for v in sizes) and sizes[0] < sizes[1]
    assert anchor_fit([s], ModelConfig(min_size=400, max_size=400, anchor_sizes=sizes, aspect_ratios=[1.0]))[
        "reach_fg"
    ] == pytest.approx(1.0)
    nothing = Sample("x.jpg", 400, 400, boxes, ["c"] * 3, np.ones(3, bool))
    with pytest.raises(UserError, match="no boxes to fit anchors to"):
        suggest_anchor_sizes([nothing], cfg)


def test_data_stats_suggests_anchors_at_least_as_good_as_hand_picked_ones(capsys):
    cfg = str(ROOT / "configs" / "text_atrr_craft_decoder_anchors2.yaml")
    assert main(["data", "stats", HOLDOUT, "--config", cfg, "--suggest-anchors", "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    suggested = st["anchor_suggestion"]
    assert [len(level) for level in suggested["anchor_sizes"]] == [2, 2, 2, 2]  # the config's form
    flat = [v for level in suggested["anchor_sizes"] for v in level]
    assert flat == sorted(flat) and len(set(flat)) == 8
    assert suggested["reach_fg"] >= st["anchor_fit"]["reach_fg"] and suggested["boxes"] == st["anchor_fit"]["boxes"]
    assert main(["data", "stats", HOLDOUT, "--config", cfg, "--suggest-anchors"]) == 0
    assert "suggested (same form, --set model.anchor_sizes=[[" in capsys.readouterr().out
    assert main(["data", "stats", HOLDOUT, "--suggest-anchors"]) == 2
    assert "--suggest-anchors works on the config given with --config" in capsys.readouterr().err
