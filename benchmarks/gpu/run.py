"""One run of the GPU check: its state (clock, device, time budget) and the JSON report it rewrites after every
case (:meth:`Run.save`), error records, the per-case alarm, the module check and the environment block."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.gpu.common import DEFAULT_OUT, DRY_OUT, REQUIRED, ROOT, _say
from benchmarks.gpu.payload import _data_root

#: where the GPU check's own code lives: an error's ``where`` names the innermost frame outside it
_CHECK_DIR = str(Path(__file__).resolve().parent) + os.sep


def check_modules() -> None:
    """Import what the run needs; on failure print one line naming the missing modules and exit 2."""
    missing = []
    for name, what in REQUIRED.items():
        try:
            importlib.import_module(name)
        except Exception as err:  # ImportError, or an extension that fails to load
            missing.append(f"{what} ({type(err).__name__}: {err})")
    if missing:
        print("gpu_check: missing Python modules: " + "; ".join(missing) + " — needs an environment with torch "
              "(CUDA build), lightning, torchmetrics, kornia, numpy, opencv, scikit-image, scipy, pillow, pyyaml, "
              "tifffile and pytest; benchmarks/gpu_check.sh installs kornia from gpu_payload/wheels", file=sys.stderr)
        raise SystemExit(2)


class CaseTimeout(Exception):
    """A case ran past its share of the time budget (SIGALRM)."""


@contextlib.contextmanager
def alarm(seconds: float | None) -> Iterator[None]:
    """Raise :class:`CaseTimeout` in the main thread after ``seconds`` (None/≤0: no alarm)."""
    if not seconds or seconds <= 0 or not hasattr(signal, "setitimer"):
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise CaseTimeout(f"ran past its {seconds:.0f} s share of the time budget")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _error(err: BaseException) -> dict[str, Any]:
    """``{"error": first line, "where": the innermost frame in the project's code, "traceback": its tail}``."""
    frames = traceback.extract_tb(err.__traceback__)
    ours = [f for f in frames if f.filename.startswith(str(ROOT)) and "/.venv/" not in f.filename
            and not f.filename.endswith("gpu_check.py") and not f.filename.startswith(_CHECK_DIR)]
    where = ours[-1] if ours else (frames[-1] if frames else None)
    place = None
    if where is not None:
        name = where.filename[len(str(ROOT)) + 1:] if where.filename.startswith(str(ROOT)) else where.filename
        place = f"{name}:{where.lineno} in {where.name}"
    out: dict[str, Any] = {"error": f"{type(err).__name__}: {err}"[:1500], "where": place,
                           "traceback": "".join(traceback.format_exception(type(err), err, err.__traceback__))[-4000:]}
    context = getattr(err, "gpu_check_context", None)
    if context:
        out["context"] = context
    return out


class Run:
    """State of one run: the JSON document, the clock, the device."""

    def __init__(self, args: argparse.Namespace) -> None:
        import torch

        self.args = args
        self.dry = args.dry_run
        self.t0 = time.perf_counter()
        self.device = torch.device("cpu" if self.dry or not torch.cuda.is_available() else "cuda")
        self.out: Path = args.out or (DRY_OUT if self.dry else DEFAULT_OUT)
        self.data = _data_root(args.data)
        self.work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
        self.broken: str | None = None  # set when the CUDA context fails: later cases are skipped
        self.doc: dict[str, Any] = {"benchmark": "gpu_check", "mode": "dry-run" if self.dry else "gpu",
                                    "status": "running", "args": {k: (str(v) if isinstance(v, Path) else v)
                                                                  for k, v in vars(args).items()},
                                    "errors": []}

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    @property
    def left(self) -> float:
        return self.args.budget - self.elapsed

    def save(self) -> None:
        self.doc["budget"] = {"budget_s": self.args.budget, "elapsed_s": round(self.elapsed, 1)}
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_name(self.out.name + ".tmp")
        tmp.write_text(json.dumps(self.doc, indent=2, default=str) + "\n")
        os.replace(tmp, self.out)

    def record_error(self, case: str, err: BaseException) -> dict[str, Any]:
        info = _error(err)
        line = info["error"].splitlines()[0] if info["error"] else type(err).__name__
        self.doc["errors"].append(f"{case}: {line} (at {info['where']})")
        _say(f"{case}: ERROR {line} (at {info['where']})")
        self._check_device()
        return {"status": "error", **info}

    def _check_device(self) -> None:
        """After an error on CUDA: is the context still usable? If not, skip everything that follows."""
        if self.device.type != "cuda" or self.broken:
            return
        import torch

        try:
            torch.zeros(1, device=self.device).add_(1).item()
            torch.cuda.synchronize()
        except Exception as err:  # a sticky CUDA error (illegal address, …) poisons the process
            self.broken = f"the CUDA context failed after an earlier error ({type(err).__name__}: {err})"

    def skip_reason(self, estimate_s: float = 0.0) -> str | None:
        if self.broken:
            return self.broken
        if self.left < estimate_s or self.left <= 0:
            return (f"time budget: {max(self.left, 0):.0f} s left of --budget {self.args.budget:.0f} s, "
                    f"this case needs ~{estimate_s:.0f} s")
        return None


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "lightning", "torchmetrics", "kornia", "numpy", "opencv-python-headless", "scikit-image",
                 "triton"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def environment(run: Run) -> dict[str, Any]:
    import torch

    from benchmarks import harness

    env = harness.environment(run.device)
    env["versions"] = _versions()
    env["cuda"] = torch.version.cuda
    env["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    env["tf32"] = {"cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
                   "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                   "float32_matmul_precision": torch.get_float32_matmul_precision(),
                   "cudnn.benchmark": torch.backends.cudnn.benchmark}
    if run.device.type == "cuda":
        prop = torch.cuda.get_device_properties(run.device)
        env["gpu"] = {"name": prop.name, "capability": f"{prop.major}.{prop.minor}",
                      "memory_gib": round(prop.total_memory / 2**30, 1), "multiprocessors": prop.multi_processor_count}
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
            env["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
            env["driver"] = smi.stdout.split(",")[1].strip() if smi.returncode == 0 and "," in smi.stdout else None
        except (OSError, subprocess.SubprocessError) as err:
            env["nvidia_smi"], env["driver"] = f"not available: {err}", None
    try:
        env["git"] = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                                    text=True, timeout=30).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        env["git"] = None
    return env
