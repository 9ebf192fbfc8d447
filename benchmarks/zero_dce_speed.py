"""Zero-DCE speed: training samples/s (256×256, batch 8) and inference ms per 1200×900 image
(the papers' runtime setting, [CVPR Table 3]), fp32 vs bf16-mixed, with and without
channels_last and torch.compile. Prints a table and writes benchmarks/results/zero_dce_speed.json.

    python benchmarks/zero_dce_speed.py                 # every combination, CUDA if available
    python benchmarks/zero_dce_speed.py --quick         # fewer iterations, no torch.compile
    python benchmarks/zero_dce_speed.py --variant zero_dce_pp

A training step is the real one: DCE-Net forward, the four official losses, backward, grad-norm
clipping at 0.1, Adam. Timing excludes warm-up (and compilation) iterations; on CUDA it
synchronises before reading the clock.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lightning_modules.zero_dce import DCENet  # noqa: E402
from losses.zero_dce import ZeroDCELoss  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "zero_dce_speed.json"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _autocast(device: torch.device, precision: str):
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def _net(variant: str, channels_last: bool, compile_: bool, device: torch.device, scale: float = 1.0):
    pp = variant == "zero_dce_pp"
    net = DCENet(depthwise_separable=pp, shared_map=pp, scale_factor=scale, init="default" if pp else "official")
    net = net.to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    fwd = torch.compile(net) if compile_ else net
    return net, fwd


def bench_train(variant: str, precision: str, channels_last: bool, compile_: bool, device: torch.device,
                iters: int, warmup: int, batch: int = 8, size: int = 256) -> float:
    net, fwd = _net(variant, channels_last, compile_, device)
    loss_fn = ZeroDCELoss(weights={"tv": 1600.0 if variant == "zero_dce_pp" else 200.0}).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, weight_decay=1e-4)
    x = torch.rand(batch, 3, size, size, device=device) * 0.4
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    for i in range(warmup + iters):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        with _autocast(device, precision):
            enhanced, maps = fwd(x)
            loss = loss_fn(enhanced, x, maps)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 0.1)
        opt.step()
    _sync(device)
    return batch * iters / (time.perf_counter() - t0)


@torch.no_grad()
def bench_infer(variant: str, precision: str, channels_last: bool, compile_: bool, device: torch.device,
                iters: int, warmup: int) -> float:
    scale = 12.0 if variant == "zero_dce_pp" else 1.0  # official test settings
    net, fwd = _net(variant, channels_last, compile_, device, scale)
    net.eval()
    x = torch.rand(1, 3, 900, 1200, device=device) * 0.4
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    for i in range(warmup + iters):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        with _autocast(device, precision):
            fwd(x)
    _sync(device)
    return (time.perf_counter() - t0) / iters * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="zero_dce", choices=["zero_dce", "zero_dce_pp"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="few iterations, no torch.compile")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    train_iters, infer_iters = (3, 3) if args.quick else ((50, 50) if gpu else (6, 5))
    warmup = 1 if args.quick else (10 if gpu else 2)
    compiles = [False] if (args.quick or args.no_compile) else [False, True]
    rows = []
    print(f"Zero-DCE speed ({args.variant}) on {device} "
          f"({torch.cuda.get_device_name() if gpu else platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads), torch {torch.__version__}")
    print(f"{'precision':<11} {'channels_last':<14} {'compile':<8} {'train samples/s':>16} {'infer ms/img':>13}")
    for precision, cl, comp in itertools.product(["32-true", "bf16-mixed"], [False, True], compiles):
        # bf16 autocast on a CPU is ~10× slower than fp32: one short measurement is enough to show it.
        n_train, n_infer = (max(1, train_iters // 3), max(1, infer_iters // 3)) if (precision != "32-true" and not gpu) else (train_iters, infer_iters)
        wu = warmup + (2 if comp else 0)
        try:
            sps = bench_train(args.variant, precision, cl, comp, device, n_train, wu)
            ms = bench_infer(args.variant, precision, cl, comp, device, n_infer, wu)
            err = None
        except Exception as exc:  # a backend without e.g. a compiler: record it, keep measuring the rest
            sps = ms = float("nan")
            err = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        rows.append({"precision": precision, "channels_last": cl, "compile": comp, "train_samples_per_s": sps,
                     "infer_ms_per_1200x900": ms, "error": err})
        print(f"{precision:<11} {str(cl):<14} {str(comp):<8} {sps:>16.2f} {ms:>13.1f}" + (f"  ({err})" if err else ""))
    result = {
        "benchmark": "zero_dce_speed",
        "variant": args.variant,
        "device": str(device),
        "device_name": torch.cuda.get_device_name() if gpu else (platform.processor() or platform.machine()),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "train_setting": "256x256, batch 8, official losses + Adam + clip 0.1",
        "infer_setting": "1 image 1200x900" + (", scale_factor 12" if args.variant == "zero_dce_pp" else ""),
        "iterations": {"train": train_iters, "infer": infer_iters, "warmup": warmup},
        "rows": rows,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out = args.out if args.variant == "zero_dce" else args.out.with_name(f"zero_dce_pp_speed_{device.type}.json")
    if args.variant == "zero_dce" and device.type != "cpu":
        out = args.out.with_name(f"zero_dce_speed_{device.type}.json")
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
