"""Checkpoint files: one dict of plain data and tensors, written atomically, read with weights_only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from regiondet.config import Config, config_from_dict
from regiondet.errors import UserError
from regiondet.io import atomic_torch_save, torch_load_safe

KIND = "regiondet.detector"
FORMAT = 1


def save_checkpoint(path: Path, model: nn.Module, cfg: Config, half: bool = False, **extra: Any) -> None:
    """Write model weights with the config that builds them; half=True stores floats as fp16."""
    state = model.state_dict()
    if half:
        state = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    atomic_torch_save(Path(path), {"kind": KIND, "format": FORMAT, "config": cfg.to_dict(), "model": state, **extra})


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load and check a regiondet checkpoint; anything else is a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError("checkpoint not found", path)
    try:
        ckpt = torch_load_safe(path)
    except Exception as e:  # corrupt, truncated, or pickled objects outside the safe list
        reason = f"cannot read checkpoint ({e.__class__.__name__}); corrupt or not made by regiondet"
        raise UserError(reason, path) from None
    if not isinstance(ckpt, dict) or ckpt.get("kind") != KIND:
        raise UserError("not a regiondet detector checkpoint (made by another tool?)", path)
    if ckpt.get("format", 0) > FORMAT:
        raise UserError("checkpoint written by a newer regiondet; upgrade regiondet", path)
    return ckpt


def config_of(ckpt: dict[str, Any], path: Path) -> Config:
    return config_from_dict(ckpt["config"], str(path))


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Load weights (fp16 stored or not) into a model built from the checkpoint's config."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError:
        raise UserError(f"weights do not fit the model in its config: {state_mismatch(model, state)}", path) from None


def state_mismatch(model: nn.Module, state: dict[str, torch.Tensor], show: int = 3) -> str:
    """What differs between a model's tensors and a state dict, in one short line: the count of
    each kind of mismatch and its first few names (torch's own message runs to pages)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shaped = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    parts = []
    for what, names in (("missing", missing), ("unexpected", extra), ("of another shape", shaped)):
        if names:
            more = f", ... {len(names) - show} more" if len(names) > show else ""
            parts.append(f"{len(names)} {what} ({', '.join(names[:show])}{more})")
    return "; ".join(parts) or "no tensor differs by name or shape"


def load_matching(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> tuple[int, list[str]]:
    """Fine-tuning start: copy every tensor whose name and shape fit; returns (loaded, skipped names).

    A model trained for other classes still gives its backbone, RPN and box head; only the
    class-specific layers stay new.
    """
    own = model.state_dict()
    fits = {k: v.to(own[k].dtype) for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not fits:
        raise UserError("no weight of this checkpoint fits the model (another backbone?)", path)
    model.load_state_dict(fits, strict=False)
    return len(fits), sorted(k for k in own if k not in fits)


def average_into(model: nn.Module, paths: list[Path]) -> None:
    """Set model's floating-point tensors to the mean of the checkpoints' (weight averaging of
    the last epochs of one run, as fairseq's average_checkpoints: a flatter optimum than any one
    epoch when validation swings from epoch to epoch). Every file must fit the model exactly."""
    own = model.state_dict()
    total = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in own.items() if v.is_floating_point()}
    for path in paths:
        state = read_checkpoint(path)["model"]
        if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
            raise UserError(f"cannot average with a different model: {state_mismatch(model, state)}", path)
        for k in total:
            total[k] += state[k].double()
    model.load_state_dict({k: (v / len(paths)).to(own[k].dtype) for k, v in total.items()}, strict=False)
