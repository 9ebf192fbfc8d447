"""ReFusion speed and memory: one meta-learning iteration (inner step on one batch + second-order outer step on
the next + P update) vs one plain fusion step (F on L_f with P's maps, R on L_r, Adam), at 256×256 batch 4
(the official batch 2 doubled by source swapping); inference ms of F at 640×480 (MSRS size).

Memory: on CUDA ``torch.cuda.max_memory_allocated`` (peak of tensors). On CPU: the increase of the process's
``ru_maxrss`` (``resource.getrusage``, a high-water mark) over the timed calls, in MiB. Because it is a process-wide
high-water mark, each figure is a lower bound of that call's own peak (the fusion step runs first, then the meta
iteration, then inference).

    python benchmarks/refusion_speed.py            # 3 timed iterations each
    python benchmarks/refusion_speed.py --quick    # 128×128 batch 2, 320×240 inference, 1 timed iteration

Writes benchmarks/results/refusion_speed.json (machine, threads, torch version, settings, figures).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lightning_modules.refusion import (  # noqa: E402
    FusionNet,
    LossProposalNet,
    ReconstructionNet,
    inner_update,
    meta_loss,
    normalised_gradient_update_,
)
from losses.refusion import refusion_fusion_loss, refusion_reconstruction_loss  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "refusion_speed.json"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _measure(fn, device: torch.device, warmup: int, iters: int) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss0 = _rss_mib()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    ms = (time.perf_counter() - t0) / iters * 1000.0
    mem = (torch.cuda.max_memory_allocated(device) / 2**20) if device.type == "cuda" else _rss_mib() - rss0
    return {"ms": ms, "peak_mib": mem}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    size, batch = (128, 2) if args.quick else (256, 4)
    infer_hw = (240, 320) if args.quick else (480, 640)
    warmup, iters = (1, 1) if args.quick else (1, 3)
    torch.manual_seed(0)
    f, p, r = FusionNet().to(device), LossProposalNet().to(device), ReconstructionNet().to(device)
    opt = torch.optim.Adam([*f.parameters(), *r.parameters()], lr=1e-4)
    x1 = torch.rand(batch, 2, 1, size, size, device=device)
    x2 = torch.rand(batch, 2, 1, size, size, device=device)

    def fusion_step() -> None:
        with torch.no_grad():
            w, v = p(x1)
        fused = f(x1)
        loss = refusion_fusion_loss(fused, x1, w, v) + refusion_reconstruction_loss(r(fused.detach()), x1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def meta_iteration() -> None:
        step = inner_update(f, r, p, x1, 1e-4)
        meta_loss(f, r, x2, step).backward()
        normalised_gradient_update_(p.parameters(), 1e-4)
        for q in p.parameters():
            q.grad = None

    def inference() -> None:
        with torch.no_grad():
            f(torch.rand(1, 2, *infer_hw, device=device))

    results = {
        "fusion_step": _measure(fusion_step, device, warmup, iters),
        "meta_iteration": _measure(meta_iteration, device, warmup, iters),
        "inference": _measure(inference, device, warmup, iters),
    }
    report = {
        "machine": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "memory_measure": "cuda max_memory_allocated" if device.type == "cuda" else
        "ru_maxrss increase over the timed calls (MiB, lower bound: high-water mark of the process)",
        "train_batch": batch, "train_size": [size, size], "inference_size_hw": list(infer_hw),
        "warmup": warmup, "iterations": iters, "quick": args.quick, "results": results,
    }
    print(f"{'measurement':<16}{'ms':>12}{'peak MiB':>12}")
    for k, v in results.items():
        print(f"{k:<16}{v['ms']:>12.1f}{v['peak_mib']:>12.1f}")
    print(f"meta / fusion time ratio: {results['meta_iteration']['ms'] / results['fusion_step']['ms']:.2f}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
