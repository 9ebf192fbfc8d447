"""MEF-SSIM speed: the depthwise 'valid' filter (issue 13) vs the per-map filter it replaced, forward + backward.

Workload (default): one exposure pair of 640×480 grey images in [0, 1] (a smooth textured scene through a
clipping camera, fused = the mean of the exposures), ``MEFSSIMLoss`` forward + backward w.r.t. the fused image,
float32. Variants, run interleaved in this one process (old, new, old, new, …) after one warm-up call each:

* ``old``: ``losses.filtering.filter_valid``'s conv path before issue 13 — the M maps filtered as M separate
  single-channel images (an M×1×H×W batch), copied below as :func:`filter_valid_per_map`;
* ``new``: the current ``filter_valid`` (one depthwise conv with ``groups=M`` per pass).

Everything else in ``metrics.functional.mef_ssim`` (the MEF-SSIM behind ``losses.mef_ssim``) is the same code for
both (the filter is swapped by patching the module attribute). Both give bit-identical scores and gradients (checked here with ``torch.equal``; tests/test_filtering.py).
In float64 on a CPU both take the shifted-slice path, so they are the same there.

``--naive`` also times the per-patch NumPy oracle ``tests/mef_ssim_naive.py`` (forward only, no autograd; tens of
seconds at 640×480).

Timing goes through ``harness.interleave`` (rotated order, one warm-up call each, which is also the identity check),
one comparison per thread count; ratios are variant ÷ ``old``. Prints torch's thread count, the allocator
(``experiments.allocator.current()``: what this process runs with) and the load average before and after (the
machine may be shared), then min and median ms, and writes benchmarks/results/mef_ssim_speed.json.

    python benchmarks/mef_ssim_speed.py                        # 640×480 pair, 2 threads, 10 repeats
    python benchmarks/mef_ssim_speed.py --quick                # 160×120 pair, 5 repeats
    python benchmarks/mef_ssim_speed.py --threads 1 2          # both thread counts
    python benchmarks/mef_ssim_speed.py --batch 16 --height 64 --width 64   # DeepFuse's training batch
    python benchmarks/mef_ssim_speed.py --multiscale --device cuda
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import metrics.functional.mef_ssim as mef_ssim_module  # noqa: E402
from benchmarks import harness  # noqa: E402
from losses.filtering import filter_valid  # noqa: E402
from losses.mef_ssim import MEFSSIMLoss, mef_ssim  # noqa: E402

BASELINE = "old"


def filter_valid_per_map(x: Tensor, kernel_1d: Tensor) -> Tensor:
    """``filter_valid`` before issue 13: float64 on a CPU by shifted slices (unchanged), else every map of
    …×H×W as its own single-channel image."""
    if x.dtype == torch.float64 and x.device.type == "cpu":
        return filter_valid(x, kernel_1d)  # the shifted-slice path, the same code before and after
    size = kernel_1d.numel()
    h, w = x.shape[-2:]
    lead = x.shape[:-2]
    y = x.reshape(-1, 1, h, w)
    y = F.conv2d(y, kernel_1d.to(x.dtype).view(1, 1, 1, size))
    y = F.conv2d(y, kernel_1d.to(x.dtype).view(1, 1, size, 1))
    return y.reshape(*lead, h - size + 1, w - size + 1)


FILTERS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"old": filter_valid_per_map, "new": filter_valid}


@contextlib.contextmanager
def using_filter(name: str) -> Iterator[None]:
    """Run MEF-SSIM (``metrics.functional.mef_ssim``) with the filter of variant ``name``."""
    before = mef_ssim_module.filter_valid
    mef_ssim_module.filter_valid = FILTERS[name]
    try:
        yield
    finally:
        mef_ssim_module.filter_valid = before


def make_batch(n: int, k: int, height: int, width: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(fused N×1×H×W, sources N×K×1×H×W): a smooth textured scene through a clipping camera."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, max(height // 4, 2), max(width // 4, 2), generator=g)
    scene = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    scene = scene + 0.05 * torch.rand(n, 1, height, width, generator=g)
    gains = 2.0 ** torch.linspace(-2.0, 2.0, k)
    sources = (scene[:, None] * gains.view(1, k, 1, 1, 1)).clamp(0, 1)
    return sources.mean(1), sources


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--exposures", type=int, default=2)
    ap.add_argument("--height", type=int, default=None, help="default 480 (120 with --quick)")
    ap.add_argument("--width", type=int, default=None, help="default 640 (160 with --quick)")
    ap.add_argument("--threads", type=int, nargs="+", default=[2], help="torch CPU thread counts (default 2)")
    ap.add_argument("--repeats", type=int, default=None, help="timed calls per variant (≥ 5; default 10, 5 quick)")
    ap.add_argument("--multiscale", action="store_true", help="3-scale mef_ms_ssim (needs H, W ≥ 44)")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--naive", action="store_true", help="also time the per-patch NumPy oracle (slow)")
    ap.add_argument("--quick", action="store_true", help="160×120 pair, 5 repeats")
    ap.add_argument("--out", type=Path, default=None, help="result JSON (default benchmarks/results/…)")
    args = ap.parse_args(argv)
    height = args.height or (120 if args.quick else 480)
    width = args.width or (160 if args.quick else 640)
    repeats = args.repeats or (5 if args.quick else 10)
    if repeats < 5:
        ap.error("--repeats must be ≥ 5")

    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    fused0, sources0 = make_batch(args.batch, args.exposures, height, width)
    fused_in, sources = fused0.to(device, dtype), sources0.to(device, dtype)
    loss_fn = MEFSSIMLoss(multiscale=args.multiscale)

    def forward_backward(name: str) -> tuple[Tensor, Tensor]:
        with using_filter(name):
            fused = fused_in.clone().requires_grad_(True)
            loss = loss_fn(fused, sources)
            loss.backward()
        assert fused.grad is not None
        return loss.detach(), fused.grad

    env = harness.environment(device)
    workload = (
        f"{args.batch} stack(s) of {args.exposures} exposures, {width}×{height}, "
        f"{'multi-scale (3)' if args.multiscale else 'single-scale'}, MEFSSIMLoss forward + backward, {args.dtype}"
    )
    comparisons: dict[str, Any] = {}
    with harness.LoadWatch() as load:
        for threads in args.threads:
            torch.set_num_threads(threads)
            print(f"threads {torch.get_num_threads()}, allocator {env['allocator']}, load {harness.load_average()}, "
                  f"device {device}")
            print(f"  workload: {workload}")
            outputs = {name: forward_backward(name) for name in FILTERS}  # the identity check (and a warm-up)
            identical = bool(torch.equal(outputs["old"][0], outputs["new"][0])
                             and torch.equal(outputs["old"][1], outputs["new"][1]))
            variants = {name: (lambda name=name: forward_backward(name)) for name in FILTERS}
            with harness.LoadWatch() as group_load:
                results = harness.interleave(variants, repeats, warmup=1, device=device)
            group = harness.comparison(results, BASELINE, group_load, what=workload, threads=threads,
                                       loss_and_gradient_bit_identical=identical, loss=float(outputs["new"][0]))
            comparisons[f"threads={threads}"] = group
            print(harness.table(group))
            print(f"  new/old: {group['ratios']['new']['median']:.3f} (median), {group['ratios']['new']['min']:.3f} "
                  f"(min); loss and gradient bit-identical: {identical}; load after: {group_load.after}")

    naive = None
    if args.naive:
        from mef_ssim_naive import mef_ms_ssim_naive, mef_ssim_naive

        stacks = sources0[:, :, 0].permute(0, 2, 3, 1).double().numpy() * 255.0
        fused_np = fused0[:, 0].double().numpy() * 255.0
        t = time.perf_counter()
        if args.multiscale:
            naive_scores = [mef_ms_ssim_naive(s, f)[0] for s, f in zip(stacks, fused_np, strict=True)]
        else:
            naive_scores = [mef_ssim_naive(s, f) for s, f in zip(stacks, fused_np, strict=True)]
        naive_s = time.perf_counter() - t
        with torch.no_grad():
            ours = mef_ssim(fused_in, sources, multiscale=args.multiscale).double().cpu().numpy()
        naive = {
            "forward_only_ms": 1000 * naive_s,
            "has_autograd": False,
            "max_abs_score_diff_vs_ours": float(np.max(np.abs(ours - np.asarray(naive_scores)))),
        }
        print(f"naive NumPy oracle (forward only, one call): {naive['forward_only_ms']:.0f} ms, "
              f"max |score diff| vs ours {naive['max_abs_score_diff_vs_ours']:.2e}")

    payload = {
        "environment": env, "load": load.record, "quick": args.quick,
        "settings": {"workload": workload, "dtype": args.dtype, "repeats": repeats, "threads": args.threads,
                     "baseline": BASELINE, "numpy": np.__version__,
                     "order": "per thread count: old and new interleaved (rotated), one warm-up call each, "
                              "in one process"},
        "variants": {
            "old": "filter_valid before issue 13: the M maps as M single-channel images (M×1×H×W batch)",
            "new": "filter_valid now: one depthwise conv (groups=M) per pass",
        },
        "comparisons": comparisons,
        "naive": naive,
    }
    harness.write_result("mef_ssim_speed", payload, args.out)
    return payload


if __name__ == "__main__":
    main()
