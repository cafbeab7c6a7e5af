"""One live run per run folder: a second run is refused, a dead run's lock is taken over."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from conftest import main, tiny_config, write_config
from regiondet.engine.run_lock import LOCK_NAME


def _quick(tmp_path):
    return write_config(tmp_path / "c.yaml", tiny_config(tmp_path / "out", epochs=1, steps_per_epoch=1))


def test_a_live_run_keeps_its_folder(tmp_path, capsys):
    cfg = _quick(tmp_path)
    out = tmp_path / "out"
    assert main(["--quiet", "train", str(cfg)]) == 0  # a finished run, to resume
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK_NAME).write_text(f"{live.pid} {socket.gethostname()}\n")
        assert main(["--quiet", "train", str(cfg)]) == 2
        assert main(["--quiet", "train", str(cfg), "--resume"]) == 2
    finally:
        live.kill()
        live.wait()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(f"a run is live in this folder (pid {live.pid})" in line for line in err)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != LOCK_NAME} == before  # untouched
    (out / LOCK_NAME).write_text(f"{live.pid} another-host\n")
    assert main(["--quiet", "train", str(cfg)]) == 2
    assert "host another-host" in capsys.readouterr().err


def test_resume_while_a_run_is_live_before_its_first_checkpoint_says_so(tmp_path, capsys):
    cfg = _quick(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK_NAME).write_text(f"{live.pid} {socket.gethostname()}\n")
        capsys.readouterr()
        assert main(["--quiet", "train", str(cfg), "--resume"]) == 2
    finally:
        live.kill()
        live.wait()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"a run is live in this folder (pid {live.pid}) and has saved no checkpoint" in err[0]
    assert main(["--quiet", "train", str(cfg), "--resume"]) == 2  # the run is gone: nothing to resume
    assert "not found" in capsys.readouterr().err


def test_a_stopped_runs_lock_and_unfinished_writes_are_cleared(tmp_path, capsys):
    cfg = _quick(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (out / LOCK_NAME).write_text(f"{gone.pid} {socket.gethostname()}\n")
    (out / ".last.pt.k3j2.tmp").write_bytes(b"half a checkpoint")
    assert main(["--quiet", "train", str(cfg)]) == 0
    err = capsys.readouterr().err
    assert f"took over the lock of a stopped run (pid {gone.pid})" in err
    assert "removed 1 unfinished write(s) of a stopped run (.last.pt.k3j2.tmp)" in err
    assert (out / "last.pt").is_file() and not list(out.glob(".*.tmp")) and not (out / LOCK_NAME).exists()
    assert os.getpid() != gone.pid
