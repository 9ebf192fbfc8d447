"""Fusion-metric speed: seconds per fused image + two sources at 640×480 (grey, float64 inside).

Times ``metrics.fusion.evaluate`` with the default metric set (CDDFuse's EN SD SF AG MI SCD VIF Qabf
SSIM CC PSNR), every metric on its own (including the literature variants; ``VIF_tm_sum`` and
``SSIM_tm_avg`` are the torchmetrics implementations), and ``FusionMetrics.update`` on a batch.
Prints a table and writes benchmarks/results/fusion_metrics_speed.json.

    python benchmarks/fusion_metrics_speed.py                  # 1 CPU thread, 3 repeats
    python benchmarks/fusion_metrics_speed.py --threads 2 --repeats 5
    python benchmarks/fusion_metrics_speed.py --device cuda    # where a GPU build of torch exists

Data: the bundled "rocket" photograph (scikit-image) as grey, resized to 640×480; source A blurred
on its left half and B on its right half (a multi-focus pair), fused = pixel mean. Figures are the
median of the repeats after one warm-up call (the warm-up call itself for a metric slower than
1 s: the torchmetrics variants). On a shared machine, the load average is recorded.
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

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from datamodules.synthetic.photos import load_photo  # noqa: E402
from metrics.fusion import ALL_METRICS, DEFAULT_METRICS, FusionMetrics, evaluate  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "fusion_metrics_speed.json"


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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, repeats: int, device: torch.device, slow_s: float = 1.0) -> float:
    """Median of ``repeats`` calls after a warm-up; a call slower than ``slow_s`` is timed once."""
    _sync(device)
    t = time.perf_counter()
    fn()  # warm-up
    _sync(device)
    first = time.perf_counter() - t
    if first > slow_s:
        return first
    times = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4, help="batch size for FusionMetrics.update")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    fused, src = make_pair()
    fused, src = fused.to(device), src.to(device)
    h, w = fused.shape[-2:]
    print(f"fusion metrics at {w}×{h}, 2 sources, device {device}, {args.threads} thread(s), "
          f"median of {args.repeats}")

    results: dict[str, float] = {}
    results["evaluate(default set)"] = timed(lambda: evaluate(fused, src), args.repeats, device)
    per_metric = {m: timed(lambda m=m: evaluate(fused, src, metrics=(m,)), args.repeats, device) for m in ALL_METRICS}

    fb = fused.unsqueeze(0).expand(args.batch, 1, h, w).contiguous()
    sb = src[None, :, None].expand(args.batch, 2, 1, h, w).contiguous()
    metric = FusionMetrics().to(device)
    batch_s = timed(lambda: metric.update(fb, sb), args.repeats, device)
    results[f"FusionMetrics.update per image (batch {args.batch})"] = batch_s / args.batch

    values = evaluate(fused, src)
    for k, v in results.items():
        print(f"  {k:<42s} {v * 1e3:9.1f} ms")
    print("  per metric:")
    for k, v in per_metric.items():
        print(f"    {k:<16s} {v * 1e3:9.1f} ms")

    payload = {
        "benchmark": "fusion_metrics_speed",
        "image_hw": [h, w],
        "n_sources": 2,
        "device": str(device),
        "threads": args.threads,
        "repeats": args.repeats,
        "statistic": "median seconds per fused image",
        "default_metrics": list(DEFAULT_METRICS),
        "seconds": results,
        "seconds_per_metric": per_metric,
        "values_on_benchmark_pair": values,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
