"""What every benchmark in ``benchmarks/`` shares: how it times, what it records, how it states a ratio.

The conventions (the project guide's "speed is measured, not asserted"):

* the variants a benchmark compares run **interleaved in one process** (:func:`interleave`: the order rotates
  every round, so a load spike from another job hits every variant alike);
* each result is the **min and median** over the timed calls, after warm-up calls (:func:`summary`);
* every JSON records the machine, **the allocator** the process actually runs with, **the thread count**, torch's
  version and **the load average before and after** (:func:`environment`, :class:`LoadWatch`);
* a result is given as a **ratio**: variant ÷ baseline (:func:`ratios`), and for a network, measured time ÷ the time
  its FLOPs would take at this CPU's measured peak (:func:`count_flops`, :func:`peak_gflops`,
  :func:`flop_limit`).

The peak is measured, not assumed: a channels-last 3×3 convolution, 64→64 channels on 1×64×256×256, is what this
CPU does fastest (oneDNN; ~261 GFLOP/s per core in fp32 and about twice that in bf16 on the avx512_bf16 CPU the
project was profiled on). A network at ratio 1.2 is within 20 % of that; 25 means most of its time is not in
dense convolutions.

Run benchmarks through ``make bench``, ``benchmarks/run_all.sh`` or
``python -m experiments.allocator exec -- python benchmarks/X.py`` to get the caching allocator ``darkroom`` uses
(``experiments/allocator.py``); :func:`environment` records which one ran.

Every result JSON (:func:`write_result`) has the same layout::

    {"benchmark": name, "environment": environment(), "load": {"before": [1, 5, 15 min], "after": [...]},
     "quick": bool, "settings": {...},
     "comparisons": {group: comparison(...)},   # {"what", "baseline", "load", "results", "ratios", ...}
     ...}                                        # what else the benchmark measures

where each group's ``results`` maps a variant to :func:`summary` (``min_ms``, ``median_ms``, ``runs_ms``) plus
what the benchmark adds (``flop_limit`` for a network, :func:`with_flop_limits`), and ``ratios`` maps it to
variant ÷ ``baseline`` (:func:`ratios`).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from experiments import allocator as _allocator  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
#: the research-only data (weights, photos), ``$DARKROOM_SHARED_DATA`` or ``../shared/data`` beside the repository
SHARED = Path(os.environ.get("DARKROOM_SHARED_DATA", ROOT.parent / "shared" / "data"))


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def environment(device: torch.device | str = "cpu") -> dict[str, Any]:
    """Machine, device, allocator, threads, versions and the load now: the header of every result JSON."""
    device = torch.device(device)
    gpu = device.type == "cuda"
    return {
        "machine": platform.machine(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if gpu else _cpu_name(),
        "threads": torch.get_num_threads(),
        "allocator": _allocator.current(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average": load_average(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class LoadWatch:
    """``with LoadWatch() as load: ...`` records the load average before and after (``load.record``)."""

    def __enter__(self) -> LoadWatch:
        self.before = load_average()
        return self

    def __exit__(self, *exc: object) -> None:
        self.after = load_average()

    @property
    def record(self) -> dict[str, list[float] | None]:
        return {"before": self.before, "after": getattr(self, "after", None)}


def synchronize(device: torch.device | str) -> None:
    """Wait for queued device work (CUDA) so the clock measures it; a no-op on the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def summary(times_s: Sequence[float]) -> dict[str, Any]:
    """``{"min_ms", "median_ms", "runs_ms"}`` of timed calls given in seconds."""
    ms = [1000.0 * t for t in times_s]
    return {"min_ms": min(ms), "median_ms": statistics.median(ms), "runs_ms": [round(t, 3) for t in ms]}


def interleave(variants: Mapping[str, Callable[[], Any]], rounds: int, warmup: int = 1,
               device: torch.device | str = "cpu", progress: bool = True,
               self_timed: bool = False) -> dict[str, dict[str, Any]]:
    """Time each variant ``rounds`` times, interleaved, after ``warmup`` untimed calls of each.

    Round ``r`` runs the variants in the order rotated by ``r`` (A B C, B C A, C A B, …). Returns
    ``{name: summary(...)}`` (:func:`summary`), in the order of ``variants``.

    ``self_timed=True``: each call returns the seconds it measured itself (e.g. one batch inside
    ``Trainer.test``, without the trainer's set-up), and that is recorded instead of the call's wall time.
    """
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    synchronize(device)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            t0 = time.perf_counter()
            measured = variants[name]()
            synchronize(device)
            times[name].append(float(measured) if self_timed else time.perf_counter() - t0)
        if progress:
            print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{n} {1000 * times[n][-1]:.1f} ms" for n in names),
                  file=sys.stderr, flush=True)
    return {n: summary(times[n]) for n in names}


def ratios(results: Mapping[str, Mapping[str, Any]], baseline: str) -> dict[str, dict[str, float]]:
    """``{name: {"min": t_min / base_min, "median": t_med / base_med}}``: each variant ÷ the baseline
    (below 1 = faster than the baseline)."""
    base = results[baseline]
    return {n: {"min": r["min_ms"] / base["min_ms"], "median": r["median_ms"] / base["median_ms"]}
            for n, r in results.items()}


def comparison(results: Mapping[str, Mapping[str, Any]], baseline: str,
               load: LoadWatch | Mapping[str, Any] | None = None, **info: Any) -> dict[str, Any]:
    """One group of compared variants as stored in a result JSON: ``info`` (e.g. ``what=``), ``baseline``,
    ``load`` (before/after the group's timing), ``results`` and ``ratios`` (each variant ÷ ``baseline``)."""
    record = load.record if isinstance(load, LoadWatch) else load
    return {**info, "baseline": baseline, "load": record, "results": {n: dict(r) for n, r in results.items()},
            "ratios": ratios(results, baseline)}


def with_flop_limits(results: Mapping[str, dict[str, Any]], flops: Mapping[str, int],
                     dtypes: Mapping[str, torch.dtype] | None = None,
                     device: torch.device | str = "cpu") -> Mapping[str, dict[str, Any]]:
    """Add ``"flop_limit"`` (:func:`flop_limit` of the median) to each result whose name is in ``flops``;
    ``dtypes[name]`` picks the peak (default float32). Returns ``results`` (changed in place)."""
    for name, r in results.items():
        if name in flops:
            dtype = (dtypes or {}).get(name, torch.float32)
            r["flop_limit"] = {**flop_limit(flops[name], r["median_ms"], dtype, device), "dtype": str(dtype)}
    return results


def table(group: Mapping[str, Any], unit: str = "ms") -> str:
    """The rows of a :func:`comparison` as text: variant, min, median, ÷ baseline (median) and, where a result
    has ``flop_limit``, its ratio as "× limit"."""
    results, rel, base = group["results"], group["ratios"], group["baseline"]
    limits = any("flop_limit" in r for r in results.values())
    width = max([len(n) for n in results] + [7])
    scale = 1000.0 if unit == "s" else 1.0
    shown = f"÷ {base}" if len(base) <= 20 else "÷ baseline"
    col = max(12, len(shown))
    head = f"  {'variant':<{width}} {'min ' + unit:>10} {'median ' + unit:>10} {shown:>{col}}"
    lines = [head + (f" {'× limit':>9}" if limits else "")]
    for n, r in results.items():
        line = (f"  {n:<{width}} {r['min_ms'] / scale:>10.3f} {r['median_ms'] / scale:>10.3f} "
                f"{rel[n]['median']:>{col}.3f}")
        if limits:
            ratio = r.get("flop_limit", {}).get("ratio")
            line += f" {ratio:>9.1f}" if ratio is not None else f" {'-':>9}"
        lines.append(line)
    if shown == "÷ baseline":
        lines.append(f"  (baseline: {base})")
    return "\n".join(lines)


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of ``fn`` (torch's ``FlopCounterMode``: matmuls and convolutions, 2 per multiply–add;
    elementwise ops count 0, which is what makes a network with many of them far from the limit)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


_PEAK: dict[tuple[str, str, int], float] = {}


def peak_gflops(dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", repeats: int = 7) -> float:
    """This machine's measured convolution peak in GFLOP/s for ``dtype`` at the current thread count: the best
    of ``repeats`` channels-last 3×3 convs, 64→64 channels, on 1×64×256×256 (cached per process)."""
    device = torch.device(device)
    key = (str(device), str(dtype), torch.get_num_threads())
    if key not in _PEAK:
        conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(device=device, dtype=dtype,
                                                           memory_format=torch.channels_last)
        x = torch.rand(1, 64, 256, 256, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
        flops = count_flops(lambda: conv(x))
        best = float("inf")
        with torch.no_grad():
            for i in range(repeats + 2):
                synchronize(device)
                t0 = time.perf_counter()
                conv(x)
                synchronize(device)
                if i >= 2:
                    best = min(best, time.perf_counter() - t0)
        _PEAK[key] = flops / best / 1e9
    return _PEAK[key]


def flop_limit(flops: int, measured_ms: float, dtype: torch.dtype = torch.float32,
               device: torch.device | str = "cpu") -> dict[str, float | None]:
    """``{"gflop", "peak_gflops", "limit_ms", "ratio"}``: the time ``flops`` take at the measured peak, and
    ``measured_ms`` ÷ that time (1.0 = at the limit; None when ``flops`` is 0)."""
    peak = peak_gflops(dtype, device)
    limit_ms = flops / (peak * 1e9) * 1000.0
    ratio = measured_ms / limit_ms if limit_ms > 0 else None  # no counted FLOPs (no conv/matmul): no limit
    return {"gflop": flops / 1e9, "peak_gflops": peak, "limit_ms": limit_ms, "ratio": ratio}


def write_result(name: str, payload: Mapping[str, Any], out: Path | None = None) -> Path:
    """Write ``payload`` (with :func:`environment` under ``"environment"`` unless given) to
    ``benchmarks/results/<name>.json`` (or ``out``) and return the path."""
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, **payload}
    data.setdefault("environment", environment())
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"wrote {path}")
    return path
