"""DPED speed: DataModule ms per batch (and samples/s) for 100×100 patch pairs read from the prepared layout on disk,
and training ms per iteration at batch 50 (the official batch) with the content term on (VGG-19 relu5_4, random
weights so the cost is counted without the weight file) and off. Prints a table and writes
benchmarks/results/dped_speed.json.

    python benchmarks/dped_speed.py            # CUDA if available
    python benchmarks/dped_speed.py --quick    # 200 pairs, batch 4, 2 rounds
    python benchmarks/dped_speed.py --root data/dped --phone iphone   # a real DPED root instead of synthetic data

A training iteration is the real one (``DPED.training_step`` logic without Lightning): generator forward, the
official losses (+ the discriminator on the enhanced patches), backward, Adam; then the discriminator step on
half DSLR / half enhanced patches, backward, Adam. The two variants (``content_on``, ``content_off``: the baseline
of the ratios) run interleaved in one ``harness.interleave`` call (rotated order, min and median ms after warm-up
iterations); on CUDA the clock is read after a synchronise. Each also gets its distance from the FLOP limit:
median ÷ the time of its ``harness.count_flops`` FLOPs (G and D forward + backward, VGG forward + backward to its
input) at this CPU's measured fp32 conv peak ("× limit"). The data loader is timed on its own (default workers of
:class:`DPEDDataModule`; the first batch, worker start-up, is not counted).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import harness  # noqa: E402
from datamodules.dped import DPEDDataModule  # noqa: E402
from datamodules.image_io import write_uint8  # noqa: E402
from lightning_modules.dped import DPEDDiscriminator, DPEDGenerator  # noqa: E402
from losses.dped import DPEDGeneratorLoss, discriminator_loss  # noqa: E402
from losses.vgg import VGG19Features  # noqa: E402

BASELINE = "content_off"


def write_patch_layout(root: Path, n_pairs: int, phone: str = "iphone", seed: int = 0) -> Path:
    """Write ``n_pairs`` textured 100×100 JPEG pairs in the DPED layout (training and test folders)."""
    rng = np.random.default_rng(seed)
    for split, n in (("training_data", n_pairs), ("test_data/patches", 2)):
        for i in range(n):
            canon = rng.integers(40, 220, (1, 1, 3)) + rng.normal(0, 25, (100, 100, 3)).cumsum(1) / 8
            phone_img = canon * 0.8 + rng.normal(0, 6, canon.shape)
            write_uint8(root / phone / split / "canon" / f"{i}.jpg", np.clip(canon, 0, 255).astype(np.uint8))
            write_uint8(root / phone / split / phone / f"{i}.jpg", np.clip(phone_img, 0, 255).astype(np.uint8))
    return root


def bench_loader(root: Path, phone: str, batch: int, n_batches: int) -> dict[str, Any]:
    """ms per batch of the training DataLoader (first batch = worker start-up, excluded), as ``harness.summary``
    plus samples/s of the median and the worker count."""
    dm = DPEDDataModule(root=str(root), phone=phone, batch_size=batch, val_max_patches=0)
    dm.setup("fit")
    loader = dm.train_dataloader()
    times: list[float] = []
    t0: float | None = None
    for _ in range(2):  # two epochs if one is too short
        for _batch in loader:
            now = time.perf_counter()
            if t0 is not None:
                times.append(now - t0)
            t0 = time.perf_counter()
            if len(times) >= n_batches:
                break
        if len(times) >= n_batches:
            break
    result = harness.summary(times)
    return {**result, "samples_per_s": batch / (result["median_ms"] / 1000.0), "workers": dm.num_workers,
            "batch": batch}


def make_iteration(content: bool, device: torch.device, batch: int) -> Callable[[], None]:
    """One G + one D update at ``batch`` 100×100 patches (its own networks and optimisers)."""
    torch.manual_seed(0)
    g, d = DPEDGenerator().to(device), DPEDDiscriminator().to(device)
    vgg = VGG19Features("relu5_4", pretrained=False) if content else None
    loss = DPEDGeneratorLoss(weights={"content": 10.0 if content else 0.0}, vgg=vgg).to(device)
    opt_g = torch.optim.Adam(g.parameters(), lr=5e-4)
    opt_d = torch.optim.Adam(d.parameters(), lr=5e-4)
    x = torch.rand(batch, 3, 100, 100, device=device)
    y = torch.rand(batch, 3, 100, 100, device=device)

    def iteration() -> None:
        d.requires_grad_(False)
        enhanced = g(x)
        total = loss(enhanced, y, d(enhanced))["total"]
        opt_g.zero_grad(set_to_none=True)
        total.backward()
        opt_g.step()
        d.requires_grad_(True)
        adv = torch.randint(0, 2, (batch,), device=device)
        samples = torch.where(adv.view(-1, 1, 1, 1).bool(), y, enhanced.detach())
        loss_d = discriminator_loss(d(samples), adv)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()

    return iteration


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="200 pairs, batch 4, 2 rounds")
    parser.add_argument("--root", type=Path, default=None, help="an existing DPED root (default: synthetic)")
    parser.add_argument("--phone", default="iphone")
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default benchmarks/results/…)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    rounds = 2 if args.quick else (50 if gpu else 3)
    warmup = 1 if args.quick or not gpu else 5
    n_pairs, n_batches, batch = (200, 15, 4) if args.quick else (1000, 15, 50)
    env = harness.environment(device)
    print(f"DPED speed on {device} ({env['device_name']}, {env['threads']} threads, {env['cpu_count']} CPUs, "
          f"allocator {env['allocator']}), torch {env['torch']}, load {env['load_average']}")
    with harness.LoadWatch() as load:
        with tempfile.TemporaryDirectory() as tmp, harness.LoadWatch() as loader_load:
            root = args.root or write_patch_layout(Path(tmp), n_pairs, args.phone)
            loader = bench_loader(root, args.phone, batch, n_batches)
        loader.update(load=loader_load.record,
                      data=str(args.root) if args.root else f"synthetic 100x100 JPEG pairs ({n_pairs})")
        print(f"data loader: {loader['median_ms']:.1f} ms per batch (min {loader['min_ms']:.1f}) = "
              f"{loader['samples_per_s']:.0f} samples/s (100×100 pairs from JPEG, batch {batch}, "
              f"{loader['workers']} workers)")
        iterations = {"content_on": make_iteration(True, device, batch),
                      "content_off": make_iteration(False, device, batch)}
        flops = {name: harness.count_flops(fn) for name, fn in iterations.items()}
        with harness.LoadWatch() as train_load:
            results = harness.interleave(iterations, rounds, warmup, device)
        harness.with_flop_limits(results, flops, device=device)
        for r in results.values():
            r["samples_per_s"] = batch / (r["median_ms"] / 1000.0)
        what = (f"batch {batch}, 100x100, official losses (content with a random-init VGG-19 when on), Adam 5e-4, "
                "one G + one D update per iteration, fp32, ms per iteration")
        train = harness.comparison(results, BASELINE, train_load, what=what)
    print(f"training: {what}")
    print(harness.table(train))
    payload = {
        "environment": env, "load": load.record, "quick": args.quick,
        "settings": {"batch": batch, "rounds": rounds, "warmup": warmup, "loader_batches": n_batches,
                     "baseline": BASELINE},
        "loader": loader,
        "comparisons": {"training": train},
    }
    harness.write_result("dped_speed", payload, args.out)
    return payload


if __name__ == "__main__":
    main()
