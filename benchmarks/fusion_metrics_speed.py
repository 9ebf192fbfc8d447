"""Fusion-metric speed: ms per fused image + two sources at 640×480 (grey, float64 inside).

Times ``metrics.fusion.evaluate`` with the default metric set (CDDFuse's EN SD SF AG MI SCD VIF Qabf
SSIM CC PSNR; the baseline of the ratios), every metric on its own (including the literature variants;
``VIF_tm_sum`` and ``SSIM_tm_avg`` are the torchmetrics implementations), and ``FusionMetrics.update`` on a batch
(its per-image figure is the call ÷ the batch). Prints a table and writes
benchmarks/results/fusion_metrics_speed.json.

    python benchmarks/fusion_metrics_speed.py                  # 1 CPU thread, 3 repeats
    python benchmarks/fusion_metrics_speed.py --threads 2 --repeats 5
    python benchmarks/fusion_metrics_speed.py --quick          # 320×240, 2 repeats
    python benchmarks/fusion_metrics_speed.py --device cuda    # where a GPU build of torch exists

Data: the bundled "rocket" photograph (scikit-image) as grey, resized to 640×480; source A blurred
on its left half and B on its right half (a multi-focus pair), fused = pixel mean. How: one first call of every
variant (the warm-up), then ``harness.interleave`` (rotated order) over ``--repeats`` rounds for the variants whose
first call took under 1 s, and over 1 round for the slower ones (the torchmetrics variants), interleaved among
themselves; min and median ms of each. On a shared machine, the load average is recorded.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import harness  # noqa: E402
from datamodules.synthetic.photos import load_photo  # noqa: E402
from metrics.fusion import ALL_METRICS, DEFAULT_METRICS, FusionMetrics, evaluate  # noqa: E402

BASELINE = "evaluate(default set)"
SLOW_S = 1.0  # a first call slower than this: timed over 1 round


def make_pair(width: int = 640, height: int = 480) -> tuple[torch.Tensor, torch.Tensor]:
    """(fused 1×H×W, sources 2×H×W) in [0, 1] on integer grey levels."""
    rgb = load_photo("rocket")
    grey = cv2.cvtColor(cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    blur = cv2.GaussianBlur(grey, (0, 0), 3.0)
    a, b = grey.copy(), grey.copy()
    a[:, : width // 2] = blur[:, : width // 2]
    b[:, width // 2 :] = blur[:, width // 2 :]
    src = torch.from_numpy(np.stack([a, b]).astype(np.float32) / 255)
    fused = torch.round(src.mean(0, keepdim=True) * 255) / 255
    return fused, src


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--repeats", type=int, default=None, help="rounds of the fast variants (default 3, 2 quick)")
    ap.add_argument("--batch", type=int, default=4, help="batch size for FusionMetrics.update")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="320×240, 2 repeats")
    ap.add_argument("--out", type=Path, default=None, help="result JSON (default benchmarks/results/…)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    repeats = args.repeats or (2 if args.quick else 3)
    width, height = (320, 240) if args.quick else (640, 480)
    env = harness.environment(device)

    fused, src = make_pair(width, height)
    fused, src = fused.to(device), src.to(device)
    h, w = fused.shape[-2:]
    print(f"fusion metrics at {w}×{h}, 2 sources, device {device}, {args.threads} thread(s), allocator "
          f"{env['allocator']}, load {env['load_average']}, {repeats} rounds")

    fb = fused.unsqueeze(0).expand(args.batch, 1, h, w).contiguous()
    sb = src[None, :, None].expand(args.batch, 2, 1, h, w).contiguous()
    metric = FusionMetrics().to(device)
    update = f"FusionMetrics.update (batch {args.batch})"
    variants: dict[str, Callable[[], Any]] = {BASELINE: lambda: evaluate(fused, src)}
    variants.update({m: (lambda m=m: evaluate(fused, src, metrics=(m,))) for m in ALL_METRICS})
    variants[update] = lambda: metric.update(fb, sb)

    with harness.LoadWatch() as load:
        first: dict[str, float] = {}
        for name, fn in variants.items():  # the warm-up, and which are slow
            t = time.perf_counter()
            fn()
            harness.synchronize(device)
            first[name] = time.perf_counter() - t
        fast = {n: fn for n, fn in variants.items() if first[n] <= SLOW_S}
        slow = {n: fn for n, fn in variants.items() if first[n] > SLOW_S}
        results = harness.interleave(fast, repeats, warmup=0, device=device)
        if slow:
            results.update(harness.interleave(slow, 1, warmup=0, device=device))
        results = {n: results[n] for n in variants}
        for n, r in results.items():
            r["rounds"] = len(r["runs_ms"])
            r["first_call_ms"] = 1000.0 * first[n]
        results[update]["median_ms_per_image"] = results[update]["median_ms"] / args.batch
    group = harness.comparison(results, BASELINE, load, what=f"{w}x{h} grey fused image + 2 sources, ms per call",
                               default_metrics=list(DEFAULT_METRICS), slow_variants=list(slow))
    values = evaluate(fused, src)
    print(harness.table(group))
    payload = {
        "environment": env, "load": load.record, "quick": args.quick,
        "settings": {"image_hw": [h, w], "n_sources": 2, "threads": args.threads, "repeats": repeats,
                     "batch": args.batch, "baseline": BASELINE, "slow_s": SLOW_S},
        "comparisons": {"metrics": group},
        "values_on_benchmark_pair": values,
    }
    harness.write_result("fusion_metrics_speed", payload, args.out)
    return payload


if __name__ == "__main__":
    main()
