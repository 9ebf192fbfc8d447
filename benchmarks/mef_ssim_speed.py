"""MEF-SSIM speed: our vectorised ``losses.mef_ssim`` vs the naive per-patch NumPy oracle.

Workload: a batch of 16 exposure pairs of 64×64 patches (DeepFuse's training case), grey, in [0, 1].
Ours: forward + backward of ``MEFSSIMLoss`` (the fused batch requires grad), float32 by default.
Naive: ``tests/mef_ssim_naive.py`` (a loop-per-patch transcription of Kede Ma's ``mef_ssim.m``,
float64 NumPy) has **no autograd**: its figure is forward only, image by image. The speed-up is
therefore conservative (ours includes a backward pass). Both scores are compared as a sanity check.
Prints the figures and writes benchmarks/results/mef_ssim_speed.json.

    python benchmarks/mef_ssim_speed.py                     # 2 CPU threads, 10 repeats of ours
    python benchmarks/mef_ssim_speed.py --multiscale        # 3-scale oQ (naive: mef_ms_ssim)
    python benchmarks/mef_ssim_speed.py --device cuda       # ours on a GPU (naive stays on the CPU)

Figures: median (and min) over the repeats after one warm-up call (ours); one timed call (naive). On a shared
machine the load average is recorded with them.
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
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from mef_ssim_naive import mef_ms_ssim_naive, mef_ssim_naive  # noqa: E402

from losses.mef_ssim import MEFSSIMLoss, mef_ssim  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "mef_ssim_speed.json"


def make_batch(n: int, k: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(fused N×1×S×S, sources N×K×1×S×S): a smooth textured scene through a clipping camera."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, size // 4, size // 4, generator=g)
    scene = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    scene = scene + 0.05 * torch.rand(n, 1, size, size, generator=g)
    gains = 2.0 ** torch.linspace(-2.0, 2.0, k)
    sources = (scene[:, None] * gains.view(1, k, 1, 1, 1)).clamp(0, 1)
    return sources.mean(1), sources


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--exposures", type=int, default=2)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--multiscale", action="store_true", help="3-scale mef_ms_ssim (needs --size ≥ 44)")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    fused0, sources0 = make_batch(args.batch, args.exposures, args.size)
    sources = sources0.to(device, dtype)
    loss_fn = MEFSSIMLoss(multiscale=args.multiscale)

    def ours() -> None:
        fused = fused0.to(device, dtype).clone().requires_grad_(True)
        loss_fn(fused, sources).backward()

    def ours_forward() -> None:
        with torch.no_grad():
            mef_ssim(fused0.to(device, dtype), sources, multiscale=args.multiscale)

    def timed(fn) -> tuple[float, float]:
        """(median, min) seconds over ``args.repeats`` calls after a warm-up call."""
        fn()
        times = []
        for _ in range(args.repeats):
            _sync(device)
            t = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - t)
        return statistics.median(times), min(times)

    ours_s, ours_min_s = timed(ours)
    ours_fwd_s, ours_fwd_min_s = timed(ours_forward)
    with torch.no_grad():
        ours_scores = mef_ssim(fused0.to(device, dtype), sources, multiscale=args.multiscale)

    stacks = sources0[:, :, 0].permute(0, 2, 3, 1).double().numpy() * 255.0
    fused_np = fused0[:, 0].double().numpy() * 255.0
    t = time.perf_counter()
    if args.multiscale:
        naive_scores = [mef_ms_ssim_naive(s, f)[0] for s, f in zip(stacks, fused_np, strict=True)]
    else:
        naive_scores = [mef_ssim_naive(s, f) for s, f in zip(stacks, fused_np, strict=True)]
    naive_s = time.perf_counter() - t
    max_diff = float(np.max(np.abs(ours_scores.double().cpu().numpy() - np.asarray(naive_scores))))

    result = {
        "benchmark": "mef_ssim_speed",
        "workload": f"{args.batch} stacks of {args.exposures} exposures, {args.size}×{args.size}, "
        f"{'multi-scale (3)' if args.multiscale else 'single-scale'}",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        },
        "torch": torch.__version__,
        "numpy": np.__version__,
        "threads": torch.get_num_threads(),
        "dtype": args.dtype,
        "repeats": args.repeats,
        "ours_forward_backward_s": ours_s,
        "ours_forward_backward_min_s": ours_min_s,
        "ours_forward_only_s": ours_fwd_s,
        "ours_forward_only_min_s": ours_fwd_min_s,
        "naive_forward_only_s": naive_s,
        "naive_has_autograd": False,
        "speedup_naive_forward_over_ours_forward_backward": naive_s / ours_s,
        "ours_per_stack_ms": 1000 * ours_s / args.batch,
        "naive_per_stack_ms": 1000 * naive_s / args.batch,
        "max_abs_score_diff_ours_vs_naive": max_diff,
    }
    print(f"workload      : {result['workload']}, ours in {args.dtype} on {device}, {result['threads']} threads")
    print(f"ours fwd+bwd  : {ours_s * 1000:9.1f} ms median, {ours_min_s * 1000:.1f} ms min "
          f"({result['ours_per_stack_ms']:.2f} ms per stack)")
    print(f"ours fwd only : {ours_fwd_s * 1000:9.1f} ms median, {ours_fwd_min_s * 1000:.1f} ms min")
    print(f"naive fwd only: {naive_s * 1000:9.1f} ms  (NumPy loops over patches, no autograd)")
    print(f"ratio naive fwd / ours fwd+bwd: {result['speedup_naive_forward_over_ours_forward_backward']:.0f}×")
    print(f"max |score diff| ours vs naive: {max_diff:.2e}")
    print(f"load average (1 min): {result['machine']['load_average_1m']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
