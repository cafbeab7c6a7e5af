"""One exception type for user mistakes: the CLI prints its message on one line, no traceback."""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A problem with the user's input (file, annotation, config), not a bug in regiondet."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        if "\nOriginal Traceback" in message:  # re-raised by a DataLoader worker: keep our line
            last = message.strip().splitlines()[-1]
            message = last.split("UserError: ", 1)[-1]
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)


class Stopped(KeyboardInterrupt):
    """A run stopped by a signal after saving (Ctrl-C, or SIGTERM from a scheduler or `kill`):
    the CLI exits 128 + the signal's number, as a shell reports a process the signal ended."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
