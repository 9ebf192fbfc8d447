"""NIQE speed: ``metrics.no_reference.niqe`` on one 1200×900 image (SICE Part2 size), ms per image.

Workload: a deterministic synthetic 8-bit RGB image (smooth random field + ramp + noise), 1200×900.
Variants, run interleaved (ours, reference, ours, reference, …) after one warm-up call each:

* ``ours``: the vectorised torch implementation, default (float64 resize sums);
* ``ours_blas``: the same with ``blas_float32=True`` (BasicSR's float32 ``torch.mv`` resize);
* ``basicsr``: BasicSR 1.4.2's own ``calculate_niqe`` (NumPy, loops over blocks), loaded from the sdist
  by tests/basicsr_reference.py — only when the sdist is found (``$DARKROOM_BASICSR_SDIST`` or
  ``~/.cache/darkroom/basicsr-1.4.2.tar.gz``), else skipped with a note.

Prints torch's thread count, the allocator (``LD_PRELOAD`` or "glibc default") and the load average (the
machine may be shared), then min and median ms per image, and writes benchmarks/results/niqe_speed.json.

    python benchmarks/niqe_speed.py                 # 1 then 2 threads, 7 repeats each
    python benchmarks/niqe_speed.py --threads 2 --repeats 5 --no-reference

On a shared 2-core machine, 2 torch threads can be far slower than 1 (OpenMP regions wait for a busy
core); compare the load averages recorded with each thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from metrics.no_reference import niqe  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "niqe_speed.json"
H, W = 900, 1200


def make_image(seed: int = 0) -> torch.Tensor:
    """1×3×900×1200 RGB in [0, 1] on the 8-bit grid: 30×30 random cells blurred by a 31-px box, a
    vignetted ramp and pixel noise (NumPy, so identical for any torch thread count)."""
    rng = np.random.default_rng(seed)
    cells = np.kron(rng.random((H // 30 + 2, W // 30 + 2, 3)), np.ones((30, 30, 1)))
    box = np.cumsum(np.cumsum(np.pad(cells, ((1, 0), (1, 0), (0, 0))), 0), 1)
    smooth = (box[31:H + 31, 31:W + 31] - box[:H, 31:W + 31] - box[31:H + 31, :W] + box[:H, :W]) / 31**2
    ramp = np.linspace(0, 1, W)[None, :, None] * np.linspace(0.3, 1, H)[:, None, None]
    x = np.clip(0.5 * smooth + 0.4 * ramp + 0.1 * rng.random((H, W, 3)), 0, 1)
    return torch.from_numpy(np.round(x * 255) / 255).permute(2, 0, 1)[None].float()


def _reference():
    """BasicSR's calculate_niqe on BGR uint8, or (None, reason)."""
    try:
        import basicsr_reference as bsr

        bsr.load_niqe_module()
    except Exception as e:  # noqa: BLE001 — any failure just disables the reference variant
        return None, f"{type(e).__name__}: {e}"
    return bsr.calculate_niqe, None


def _time_variants(variants: dict, repeats: int, sync) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Interleaved timings (seconds) after one warm-up call per variant; also returns the scores."""
    scores = {name: float(fn()) for name, fn in variants.items()}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            sync()
            t = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t)
    return times, scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch CPU thread counts (default 1 2)")
    ap.add_argument("--repeats", type=int, default=7, help="timed runs per variant (≥ 5)")
    ap.add_argument("--no-reference", action="store_true", help="skip BasicSR's implementation")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.repeats < 5:
        ap.error("--repeats must be ≥ 5")

    device = torch.device(args.device)
    x = make_image().to(device)
    bgr = (x[0].cpu().permute(1, 2, 0).numpy()[..., ::-1] * 255).round().astype(np.uint8)
    variants = {"ours": lambda: niqe(x), "ours_blas": lambda: niqe(x, blas_float32=True)}
    ref_fn, ref_note = (None, "disabled (--no-reference)") if args.no_reference else _reference()
    if ref_fn is not None:
        variants["basicsr"] = lambda: ref_fn(bgr)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    allocator = os.environ.get("LD_PRELOAD") or "glibc default"
    runs = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        load_before = os.getloadavg()
        print(f"threads {torch.get_num_threads()}, allocator {allocator}, load {load_before[0]:.2f} "
              f"{load_before[1]:.2f} {load_before[2]:.2f}, device {device}, image {W}×{H}")
        times, scores = _time_variants(variants, args.repeats, sync)
        load_after = os.getloadavg()
        results = {name: {"min_ms": 1000 * min(ts), "median_ms": 1000 * statistics.median(ts),
                          "runs_ms": [1000 * t for t in ts], "niqe": scores[name]} for name, ts in times.items()}
        for name, r in results.items():
            print(f"  {name:8s}: {r['median_ms']:8.1f} ms median, {r['min_ms']:8.1f} ms min  "
                  f"(NIQE {r['niqe']:.10f})")
        if "basicsr" in results:
            print(f"  ratio basicsr/ours (median): "
                  f"{results['basicsr']['median_ms'] / results['ours']['median_ms']:.2f}×, "
                  f"|score diff| ours {abs(scores['ours'] - scores['basicsr']):.2e}, "
                  f"ours_blas {abs(scores['ours_blas'] - scores['basicsr']):.2e}")
        print(f"  load after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
        runs[f"threads={threads}"] = {"threads": threads, "load_average_before": list(load_before),
                                      "load_average_after": list(load_after), "results": results}
    if ref_fn is None:
        print(f"basicsr reference: {ref_note}")

    record = {
        "benchmark": "niqe_speed",
        "workload": f"1 synthetic 8-bit RGB image {W}×{H}, NIQE (BasicSR 1.4.2 definition)",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        },
        "torch": torch.__version__,
        "numpy": np.__version__,
        "allocator": allocator,
        "repeats": args.repeats,
        "order": "per thread count: interleaved variants, one warm-up call each",
        "runs": runs,
        "reference_note": ref_note,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
