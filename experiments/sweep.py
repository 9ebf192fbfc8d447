"""``darkroom sweep FILE``: W&B sweeps, registered with a server or run locally from the same YAML.

The YAML is a standard W&B sweep definition (``method``, ``metric``, ``parameters``, ``command``;
https://docs.wandb.ai/guides/sweeps/define-sweep-configuration). Its ``command`` runs
``darkroom fit`` with the sweep's arguments, so ``wandb sweep FILE`` + ``wandb agent ID`` work on any
number of machines (each agent one process, or one DDP job)::

    darkroom sweep experiments/zero_dce/sweeps/loss_ablation.yaml           # register (W&B configured)
    darkroom sweep experiments/zero_dce/sweeps/loss_ablation.yaml --local   # expand and run here
    darkroom sweep FILE --local --dry-run                                   # list the runs only
    darkroom sweep FILE --local -- --trainer.max_steps 50                   # extra args for every run

``--local`` expands ``grid`` (every combination of ``values``/``value``) and ``random`` (``--count``
draws, default ``run_cap`` or 10; the W&B distributions ``uniform``, ``int_uniform``, ``q_uniform``,
``log_uniform``, ``log_uniform_values``, ``q_log_uniform_values``, ``normal``, ``q_normal``,
``log_normal``, ``categorical``). Nested parameters (``parameters: {model: {parameters: …}}``) and
dotted names (``model.init_args.loss_weights.tv``) both become ``--model.init_args.loss_weights.tv=V``.
Each run gets its own directory ``<out>/<paper>/<run name>/`` (the name derives from its parameters),
runs in its own process with a progress line, tests its best checkpoint (``--run.test_after_fit``)
and writes ``results.json``; its output goes to ``<out>/logs/<run name>.log``.

What the local runner guarantees (Linux; the lock and status parts on any POSIX system):

* **A run never outlives the runner.** Each run is started through a tiny guard process (``_GUARD``)
  that leads a new process group; the training process and whatever it starts (Lightning's DDP
  ranks, data-loader workers) stay in that group. The guard asks the kernel for
  ``prctl(PR_SET_PDEATHSIG, SIGHUP)``, so when the runner dies, even by ``kill -9``, the guard is
  signalled at once and SIGKILLs its whole group (it also polls ``getppid()`` twice a second, which
  covers a runner that died before the prctl and systems without it). The training process gets
  ``PR_SET_PDEATHSIG=SIGKILL`` in a ``preexec_fn``, so it dies even if the guard itself is killed.
  PDEATHSIG applies to one process only and a rank-0 killed by SIGKILL cannot stop its DDP
  ranks (Lightning's ``_ChildProcessObserver`` is a thread of rank 0), which is why the group is
  killed as a whole. W&B's ``wandb-core`` starts its own session and quits by itself when its
  parent is gone. SIGINT/SIGTERM/SIGHUP to the runner send SIGTERM to the run's group (Lightning
  stops cleanly), then SIGKILL after ``_KILL_GRACE_S``; the run is recorded as ``interrupted`` and
  the runner exits (``KeyboardInterrupt``, or exit code 128 + signal). Whatever is left in a run's
  group when the run ends is SIGKILLed. ``--timeout`` stops the group the same way.
* **One runner per run.** Before starting a run the runner takes ``<out>/locks/<run name>.lock``
  (created with ``O_CREAT|O_EXCL``; it holds the runner's pid, host, boot id, pid namespace,
  process start time and, once started, the guard's pid and start time). A second runner on the same
  sweep skips runs locked by a live runner and takes the next; its summary lists them as
  ``running elsewhere`` (neither failed nor finished). A lock is stale, and taken over with a
  printed note, when neither its runner nor its guard is alive (same machine: the pid is gone, a
  zombie, or now a different process as its start time in ``/proc/<pid>/stat`` shows, or the machine
  rebooted); a lock from another host or pid namespace is stale when its heartbeat (the runner
  touches it every ``_HEARTBEAT_S``) is older than ``_FOREIGN_LOCK_STALE_S``. Taking, checking,
  taking over and releasing a lock are serialised by ``flock`` on ``<out>/locks/.mutex`` (the
  kernel drops it if a runner dies). The lock is removed when the run ends (finished, failed or
  interrupted); a runner re-checks ``results.json`` after taking a lock, so a run finished
  meanwhile by another runner is not trained again.
* **Half-finished runs resume.** A run whose directory has ``checkpoints/last.ckpt`` but no
  ``results.json`` is started with ``--ckpt_path <that last.ckpt>`` (the progress line says
  ``resuming from step N``). The step is read with the project's checkpoint reader
  (``lightning_modules.checkpoints``, ``weights_only=True``); a ``last.ckpt`` it rejects (torn, corrupt,
  not a Lightning checkpoint, pickled code) is renamed aside to ``last.ckpt.unreadable-<time>``, never
  deleted, and the run starts fresh.
* **Failures are visible.** Every run is recorded, a failed one with its exit code, its error line and
  the tail of its log; the closing summary names each failed run with its log and error line, and
  ``darkroom sweep --local`` exits with status 1 when any run failed (``run_local`` itself returns
  the records). Re-running the sweep skips finished runs and retries failed ones.
* **sweep_status.json is never torn and never clobbered.** It is rewritten after every change through
  a temporary file in the same folder and ``os.replace``; under the same ``flock`` the runner reads
  the current file and merges its own runs into it by run name, so runners sharing a sweep keep
  each other's records (a run's own runner is authoritative for its entry).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import math
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from datamodules.atomic_files import atomic_write_text, pid_alive, proc_stat, remove_stale_temp_files

try:
    import fcntl
except ImportError:  # not POSIX: locks without the flock mutex
    fcntl = None

_DISTRIBUTIONS = ("uniform", "int_uniform", "q_uniform", "log_uniform", "log_uniform_values", "q_log_uniform",
                  "q_log_uniform_values", "normal", "q_normal", "log_normal", "q_log_normal", "categorical",
                  "constant")


class SweepConfigError(ValueError):
    """The sweep YAML does not follow the W&B sweep syntax (the message names the key)."""


def load_sweep(path: str | Path) -> dict:
    """Read and check a sweep YAML (``method``, ``parameters``, ``command``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: sweep file not found")
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SweepConfigError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(cfg, dict):
        raise SweepConfigError(f"{path}: expected a mapping with method/parameters/command")
    method = cfg.get("method")
    if method not in ("grid", "random", "bayes"):
        raise SweepConfigError(f"{path}: method must be grid, random or bayes, got {method!r}")
    if not isinstance(cfg.get("parameters"), dict) or not cfg["parameters"]:
        raise SweepConfigError(f"{path}: 'parameters' must be a non-empty mapping")
    return cfg


def flatten_parameters(parameters: dict, prefix: str = "") -> dict[str, dict]:
    """W&B nested ``parameters`` (and dotted names) → ``{"a.b.c": spec}``."""
    flat: dict[str, dict] = {}
    for name, spec in parameters.items():
        key = f"{prefix}{name}"
        if not isinstance(spec, dict):
            raise SweepConfigError(f"parameter {key!r}: expected a mapping (values/value/distribution/parameters)")
        if "parameters" in spec:
            flat.update(flatten_parameters(spec["parameters"], f"{key}."))
        else:
            flat[key] = spec
    return flat


def _grid_values(key: str, spec: dict) -> list:
    if "values" in spec:
        if not isinstance(spec["values"], list) or not spec["values"]:
            raise SweepConfigError(f"parameter {key!r}: 'values' must be a non-empty list")
        return list(spec["values"])
    if "value" in spec:
        return [spec["value"]]
    raise SweepConfigError(f"parameter {key!r}: grid search needs 'values' or 'value' (got {sorted(spec)})")


def sample_parameter(key: str, spec: dict, rng: random.Random) -> Any:
    """One draw of a parameter with W&B's distribution semantics."""
    if "value" in spec:
        return spec["value"]
    dist = spec.get("distribution", "categorical" if "values" in spec else "uniform")
    if dist not in _DISTRIBUTIONS:
        raise SweepConfigError(f"parameter {key!r}: unknown distribution {dist!r}")
    if dist in ("categorical", "constant") or "values" in spec:
        values = spec.get("values")
        if not values:
            raise SweepConfigError(f"parameter {key!r}: 'values' must be a non-empty list")
        probs = spec.get("probabilities")
        return rng.choices(values, weights=probs)[0] if probs else rng.choice(values)
    q = spec.get("q", 1)
    if dist in ("normal", "q_normal", "log_normal", "q_log_normal"):
        x = rng.gauss(spec.get("mu", 0.0), spec.get("sigma", 1.0))
        x = math.exp(x) if "log" in dist else x
    else:
        if "min" not in spec or "max" not in spec:
            raise SweepConfigError(f"parameter {key!r}: distribution {dist} needs min and max")
        lo, hi = spec["min"], spec["max"]
        if dist == "int_uniform":
            return rng.randint(int(lo), int(hi))
        if dist in ("log_uniform_values", "q_log_uniform_values"):
            x = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        elif dist in ("log_uniform", "q_log_uniform"):
            x = math.exp(rng.uniform(lo, hi))
        else:
            x = rng.uniform(lo, hi)
    if dist.startswith("q_"):
        x = round(x / q) * q
        return int(x) if float(q).is_integer() and float(x).is_integer() else x
    return x


def expand(cfg: dict, count: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """The runs of a sweep as ``{dotted name: value}`` dicts (grid: all combinations; random: ``count`` draws)."""
    params = flatten_parameters(cfg["parameters"])
    if cfg["method"] == "grid":
        keys = list(params)
        return [dict(zip(keys, combo, strict=True))
                for combo in itertools.product(*(_grid_values(k, params[k]) for k in keys))]
    n = count or cfg.get("run_cap") or 10
    rng = random.Random(seed)
    return [{k: sample_parameter(k, spec, rng) for k, spec in params.items()} for _ in range(int(n))]


def format_value(value: Any) -> str:
    """How W&B's ``${args}`` writes a value: JSON for lists/dicts/bools, str otherwise."""
    if isinstance(value, (list, dict, bool)) or value is None:
        return json.dumps(value)
    return str(value)


def run_arguments(params: dict[str, Any], hyphens: bool = True) -> list[str]:
    """``{"a.b": 1}`` → ``["--a.b=1"]`` (``${args}``) or ``["a.b=1"]`` (``${args_no_hyphens}``)."""
    return [f"{'--' if hyphens else ''}{k}={format_value(v)}" for k, v in params.items()]


#: how a sweep starts ``darkroom``: this Python, ``-m experiments.cli``; with ``-P`` (Python ≥ 3.11) the working
#: folder is not put first on ``sys.path``, so a user's own ``metrics.py`` or ``losses/`` there cannot shadow the
#: suite's packages (on Python 3.10 it still can)
DARKROOM_COMMAND: list[str] = [sys.executable, *(["-P"] if sys.version_info >= (3, 11) else []), "-m", "experiments.cli"]


def build_command(cfg: dict, params: dict[str, Any]) -> list[str]:
    """The sweep's ``command`` with its macros filled; ``darkroom`` becomes :data:`DARKROOM_COMMAND`."""
    command = cfg.get("command") or ["${env}", "${program}", "${args}"]
    out: list[str] = []
    for token in command:
        if token in ("${env}", "${interpreter}"):
            continue
        if token == "${program}":
            token = cfg.get("program", "darkroom")
        if token == "${args}":
            out += run_arguments(params)
        elif token == "${args_no_hyphens}":
            out += run_arguments(params, hyphens=False)
        elif token == "${args_json}":
            out.append(json.dumps(params))
        elif token == "darkroom" and not out:
            out += DARKROOM_COMMAND
        else:
            out.append(token)
    return out


def run_name(params: dict[str, Any]) -> str:
    """A readable, deterministic run name: ``<short values>-<hash>`` (the hash keeps distinct runs apart)."""
    digest = hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:8]
    short = "_".join(str(format_value(v)).replace("/", "-").replace(" ", "")[-24:] for v in params.values())
    keep = "".join(c if c.isalnum() or c in "-_.=" else "" for c in short)[:60]
    return f"{keep}-{digest}" if keep else digest


@dataclass
class RunRecord:
    """One local sweep run: its parameters, where it lives, and how it ended."""

    name: str
    params: dict
    run_dir: str
    # finished | failed | skipped (already finished) | running | running elsewhere | interrupted | pending
    status: str = "pending"
    returncode: int | None = None
    wall_seconds: float | None = None
    fit_seconds: float | None = None
    error: str | None = None
    metrics: dict = field(default_factory=dict)
    log: str | None = None
    note: str | None = None  # resumed from step N, took over a stale lock, who runs it elsewhere


def _find_run_dir(out: Path, name: str) -> Path | None:
    found = [p for p in out.glob(f"*/{name}") if p.is_dir()]
    return found[0] if found else None


# -- processes: identity, liveness, the guard that ties a run to the runner -----------------------------------

_HEARTBEAT_S = 30.0  # the runner touches its lock this often while a run trains
_FOREIGN_LOCK_STALE_S = 300.0  # a lock of another host / pid namespace without heartbeat for this long is stale
_KILL_GRACE_S = 10.0  # SIGTERM → SIGKILL delay when a run is stopped
_UNREADABLE_LOCK_STALE_S = 5.0  # an empty or torn lock file older than this is stale (its writer died)


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


def _spawn(cmd: list[str], log) -> subprocess.Popen:
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

    def _handle(self, signum, frame) -> None:
        first = self.signum is None
        if first:
            self.signum, self.since = signum, time.monotonic()
        if self.pgid is not None:
            _killpg(self.pgid, signal.SIGTERM if first else signal.SIGKILL)

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def exit(self) -> None:
        """Leave the sweep the way the signal asked: KeyboardInterrupt for SIGINT, else exit 128 + signal."""
        if self.signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + int(self.signum or 0))


# -- locks and the status file --------------------------------------------------------------------------------

@contextlib.contextmanager
def _mutex(folder: Path):
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
    """``<out>/locks/<run name>.lock``: which runner trains a run right now (see the module docstring)."""

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


_OWN_STATUSES = ("running", "finished", "failed", "interrupted")  # the run's own runner writes these


def _write_status(path: Path, records: list[RunRecord], order: list[str]) -> None:
    """Merge ``records`` into ``sweep_status.json`` by run name (keeping other runners' entries), atomically."""
    with _mutex(path.parent / "locks"):
        try:
            old = [e for e in json.loads(path.read_text()) if isinstance(e, dict) and "name" in e]
        except (OSError, ValueError, TypeError):
            old = []
        entries = {e["name"]: e for e in old}
        for rec in records:
            prev = entries.get(rec.name)
            if (prev is None or rec.status in _OWN_STATUSES
                    or (rec.status == "skipped" and prev.get("status") not in ("finished", "skipped"))):
                entries[rec.name] = asdict(rec)
        names = [n for n in dict.fromkeys(order) if n in entries]  # this sweep's order, then any others
        seen = set(names)
        names += [e["name"] for e in old if e["name"] not in seen]
        atomic_write_text(path, json.dumps([entries[n] for n in names], indent=2))


# -- resuming -------------------------------------------------------------------------------------------------

def _checkpoint_step(path: Path) -> tuple[int | None, str | None]:
    """``(global_step, None)`` for a checkpoint ``darkroom fit --ckpt_path`` can resume from, else ``(None, why)``.

    Read with the project's one checkpoint reader (``weights_only=True``), so a torn, corrupt or pickled-code
    file is judged here exactly as ``darkroom fit`` would judge it.
    """
    from lightning_modules.checkpoints import CheckpointError, load_checkpoint_file

    try:
        ckpt = load_checkpoint_file(path)
    except (CheckpointError, OSError) as err:
        why = str(err).replace(f"{path}: ", "")
        return None, why if len(why) <= 160 else why[:159] + "…"
    step = ckpt.get("global_step")
    return (step if isinstance(step, int) else None), None


def _resume_point(run_dir: Path | None) -> tuple[Path | None, str | None]:
    """The ``last.ckpt`` to resume a half-finished run from (or None) and a note for the progress line."""
    ckpt = run_dir / "checkpoints" / "last.ckpt" if run_dir is not None else None
    if ckpt is None or not ckpt.is_file():
        return None, None
    step, problem = _checkpoint_step(ckpt)
    if problem is not None:
        aside = ckpt.with_name(f"last.ckpt.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
        ckpt.rename(aside)
        return None, f"checkpoints/last.ckpt is unreadable ({problem}); moved to {aside.name}, starting fresh"
    return ckpt, f"resuming from step {step}" if step is not None else "resuming from last.ckpt (step unknown)"


def _error_line(lines: list[str]) -> str:
    """The line of a log tail that says what went wrong (an exception or ``error:`` line, else the last)."""
    pattern = re.compile(r"^([\w.]*(Error|Exception|Interrupt|Exit)\b|error:)", re.IGNORECASE)
    lines = [ln.strip() for ln in lines if ln.strip()]
    for line in reversed(lines):
        if pattern.match(line):
            return line
    return lines[-1] if lines else "(no output)"


# -- the local runner -----------------------------------------------------------------------------------------

def _wait(proc: subprocess.Popen, lock: _RunLock, stop: _Stop, timeout: float | None) -> tuple[int, str | None]:
    """Wait for a run; ``(returncode, None)``, or ``(returncode, "timed out"|"interrupted")`` if it was stopped."""
    t0, why, term_at = time.monotonic(), None, None
    while True:
        try:
            rc = proc.wait(timeout=1.0)
            return rc, why or ("interrupted" if stop.signum is not None else None)
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        lock.heartbeat()
        if why is None and stop.signum is not None:
            why, term_at = "interrupted", now
            _killpg(proc.pid, signal.SIGTERM)  # again, in case the signal came before the run had started
        elif why is None and timeout is not None and now - t0 > timeout:
            why, term_at = "timed out", now
            _killpg(proc.pid, signal.SIGTERM)
        if term_at is not None and now - term_at > _KILL_GRACE_S:
            _killpg(proc.pid, signal.SIGKILL)


def _finished(run_dir: Path | None) -> bool:
    return run_dir is not None and (run_dir / "results.json").exists()


def _summary(records: list[RunRecord], status_path: Path) -> None:
    done = sum(r.status in ("finished", "skipped") for r in records)
    failed = [r for r in records if r.status == "failed"]
    elsewhere = [r for r in records if r.status == "running elsewhere"]
    interrupted = [r for r in records if r.status == "interrupted"]
    print(f"[sweep] {done}/{len(records)} runs finished, {len(failed)} failed, {len(elsewhere)} running elsewhere"
          + (f", {len(interrupted)} interrupted" if interrupted else "") + f"; status: {status_path}", flush=True)
    for r in failed:
        print(f"[sweep]   failed: {r.name}: {(r.error or '').splitlines()[0] if r.error else '?'}; log: {r.log}")
    for r in elsewhere:
        print(f"[sweep]   running elsewhere: {r.name} ({r.note})")
    for r in interrupted:
        print(f"[sweep]   interrupted: {r.name}; log: {r.log}")
    sys.stdout.flush()


def run_local(cfg: dict, out: Path, extra_args: list[str], count: int | None = None, seed: int = 0,
              dry_run: bool = False, timeout: float | None = None) -> list[RunRecord]:
    """Run every expanded run of ``cfg`` here, one process each; never stops on a failed run.

    Returns one record per run (``finished``, ``skipped``, ``failed``, ``running elsewhere``). Safe to run
    several times at once on the same sweep and to kill at any moment (see the module docstring).
    """
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(out)  # status writes of killed runners
    status_path = out / "sweep_status.json"
    locks = out / "locks"
    runs = expand(cfg, count=count, seed=seed)
    names = [run_name(p) for p in runs]
    records: list[RunRecord] = []
    with _Stop() as stop:
        for i, (params, name) in enumerate(zip(runs, names, strict=True), 1):
            if stop.signum is not None:
                break
            existing = _find_run_dir(out, name)
            log_path = out / "logs" / f"{name}.log"
            rec = RunRecord(name=name, params=params, run_dir=str(existing or out / "<paper>" / name),
                            log=str(log_path))
            records.append(rec)
            prefix = f"[sweep {i}/{len(runs)}] {name}"
            if _finished(existing):
                rec.status = "skipped"
                rec.metrics = json.loads((existing / "results.json").read_text()).get("metrics", {})
                print(f"{prefix}: already finished, skipped", flush=True)
                _write_status(status_path, [rec], names)
                continue
            cmd = build_command(cfg, params) + ["--run.root", str(out), "--run.name", name,
                                                "--run.test_after_fit=true", *extra_args]
            if dry_run:
                last = existing / "checkpoints" / "last.ckpt" if existing is not None else None
                resume = ["--ckpt_path", str(last)] if last is not None and last.is_file() else []
                print(f"{prefix}: {' '.join(cmd + resume)}")
                continue
            lock = _RunLock(locks / f"{name}.lock")
            owner = lock.acquire()
            if owner is not None:
                rec.status, rec.note = "running elsewhere", f"locked by {_describe_owner(owner)}"
                print(f"{prefix}: running elsewhere ({rec.note}), skipped", flush=True)
                _write_status(status_path, [rec], names)
                continue
            try:
                existing = _find_run_dir(out, name)
                if _finished(existing):  # finished by another runner since we looked
                    rec.status, rec.run_dir = "skipped", str(existing)
                    rec.metrics = json.loads((existing / "results.json").read_text()).get("metrics", {})
                    print(f"{prefix}: already finished, skipped", flush=True)
                    continue
                ckpt, resume_note = _resume_point(existing)
                if ckpt is not None:
                    cmd += ["--ckpt_path", str(ckpt)]
                rec.note = "; ".join(n for n in (lock.note, resume_note) if n) or None
                rec.status = "running"
                _write_status(status_path, [rec], names)
                print(f"{prefix}: {resume_note or 'running'} ({', '.join(run_arguments(params))})", flush=True)
                t0 = time.perf_counter()
                log_path.parent.mkdir(parents=True, exist_ok=True)
                with log_path.open("ab") as log:  # earlier attempts stay above this one's output
                    if log.tell():
                        log.write(f"\n==== darkroom sweep: new attempt {time.strftime('%Y-%m-%dT%H:%M:%S')}"
                                  f"{', ' + resume_note if resume_note else ''} ====\n".encode())
                        log.flush()
                    offset = log.tell()
                    proc = _spawn(cmd, log)
                    stop.pgid = proc.pid
                    lock.started(proc)
                    try:
                        rec.returncode, why = _wait(proc, lock, stop, timeout)
                    finally:
                        stop.pgid = None
                        _killpg(proc.pid, signal.SIGKILL)  # whatever of the run is still alive
                rec.wall_seconds = time.perf_counter() - t0
                run_dir = _find_run_dir(out, name)
                rec.run_dir = str(run_dir) if run_dir else rec.run_dir
                with log_path.open("rb") as log:
                    log.seek(offset)
                    tail = log.read().decode(errors="replace").strip().splitlines()[-15:]
                if why is None and rec.returncode == 0 and _finished(run_dir):
                    res = json.loads((run_dir / "results.json").read_text())
                    rec.status, rec.metrics, rec.fit_seconds = "finished", res.get("metrics", {}), res.get("fit_seconds")
                    print(f"{prefix}: finished in {rec.wall_seconds:.0f} s", flush=True)
                elif why == "interrupted":
                    rec.status, rec.error = "interrupted", f"interrupted by signal {stop.signum}\n" + "\n".join(tail)
                    print(f"{prefix}: interrupted (signal {stop.signum}); log: {log_path}", flush=True)
                else:
                    rc = rec.returncode
                    reason = (f"timed out after {timeout:g} s" if why == "timed out"
                              else f"killed by signal {-rc}" if rc is not None and rc < 0
                              else f"exit code {rc}" if rc else "exit code 0 but no results.json")
                    rec.status, rec.error = "failed", f"{reason}: {_error_line(tail)}\n" + "\n".join(tail)
                    print(f"{prefix}: FAILED ({rec.error.splitlines()[0]}); log: {log_path}; continuing", flush=True)
            finally:
                lock.release()
                if rec.status == "running":  # an exception on our side: do not leave "running" behind
                    rec.status = "failed"
                    rec.error = rec.error or "the sweep runner stopped"
                _write_status(status_path, [rec], names)
        if not dry_run:  # (each record was merged into the status file when it was decided)
            _summary(records, status_path)
        if stop.signum is not None:
            stop.exit()
    return records


def register(cfg: dict, project: str, entity: str | None) -> str:
    """Register the sweep with the W&B server; returns its id (needs ``wandb login``)."""
    from experiments.env import wandb_configured

    if not wandb_configured():
        raise SystemExit("darkroom sweep: W&B is not configured (run `wandb login` or set WANDB_API_KEY); "
                         "use --local to run the sweep here without a server")
    import wandb

    clean = {k: v for k, v in cfg.items() if k != "darkroom"}
    return wandb.sweep(clean, project=project, entity=entity)


def main(argv: list[str] | None = None) -> None:
    argv = list(argv or [])
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    parser = argparse.ArgumentParser(prog="darkroom sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path, help="sweep YAML (W&B syntax)")
    parser.add_argument("--local", action="store_true", help="expand and run here, without a W&B server")
    parser.add_argument("--out", type=Path, default=None, help="local: sweep folder (default runs/sweeps/<name>)")
    parser.add_argument("--count", type=int, default=None, help="local random search: number of runs")
    parser.add_argument("--seed", type=int, default=0, help="local random search: sampling seed")
    parser.add_argument("--dry-run", action="store_true", help="local: print the runs without running them")
    parser.add_argument("--timeout", type=float, default=None, help="local: seconds per run before it counts as failed")
    parser.add_argument("--project", default="darkroom")
    parser.add_argument("--entity", default=None)
    args = parser.parse_args(argv)
    cfg = load_sweep(args.file)
    if args.local:
        if cfg["method"] == "bayes":
            print("[sweep] bayes search needs the W&B server; running it locally as random search")
            cfg = {**cfg, "method": "random"}
        out = args.out or Path("runs") / "sweeps" / args.file.stem
        records = run_local(cfg, out, extra, count=args.count, seed=args.seed, dry_run=args.dry_run,
                            timeout=args.timeout)
        if any(r.status == "failed" for r in records):
            raise SystemExit(1)
    else:
        sweep_id = register(cfg, args.project, args.entity)
        print(f"registered sweep {sweep_id}; start agents with: wandb agent {args.entity + '/' if args.entity else ''}"
              f"{args.project}/{sweep_id}")
