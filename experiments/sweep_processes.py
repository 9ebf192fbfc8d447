"""The processes of a local sweep (:mod:`experiments.sweep`, its docstring has the guarantees): process identity
and liveness, the guard process that ties a run to its runner, and the runner's signal handling."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from datamodules.atomic_files import proc_stat

_KILL_GRACE_S = 10.0  # SIGTERM → SIGKILL delay when a run is stopped


def _process_start(pid: int) -> int | None:
    stat = proc_stat(pid)
    return stat[1] if stat else None


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _machine() -> dict:
    """Where pids mean the same thing: host name, boot id and pid namespace."""
    try:
        pidns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pidns = None
    return {"host": socket.gethostname(), "boot_id": _read_text("/proc/sys/kernel/random/boot_id"), "pidns": pidns}


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# The guard between the runner and a run (``python -I -S -c _GUARD RUNNER_PID CMD...``), leader of the run's
# process group. The runner's death (PDEATHSIG=SIGHUP, or getppid() changing) SIGKILLs the group; SIGTERM and
# SIGINT are left to the training process (the runner sends them to the whole group); its exit mirrors the
# training process's (same code, or killed by the same signal).
_GUARD = r"""
import ctypes, os, signal, subprocess, sys
runner, cmd = int(sys.argv[1]), sys.argv[2:]
try:
    libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
except OSError:
    libc = None
def pdeathsig(sig):
    if libc is not None:
        libc.prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG
def kill_group(*_):
    os.killpg(0, signal.SIGKILL)
signal.signal(signal.SIGHUP, kill_group)
for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, lambda *_: None)
pdeathsig(signal.SIGHUP)
if os.getppid() != runner:
    kill_group()
child = subprocess.Popen(cmd, preexec_fn=lambda: pdeathsig(signal.SIGKILL))
while True:
    try:
        rc = child.wait(timeout=0.5)
        break
    except subprocess.TimeoutExpired:
        if os.getppid() != runner:
            kill_group()
if rc < 0:
    try:
        signal.signal(-rc, signal.SIG_DFL)
    except (OSError, ValueError):
        pass
    os.kill(os.getpid(), -rc)
    rc = 128 - rc
sys.exit(rc)
"""


def _spawn(cmd: list[str], log: IO[bytes]) -> subprocess.Popen:
    """Start ``cmd`` under the guard, in a new process group (pgid = the guard's pid)."""
    group = {"process_group": 0} if sys.version_info >= (3, 11) else {"start_new_session": True}
    return subprocess.Popen([sys.executable, "-I", "-S", "-c", _GUARD, str(os.getpid()), *cmd],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, **group)


class _Stop:
    """SIGINT/SIGTERM/SIGHUP during a sweep: SIGTERM to the running run's group (a second signal: SIGKILL)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.since: float | None = None
        self.pgid: int | None = None
        self._old: dict = {}

    def __enter__(self) -> _Stop:
        if threading.current_thread() is threading.main_thread():
            for name in ("SIGINT", "SIGTERM", "SIGHUP"):
                sig = getattr(signal, name, None)
                if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:  # nohup / `&` stay as they are
                    self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        first = self.signum is None
        if first:
            self.signum, self.since = signum, time.monotonic()
        if self.pgid is not None:
            _killpg(self.pgid, signal.SIGTERM if first else signal.SIGKILL)

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def exit(self) -> None:
        """Leave the sweep the way the signal asked: KeyboardInterrupt for SIGINT, else exit 128 + signal."""
        if self.signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + int(self.signum or 0))
