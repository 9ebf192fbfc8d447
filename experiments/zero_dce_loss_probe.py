"""The Zero-DCE loss of the official model and of every epoch of a reproduction, on the same training images.

It asks whether training longer can reach the official model. If our epochs already reach a lower official loss than
the released weights, the loss does not lead to them, and the remaining gap is not a matter of epochs
(``experiments/zero_dce/REPRODUCTION.md``). For each model it reports:

- the official objective, total and per term: :class:`losses.zero_dce.ZeroDCELoss`, the official weights and forms,
  fp32, no grad;
- the mean output brightness on those training images.

The images are ``--n`` of them, drawn with a fixed seed and loaded as the official training loader does (256²
Pillow Lanczos, /255). With ``--test`` and ``--average-from K`` it also scores the mean of the weights of epochs K…
against the official model: PSNR of the two outputs on the test photos, both rounded to 8 bits.

    python -m experiments.zero_dce_loss_probe --train ../shared/data/lowlight/train \\
        --checkpoints repro/zero_dce/runs/zero_dce/train/checkpoints \\
        --reference ../shared/data/weights/zero_dce/Epoch99.pth --test ../shared/data/lowlight/test \\
        --average-from 5 --out probe.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from datamodules.atomic_files import atomic_write_text
from datamodules.image_io import list_images, list_images_recursive, load_tensor
from experiments.reproduce import epoch_checkpoints
from lightning_modules.checkpoints import checkpoint_state
from lightning_modules.tiling import flush_subnormal_
from lightning_modules.zero_dce import ZeroDCE
from losses.zero_dce import ZeroDCELoss
from metrics.full_reference import psnr_per_image


def training_images(folder: Path, n: int, size: int = 256, seed: int = 0) -> torch.Tensor:
    """``n`` images of ``folder`` (a seeded draw, in name order) as N×3×size×size in [0, 1], loaded as the official
    Zero-DCE loader does (Pillow LANCZOS, /255: :func:`~datamodules.image_reading.read_image`)."""
    files = list_images(folder)
    if not files:
        raise SystemExit(f"{folder}: no images")
    pick = sorted(np.random.default_rng(seed).choice(len(files), min(n, len(files)), replace=False))
    return torch.stack([load_tensor(files[i], (size, size))
                        for i in tqdm(pick, desc="loading training images", unit="image", disable=len(pick) < 64)])


@torch.no_grad()
def loss_of(net: torch.nn.Module, images: torch.Tensor, batch: int = 32) -> dict[str, float | list[float]]:
    """The official loss terms (unweighted), the total and the mean output brightness, averaged over ``images``;
    ``batch_totals``: the total loss of each consecutive batch of ``batch`` images (for paired comparisons)."""
    loss, sums, totals = ZeroDCELoss(), {}, []
    for i in range(0, len(images), batch):
        x = images[i:i + batch]
        enhanced, curves = net(x)
        terms = loss(enhanced, x, curves)
        totals.append(float(terms["total"]))
        for key, value in {**terms, "brightness": enhanced.mean()}.items():
            sums[key] = sums.get(key, 0.0) + float(value) * len(x)
    return {**{key: value / len(images) for key, value in sums.items()}, "batch_totals": totals}


def paired_difference(ours: list[float], official: list[float]) -> dict[str, float]:
    """Mean and standard error of ``ours − official`` over the same batches of images (each batch a sample)."""
    d = np.asarray(ours) - np.asarray(official)
    return {"loss_minus_official": float(d.mean()),
            "standard_error": float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan"),
            "batches_below_official": float((d < 0).mean())}


@torch.no_grad()
def outputs(net: torch.nn.Module, photos: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each photo's output, clamped and rounded to 8 bits."""
    return [torch.round(net(p[None])[0].clamp(0, 1)[0] * 255) / 255 for p in photos]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", type=Path, required=True, help="the training images (a flat folder)")
    p.add_argument("--checkpoints", type=Path, required=True, help="a reproduction's checkpoints (epoch=NNNN.ckpt)")
    p.add_argument("--reference", type=Path, required=True, help="the official Epoch99.pth")
    p.add_argument("--n", type=int, default=256, help="training images to score (default 256; 0: all)")
    p.add_argument("--epochs", type=int, nargs="*", default=None, help="score only these epochs (default: all)")
    p.add_argument("--test", type=Path, default=None, help="test photos, for the weight average's PSNR to official")
    p.add_argument("--average-from", type=int, default=None, help="average the weights of this epoch and later")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = p.parse_args(argv)
    images = training_images(args.train, args.n or 10**9)
    official = ZeroDCE(pretrained=str(args.reference)).net.eval()
    results: dict = {"n_train_images": len(images), "models": {"official": loss_of(official, images)}}
    _write(args.out, results)
    states = {}
    chosen_epochs = [(e, p) for e, p in epoch_checkpoints(args.checkpoints) if args.epochs is None or e in args.epochs]
    for epoch, path in tqdm(chosen_epochs, desc="epochs", unit="ckpt"):
        states[epoch] = {k[4:]: v for k, v in checkpoint_state(path, ("net.",), strip=False).items()}
        model = ZeroDCE().net.eval()
        model.load_state_dict(states[epoch])
        flush_subnormal_(model)  # as ZeroDCE(pretrained=…) does for the official weights: same output, faster
        entry = loss_of(model, images)
        entry.update(paired_difference(entry["batch_totals"], results["models"]["official"]["batch_totals"]))
        results["models"][f"epoch {epoch}"] = entry
        _write(args.out, results)  # each model as it is scored: a stopped probe keeps what it measured
    if args.average_from is not None and states:
        chosen = [e for e in states if e >= args.average_from]
        model = ZeroDCE().net.eval()
        model.load_state_dict({k: torch.stack([states[e][k].float() for e in chosen]).mean(0) for k in states[chosen[0]]})
        flush_subnormal_(model)
        entry = loss_of(model, images)
        if args.test is not None:
            photos = [load_tensor(f) for f, _ in list_images_recursive(args.test)]
            values = [float(psnr_per_image(a[None], b[None])[0])
                      for a, b in zip(outputs(model, photos), outputs(official, photos), strict=True)]
            entry.update(psnr_to_official=float(np.mean(values)), worst_psnr_to_official=float(np.min(values)),
                         n_photos=len(photos))
        results["models"][f"mean of epochs {chosen[0]}-{chosen[-1]}"] = entry
    for name, entry in results["models"].items():
        print(f"{name:>24}: " + ", ".join(f"{k} {v:.4f}" for k, v in entry.items()
                                          if k not in ("n_photos", "batch_totals")))
    _write(args.out, results)
    return results


def _write(path: Path | None, results: dict) -> None:
    if path is not None:
        atomic_write_text(path, json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
