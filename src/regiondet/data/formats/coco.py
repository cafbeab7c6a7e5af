"""COCO JSON: reader (bbox, iscrowd as ignore, optional polygons) and writer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from regiondet.data.images import image_size
from regiondet.data.report import LoadReport, check_box
from regiondet.data.sample import Sample
from regiondet.errors import UserError
from regiondet.io import atomic_write_text


def read_coco(path: str, images_dir: str | None, report: LoadReport, rescale: bool = False) -> list[Sample]:
    """Read a COCO instances file; image file names are relative to images_dir (default: beside it).
    An image whose `width` x `height` differs from the file's own size is an error naming both
    (boxes drawn on another resolution would silently miss), or with `rescale` its boxes are
    scaled to the file, as read_voc does."""
    ann_path = Path(path)
    if not ann_path.is_file():
        raise UserError("COCO annotation file not found", ann_path)
    try:
        data = json.loads(ann_path.read_text(encoding="utf-8"))
        cats = {c["id"]: c["name"] for c in data["categories"]}
        images = data["images"]
        anns = data.get("annotations", [])
        _check_unique([c["id"] for c in data["categories"]], "category", ann_path)
        _check_unique([im["id"] for im in images], "image", ann_path)
        _check_unique([a["id"] for a in anns if "id" in a], "annotation", ann_path)
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise UserError(f"not a COCO instances file ({e.__class__.__name__}: {e})", ann_path) from None
    root = Path(images_dir) if images_dir else ann_path.parent
    by_image: dict[int, list[dict]] = {im["id"]: [] for im in images}
    for a in anns:
        if a.get("image_id") not in by_image:
            raise UserError(f"annotation {a.get('id')} refers to unknown image", ann_path)
        if a.get("category_id") not in cats:
            raise UserError(f"annotation {a.get('id')} has unknown category", ann_path)
        by_image[a["image_id"]].append(a)
    samples = []
    for im in images:
        width, height, scale = _image_size(im, root, ann_path, report, rescale)
        boxes, labels, ignore, polys = [], [], [], []
        for a in by_image[im["id"]]:
            try:
                x, y, w, h = (float(v) for v in a["bbox"])
            except (KeyError, TypeError, ValueError):
                raise UserError(f"annotation {a.get('id')}: bbox is not four numbers", ann_path) from None
            check_box([x, y, x + w, y + h], ann_path, what=f"bbox of annotation {a.get('id')}")
            boxes.append([x, y, x + w, y + h])
            labels.append(cats[a["category_id"]])
            ignore.append(bool(a.get("iscrowd", 0) or a.get("ignore", 0)))
            seg = a.get("segmentation")
            if isinstance(seg, list) and seg and isinstance(seg[0], list) and len(seg[0]) >= 6:
                polys.append(np.array(seg[0], np.float32).reshape(-1, 2))
            else:
                polys.append(np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float32))
        if scale is not None:
            boxes = [[v * k for v, k in zip(b, scale * 2, strict=True)] for b in boxes]
            polys = [p * np.array(scale, np.float32) for p in polys]
        samples.append(
            Sample(
                root / im["file_name"],
                width,
                height,
                np.array(boxes, np.float32).reshape(-1, 4),
                labels,
                np.array(ignore, bool),
                polygons=polys,
            )
        )
    return samples


def _image_size(
    im: dict, root: Path, ann_path: Path, report: LoadReport, rescale: bool
) -> tuple[int, int, tuple[float, float] | None]:
    """(width, height, box scale or None) of an image entry, checked against the file's header."""
    try:
        width, height = int(im["width"]), int(im["height"])
    except (KeyError, TypeError, ValueError):
        width = height = 0
    image = root / str(im.get("file_name", ""))
    try:
        actual = image_size(image)
    except UserError:  # a missing or unreadable image is reported where it is decoded
        actual = (width, height)
    if width <= 0 or height <= 0:
        return actual[0], actual[1], None
    if (width, height) == actual:
        return width, height, None
    if not rescale:
        raise UserError(
            f"image {im.get('id')!r} ({image.name}) is {width}x{height} in the file but {actual[0]}x{actual[1]} "
            "on disk; fix the JSON, or read with SPEC option ?rescale=1 to scale its boxes to the image",
            ann_path,
        )
    report.add("COCO images whose size differs from the file: boxes rescaled", str(image))
    return actual[0], actual[1], (actual[0] / width, actual[1] / height)


def _check_unique(ids: list, what: str, path: Path) -> None:
    """An id given twice makes every later reference ambiguous (a second category of one id
    silently renamed every box of the first): refused, naming the id."""
    seen: set = set()
    for i in ids:
        if i in seen:
            raise UserError(f"{what} id {i!r} is given twice", path)
        seen.add(i)


def to_coco(samples: list[Sample], classes: list[str]) -> dict:
    """COCO instances dict; category ids are 1-based positions in classes (case-insensitive)."""
    index = {c.lower(): i + 1 for i, c in enumerate(classes)}
    images, anns = [], []
    for img_id, s in enumerate(samples, 1):
        images.append({"id": img_id, "file_name": str(s.path), "width": s.width, "height": s.height})
        for j, (box, label) in enumerate(zip(s.boxes, s.labels, strict=True)):
            x1, y1, x2, y2 = (float(v) for v in box)
            ann = {
                "id": len(anns) + 1,
                "image_id": img_id,
                "category_id": index[label.lower()],
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
                "iscrowd": int(s.ignore[j]),
            }
            if s.polygons is not None:
                ann["segmentation"] = [s.polygons[j].reshape(-1).round(2).tolist()]
            anns.append(ann)
    cats = [{"id": i + 1, "name": c} for i, c in enumerate(classes)]
    return {"images": images, "annotations": anns, "categories": cats}


def write_coco(samples: list[Sample], classes: list[str], out: Path) -> None:
    """Write samples as a COCO JSON file (atomically)."""
    atomic_write_text(Path(out), json.dumps(to_coco(samples, classes)))
