"""`regiondet export`: a trained model as a compact fp16 checkpoint or an ONNX file."""

from __future__ import annotations

from pathlib import Path

from regiondet.errors import UserError
from regiondet.inference.onnx_model import export_onnx
from regiondet.inference.predictor import model_from_checkpoint
from regiondet.inference.quantize import Calibration, export_int8
from regiondet.models.checkpoint import average_into, save_checkpoint
from regiondet.models.low_rank import low_rank_box_head
from regiondet.models.zoo import resolve_model_path

# a checkpoint (.pt, gzipped .pt.gz, PyTorch's .pth) or an ONNX graph: the name says which was written
EXPORT_SUFFIXES = (".pt", ".pt.gz", ".pth", ".onnx")


def export_model(
    source: str,
    out: Path,
    score: float | None = None,
    fp32: bool = False,
    average: list[str] | None = None,
    overrides: list[str] | None = None,
    int8: Calibration | None = None,
) -> Path:
    """Write `source` (a checkpoint or shipped name) to `out`: .onnx for ONNX Runtime, else a
    checkpoint (fp16 unless `fp32`) that keeps the training metrics. `average` adds the weights
    of other checkpoints of the same model (their mean is written); `score` is the default
    threshold stored with it (else the checkpoint's, else its validation score). With `int8`, the
    .onnx file is int8, its activation ranges calibrated as that says."""
    if int8 is not None and out.suffix.lower() != ".onnx":
        raise UserError("int8 export writes ONNX: name the output file *.onnx", out)
    if not out.name.lower().endswith(EXPORT_SUFFIXES):
        raise UserError(f"name the output file {' or '.join('*' + x for x in EXPORT_SUFFIXES)} (what it is then)", out)
    path = resolve_model_path(source)
    model, cfg, ckpt = model_from_checkpoint(path, overrides, as_trained=True)
    if average:
        average_into(model, [path, *map(Path, average)])
    if cfg.model.box_head_rank and out.suffix.lower() == ".onnx":  # a checkpoint keeps the trained layer
        low_rank_box_head(model, cfg.model.box_head_rank, path)
    score = score if score is not None else float(ckpt.get("default_score", cfg.train.eval_score))
    if int8 is not None:
        export_int8(model.float(), cfg, score, out, int8)
    elif out.suffix.lower() == ".onnx":
        export_onnx(model.float(), cfg, score, out)
    else:
        extra = {k: ckpt[k] for k in ("metrics", "verifier", "verifier_fit") if k in ckpt}  # the crop verifier too
        save_checkpoint(out, model, cfg, half=not fp32, default_score=score, **extra)
    return out
