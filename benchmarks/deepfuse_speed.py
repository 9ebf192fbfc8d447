"""DeepFuse speed: inference ms for one 512×384 exposure pair beside Mertens exposure fusion (OpenCV, CPU)
on the same machine, and training samples/s at the official patch size (77×77, batch 50).
Prints a table and writes benchmarks/results/deepfuse_speed.json.

    python benchmarks/deepfuse_speed.py            # CUDA if available, else CPU
    python benchmarks/deepfuse_speed.py --quick    # few iterations

Inference = the full colour pipeline (:meth:`DeepFuse.forward`: YCbCr, the official network on Y, chroma
rule, imadjust, back to RGB) and the network alone. Mertens = ``cv2.createMergeMertens(1, 1, 1)`` on the
8-bit pair (:class:`lightning_modules.fusion_baselines.Mertens`, CPU only). A training step is the real
one: forward on the Y pair, 1 − MEF-SSIM, backward, Adam. The paper's own runtime figures are "not
found" (digest §7), so nothing here is compared with a paper number.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lightning_modules.deepfuse import DeepFuse, rgb_to_ycbcr  # noqa: E402
from lightning_modules.fusion_baselines import Mertens  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "deepfuse_speed.json"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, device: torch.device, iters: int, warmup: int) -> float:
    """Mean milliseconds per call after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / iters * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="few iterations")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    iters, warmup = (2, 1) if args.quick else ((50, 10) if gpu else (5, 2))
    train_iters = 2 if args.quick else (30 if gpu else 3)

    torch.manual_seed(0)
    model = DeepFuse(log_images=0).to(device).eval()
    pair = torch.rand(1, 2, 3, 384, 512, device=device)
    pair[:, 0] *= 0.3  # an under- and an over-exposed frame
    pair[:, 1] = 0.7 + 0.3 * pair[:, 1]
    y_pair = rgb_to_ycbcr(pair)[:, :, :1]
    mertens = Mertens(1.0, 1.0, 1.0)
    with torch.no_grad():
        net_ms = _time(lambda: model.net(y_pair), device, iters, warmup)
        full_ms = _time(lambda: model(pair), device, iters, warmup)
        mertens_ms = _time(lambda: mertens(pair.cpu()), torch.device("cpu"), iters, warmup)

    model.train()
    opt = model.configure_optimizers()
    batch = {"sources": torch.rand(50, 2, 3, 77, 77, device=device)}

    def step() -> None:
        loss = model.training_step(batch, 0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.log = lambda *a, **k: None  # no trainer attached: logging is a no-op here
    train_ms = _time(step, device, train_iters, 1)
    samples_per_s = 50 / (train_ms / 1000)

    name = torch.cuda.get_device_name() if gpu else (platform.processor() or platform.machine())
    print(f"DeepFuse speed on {device} ({name}, {torch.get_num_threads()} threads), torch {torch.__version__}")
    print(f"  network on a 512x384 Y pair          {net_ms:9.1f} ms")
    print(f"  full colour pipeline, 512x384 pair   {full_ms:9.1f} ms")
    print(f"  Mertens (OpenCV, CPU), same pair     {mertens_ms:9.1f} ms   (Mertens / DeepFuse = {mertens_ms / full_ms:.2f})")
    print(f"  training, 77x77 pairs, batch 50      {samples_per_s:9.1f} samples/s")
    result = {
        "benchmark": "deepfuse_speed",
        "device": str(device),
        "device_name": name,
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "infer_setting": "1 exposure pair 512x384 (W×H), official architecture, fp32",
        "train_setting": "77x77 extreme pairs, batch 50, 1 - MEF-SSIM, Adam",
        "iterations": {"infer": iters, "warmup": warmup, "train": train_iters},
        "deepfuse_net_ms": net_ms,
        "deepfuse_full_pipeline_ms": full_ms,
        "mertens_ms": mertens_ms,
        "mertens_over_deepfuse": mertens_ms / full_ms,
        "train_samples_per_s": samples_per_s,
        "quick": args.quick,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    out = args.out if device.type == "cpu" else args.out.with_name(f"deepfuse_speed_{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
