"""``test`` time per image at 1200×900 for each paper: the real test loop (``Trainer.test``), fp32, batch 1.

Each paper's LightningModule runs its own ``test_step`` — network, every test metric of that paper, the
per-image rows, the sample PNGs — on 1200×900 inputs. Inputs are a real low-light photo
(``../shared/data/lowlight/test/DICM/01.jpg``, resized bicubic to 1200×900) when present, else a smooth
synthetic image; the label / second source is a brightened copy. Weights are the official ones when
present (``../shared/data/weights``), else random: the time of a forward does not depend on the values.

How: every call is one ``Trainer.test`` over one image, and what is timed is that image's batch
(``on_test_batch_start`` → ``on_test_batch_end``, not the trainer's set-up); the cases run interleaved by
``harness.interleave(self_timed=True)`` (order rotated every round, one warm-up image each), so a load spike hits
every paper alike. Min and median ms per image; ratios ÷ the first case (Zero-DCE on a pair).

    python benchmarks/test_speed.py             # all papers, 5 timed images each (+1 warm-up)
    python benchmarks/test_speed.py --images 3  # fewer
    python benchmarks/test_speed.py --quick     # 160×120, 1 timed image each

Prints a table and writes benchmarks/results/test_speed.json.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
from lightning.pytorch import Callback, Trainer  # noqa: E402

from benchmarks import harness  # noqa: E402
from datamodules.image_io import load_tensor  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = harness.SHARED
W, H = 1200, 900


class BatchTimer(Callback):
    """Wall-clock seconds of every test batch (``on_test_batch_start`` → ``on_test_batch_end``)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_test_batch_start(self, *args: Any, **kwargs: Any) -> None:
        self._t0 = time.perf_counter()

    def on_test_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self.seconds.append(time.perf_counter() - self._t0)


def _image(width: int = W, height: int = H) -> tuple[torch.Tensor, str]:
    """The input photo at width×height (the real DICM/01.jpg when present, else a smooth synthetic image)."""
    photo = SHARED / "lowlight" / "test" / "DICM" / "01.jpg"
    if photo.is_file():
        return load_tensor(photo, (width, height), "bicubic"), f"{photo} resized to {width}x{height}"
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    img = torch.stack([0.2 * xx, 0.15 * yy, 0.1 * (xx + yy) / 2]) + 0.02 * torch.sin(40 * xx) * torch.cos(30 * yy)
    return img.clamp(0, 1), f"synthetic smooth {width}x{height}"


def _weights(rel: str) -> str | None:
    path = SHARED / "weights" / rel
    return str(path) if path.exists() else None


def _cases(x: torch.Tensor) -> dict[str, tuple[object, list[dict]]]:
    from lightning_modules.deepfuse import DeepFuse
    from lightning_modules.dped import DPED
    from lightning_modules.refusion import ReFusion
    from lightning_modules.zero_dce import ZeroDCE

    bright = (x * 2.5).clamp(0, 1)
    paired = {"input": x, "target": bright}
    pair = {"sources": torch.stack([x, bright])}
    dped_w = _weights("dped/iphone_orig.index")
    return {
        "zero_dce (SICE-style pair: PSNR/SSIM/MAE of output and input)":
            (ZeroDCE(pretrained=_weights("zero_dce/Epoch99.pth")), [paired]),
        "zero_dce (unpaired photo: NIQE/LOE/brightness/colour cast of output and input)":
            (ZeroDCE(pretrained=_weights("zero_dce/Epoch99.pth")), [{"input": x, "group": ""}]),
        "zero_dce_pp, scale 12 (pair)":
            (ZeroDCE(variant="zero_dce_pp", eval_scale_factor=12, pretrained=_weights("zero_dce_pp/Epoch99.pth")),
             [paired]),
        "deepfuse (2-exposure stack: MEF-SSIM, MS-MEF-SSIM, mean and Mertens baselines)":
            (DeepFuse(pretrained=_weights("deepfuse/DF_model_Epoch99.npz")), [pair]),
        "refusion ivif (pair: 8 fusion metrics of output, mean and max baselines)":
            (ReFusion(task="ivif", pretrained=_weights("refusion/ReFusion_IVIF.pth")), [pair]),
        "dped (1200x900 image pair: PSNR/MS-SSIM of output and input)":
            (DPED(pretrained=dped_w.removesuffix(".index") if dped_w else None), [paired]),
    }


def _test_one(module: Any, batch: dict[str, Any]) -> float:
    """One ``Trainer.test`` over one image; the seconds of its batch."""
    loader = torch.utils.data.DataLoader([{**batch, "name": "img"}], batch_size=1, collate_fn=_collate)
    timer = BatchTimer()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(accelerator="cpu", devices=1, logger=False, callbacks=[timer], default_root_dir=tmp,
                          enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
        trainer.test(module.eval(), dataloaders=loader, verbose=False)
    return timer.seconds[-1]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=None, help="timed images per paper (after 1 warm-up; "
                                                                   "default 5, 1 with --quick)")
    parser.add_argument("--only", default=None, help="only cases whose name contains this")
    parser.add_argument("--quick", action="store_true", help="160×120 inputs, 1 timed image per paper")
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default benchmarks/results/…)")
    args = parser.parse_args(argv)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no "GPU available" lines per Trainer
    warnings.filterwarnings("ignore", message=".*(LeafSpec|litlogger|does not have many workers).*")
    images = args.images or (1 if args.quick else 5)
    w, h = (160, 120) if args.quick else (W, H)
    x, source = _image(w, h)
    env = harness.environment()
    print(f"threads {env['threads']}, allocator {env['allocator']}, load {env['load_average']}, input {source}")
    cases = {name: case for name, case in _cases(x).items() if not args.only or args.only in name}
    if not cases:
        parser.error(f"no case contains {args.only!r}")
    variants: dict[str, Callable[[], float]] = {
        name: (lambda module=module, batch=batch: _test_one(module, batch[0])) for name, (module, batch) in cases.items()}
    with harness.LoadWatch() as load:
        results = harness.interleave(variants, images, warmup=1, self_timed=True)
    baseline = next(iter(results))
    group = harness.comparison(results, baseline, load,
                               what=f"darkroom test, ms per {w}x{h} image (Trainer.test batch, batch 1, fp32)")
    print(harness.table(group, unit="s"))
    payload = {
        "environment": env, "load": load.record, "quick": args.quick,
        "settings": {"size": [w, h], "input": source, "images": images, "warmup": 1, "baseline": baseline,
                     "what": "darkroom test time per image (Trainer.test, batch 1, fp32, one warm-up image not "
                             "counted; one Trainer.test per image, papers interleaved)"},
        "comparisons": {"test": group},
    }
    harness.write_result("test_speed", payload, args.out)
    return payload


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for k in items[0]:
        values = [it[k] for it in items]
        out[k] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return out


if __name__ == "__main__":
    main()
