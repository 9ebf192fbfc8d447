"""The fits' data: each paper's DataModule on synthetic files in the real layout, drawn once into a few batches
that are then cycled from (pinned) memory."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from benchmarks.gpu.recipes import fit_sizes
from benchmarks.gpu.run import Run


def synthetic_batches(run: Run, paper: str, k: int) -> tuple[list[dict], dict[str, Any]]:
    """``k`` training batches from the paper's DataModule on synthetic files (written once per run)."""
    from datamodules.dped import DPEDDataModule
    from datamodules.exposure_stacks import ExposureStackDataModule
    from datamodules.fusion_pairs import FusionPairDataModule
    from datamodules.sice import SICEDataModule

    sizes = fit_sizes(paper, run.dry)
    side, bs, w = sizes["side"], sizes["batch_size"], run.work
    workers = 0 if run.dry else min(8, os.cpu_count() or 1)  # only to draw the batches once
    if paper in ("zero_dce", "zero_dce_pp"):
        from datamodules.synthetic.sice import write_sice

        root = w / "sice"
        if not root.exists():
            write_sice(root, n_train=1 if run.dry else 2, n_test=1, size=(64, 48) if run.dry else (256, 192), seed=0)
        dm = SICEDataModule(train_root=str(root / "Dataset_Part1"), image_size=side, batch_size=bs,
                            num_workers=workers)
        source = "datamodules.synthetic.sice.write_sice → SICEDataModule (Part1 layout)"
    elif paper == "deepfuse":
        from datamodules.synthetic.exposure_stacks import write_exposure_stacks

        root = w / "exposure_stacks"
        if not root.exists():
            write_exposure_stacks(root, n_train=2, n_test=1, size=(48, 36) if run.dry else (160, 120), seed=0)
        dm = ExposureStackDataModule(train_root=str(root / "train"), crop_size=side, batch_size=bs, num_workers=workers,
                                     exposures="extreme_pair", crops_per_stack=4 if run.dry else 25)
        source = "datamodules.synthetic.exposure_stacks → ExposureStackDataModule (extreme pairs)"
    elif paper == "dped":
        from datamodules.synthetic.dped_pairs import write_phone_dslr_pairs
        from experiments.prepare_dped import prepare_dped

        root = w / "dped"
        if not root.exists():
            raw = write_phone_dslr_pairs(w / "dped_raw", n_pairs=3 if run.dry else 4, size=(480, 360), seed=0)
            prepare_dped(raw / "phone", raw / "dslr", root, "iphone", n_full_test=1, test_fraction=0.34,
                         workers=1 if run.dry else min(8, os.cpu_count() or 1), progress=False, patch_size=side,
                         seed=0)
        dm = DPEDDataModule(root=str(root), phone="iphone", batch_size=bs, num_workers=workers, val_max_patches=0,
                            patch_size=side)
        source = "datamodules.synthetic.dped_pairs + experiments.prepare_dped.prepare_dped → DPEDDataModule"
    else:
        from datamodules.synthetic.fusion_pairs import write_multi_focus

        root = w / "multi_focus"
        if not root.exists():
            write_multi_focus(root, n_train=2 if run.dry else 4, n_test=1, size=(48, 48) if run.dry else (288, 288),
                              seed=0)
        dm = FusionPairDataModule(task="mfif", layout="folders", train_root=str(root / "train"), crop_size=side,
                                  batch_size=bs, num_workers=workers)
        source = "datamodules.synthetic.fusion_pairs.write_multi_focus → FusionPairDataModule (mfif, folders)"
    dm.setup("fit")
    batches = _rebatch(dm.train_dataloader, bs, k)
    key = "sources" if "sources" in batches[0] else "input"
    shapes = {name: list(v.shape) for name, v in batches[0].items() if hasattr(v, "shape")}
    return batches, {"source": source, "batch_size": bs, "side": side, "shapes": shapes, "samples_key": key,
                     "distinct_batches": len(batches)}


def _rebatch(make_loader: Callable[[], Any], batch_size: int, k: int) -> list[dict]:
    """``k`` batches of exactly ``batch_size`` samples: the DataModule's batches concatenated (over as many passes of
    its loader as the small synthetic set needs)."""
    import torch

    parts: list[dict] = []
    have = 0
    for _ in range(1000):
        for b in make_loader():
            parts.append(b)
            have += len(next(iter(v for v in b.values() if isinstance(v, torch.Tensor))))
            if have >= batch_size * k:
                break
        if have >= batch_size * k:
            break
    merged = {key: (torch.cat([p[key] for p in parts]) if isinstance(parts[0][key], torch.Tensor)
                    else [x for p in parts for x in p[key]]) for key in parts[0]}
    out = []
    for i in range(k):
        sl = slice(i * batch_size, (i + 1) * batch_size)
        b = {key: v[sl] for key, v in merged.items()}
        out.append({key: (v.contiguous().pin_memory() if isinstance(v, torch.Tensor) and torch.cuda.is_available()
                          else v) for key, v in b.items()})
    return out


def cached_loader(batches: list[dict], length: int) -> Any:
    """A DataLoader that cycles ``batches`` (already collated, pinned on CUDA) for ``length`` steps."""
    from torch.utils.data import DataLoader, Dataset

    class Cycle(Dataset):
        def __len__(self) -> int:
            return length

        def __getitem__(self, i: int) -> dict:
            return batches[i % len(batches)]

    return DataLoader(Cycle(), batch_size=None, shuffle=False, num_workers=0)
