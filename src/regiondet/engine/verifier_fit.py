"""`regiondet fit-verifier`: a detector's crop verifier, fitted on its own hits and false alarms.

The detector reads every training image; each box it raises (score >= 0.05) is a crop to
learn from: a lens where it overlaps a labelled object by IoU >= 0.5, not a lens where it
overlaps none by 0.3 (those between teach nothing), and every labelled object's own box is a
lens crop too. The crops' ImageNet features then fit one logistic layer (L-BFGS, classes
weighted to count equally, an L2 penalty on standardised features), written into a copy of the
checkpoint. Minutes on a CPU, where another cycle of detector training takes hours and, shown
a few hundred more everyday photos, moved its scores more than it separated clocks from cameras.
Reading the images is nearly all of that time: with `crops` the crops' features are kept in a
file, and a second fit with the same model, data and crop settings (another `l2`) reads them back.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.ops import box_iou
from tqdm import tqdm

from regiondet.data.dataset import load_negatives
from regiondet.data.images import load_rgb
from regiondet.data.sample import Sample
from regiondet.data.transforms import RandomDegradeNegative
from regiondet.errors import UserError
from regiondet.evaluation.scoring import load_eval_sets
from regiondet.inference.predictor import Detector, to_tensor
from regiondet.io import atomic_torch_save, torch_load_safe
from regiondet.models.checkpoint import read_checkpoint
from regiondet.models.sizes import test_sizes
from regiondet.models.verifier import CropVerifier, VerifierSettings, build_lite0
from regiondet.models.zoo import resolve_model_path

LENS_IOU = 0.5  # a box on a labelled object at this IoU or more is a lens crop
NOT_LENS_IOU = 0.3  # one overlapping no object by this much is a not-a-lens crop
BATCH = 32


def crop_rows(
    detector: Detector,
    verifier: CropVerifier,
    samples: list[Sample],
    progress: bool = True,
    degraded: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, 1280), targets (N,): 0 not a lens, else the class id of the object the
    crop shows) of every usable box on `samples`, whose labels are already model class names (or
    none: object-free images). With `degraded`, each object-free image is read a second time as a
    camera's empty frame (noise, a flat or blurred frame, darkness, over-exposure:
    RandomDegradeNegative), whose boxes are all false."""
    feats, targets = [], []
    spoil = RandomDegradeNegative(1.0)
    side = test_sizes(detector.config.model)[0]
    names = [c.lower() for c in detector.classes]
    torch.manual_seed(0)
    for s in tqdm(samples, desc="crops", disable=not progress, leave=False):
        pixels = load_rgb(s.path)
        x = to_tensor(pixels)
        scale = np.array([pixels.shape[1] / s.width, pixels.shape[0] / s.height] * 2, np.float32)
        care = ~s.ignore
        truth = torch.from_numpy(s.boxes[care] * scale)
        ids = torch.tensor(
            [names.index(lab.lower()) + 1 for lab, c in zip(s.labels, care, strict=True) if c], dtype=torch.long
        )
        views = [x]
        if degraded and not len(s.boxes):  # at the size the detector reads (a blur's cost grows with it)
            small = torch.nn.functional.interpolate(x[None], scale_factor=side / min(x.shape[-2:]), mode="area")[0]
            image = tv_tensors.Image((small * 255).round().to(torch.uint8))
            views.append(spoil(image, {"boxes": torch.zeros(0, 4)})[0].as_subclass(torch.Tensor).float() / 255)
        for view in views:
            rows = _rows(detector, verifier, view, truth, ids)
            if rows is not None:
                feats.append(rows[0])
                targets.append(rows[1])
    if not targets:
        raise UserError("the model raised no box on these images and they hold no object: nothing to fit on")
    return torch.cat(feats), torch.cat(targets)


def _rows(
    detector: Detector, verifier: CropVerifier, x: torch.Tensor, truth: torch.Tensor, ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """One image's crops: its detector boxes that are clearly on or off an object, and its
    labelled objects' own boxes (`truth`, of class `ids`)."""
    p = detector.predict(x, score=0.0)
    found = torch.from_numpy(np.asarray(p.boxes, np.float32).reshape(-1, 4))
    if len(truth) and len(found):
        best, which = box_iou(found, truth).max(1)
    else:
        best, which = torch.zeros(len(found)), torch.zeros(len(found), dtype=torch.long)
    usable = (best >= LENS_IOU) | (best < NOT_LENS_IOU)
    boxes = torch.cat([found[usable], truth])
    if not len(boxes):
        return None
    on = best[usable] >= LENS_IOU
    shown = ids[which[usable]] if len(ids) else torch.zeros(int(usable.sum()), dtype=torch.long)
    target = torch.cat([torch.where(on, shown, 0), ids])
    with torch.inference_mode():
        feats = [verifier.features(verifier.crops(x, boxes[i : i + BATCH])) for i in range(0, len(boxes), BATCH)]
    return torch.cat(feats), target


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes: which model a crops file was read with."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def kept_crops(path: Path, key: dict) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The features and targets a crops file holds for `key` (model, data, crop settings), None
    when there is no such file yet; a file kept for something else is refused, not overwritten."""
    if not path.exists():
        return None
    try:
        kept = torch_load_safe(path)
        features, targets, held = kept["features"], kept["targets"], kept["key"]
    except Exception as e:  # a torch file of another kind, a truncated one, not a torch file at all
        raise UserError(f"not a crops file of fit-verifier ({type(e).__name__}): name a new file", path) from None
    if held != key and "targets" not in held:
        raise UserError("holds crops an earlier regiondet kept without their classes: name a new file", path)
    if held != key:
        what = next(k for k in key if held.get(k) != key[k])
        raise UserError(f"holds crops read with another {what}: name a new file for these", path)
    return features, targets


def fit_probe(features: torch.Tensor, targets: torch.Tensor, l2: float) -> tuple[torch.Tensor, float, float]:
    """(weight, bias, training accuracy) of a logistic layer on raw features: fitted on
    standardised ones, lens and not-lens crops weighted to count equally, the scaling then folded
    into the layer."""
    positives = float(targets.sum())
    if positives == 0 or positives == len(targets):
        raise UserError("fitting a verifier needs both lens crops (labelled objects) and false alarms")
    mean, std = features.mean(0), features.std(0) + 1e-3
    z = (features - mean) / std
    w = torch.zeros(z.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    balance = torch.tensor((len(targets) - positives) / positives)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def loss_fn() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, targets, pos_weight=balance)
        loss = loss + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(loss_fn)
    with torch.no_grad():
        accuracy = float((((z @ w + b) > 0).float() == targets).float().mean())
        weight = w / std
        bias = float(b - (w * mean / std).sum())
    return weight.detach(), bias, accuracy


def fit_class_probe(
    features: torch.Tensor, classes: torch.Tensor, count: int, l2: float
) -> tuple[torch.Tensor, torch.Tensor, float] | None:
    """(weight (C, F), bias (C,), training accuracy) of a softmax layer telling the lens crops'
    `count` classes apart (class ids 1..count in `classes`; 0, not a lens, is left out), classes
    weighted to count equally; None when fewer than two classes have crops (nothing to tell)."""
    lens = classes > 0
    z, y = features[lens], classes[lens] - 1
    seen = torch.bincount(y, minlength=count)
    if count < 2 or int((seen > 0).sum()) < 2:
        return None
    mean, std = z.mean(0), z.std(0) + 1e-3
    z = (z - mean) / std
    balance = torch.where(seen > 0, len(y) / (count * seen.clamp(min=1).float()), torch.zeros(count))
    w = torch.zeros(count, z.shape[1], requires_grad=True)
    b = torch.zeros(count, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def loss_fn() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ w.T + b, y, weight=balance) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(loss_fn)
    with torch.no_grad():
        accuracy = float(((z @ w.T + b).argmax(1) == y).float().mean())
        weight = w / std
        bias = b - (w * mean / std).sum(1)
    return weight.detach(), bias.detach(), accuracy


def fit_verifier(
    model: str,
    specs: list[str],
    negative_specs: list[str],
    class_map: dict[str, str | None],
    out: Path,
    settings: VerifierSettings,
    l2: float = 0.01,
    progress: bool = True,
    degraded: bool = True,
    crops: Path | None = None,
) -> dict:
    """Fit a verifier for `model` on labelled and object-free SPECs and write the model with it
    to `out` (any verifier it had is replaced); returns what was fitted on. With `crops`, the
    crops' features are read from that file when it was kept for the same model, data and
    settings, else read from the images and kept there."""
    if not specs:
        raise UserError("name labelled images (--data SPEC): the lenses the verifier must keep")
    path = resolve_model_path(model)
    ckpt = read_checkpoint(path)
    detector = Detector.load(path, overrides=["model.verify=false"], runtime="torch")
    if detector.config.model.task != "box":
        raise UserError("a crop verifier rescores box models; this one finds text", path)
    verifier = CropVerifier(build_lite0(), settings).eval()
    samples = load_eval_sets(detector, specs, None, class_map)[0] + load_negatives(negative_specs)
    key = {
        "model": file_digest(path),
        "data": list(specs),
        "negatives": list(negative_specs),
        "class_map": dict(class_map),
        "crop": settings.crop,
        "grow": settings.grow,
        "empty_frames": degraded,
        "targets": "class ids",
    }
    rows = kept_crops(crops, key) if crops is not None else None
    read_back = rows is not None
    if rows is None:
        rows = crop_rows(detector, verifier, samples, progress, degraded)
        if crops is not None:
            atomic_torch_save(crops, {"key": key, "features": rows[0], "targets": rows[1]})
    features, classes = rows
    targets = (classes > 0).float()
    weight, bias, accuracy = fit_probe(features, targets, l2)
    kinds = fit_class_probe(features, classes, len(detector.classes), l2)
    verifier = CropVerifier(verifier.trunk, settings, weight, bias, *(kinds[:2] if kinds else ()))
    summary = {
        "images": len(samples),
        "lens_crops": int(targets.sum()),
        "other_crops": int(len(targets) - targets.sum()),
        "train_accuracy": round(accuracy, 4),
        "class_crops": {c: int((classes == i + 1).sum()) for i, c in enumerate(detector.classes)},
        "class_train_accuracy": round(kinds[2], 4) if kinds else None,
        "l2": l2,
        "degraded_copies": degraded,
        "crops_read_back": read_back,
        "data": specs,
        "negatives": negative_specs,
    }
    atomic_torch_save(out, {**ckpt, "verifier": verifier.state(), "verifier_fit": summary})
    return summary
