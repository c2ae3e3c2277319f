"""The lock of a run folder: one process trains in a folder at a time.

``run.lock`` is held with ``flock`` for the run's life. The kernel drops an ``flock`` when its
holder exits in any way (SIGKILL too), so a lock is never left held by a dead process; the file
keeps the holder's pid, host and start time, which name the holder while it runs and, once it is
gone, tell the next run that it takes over a lock its holder never released. The file is never
deleted (deleting a lock file that another process waits on would let two processes in).
``flock`` works on local disks; on NFS it depends on the mount (docs/rundir.md).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

LOCK_FILE = "run.lock"


class RunLockedError(RuntimeError):
    """The run folder is held by another live process; the message names it."""


class RunLock:
    """``acquire()`` takes the folder's lock or raises :class:`RunLockedError`; ``release()``
    gives it back (idempotent)."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> str | None:
        """Take the lock; return a note when it takes over a lock a dead process left."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(_read(fd))
            os.close(fd)
            raise RunLockedError(
                f"{self.path.parent} is in use by {holder}; two processes writing one run folder "
                "would interleave its metrics and checkpoints. Wait for it to finish, stop it, or "
                "train into another folder (--out)"
            ) from None
        previous = _read(fd)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        if previous:
            return f"took over the lock of {self.path.parent} left by {_describe(previous)}"
        return None

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)  # an empty file: released, not abandoned
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def _read(fd: int) -> dict:
    raw = os.pread(fd, 4096, 0)
    try:
        return json.loads(raw) if raw.strip() else {}
    except ValueError:
        return {"pid": "?", "host": "?", "started": None}


def _describe(holder: dict) -> str:
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "?"
    alive = ""
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        alive = "" if _pid_alive(holder["pid"]) else " (no longer running)"
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}{alive}, started {when}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
