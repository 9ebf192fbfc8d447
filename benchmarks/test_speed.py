"""``test`` time per image at 1200×900 for each paper: the real test loop (``Trainer.test``), fp32, batch 1.

Each paper's LightningModule runs its own ``test_step`` — network, every test metric of that paper, the
per-image rows, the sample PNGs — on 1200×900 inputs. Inputs are a real low-light photo
(``../shared/data/lowlight/test/DICM/01.jpg``, resized bicubic to 1200×900) when present, else a smooth
synthetic image; the label / second source is a brightened copy. Weights are the official ones when
present (``../shared/data/weights``), else random: the time of a forward does not depend on the values.

    python benchmarks/test_speed.py             # all papers, 5 timed images each (+1 warm-up)
    python benchmarks/test_speed.py --images 3  # fewer

Prints a table and writes benchmarks/results/test_speed.json (min and median seconds per image).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
from lightning.pytorch import Callback, Trainer  # noqa: E402

from datamodules.image_io import load_tensor  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DARKROOM_SHARED_DATA", REPO.parent / "shared" / "data"))
OUT = Path(__file__).resolve().parent / "results" / "test_speed.json"
W, H = 1200, 900


class BatchTimer(Callback):
    """Wall-clock seconds of every test batch (``on_test_batch_start`` → ``on_test_batch_end``)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_test_batch_start(self, *args, **kwargs) -> None:
        self._t0 = time.perf_counter()

    def on_test_batch_end(self, *args, **kwargs) -> None:
        self.seconds.append(time.perf_counter() - self._t0)


def _image() -> tuple[torch.Tensor, str]:
    photo = SHARED / "lowlight" / "test" / "DICM" / "01.jpg"
    if photo.is_file():
        return load_tensor(photo, (W, H), "bicubic"), f"{photo} resized to {W}x{H}"
    yy, xx = torch.meshgrid(torch.linspace(0, 1, H), torch.linspace(0, 1, W), indexing="ij")
    img = torch.stack([0.2 * xx, 0.15 * yy, 0.1 * (xx + yy) / 2]) + 0.02 * torch.sin(40 * xx) * torch.cos(30 * yy)
    return img.clamp(0, 1), f"synthetic smooth {W}x{H}"


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5, help="timed images per paper (after 1 warm-up)")
    parser.add_argument("--only", default=None, help="only cases whose name contains this")
    args = parser.parse_args(argv)
    x, source = _image()
    load_before = os.getloadavg()[0]
    results = {}
    print(f"threads {torch.get_num_threads()}, allocator {os.environ.get('LD_PRELOAD') or 'glibc default'}, "
          f"load {os.getloadavg()[0]:.2f}, input {source}")
    for name, (module, batch) in _cases(x).items():
        if args.only and args.only not in name:
            continue
        items = [{**{k: v for k, v in batch[0].items()}, "name": f"img{i}"} for i in range(args.images + 1)]
        loader = torch.utils.data.DataLoader(items, batch_size=1, collate_fn=_collate)
        timer = BatchTimer()
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(accelerator="cpu", devices=1, logger=False, callbacks=[timer], default_root_dir=tmp,
                              enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
            trainer.test(module.eval(), dataloaders=loader, verbose=False)
        timed = timer.seconds[1:]
        results[name] = {"min_s": min(timed), "median_s": statistics.median(timed), "images": len(timed)}
        print(f"{name:90s} min {min(timed):7.3f} s  median {statistics.median(timed):7.3f} s")
    record = {
        "what": "darkroom test time per image (Trainer.test, batch 1, fp32, one warm-up image not counted)",
        "size": [W, H], "input": source, "results": results,
        "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "allocator": os.environ.get("LD_PRELOAD") or "glibc default",
        "load_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {OUT}")


def _collate(items: list[dict]) -> dict:
    out = {}
    for k in items[0]:
        values = [it[k] for it in items]
        out[k] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return out


if __name__ == "__main__":
    main()
