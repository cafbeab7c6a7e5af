"""One live run per run folder: a lock file with the owner's pid, taken before anything is read
or written there, so two runs (or a second --resume) cannot write over each other.

The lock is created with O_EXCL, so of two runs starting at once exactly one wins. A lock left
by a process that is gone (kill -9, a crash, a reboot) is taken over with a note; one held by
a live process, or by another host whose processes cannot be checked, is a one-line error.
After taking the lock, unfinished atomic writes (`.last.pt.*.tmp`) of a stopped run are removed.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from regiondet.errors import UserError

LOCK_NAME = ".regiondet.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def live_owner(folder: Path) -> str | None:
    """The pid of a live process of this host holding the folder's lock, if any."""
    try:
        pid_text, _, host = (Path(folder) / LOCK_NAME).read_text().strip().partition(" ")
    except OSError:
        return None
    same_host = not host or host == socket.gethostname()
    return pid_text if pid_text.isdigit() and same_host and _alive(int(pid_text)) else None


class RunLock:
    """Context manager holding folder/.regiondet.lock for this process."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.mine = f"{os.getpid()} {socket.gethostname()}"
        self.held = False

    def __enter__(self) -> RunLock:
        self.created = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w") as f:
                f.write(self.mine + "\n")
            self.held = True
            self._remove_unfinished_writes()
            return self
        raise UserError("another run took the run folder's lock at the same moment", self.path)

    def __exit__(self, *exc) -> None:
        if self.held and self._owner() == self.mine:
            self.path.unlink(missing_ok=True)
            if self.created and not any(self.folder.iterdir()):  # a run that wrote nothing leaves no folder
                self.folder.rmdir()
        self.held = False

    def _owner(self) -> str:
        try:
            return self.path.read_text().strip()
        except OSError:
            return ""

    def _take_over_if_stale(self) -> None:
        owner = self._owner()
        pid_text, _, host = owner.partition(" ")
        if not pid_text.isdigit():
            note = "an unreadable lock"
        elif host and host != socket.gethostname():
            raise UserError(
                f"a run on host {host} (pid {pid_text}) holds this run folder; if it is stopped, delete {self.path}",
                self.folder,
            )
        elif _alive(int(pid_text)) and int(pid_text) != os.getpid():
            raise UserError(
                f"a run is live in this folder (pid {pid_text}): wait for it, stop it, or set train.out", self.folder
            )
        else:
            note = f"the lock of a stopped run (pid {pid_text})"
        print(f"regiondet: {self.folder}: took over {note}", file=sys.stderr)
        self.path.unlink(missing_ok=True)

    def _remove_unfinished_writes(self) -> None:
        left = sorted(p for p in self.folder.glob(".*.tmp") if p.is_file())
        for p in left:
            p.unlink(missing_ok=True)
        if left:
            names = ", ".join(p.name for p in left[:3]) + (" ..." if len(left) > 3 else "")
            print(
                f"regiondet: {self.folder}: removed {len(left)} unfinished write(s) of a stopped run ({names})",
                file=sys.stderr,
            )
