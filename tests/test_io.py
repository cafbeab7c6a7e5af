"""Atomic writes: whole files or none, with the permissions a plain open() would give."""

from __future__ import annotations

import os

import pytest
import torch

from regiondet.io import atomic_torch_save, atomic_write_text, torch_load_safe


def test_new_files_get_the_umask_mode_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        atomic_torch_save(tmp_path / "w.pt.gz", {"w": torch.ones(2)})
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "w.pt.gz").stat().st_mode & 0o777 == 0o644
    assert torch.equal(torch_load_safe(tmp_path / "w.pt.gz")["w"], torch.ones(2))


def test_rewriting_keeps_the_old_files_mode(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    path.chmod(0o640)
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert path.stat().st_mode & 0o777 == 0o640


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError):
        atomic_torch_save(path, {"x": Unpicklable()})
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
