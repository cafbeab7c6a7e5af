"""Samples as a torch Dataset: class names mapped to model labels, images decoded on demand."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from regiondet.data.images import load_rgb
from regiondet.data.sample import Sample
from regiondet.data.spec import load_spec
from regiondet.errors import UserError


class ClassMapper:
    """Source class names -> model classes, case-insensitively; a None target drops the object."""

    def __init__(self, classes: list[str], class_map: dict[str, str | None] | None = None):
        self.classes = list(classes)
        self.index = {c.lower(): i for i, c in enumerate(classes)}
        self.map = {k.lower(): (v.lower() if v else None) for k, v in (class_map or {}).items()}
        for k, v in self.map.items():
            if v is not None and v not in self.index:
                raise UserError(f"class_map sends '{k}' to '{v}', which is not a model class {classes}")

    def apply(self, sample: Sample) -> Sample:
        """A Sample whose labels are model class names; unknown names are a UserError."""
        keep, names = [], []
        for label in sample.labels:
            key = label.lower()
            target = self.map.get(key, key)
            if target is None:
                keep.append(False)
                continue
            if target not in self.index:
                raise UserError(
                    f"class '{label}' is not a model class {self.classes}; map it with class_map", sample.path
                )
            keep.append(True)
            names.append(self.classes[self.index[target]])
        out = sample.subset(np.array(keep, bool)) if not all(keep) else sample
        out.labels = names
        unknown = [c for c in out.labelled or () if c not in self.index]
        if unknown:
            raise UserError(f"SPEC option labels= names {unknown}, not model classes {self.classes}", sample.path)
        return out

    def apply_all(self, samples: list[Sample]) -> list[Sample]:
        return [self.apply(s) for s in samples]


def load_labelled(specs: list[str], classes: list[str], class_map: dict[str, str | None] | None = None) -> list[Sample]:
    """The images of every SPEC with their labels as model class names (see ClassMapper)."""
    mapper = ClassMapper(classes, class_map)
    return [s for spec in specs for s in mapper.apply_all(load_spec(spec))]


def load_negatives(specs: list[str]) -> list[Sample]:
    """The images of every SPEC as object-free images (their annotations, if any, dropped)."""
    return [as_negative(s) for spec in specs for s in load_spec(spec)]


def as_negative(sample: Sample) -> Sample:
    """The same image with every annotation removed (a distractor / background image)."""
    return sample.subset(np.zeros(len(sample.boxes), bool))


class DetectionDataset(Dataset):
    """Yields (image float tensor CxHxW in [0, 1], target dict) for torchvision detectors.

    Ignore (difficult / do-not-care) objects stay in the targets with label -1: the RPN
    (IgnoreAwareRPN) and the RoI sampler neither learn them as objects nor as background.
    An image whose source labels only some classes adds "unlabelled" (a flag per label,
    background first), which PartialLabelRoIHeads reads.
    """

    def __init__(
        self,
        samples: list[Sample],
        classes: list[str],
        augment: Callable | None = None,
        paste: Callable[[np.ndarray, Sample], tuple[np.ndarray, Sample]] | None = None,
        paste_p: float = 0.0,
    ):
        self.samples = samples
        self.index = {c.lower(): i + 1 for i, c in enumerate(classes)}
        self.augment = augment
        self.paste, self.paste_p = paste, paste_p

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s = self.samples[i]
        pixels = load_rgb(s.path)
        # copy-paste only into fully labelled object-free scenes: nothing unboxed there to hide
        if self.paste is not None and s.is_negative and s.labelled is None and torch.rand(()) < self.paste_p:
            pixels, s = self.paste(pixels, s)
        image = tv_tensors.Image(torch.from_numpy(pixels).permute(2, 0, 1))
        h, w = image.shape[-2:]
        scale = np.array([w / s.width, h / s.height] * 2, np.float32)  # header size may differ
        boxes = tv_tensors.BoundingBoxes(torch.from_numpy(s.boxes * scale), format="XYXY", canvas_size=(h, w))
        labels = torch.tensor(
            [-1 if ig else self.index[n.lower()] for n, ig in zip(s.labels, s.ignore, strict=True)], dtype=torch.int64
        )
        target = {"boxes": boxes, "labels": labels}
        if self.augment is not None:
            image, target = self.augment(image, target)
        out = {
            "boxes": target["boxes"].as_subclass(torch.Tensor).float().reshape(-1, 4),
            "labels": target["labels"],
            "image_id": torch.tensor(i),
        }
        if s.labelled is not None:
            unlabelled = torch.ones(len(self.index) + 1, dtype=torch.bool)
            unlabelled[0] = False
            for name in s.labelled:
                unlabelled[self.index[name]] = False
            out["unlabelled"] = unlabelled
        return image.float().div_(255), out


def collate(batch: list) -> tuple[list, list]:
    return [b[0] for b in batch], [b[1] for b in batch]


class SeededItems(Dataset):
    """Index a dataset with (index, seed) pairs: each item's random augmentation is drawn from
    its own seed, not from a worker's running random state. So an item looks the same whether
    the epoch ran straight through or was resumed halfway, with any number of workers."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]):
        index, seed = item
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]
