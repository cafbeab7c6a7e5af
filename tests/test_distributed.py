"""The same training loop under torchrun: 2 CPU processes, gloo backend, rank-0 outputs."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import tiny_config, write_config
from regiondet.engine.history import read_history
from regiondet.models.checkpoint import read_checkpoint


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


def _flags_worker(rank: int, port: int, out) -> None:
    import torch.distributed as dist

    from regiondet.engine.distributed import DistInfo, any_rank

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    # Ctrl-C seen by rank 1 only; the periodic save due on rank 0 only
    out.put((rank, any_rank([rank == 1, rank == 0, False], DistInfo(rank, 2))))
    dist.destroy_process_group()


def test_stop_and_save_decisions_agree_across_ranks():
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_flags_worker, args=(r, 29547, out)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(60)
    assert results == {0: [True, True, False], 1: [True, True, False]}


def test_resume_hint_names_the_launch_as_it_was(monkeypatch, tmp_path):
    from regiondet.engine.distributed import DistInfo
    from regiondet.engine.train import resume_command

    assert resume_command(tmp_path, DistInfo()) == f"regiondet train {tmp_path / 'config.yaml'} --resume"
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("GROUP_WORLD_SIZE", "1")
    hint = resume_command(tmp_path, DistInfo(rank=0, world=2))
    assert hint == f"torchrun --nproc_per_node=2 -m regiondet.cli train {tmp_path / 'config.yaml'} --resume"
    monkeypatch.setenv("GROUP_WORLD_SIZE", "3")
    monkeypatch.setenv("MASTER_ADDR", "node0")
    monkeypatch.setenv("MASTER_PORT", "29500")
    assert "--nnodes=3 --rdzv_endpoint=node0:29500 -m regiondet.cli" in resume_command(
        tmp_path, DistInfo(rank=0, world=6)
    )


def test_nproc_launch_trains_and_ctrl_c_is_one_hint_without_traceback(tmp_path):
    """`regiondet train --nproc 2`: torchrun's launcher in-process. Ctrl-C to the process group
    (as a terminal sends it) saves, prints the resume hint as launched, exits 130, no traceback."""
    import signal
    import time

    cfg = tiny_config(tmp_path / "run", epochs=1, steps_per_epoch=60)
    cfg["data"]["val"] = []
    path = write_config(tmp_path / "c.yaml", cfg)
    proc = subprocess.Popen(
        [sys.executable, "-m", "regiondet.cli", "train", str(path), "--nproc", "2"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"},
        start_new_session=True,
    )
    seen, deadline = "", time.time() + 300
    while "3/60" not in seen and time.time() < deadline:
        seen += proc.stderr.read(1)
    os.killpg(proc.pid, signal.SIGINT)
    err = seen + proc.communicate(timeout=300)[1]
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "SignalException" not in err
    assert err.count("regiondet: interrupted") == 1, err[-2000:]  # the launcher's line, not each process's
    assert f"resume with: regiondet train {tmp_path / 'run' / 'config.yaml'} --resume --nproc 2" in err
    ckpt = read_checkpoint(tmp_path / "run" / "last.pt")
    assert 3 <= ckpt["step_in_epoch"] < 60
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "regiondet.cli",
            "--quiet",
            "train",
            str(path),
            "--resume",
            "--nproc",
            "2",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 1
