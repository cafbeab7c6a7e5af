"""Atomic file writes: a crash or Ctrl-C never leaves a half-written file behind."""

from __future__ import annotations

import gzip
import io
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml

from regiondet.errors import UserError


def _new_file_mode(path: Path) -> int:
    """The mode a plain open() would give: the old file's if there is one, else 0o666 minus umask.

    mkstemp creates 0o600 files; without this an exported model or a checkpoint would be
    unreadable to the rest of a shared group or a web server.
    """
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def strict_json(data: Any) -> Any:
    """`data` with NaN and infinities as null: Python writes them as bare NaN, which strict
    JSON readers (JavaScript's JSON.parse, jq, Go) refuse. An AP that cannot be measured (a
    class without objects) is null, not NaN."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: strict_json(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [strict_json(v) for v in data]
    return data


def check_output(path: str | Path, option: str, folder: bool = False) -> None:
    """Before any work starts: `path` can be written as a file (or made as a folder), so a run
    never ends in a traceback, or after hours, on a folder where a file is wanted, a file where a
    folder is, or a place nothing can be written."""
    if not str(path).strip():
        raise UserError(f"{option} is empty")
    p = Path(path)
    if folder and p.exists() and not p.is_dir():
        raise UserError(f"{option} must be a folder, and this is a file", p)
    if not folder and (p.is_dir() or str(path).endswith(("/", os.sep))):
        raise UserError(f"{option} must be a file, and this is a folder", p)
    ancestor = p if folder else p.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"{option}: {ancestor} is a file, so nothing can be written under it", p)
    try:  # the only sure test of a place (read-only mounts, /proc, permissions): write there
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as e:
        raise UserError(f"{option}: nothing can be written in {ancestor} ({e.strerror or e})", p) from None


def _atomic(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _new_file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_yaml(path: Path, what: str = "YAML file") -> dict:
    """A YAML mapping from a file; missing, malformed or non-mapping files are one-line UserErrors."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found", path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise UserError(
            f"malformed YAML ({getattr(e, 'problem', None) or e.__class__.__name__})",
            path,
            mark.line + 1 if mark else None,
        ) from None
    if not isinstance(data, dict):
        raise UserError("expected a YAML mapping (key: value lines)", path)
    return data


def atomic_write_text(path: Path, text: str) -> None:
    _atomic(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    _atomic(path, lambda f: f.write(data))


def atomic_torch_save(path: Path, obj: Any) -> None:
    """torch.save, gzip-compressed when the name ends in .gz (fp16 weights shrink by ~9 %)."""
    if Path(path).name.endswith(".gz"):
        buf = io.BytesIO()
        torch.save(obj, buf)
        _atomic(path, lambda f: f.write(gzip.compress(buf.getvalue(), compresslevel=6, mtime=0)))
    else:
        _atomic(path, lambda f: torch.save(obj, f))


def torch_load_safe(path: Path) -> Any:
    """torch.load with weights_only=True on the CPU; a name ending in .gz is decompressed first."""
    path = Path(path)
    if path.name.endswith(".gz"):
        with gzip.open(path, "rb") as f:
            return torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=True)
    return torch.load(path, map_location="cpu", weights_only=True)
