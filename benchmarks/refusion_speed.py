"""ReFusion speed and memory: one meta-learning iteration (inner step on one batch + second-order outer step on
the next + P update) vs one plain fusion step (F on L_f with P's maps, R on L_r, Adam), at 256×256 batch 4
(the official batch 2 doubled by source swapping); inference ms of F at 640×480 (MSRS size).

Each measurement runs in its own fresh process (``spawn``), so its memory figure is its own:
on CUDA ``torch.cuda.max_memory_allocated`` (peak of tensors); on CPU the process's peak resident set
(``ru_maxrss``) minus its resident set just before the first call (after imports and model construction).
On CPU the process's address space is capped (``--cpu-limit-gib``, default 20): a call that needs more fails
with an allocation error, recorded as ``"exceeds": "<limit> GiB"``, instead of waking the OOM killer.

    python benchmarks/refusion_speed.py            # 256×256 batch 4, 640×480 inference, 3 timed iterations
    python benchmarks/refusion_speed.py --quick    # 128×128 batch 2, 320×240 inference, 1 timed iteration
    python benchmarks/refusion_speed.py --meta-sizes 128 192   # also the meta iteration at these sides

Writes benchmarks/results/refusion_speed.json (machine, threads, torch version, settings, figures).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
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


def _current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _run_one(what: str, device_name: str, size: int, batch: int, infer_hw: tuple[int, int], warmup: int,
             iters: int, cpu_limit_gib: float) -> dict:
    """One measurement in this (fresh) process: ms per call and peak memory (module docstring)."""
    device = torch.device(device_name)
    if device.type == "cpu":
        limit = int(cpu_limit_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
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

    fn = {"fusion_step": fusion_step, "meta_iteration": meta_iteration, "inference": inference}[what]
    rss0 = _current_rss_mib()
    try:
        for _ in range(warmup):
            fn()
        _sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        _sync(device)
    except (RuntimeError, MemoryError) as err:
        if "alloc" not in str(err).lower() and not isinstance(err, MemoryError):
            raise
        return {"exceeds": f"{cpu_limit_gib:g} GiB" if device.type == "cpu" else "device memory",
                "error": str(err).splitlines()[0][:200]}
    ms = (time.perf_counter() - t0) / iters * 1000.0
    mem = (torch.cuda.max_memory_allocated(device) / 2**20) if device.type == "cuda" else _peak_rss_mib() - rss0
    return {"ms": ms, "peak_mib": mem}


def _measure_in_fresh_process(*args) -> dict:
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(_run_one, args)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--meta-sizes", type=int, nargs="*", default=[],
                        help="also time the meta iteration at these square sides (same batch)")
    parser.add_argument("--cpu-limit-gib", type=float, default=20.0)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    size, batch = (128, 2) if args.quick else (256, 4)
    infer_hw = (240, 320) if args.quick else (480, 640)
    warmup, iters = (1, 1) if args.quick else (1, 3)
    common = (str(device), size, batch, infer_hw, warmup, iters, args.cpu_limit_gib)
    results = {what: _measure_in_fresh_process(what, *common)
               for what in ("fusion_step", "meta_iteration", "inference")}
    for side in args.meta_sizes:
        results[f"meta_iteration_{side}x{side}"] = _measure_in_fresh_process(
            "meta_iteration", str(device), side, batch, infer_hw, warmup, iters, args.cpu_limit_gib)
    report = {
        "machine": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "load_average_1_5_15min": list(os.getloadavg()),
        "memory_measure": "cuda max_memory_allocated" if device.type == "cuda" else
        "peak RSS minus RSS before the first call, each measurement in a fresh process (MiB)",
        "train_batch": batch, "train_size": [size, size], "inference_size_hw": list(infer_hw),
        "warmup": warmup, "iterations": iters, "quick": args.quick, "results": results,
    }
    print(f"{'measurement':<28}{'ms':>12}{'peak MiB':>12}")
    for k, v in results.items():
        if "exceeds" in v:
            print(f"{k:<28}{'exceeds ' + v['exceeds']:>24}")
        else:
            print(f"{k:<28}{v['ms']:>12.1f}{v['peak_mib']:>12.1f}")
    if "ms" in results["meta_iteration"]:
        print(f"meta / fusion time ratio: {results['meta_iteration']['ms'] / results['fusion_step']['ms']:.2f}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
