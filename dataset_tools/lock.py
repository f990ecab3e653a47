"""One writer per dataset directory: an exclusive lock held for a whole collection or post-processing run.

The lock is ``fcntl.flock`` on ``DIR/.lock``: the kernel drops it when its process ends, however it ends,
so a lock is never left behind by a killed run, and while a run holds it every ``.tmp-*`` leftover in the
directory belongs to a run that is provably over. The file also says who holds it (pid, host, command,
start time) for the error a second writer gets.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

from dataset_tools.episode import DatasetError

LOCK_FILE = ".lock"


class DatasetLock:
    """``with DatasetLock(root):`` holds ``root``'s writer lock; a second holder fails at once with a
    :class:`DatasetError` that names the first."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._fd: int | None = None

    def __enter__(self) -> DatasetLock:
        path = self.root / LOCK_FILE
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise DatasetError(f"{self.root}: cannot write there ({err.strerror or err})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            who = (
                f"pid {holder.get('pid')} on {holder.get('host')} ({holder.get('command')}), since {holder.get('since')}"
                if holder
                else "another process"
            )
            raise DatasetError(
                f"{self.root}: another run is writing this dataset: {who}; wait for it to finish, or use another --out"
            ) from None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join(sys.argv)[:300],
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read(fd: int) -> dict[str, object]:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
