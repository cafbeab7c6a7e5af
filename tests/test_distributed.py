"""The same training loop under torchrun: 2 CPU processes, gloo backend, rank-0 outputs."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import tiny_config, write_config
from regiondet.engine.checkpoint import read_checkpoint
from regiondet.engine.history import read_history


def test_torchrun_two_processes(tmp_path):
    cfg = tiny_config(tmp_path / "run", epochs=2, steps_per_epoch=2)
    cfg["data"]["val"] = [cfg["data"]["val"][0].replace("limit=6", "limit=2")]
    path = write_config(tmp_path / "c.yaml", cfg)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29533",
        "-m",
        "regiondet.cli",
        "--quiet",
        "train",
        str(path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("regiondet: epoch 2") == 1  # only rank 0 reports
    rows = read_history(tmp_path / "run" / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["steps"] == 4
    ckpt = read_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["epoch"] == 2 and not any(k.startswith("module.") for k in ckpt["model"])
