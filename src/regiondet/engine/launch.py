"""`regiondet train CONFIG --nproc N`: torchrun's launcher run in-process, so a multi-process
run starts, stops and fails the way a single one does.

Under a plain `torchrun`, Ctrl-C reaches torchrun too, which prints a page of traceback after
the workers have saved. Here the launcher's signal exception and child failures are caught:
the workers' own lines (rank 0's resume hint, a user error) are what the user sees, and the
exit status is 130 after Ctrl-C, 2 after a user error, as without --nproc.
"""

from __future__ import annotations

import logging
import os
import signal

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import get_args_parser, run

from regiondet.errors import Stopped, UserError

LAUNCH_ENV = "REGIONDET_LAUNCH"  # how the run was started, for the resume hint of rank 0


class LaunchFailed(Exception):
    """A worker failed; its own message is already on stderr. exit_code is what to return."""

    def __init__(self, exit_code: int):
        super().__init__(f"a training process failed (exit {exit_code})")
        self.exit_code = exit_code


def launched_child() -> bool:
    """True in a process `train --nproc` started (its launcher speaks for the run)."""
    return bool(os.environ.get(LAUNCH_ENV)) and "LOCAL_RANK" in os.environ


def launch_train(train_argv: list[str], nproc: int, quiet: bool, resume_hint: str) -> None:
    """Run `regiondet train ...train_argv` in nproc local processes (DDP, gloo on CPU)."""
    if nproc < 1:
        raise UserError("--nproc must be at least 1")
    for name in ("torch.distributed.elastic", "torch.distributed.run", "torch.distributed.launcher"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ[LAUNCH_ENV] = resume_hint
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    args = get_args_parser().parse_args(
        [
            f"--nproc_per_node={nproc}",
            "--standalone",
            "-m",
            "regiondet.cli",
            *(["--quiet"] if quiet else []),
            "train",
            *train_argv,
        ]
    )
    try:
        run(args)
    except SignalException as e:
        raise Stopped(int(e.sigval)) from None
    except ChildFailedError as e:
        codes = sorted({f.exitcode for f in e.failures.values()})
        if 130 in codes or -2 in codes:
            raise Stopped(signal.SIGINT) from None
        if 143 in codes or -15 in codes:
            raise Stopped(signal.SIGTERM) from None
        raise LaunchFailed(2 if codes == [2] else (codes[0] if codes and codes[0] > 0 else 1)) from None
