"""Locks of a local sweep: ``<out>/locks/<run name>.lock`` says which runner trains a run, ``flock`` on
``<out>/locks/.mutex`` serialises lock and status-file changes (see :mod:`experiments.sweep`)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from datamodules.atomic_files import atomic_write_text, pid_alive, proc_stat
from experiments.sweep_processes import _machine, _process_start

try:
    import fcntl
except ImportError:  # not POSIX: locks without the flock mutex
    fcntl = None

_HEARTBEAT_S = 30.0  # the runner touches its lock this often while a run trains
_FOREIGN_LOCK_STALE_S = 300.0  # a lock of another host / pid namespace without heartbeat for this long is stale
_UNREADABLE_LOCK_STALE_S = 5.0  # an empty or torn lock file older than this is stale (its writer died)


@contextlib.contextmanager
def _mutex(folder: Path) -> Iterator[None]:
    """Serialise lock and status-file changes of every runner on this sweep (flock; freed if a runner dies)."""
    folder.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    fd = os.open(folder / ".mutex", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _describe_owner(info: dict | None) -> str:
    if not info or "pid" not in info:
        return "unreadable lock"
    return f"pid {info['pid']} on {info.get('host')} since {info.get('since')}"


def _stale_reason(info: dict | None, path: Path) -> str | None:
    """Why the lock at ``path`` (content ``info``) is stale, or None while its owner may be alive."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return "gone"
    if not info or not isinstance(info.get("pid"), int):
        return "unreadable lock file" if age > _UNREADABLE_LOCK_STALE_S else None
    here = _machine()
    if info.get("host") != here["host"]:
        return f"no heartbeat for {age:.0f} s" if age > _FOREIGN_LOCK_STALE_S else None
    if info.get("boot_id") and here["boot_id"] and info["boot_id"] != here["boot_id"]:
        return "the machine rebooted since"
    if info.get("pidns") != here["pidns"]:
        return f"no heartbeat for {age:.0f} s" if age > _FOREIGN_LOCK_STALE_S else None
    if pid_alive(info["pid"], info.get("start")):
        return None
    child = info.get("child_pid")
    if isinstance(child, int) and pid_alive(child, info.get("child_start")):
        return None
    stat = proc_stat(info["pid"])
    if stat is not None and stat[0] not in ("Z", "X", "x"):
        return f"pid {info['pid']} is now another process"
    return f"pid {info['pid']} is not running"


class _RunLock:
    """``<out>/locks/<run name>.lock``: which runner trains a run right now (see :mod:`experiments.sweep`'s
    docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.info = {"pid": os.getpid(), "start": _process_start(os.getpid()), **_machine(),
                     "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self.note: str | None = None
        self._beat = time.monotonic()

    def _read(self) -> dict | None:
        try:
            info = json.loads(self.path.read_text())
            return info if isinstance(info, dict) else {}
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}

    def _ours(self, info: dict | None) -> bool:
        return bool(info) and all(info.get(k) == self.info[k] for k in ("pid", "start", "host", "pidns"))

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(self.info))
        return True

    def acquire(self) -> dict | None:
        """Take the lock (taking a stale one over, with a printed note): None, else the live owner's lock."""
        with _mutex(self.path.parent):
            if self._create():
                return None
            owner = self._read()
            reason = _stale_reason(owner, self.path)
            if reason is None:
                return owner or {}
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self.note = f"took over the stale lock of {_describe_owner(owner)} ({reason})"
            print(f"[sweep] {self.path.name}: {self.note}", flush=True)
            return None if self._create() else (self._read() or {})

    def started(self, proc: subprocess.Popen) -> None:
        """Record the run's guard (pid and start time) in the lock: it stays live while the guard lives."""
        self.info.update(child_pid=proc.pid, child_start=_process_start(proc.pid))
        with _mutex(self.path.parent):
            if self._ours(self._read()):
                atomic_write_text(self.path, json.dumps(self.info))

    def heartbeat(self) -> None:
        if time.monotonic() - self._beat >= _HEARTBEAT_S:
            self._beat = time.monotonic()
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        with _mutex(self.path.parent):
            current = self._read()
            if self._ours(current):
                self.path.unlink()
            elif current is not None:
                print(f"[sweep] {self.path.name}: not removed, it now belongs to {_describe_owner(current)}",
                      flush=True)
