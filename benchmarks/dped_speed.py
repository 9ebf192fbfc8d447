"""DPED speed: DataModule samples/s for 100×100 patch pairs read from the prepared layout on disk, and training
iterations/s at batch 50 (the official batch), content term on (VGG-19 relu5_4, random weights so the cost is
counted without the weight file) and off. Prints a table and writes benchmarks/results/dped_speed.json.

    python benchmarks/dped_speed.py            # CUDA if available
    python benchmarks/dped_speed.py --quick    # fewer pairs and iterations
    python benchmarks/dped_speed.py --root data/dped --phone iphone   # a real DPED root instead of synthetic data

A training iteration is the real one (``DPED.training_step`` logic without Lightning): generator forward, the
official losses (+ the discriminator on the enhanced patches), backward, Adam; then the discriminator step on
half DSLR / half enhanced patches, backward, Adam. Timing excludes warm-up iterations; on CUDA it synchronises
before reading the clock. The data loader is timed on its own (default workers of :class:`DPEDDataModule`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from datamodules.dped import DPEDDataModule  # noqa: E402
from datamodules.image_io import write_uint8  # noqa: E402
from lightning_modules.dped import DPEDDiscriminator, DPEDGenerator  # noqa: E402
from losses.dped import DPEDGeneratorLoss, discriminator_loss  # noqa: E402
from losses.vgg import VGG19Features  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "dped_speed.json"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


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


def bench_loader(root: Path, phone: str, batch: int, n_batches: int) -> tuple[float, int]:
    """Samples/s of the training DataLoader (first batch = worker start-up, excluded)."""
    dm = DPEDDataModule(root=str(root), phone=phone, batch_size=batch, val_max_patches=0)
    dm.setup("fit")
    loader = dm.train_dataloader()
    n, t0 = 0, None
    for _ in range(2):  # two epochs if one is too short
        for b in loader:
            if t0 is None:
                t0 = time.perf_counter()
                continue
            n += b["input"].shape[0]
            if n >= n_batches * batch:
                break
        if n >= n_batches * batch:
            break
    return n / (time.perf_counter() - t0), dm.num_workers


def bench_train(content: bool, device: torch.device, iters: int, warmup: int, batch: int = 50) -> float:
    """Training iterations/s (one G + one D update) at ``batch`` 100×100 patches."""
    g, d = DPEDGenerator().to(device), DPEDDiscriminator().to(device)
    vgg = VGG19Features("relu5_4", pretrained=False) if content else None
    loss = DPEDGeneratorLoss(weights={"content": 10.0 if content else 0.0}, vgg=vgg).to(device)
    opt_g = torch.optim.Adam(g.parameters(), lr=5e-4)
    opt_d = torch.optim.Adam(d.parameters(), lr=5e-4)
    x = torch.rand(batch, 3, 100, 100, device=device)
    y = torch.rand(batch, 3, 100, 100, device=device)
    t0 = time.perf_counter()
    for i in range(warmup + iters):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
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
    _sync(device)
    return iters / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="fewer pairs and iterations")
    parser.add_argument("--root", type=Path, default=None, help="an existing DPED root (default: synthetic)")
    parser.add_argument("--phone", default="iphone")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    iters = 1 if args.quick else (50 if gpu else 3)
    warmup = 1 if args.quick or not gpu else 5
    n_pairs, n_batches, batch = (200, 3, 50) if args.quick else (1000, 15, 50)
    name = torch.cuda.get_device_name() if gpu else (platform.processor() or platform.machine())
    print(f"DPED speed on {device} ({name}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs), "
          f"torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or write_patch_layout(Path(tmp), n_pairs, args.phone)
        loader_sps, workers = bench_loader(root, args.phone, batch, n_batches)
    print(f"data loader: {loader_sps:.0f} samples/s (100×100 pairs from JPEG, batch {batch}, {workers} workers)")
    rows = []
    for content in (True, False):
        ips = bench_train(content, device, iters, warmup)
        rows.append({"content_term": content, "iterations_per_s": ips, "samples_per_s": ips * 50})
        print(f"training, content term {'on ' if content else 'off'}: {ips:.3f} it/s = {ips * 50:.1f} samples/s "
              "(batch 50, G + D step)")
    result = {
        "benchmark": "dped_speed",
        "quick": args.quick,
        "device": str(device),
        "device_name": name,
        "machine": platform.machine(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "load_average_1_5_15min": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "loader": {"samples_per_s": loader_sps, "workers": workers, "batch": batch,
                   "data": str(args.root) if args.root else f"synthetic 100x100 JPEG pairs ({n_pairs})"},
        "train_setting": "batch 50, 100x100, official losses (content with a random-init VGG-19 when on), "
                         "Adam 5e-4, one G + one D update per iteration, fp32",
        "train": rows,
        "iterations": {"train": iters, "warmup": warmup, "loader_batches": n_batches},
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
