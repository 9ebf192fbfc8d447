"""NIQE speed: ``metrics.no_reference.niqe`` on one 1200×900 image (SICE Part2 size), ms per image.

Workload: a deterministic synthetic 8-bit RGB image (smooth random field + ramp + noise), 1200×900 (600×450 with
``--quick``). Variants, run interleaved by ``harness.interleave`` (order rotated every round) after one warm-up call
each, one comparison per thread count, ratios variant ÷ ``ours``:

* ``ours``: the vectorised torch implementation, default (float64 resize sums);
* ``ours_blas``: the same with ``blas_float32=True`` (BasicSR's float32 ``torch.mv`` resize);
* ``basicsr``: BasicSR 1.4.2's own ``calculate_niqe`` (NumPy, loops over blocks), loaded from the sdist
  by tests/basicsr_reference.py — only when the sdist is found (``$DARKROOM_BASICSR_SDIST`` or
  ``~/.cache/darkroom/basicsr-1.4.2.tar.gz``), else skipped with a note.

Prints torch's thread count, the allocator (``experiments.allocator.current()``) and the load average (the
machine may be shared), then min and median ms per image, and writes benchmarks/results/niqe_speed.json.

    python benchmarks/niqe_speed.py                 # 1 then 2 threads, 7 repeats each
    python benchmarks/niqe_speed.py --quick         # 600×450, current thread count, 5 repeats
    python benchmarks/niqe_speed.py --threads 2 --repeats 5 --no-reference

On a shared 2-core machine, 2 torch threads can be far slower than 1 (OpenMP regions wait for a busy
core); compare the load averages recorded with each thread count.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks import harness  # noqa: E402
from metrics.no_reference import niqe  # noqa: E402

H, W = 900, 1200
BASELINE = "ours"


def make_image(seed: int = 0, height: int = H, width: int = W) -> torch.Tensor:
    """1×3×height×width RGB in [0, 1] (default 900×1200) on the 8-bit grid: 30×30 random cells blurred by a 31-px
    box, a vignetted ramp and pixel noise (NumPy, so identical for any torch thread count)."""
    rng = np.random.default_rng(seed)
    h, w = height, width
    cells = np.kron(rng.random((h // 30 + 2, w // 30 + 2, 3)), np.ones((30, 30, 1)))
    box = np.cumsum(np.cumsum(np.pad(cells, ((1, 0), (1, 0), (0, 0))), 0), 1)
    smooth = (box[31:h + 31, 31:w + 31] - box[:h, 31:w + 31] - box[31:h + 31, :w] + box[:h, :w]) / 31**2
    ramp = np.linspace(0, 1, w)[None, :, None] * np.linspace(0.3, 1, h)[:, None, None]
    x = np.clip(0.5 * smooth + 0.4 * ramp + 0.1 * rng.random((h, w, 3)), 0, 1)
    return torch.from_numpy(np.round(x * 255) / 255).permute(2, 0, 1)[None].float()


def _reference() -> tuple[Callable[[np.ndarray], float] | None, str | None]:
    """BasicSR's calculate_niqe on BGR uint8, or (None, reason)."""
    try:
        import basicsr_reference as bsr

        bsr.load_niqe_module()
    except Exception as e:  # noqa: BLE001 — any failure just disables the reference variant
        return None, f"{type(e).__name__}: {e}"
    return bsr.calculate_niqe, None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=None,
                    help="torch CPU thread counts (default 1 2; --quick: the current one)")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per variant (≥ 5; default 7, 5 quick)")
    ap.add_argument("--no-reference", action="store_true", help="skip BasicSR's implementation")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="600×450, one thread count, 5 repeats")
    ap.add_argument("--out", type=Path, default=None, help="result JSON (default benchmarks/results/…)")
    args = ap.parse_args(argv)
    repeats = args.repeats or (5 if args.quick else 7)
    threads_list = args.threads or ([torch.get_num_threads()] if args.quick else [1, 2])
    if repeats < 5:
        ap.error("--repeats must be ≥ 5")
    h, w = (450, 600) if args.quick else (H, W)

    device = torch.device(args.device)
    x = make_image(height=h, width=w).to(device)
    bgr = (x[0].cpu().permute(1, 2, 0).numpy()[..., ::-1] * 255).round().astype(np.uint8)
    variants: dict[str, Callable[[], Any]] = {"ours": lambda: niqe(x), "ours_blas": lambda: niqe(x, blas_float32=True)}
    ref_fn, ref_note = (None, "disabled (--no-reference)") if args.no_reference else _reference()
    if ref_fn is not None:
        variants["basicsr"] = lambda: ref_fn(bgr)

    env = harness.environment(device)
    workload = f"1 synthetic 8-bit RGB image {w}×{h}, NIQE (BasicSR 1.4.2 definition), ms per image"
    comparisons: dict[str, Any] = {}
    with harness.LoadWatch() as load:
        for threads in threads_list:
            torch.set_num_threads(threads)
            print(f"threads {torch.get_num_threads()}, allocator {env['allocator']}, load {harness.load_average()}, "
                  f"device {device}, image {w}×{h}")
            scores = {name: float(fn()) for name, fn in variants.items()}  # the scores (and a warm-up)
            with harness.LoadWatch() as group_load:
                results = harness.interleave(variants, repeats, warmup=0, device=device)
            for name, r in results.items():
                r["niqe"] = scores[name]
            group = harness.comparison(results, BASELINE, group_load, what=workload, threads=threads)
            if "basicsr" in scores:
                group["abs_score_diff_vs_basicsr"] = {n: abs(scores[n] - scores["basicsr"]) for n in ("ours", "ours_blas")}
            comparisons[f"threads={threads}"] = group
            print(harness.table(group))
            for name, r in results.items():
                print(f"  {name:8s} NIQE {r['niqe']:.10f}")
            print(f"  load after: {group_load.after}")
    if ref_fn is None:
        print(f"basicsr reference: {ref_note}")

    payload = {
        "environment": env, "load": load.record, "quick": args.quick,
        "settings": {"workload": workload, "image_wh": [w, h], "repeats": repeats, "threads": threads_list,
                     "baseline": BASELINE, "numpy": np.__version__,
                     "order": "per thread count: interleaved variants (rotated), one warm-up call each"},
        "comparisons": comparisons,
        "reference_note": ref_note,
    }
    harness.write_result("niqe_speed", payload, args.out)
    return payload


if __name__ == "__main__":
    main()
