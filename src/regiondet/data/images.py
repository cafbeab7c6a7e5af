"""Reading image files: header-only sizes for readers, full decode for training, clear errors."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from regiondet.errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
# The largest image decoded, in pixels (Pillow's own decompression-bomb warning level, ~89 Mpx,
# e.g. 12000 x 7400): a larger file, or one that only claims to be, is refused unread, so a
# hostile or mistaken 200-megapixel file costs nothing. The HTTP service uses the same limit.
MAX_PIXELS = 89_478_485
# The most elongated image read (longer side / shorter side): a 40000x2 strip scaled to any
# model's input has a side under one pixel. Panoramas stay far below (a 360-degree one is ~8:1).
MAX_ASPECT = 50


@contextmanager
def _opened(path: Path | str, data: BinaryIO | None = None) -> Iterator[Image.Image]:
    """Image.open with regiondet's errors: missing, unreadable and oversized files are a
    UserError naming the file; Pillow's bomb warning and error become that error too.
    With `data`, the bytes are read from it and `path` only names them in errors."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(data if data is not None else path) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise UserError(
                        f"image of {w}x{h} = {w * h / 1e6:.0f} Mpx is over the limit of {MAX_PIXELS / 1e6:.0f} Mpx",
                        path,
                    )
                if max(w, h) > MAX_ASPECT * max(min(w, h), 1):
                    raise UserError(
                        f"image of {w}x{h} is more elongated than {MAX_ASPECT}:1, too thin to detect on", path
                    )
                yield im
    except FileNotFoundError:
        raise UserError("image file not found", path) from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise UserError(f"image is over the limit of {MAX_PIXELS / 1e6:.0f} Mpx", path) from None
    except UnidentifiedImageError:  # its message names Pillow's file object, not the user's file
        raise UserError("not a readable image (not an image format, or corrupt)", path) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise UserError(f"not a readable image, or corrupt or truncated ({e})", path) from None


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    with _opened(path) as im:
        return im.size


def to_rgb8(im: Image.Image) -> Image.Image:
    """An 8-bit RGB image from any mode Pillow opens.

    Pillow's convert("RGB") clips 16- and 32-bit grey values at 255 instead of scaling them,
    so a 16-bit PNG would turn almost white. Integer images whose values fit 16 bits are
    scaled by 1/257 (65535 -> 255), wider ones by their own maximum; float images in [0, 1]
    by 255, others by their maximum.
    """
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        a = np.asarray(im, dtype=np.float64)
        if im.mode == "F":
            top = 1.0 if a.size == 0 or np.nanmax(a) <= 1.0 else float(np.nanmax(a))
        else:
            top = 65535.0 if a.size == 0 or a.max() <= 65535 else float(a.max())
        grey = np.nan_to_num(np.clip(a / top * 255.0, 0, 255)).round().astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    return im.convert("RGB")


def load_rgb(path: Path) -> np.ndarray:
    """Decode an image to an HxWx3 uint8 array; a truncated, corrupt or oversized file is a
    UserError.

    EXIF orientation is not applied: annotation tools (VOC, COCO, YOLO exports) label
    the stored pixel grid, so boxes stay aligned.
    """
    with _opened(path) as im:
        im.load()
        return np.array(to_rgb8(im))


def load_upright(path: Path) -> Image.Image:
    """An image for display or inference on user photos: EXIF rotation applied, RGB."""
    with _opened(path) as im:
        im.load()
        return to_rgb8(ImageOps.exif_transpose(im))


def decode_upright(data: bytes, name: str = "upload") -> Image.Image:
    """`load_upright` for bytes in memory (an upload, a video frame): nothing touches the disk;
    a truncated, corrupt or oversized image is a UserError naming `name`."""
    with _opened(name, io.BytesIO(data)) as im:
        im.load()
        return to_rgb8(ImageOps.exif_transpose(im))


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside a folder, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
