"""DeepFuse speed: inference ms for one 512×384 exposure pair beside Mertens exposure fusion (OpenCV, CPU) on the
same machine, and training ms per step at the official patch size (77×77, batch 50), fp32 and bf16-mixed.
Prints a table and writes benchmarks/results/deepfuse_speed.json (``_cuda`` suffix on a GPU).

    python benchmarks/deepfuse_speed.py            # CUDA if available, else CPU
    python benchmarks/deepfuse_speed.py --quick    # 256×192 pair, batch 10, 2 rounds

Inference variants, interleaved in one ``harness.interleave`` call (rotated order, min and median ms after one
warm-up call each): ``deepfuse_full`` = the full colour pipeline (:meth:`DeepFuse.forward`: YCbCr, the official
network on Y, chroma rule, imadjust, back to RGB; the baseline of the ratios), ``deepfuse_net`` = the network
alone on the Y pair, ``mertens`` = ``cv2.createMergeMertens(1, 1, 1)`` on the 8-bit pair
(:class:`lightning_modules.fusion_baselines.Mertens`, CPU only). A training step is the real one: forward on the Y
pair, 1 − MEF-SSIM, backward, Adam. Each network call also gets its distance from the FLOP limit (median ÷ the
time of its ``harness.count_flops`` FLOPs at this CPU's measured fp32 conv peak, "× limit"). The paper's own
runtime figures are "not found" (digest §7), so nothing here is compared with a paper number.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import harness  # noqa: E402
from lightning_modules.deepfuse import DeepFuse, rgb_to_ycbcr  # noqa: E402
from lightning_modules.fusion_baselines import Mertens  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="256×192 pair, training batch 10, 2 rounds")
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default benchmarks/results/…)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    rounds, warmup = (2, 1) if args.quick else ((50, 10) if gpu else (5, 2))
    train_rounds = 2 if args.quick else (30 if gpu else 3)
    w, h = (256, 192) if args.quick else (512, 384)
    batch = 10 if args.quick else 50
    env = harness.environment(device)
    print(f"DeepFuse speed on {device} ({env['device_name']}, {env['threads']} threads, allocator "
          f"{env['allocator']}), torch {env['torch']}, load {env['load_average']}")

    with harness.LoadWatch() as load:
        torch.manual_seed(0)
        model = DeepFuse(log_images=0).to(device).eval()
        pair = torch.rand(1, 2, 3, h, w, device=device)
        pair[:, 0] *= 0.3  # an under- and an over-exposed frame
        pair[:, 1] = 0.7 + 0.3 * pair[:, 1]
        y_pair = rgb_to_ycbcr(pair)[:, :, :1]
        mertens = Mertens(1.0, 1.0, 1.0)
        infer_fns = {"deepfuse_full": lambda: model(pair), "deepfuse_net": lambda: model.net(y_pair),
                     "mertens": lambda: mertens(pair.cpu())}
        with torch.no_grad():
            flops = {"deepfuse_full": harness.count_flops(infer_fns["deepfuse_full"]),
                     "deepfuse_net": harness.count_flops(infer_fns["deepfuse_net"])}
            with harness.LoadWatch() as infer_load:
                infer_res = harness.interleave(infer_fns, rounds, warmup, device)
        harness.with_flop_limits(infer_res, flops, device=device)
        infer = harness.comparison(infer_res, "deepfuse_full", infer_load,
                                   what=f"1 exposure pair {w}x{h} (W×H), official architecture, fp32, ms per pair")

        model.train()
        opt = model.configure_optimizers()
        train_batch = {"sources": torch.rand(batch, 2, 3, 77, 77, device=device)}
        model.log = lambda *a, **k: None  # no trainer attached: logging is a no-op here

        def step(bf16: bool = False) -> None:
            # bf16: what Lightning's bf16-mixed does (experiments/deepfuse/reproduce.yaml): the forward under
            # autocast; the MEF-SSIM loss turns autocast off and runs in fp32
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = model.training_step(train_batch, 0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        train_flops = harness.count_flops(step)
        with harness.LoadWatch() as train_load:
            train_res = harness.interleave({"train_step": step, "train_step_bf16": lambda: step(True)},
                                           train_rounds, 1, device)
        harness.with_flop_limits(train_res, {"train_step": train_flops}, device=device)
        for name in train_res:
            train_res[name]["samples_per_s"] = batch / (train_res[name]["median_ms"] / 1000.0)
        train = harness.comparison(train_res, "train_step", train_load,
                                   what=f"77x77 extreme pairs, batch {batch}, 1 - MEF-SSIM, Adam, ms per step "
                                        "(train_step: fp32; train_step_bf16: bf16 autocast forward, fp32 loss)")

    print(f"inference: {infer['what']}")
    print(harness.table(infer))
    print(f"training: {train['what']}  (" + ", ".join(f"{n} {r['samples_per_s']:.1f} samples/s"
                                                       for n, r in train_res.items()) + ")")
    print(harness.table(train))
    payload = {
        "environment": env, "load": load.record, "quick": args.quick,
        "settings": {"pair_wh": [w, h], "train_batch": batch, "rounds": rounds, "warmup": warmup,
                     "train_rounds": train_rounds, "baseline": "deepfuse_full"},
        "comparisons": {"inference": infer, "training": train},
        "mertens_over_deepfuse": infer["ratios"]["mertens"],
    }
    out = args.out or harness.RESULTS / ("deepfuse_speed.json" if device.type == "cpu"
                                         else f"deepfuse_speed_{device.type}.json")
    harness.write_result("deepfuse_speed", payload, out)
    return payload


if __name__ == "__main__":
    main()
