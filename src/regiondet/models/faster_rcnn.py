"""Faster R-CNN assembled from torchvision.models.detection parts and a ModelConfig."""

from __future__ import annotations

import torch
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection._utils import Matcher
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

from regiondet.config import ModelConfig
from regiondet.models.anchors import anchor_generator
from regiondet.models.backbones import build_trunk
from regiondet.models.partial_labels import PartialLabelRoIHeads
from regiondet.models.roi_pool import GatheredRoIAlign
from regiondet.models.rpn_ignore import IgnoreAwareRPN
from regiondet.models.sizes import SizeTransform, test_sizes
from regiondet.models.text_heads import PointPairHead, TextRoIHeads
from regiondet.models.weights import COCO_SSD_MEAN, COCO_SSD_STD


class BandMatcher(Matcher):
    """torchvision's Matcher, plus a floor: RoIs whose best IoU is below it are ignored.

    The thesis labels RoIs with IoU in [0.1, 0.5) as background and drops those under 0.1,
    so the head learns from hard negatives near objects rather than empty sky.
    """

    def __init__(self, high: float, low: float, floor: float):
        super().__init__(high, low, allow_low_quality_matches=False)
        self.floor = floor

    def __call__(self, match_quality_matrix: torch.Tensor) -> torch.Tensor:
        matches = super().__call__(match_quality_matrix)
        best = match_quality_matrix.max(dim=0).values
        matches[best < self.floor] = self.BETWEEN_THRESHOLDS
        return matches


def as_subclass(module: torch.nn.Module, cls: type[torch.nn.Module]) -> torch.nn.Module:
    """The same torchvision module (parts and settings shared, no copy) as a regiondet subclass
    that overrides one step: torchvision builds the parts from its arguments, we change a rule."""
    new = cls.__new__(cls)
    new.__dict__.update(module.__dict__)
    return new


def build_model(cfg: ModelConfig, load_weights: bool = True) -> FasterRCNN:
    """A torchvision FasterRCNN for len(cfg.classes) classes plus background.

    load_weights=False builds the bare architecture (to receive a checkpoint).
    """
    trunk = build_trunk(cfg, load_weights)
    model = FasterRCNN(
        trunk.body,
        num_classes=None,
        min_size=tuple(cfg.min_size) if isinstance(cfg.min_size, list) else cfg.min_size,
        max_size=cfg.max_size,
        rpn_anchor_generator=anchor_generator(cfg, trunk.num_feature_maps),
        rpn_pre_nms_top_n_train=cfg.rpn_pre_nms_top_n_train,
        rpn_pre_nms_top_n_test=cfg.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_train=cfg.rpn_post_nms_top_n_train,
        rpn_post_nms_top_n_test=cfg.rpn_post_nms_top_n_test,
        rpn_nms_thresh=cfg.rpn_nms_thresh,
        rpn_fg_iou_thresh=cfg.rpn_fg_iou_thresh,
        rpn_bg_iou_thresh=cfg.rpn_bg_iou_thresh,
        rpn_batch_size_per_image=cfg.rpn_batch_size_per_image,
        rpn_score_thresh=cfg.rpn_score_thresh,
        box_roi_pool=GatheredRoIAlign(trunk.featmap_names, trunk.roi_output_size, 2),
        box_head=trunk.box_head,
        box_predictor=FastRCNNPredictor(trunk.head_width, len(cfg.classes) + 1),
        box_score_thresh=cfg.box_score_thresh,
        box_nms_thresh=cfg.box_nms_thresh,
        box_detections_per_img=cfg.box_detections_per_img,
        box_fg_iou_thresh=cfg.box_fg_iou_thresh,
        box_bg_iou_thresh=cfg.box_bg_iou_thresh,
        box_batch_size_per_image=cfg.box_batch_size_per_image,
        box_positive_fraction=cfg.box_positive_fraction,
    )
    if cfg.task == "text":
        model.roi_heads = _text_heads(model.roi_heads, cfg, trunk.head_width)
    else:  # sources that label only some classes (SPEC option labels=)
        model.roi_heads = as_subclass(model.roi_heads, PartialLabelRoIHeads)
    if cfg.weights == "coco-ssd":  # its features were trained on pixels scaled to [-1, 1]
        model.transform.image_mean, model.transform.image_std = list(COCO_SSD_MEAN), list(COCO_SSD_STD)
    model.rpn = as_subclass(model.rpn, IgnoreAwareRPN)  # difficult / do-not-care rows (label -1)
    if cfg.test_min_size or cfg.test_max_size or isinstance(cfg.min_size, list):
        model.transform = SizeTransform.from_transform(model.transform, *test_sizes(cfg))
    if cfg.box_bg_iou_floor > 0:
        model.roi_heads.proposal_matcher = BandMatcher(
            cfg.box_fg_iou_thresh, cfg.box_bg_iou_thresh, cfg.box_bg_iou_floor
        )
    return model


def _text_heads(heads, cfg: ModelConfig, width: int):
    """The same RoI heads with ATRR's point-pair LSTM added (text task)."""
    return TextRoIHeads(
        heads.box_roi_pool,
        heads.box_head,
        heads.box_predictor,
        cfg.box_fg_iou_thresh,
        cfg.box_bg_iou_thresh,
        cfg.box_batch_size_per_image,
        cfg.box_positive_fraction,
        heads.box_coder.weights,
        cfg.box_score_thresh,
        cfg.box_nms_thresh,
        cfg.box_detections_per_img,
        pair_head=PointPairHead(width, cfg.pair_hidden, cfg.max_pairs),
        pair_loss_weight=cfg.pair_loss_weight,
    )
