"""Dataset SPEC strings: `format:path[:extra][?key=value&...]`, the same syntax everywhere.

Formats (extra in brackets):
  voc:DIR[:split]            folder of VOC .xml (or VOC root with ImageSets/Main/<split>.txt)
  yolo:data.yaml[:split]     Ultralytics data.yaml; split train (default), val/valid, test
  coco:ann.json[:images_dir] COCO instances JSON; images beside it by default
  txt:annotations.txt        lines `path,x1,y1,x2,y2,class` (the seeds' format)
  openimages:DIR[:split]     folder made by `regiondet data openimages`; split train/test/all
  icdar2015:DIR              images/ + gt/gt_*.txt quadrilaterals ('###' = do not care)
  msra-td500:DIR             IMG_*.JPG + IMG_*.gt rotated rectangles
  ctw1500:DIR                images + 14-point curved lines (txt box+offsets, absolute txt, or xml)
  totaltext:DIR              images + polygons (legacy x: [[..]], y: [[..]] lines or x1,y1,..,text)
A SPEC without a format is guessed: *.yaml -> yolo, *.json -> coco, *.txt -> txt, a folder
with .xml files -> voc. Options after '?':
  part=holdout|rest, fraction=0.1, seed=0   seeded split by photo group (copies stay together)
  skip=N                                    drop the first N images after any split (with limit,
                                            disjoint slices: validate on limit=50, test on skip=50)
  limit=N                                   first N images after any split and skip (quick runs)
  labels=camera,phone                       the model classes this source annotates (default:
                                            all); others may appear unboxed, so they are
                                            taught neither as objects nor as background and
                                            not scored on its images
  rescale=1                                 voc, coco: an image whose annotated size differs
                                            from the file's has its boxes scaled to the image
                                            (default: an error)
  objects=some|none                         only the images with a (not ignored) box, or only
                                            those without, before skip and limit: a source's
                                            object-free photos as negatives, its others as objects
  repeat=R                                  weight in a training mix: R=2 lists every image twice,
                                            R=0.5 keeps a seeded half (e.g. line-level labels
                                            in a word-level mix)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np

from regiondet.data.formats.coco import read_coco
from regiondet.data.formats.ctw1500 import read_ctw1500
from regiondet.data.formats.icdar2015 import read_icdar2015
from regiondet.data.formats.msra_td500 import read_msra_td500
from regiondet.data.formats.openimages import read_openimages
from regiondet.data.formats.plaintext import read_plaintext
from regiondet.data.formats.totaltext import read_totaltext
from regiondet.data.formats.voc import read_voc
from regiondet.data.formats.yolo import read_yolo
from regiondet.data.report import LoadReport, clean_boxes
from regiondet.data.sample import Sample
from regiondet.data.splits import split_by_group
from regiondet.errors import UserError

Reader = Callable[[str, "str | None", LoadReport], list[Sample]]
READERS: dict[str, Reader] = {
    "voc": read_voc,
    "yolo": read_yolo,
    "coco": read_coco,
    "txt": read_plaintext,
    "openimages": read_openimages,
    "icdar2015": read_icdar2015,
    "msra-td500": read_msra_td500,
    "ctw1500": read_ctw1500,
    "totaltext": read_totaltext,
}
OPTIONS = {"part", "fraction", "seed", "skip", "limit", "repeat", "labels", "rescale", "objects"}


@dataclass(frozen=True)
class Spec:
    format: str
    path: str
    extra: str | None = None
    part: str | None = None
    fraction: float = 0.1
    seed: int = 0
    limit: int | None = None
    repeat: float = 1.0
    skip: int = 0
    labels: tuple[str, ...] | None = None
    rescale: bool = False
    objects: str | None = None  # some | none: keep only images with / without boxes

    def __str__(self) -> str:
        return self.text

    @property
    def text(self) -> str:
        s = f"{self.format}:{self.path}" + (f":{self.extra}" if self.extra else "")
        opts = []
        if self.part:
            opts += [f"part={self.part}", f"fraction={self.fraction}", f"seed={self.seed}"]
        if self.skip:
            opts.append(f"skip={self.skip}")
        if self.limit:
            opts.append(f"limit={self.limit}")
        if self.repeat != 1.0:
            opts.append(f"repeat={self.repeat:g}")
        if self.labels is not None:
            opts.append("labels=" + ",".join(self.labels))
        if self.rescale:
            opts.append("rescale=1")
        if self.objects:
            opts.append(f"objects={self.objects}")
        return s + ("?" + "&".join(opts) if opts else "")


def _guess_format(path: str) -> str:
    p = Path(path)
    if p.suffix in (".yaml", ".yml"):
        return "yolo"
    if p.suffix == ".json":
        return "coco"
    if p.suffix == ".txt":
        return "txt"
    if p.is_dir() and (any(p.glob("*.xml")) or (p / "Annotations").is_dir()):
        return "voc"
    if p.is_dir() and (p / "gt").is_dir():
        return "icdar2015"
    raise UserError(f"cannot tell the format of '{path}'; write it as FORMAT:PATH ({', '.join(READERS)})")


def parse_spec(text: str) -> Spec:
    """Parse a SPEC string; unknown formats or options are a UserError."""
    body, _, query = text.partition("?")
    fmt, sep, rest = body.partition(":")
    if not sep or fmt not in READERS:
        if fmt in READERS:
            raise UserError(f"SPEC '{text}' has no path")
        fmt, rest = _guess_format(body), body
    path, extra = rest, None
    if ":" in rest and fmt in ("voc", "yolo", "coco", "openimages"):
        path, extra = rest.rsplit(":", 1)
    opts = dict(parse_qsl(query, keep_blank_values=True))
    unknown = set(opts) - OPTIONS
    if unknown:
        raise UserError(f"unknown SPEC option(s) {sorted(unknown)} in '{text}' (known: {sorted(OPTIONS)})")
    try:
        spec = Spec(
            fmt,
            path,
            extra or None,
            part=opts.get("part"),
            fraction=float(opts.get("fraction", 0.1)),
            seed=int(opts.get("seed", 0)),
            limit=int(opts["limit"]) if "limit" in opts else None,
            repeat=float(opts.get("repeat", 1.0)),
            skip=int(opts.get("skip", 0)),
            labels=_class_list(opts["labels"]) if "labels" in opts else None,
            rescale=_flag(opts.get("rescale", "0")),
            objects=opts.get("objects"),
        )
    except ValueError:
        raise UserError(f"bad option value in SPEC '{text}'") from None
    if spec.part not in (None, "holdout", "rest"):
        raise UserError(f"part must be 'holdout' or 'rest' in SPEC '{text}'")
    if spec.objects not in (None, "some", "none"):
        raise UserError(f"objects must be 'some' or 'none' in SPEC '{text}'")
    if spec.skip < 0:
        raise UserError(f"skip must be 0 or more in SPEC '{text}'")
    if not spec.repeat > 0:
        raise UserError(f"repeat must be above 0 in SPEC '{text}'")
    return spec


def _flag(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise ValueError(f"not a yes/no value: {text}")


def _class_list(text: str) -> tuple[str, ...]:
    names = tuple(n.strip().lower() for n in text.split(",") if n.strip())
    if not names:
        raise ValueError("labels lists no class")
    return names


def load_spec(spec: str | Spec, report: LoadReport | None = None) -> list[Sample]:
    """Read a dataset SPEC into Samples: boxes clipped, degenerate ones skipped (counted)."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    own = report is None
    report = report or LoadReport()
    if spec.rescale and spec.format not in ("voc", "coco"):
        raise UserError(f"rescale=1 applies to voc and coco SPECs only: '{spec.text}'")
    if spec.format in ("voc", "coco"):
        samples = READERS[spec.format](spec.path, spec.extra, report, rescale=spec.rescale)
    else:
        samples = READERS[spec.format](spec.path, spec.extra, report)
    if spec.part:
        rest, holdout = split_by_group(samples, spec.fraction, spec.seed)
        samples = holdout if spec.part == "holdout" else rest
    if spec.objects:  # judged on the boxes that stay after cleaning (their counts are reported below)
        want = spec.objects == "some"
        samples = [s for s in samples if bool((~clean_boxes(s, LoadReport()).ignore).any()) == want]
    samples = samples[spec.skip :]
    if spec.limit:
        samples = samples[: spec.limit]
    samples = [clean_boxes(s, report) for s in samples]  # after selecting: the counts are of what is used
    if spec.labels is not None:
        for s in samples:
            s.labelled = spec.labels
    if spec.repeat != 1.0:
        samples = _repeat(samples, spec.repeat, spec.seed)
    if not samples:
        raise UserError(f"SPEC '{spec.text}' selects no images")
    if own:
        report.print(spec.text)
    return samples


def _repeat(samples: list[Sample], factor: float, seed: int) -> list[Sample]:
    """The whole list int(factor) times, then a seeded share for the fraction left over."""
    whole, share = divmod(factor, 1.0)
    picked = np.random.default_rng(seed).permutation(len(samples))[: round(share * len(samples))]
    return samples * int(whole) + [samples[i] for i in sorted(picked)]
