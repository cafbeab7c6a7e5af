"""Open Images V6/V7 box annotations: the thesis's preprocessing, then a plain manifest.

`prepare_openimages` turns the CSV trio (class descriptions, box annotations, image list)
into DIR/manifest.csv: selected classes by display name, optional flag filters, a seeded
sample of N images and a seeded train/test split. `download_openimages` fetches the
listed images into DIR/images (resumable). `read_openimages` reads the manifest offline.
"""

from __future__ import annotations

import csv
import random
import urllib.request
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from regiondet.data.images import image_size
from regiondet.data.report import LoadReport
from regiondet.data.sample import Sample
from regiondet.errors import UserError
from regiondet.io import atomic_write_text

FLAGS = ("IsOccluded", "IsTruncated", "IsGroupOf", "IsDepiction", "IsInside")
MANIFEST = "manifest.csv"
MANIFEST_FIELDS = ["ImageID", "Split", "URL", "Class", "XMin", "XMax", "YMin", "YMax"]
URL_COLUMNS = ("OriginalURL", "Thumbnail300KURL", "URL", "url")


def _read_csv(path: Path) -> list[dict]:
    if not Path(path).is_file():
        raise UserError("CSV file not found", path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def _class_ids(descriptions: Path, names: list[str]) -> dict[str, str]:
    """Map label ids (/m/...) to the requested display names; V6 files have no header."""
    with open(descriptions, newline="", encoding="utf-8-sig") as f:
        rows = [r for r in csv.reader(f) if len(r) >= 2]
    if rows and rows[0][0] == "LabelName":
        rows = rows[1:]
    wanted = {n.lower() for n in names}
    found = {r[0]: r[1] for r in rows if r[1].lower() in wanted}
    missing = [n for n in names if n.lower() not in {f.lower() for f in found.values()}]
    if missing:
        raise UserError(f"class(es) {missing} not in the class descriptions", descriptions)
    return found


def prepare_openimages(
    descriptions: Path,
    boxes_csv: Path,
    images_csv: Path,
    classes: list[str],
    out_dir: Path,
    exclude: tuple[str, ...] = (),
    sample: int | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> dict[str, int]:
    """Write out_dir/manifest.csv and return the number of images per split.

    exclude names flags (e.g. IsGroupOf, IsDepiction): an image with any selected box
    carrying one of them is dropped whole, so no unlabelled object is left in it.
    """
    bad = [f for f in exclude if f not in FLAGS]
    if bad:
        raise UserError(f"unknown flag(s) {bad}; choose from {list(FLAGS)}")
    ids = _class_ids(descriptions, classes)
    per_image: dict[str, list[dict]] = defaultdict(list)
    dropped: set[str] = set()
    for n, row in enumerate(_read_csv(boxes_csv), 2):
        if row.get("LabelName") not in ids:
            continue
        if any(row.get(f, "0") == "1" for f in exclude):
            dropped.add(row["ImageID"])
        try:
            coords = {k: float(row[k]) for k in ("XMin", "XMax", "YMin", "YMax")}
        except (KeyError, ValueError):
            raise UserError("malformed box row", boxes_csv, n) from None
        per_image[row["ImageID"]].append({"Class": ids[row["LabelName"]], **coords})
    urls = {}
    for row in _read_csv(images_csv):
        url = next((row[c] for c in URL_COLUMNS if row.get(c)), None)
        if row.get("ImageID") and url:
            urls[row["ImageID"]] = url
    chosen = sorted(i for i in per_image if i not in dropped and i in urls)
    if not chosen:
        raise UserError(f"no image has boxes of {classes} after filtering", boxes_csv)
    rng = random.Random(seed)
    rng.shuffle(chosen)
    if sample:
        chosen = chosen[:sample]
    n_test = round(len(chosen) * test_fraction)
    split = {i: ("test" if k < n_test else "train") for k, i in enumerate(chosen)}
    lines = [",".join(MANIFEST_FIELDS)]
    for image_id in sorted(chosen):
        for b in per_image[image_id]:
            lines.append(
                f"{image_id},{split[image_id]},{urls[image_id]},{b['Class']},"
                f"{b['XMin']},{b['XMax']},{b['YMin']},{b['YMax']}"
            )
    atomic_write_text(Path(out_dir) / MANIFEST, "\n".join(lines) + "\n")
    return {"train": len(chosen) - n_test, "test": n_test}


def _manifest(out_dir: Path) -> list[dict]:
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise UserError("no manifest.csv; run 'regiondet data openimages' first", out_dir)
    return _read_csv(path)


def download_openimages(out_dir: Path, workers: int = 8, timeout: float = 30) -> tuple[int, int, list[str]]:
    """Fetch every image of the manifest not yet in out_dir/images; returns (fetched, skipped, failures)."""
    img_dir = Path(out_dir) / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    urls = {r["ImageID"]: r["URL"] for r in _manifest(out_dir)}
    todo = {i: u for i, u in urls.items() if not (img_dir / f"{i}.jpg").is_file()}

    def fetch(item: tuple[str, str]) -> str | None:
        image_id, url = item
        part = img_dir / f"{image_id}.jpg.part"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r, open(part, "wb") as f:
                f.write(r.read())
            part.replace(img_dir / f"{image_id}.jpg")
            return None
        except OSError as e:
            part.unlink(missing_ok=True)
            return f"{image_id}: {e}"

    failures = []
    with ThreadPoolExecutor(workers) as pool:
        for err in tqdm(pool.map(fetch, todo.items()), total=len(todo), desc="download"):
            if err:
                failures.append(err)
    return len(todo) - len(failures), len(urls) - len(todo), failures


def read_openimages(path: str, split: str | None, report: LoadReport) -> list[Sample]:
    """Read a prepared folder (manifest.csv + images/); split is train, test or all."""
    rows = _manifest(Path(path))
    if split and split not in ("train", "test", "all"):
        raise UserError(f"split must be train, test or all, not '{split}'", path)
    per_image: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if split in (None, "all") or r["Split"] == split:
            per_image[r["ImageID"]].append(r)
    img_dir = Path(path) / "images"
    missing = [i for i in per_image if not (img_dir / f"{i}.jpg").is_file()]
    if missing:
        raise UserError(
            f"{len(missing)} of {len(per_image)} images not downloaded (run 'regiondet data download {path}')", img_dir
        )
    samples = []
    for image_id, boxes in sorted(per_image.items()):
        img = img_dir / f"{image_id}.jpg"
        w, h = image_size(img)
        xyxy = [[float(b["XMin"]) * w, float(b["YMin"]) * h, float(b["XMax"]) * w, float(b["YMax"]) * h] for b in boxes]
        samples.append(Sample(img, w, h, np.array(xyxy, np.float32), [b["Class"] for b in boxes]))
    return samples
