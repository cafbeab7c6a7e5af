"""Reading image files: header-only sizes for readers, full decode for training, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from regiondet.errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as im:
            return im.size
    except FileNotFoundError:
        raise UserError("image file not found", path) from None
    except (UnidentifiedImageError, OSError) as e:
        raise UserError(f"not a readable image ({e.__class__.__name__})", path) from None


def load_rgb(path: Path) -> np.ndarray:
    """Decode an image to an HxWx3 uint8 array; a truncated or corrupt file is a UserError.

    EXIF orientation is not applied: annotation tools (VOC, COCO, YOLO exports) label
    the stored pixel grid, so boxes stay aligned.
    """
    try:
        with Image.open(path) as im:
            im.load()
            return np.array(im.convert("RGB"))
    except FileNotFoundError:
        raise UserError("image file not found", path) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise UserError(f"corrupt or truncated image ({e})", path) from None


def load_upright(path: Path) -> Image.Image:
    """An image for display or inference on user photos: EXIF rotation applied, RGB."""
    try:
        with Image.open(path) as im:
            im.load()
            return ImageOps.exif_transpose(im).convert("RGB")
    except FileNotFoundError:
        raise UserError("image file not found", path) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise UserError(f"corrupt or truncated image ({e})", path) from None


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside a folder, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
