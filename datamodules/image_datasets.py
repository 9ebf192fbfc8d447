"""Datasets of image files that any paper's DataModule uses: single images (unpaired test sets, predict) and
(input, target) pairs (paired test sets, DPED's patches)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from datamodules.image_io import DatasetLayoutError, load_tensor

__all__ = ["ImageFileDataset", "PairDataset"]


class ImageFileDataset(Dataset):
    """Single images: ``{"input": 3×H×W float32 in [0, 1], "name": str}`` (resized when ``size`` is given),
    plus ``"group": str`` when ``groups`` are given."""

    def __init__(self, files: Sequence[Path], names: Sequence[str], size: tuple[int, int] | None = None,
                 resample: str = "lanczos", groups: Sequence[str] | None = None) -> None:
        self.files, self.names, self.size, self.resample = list(files), list(names), size, resample
        self.groups = list(groups) if groups is not None else None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | str]:
        item: dict[str, torch.Tensor | str] = {"input": load_tensor(self.files[i], self.size, self.resample),
                                               "name": self.names[i]}
        if self.groups is not None:
            item["group"] = self.groups[i]
        return item


class PairDataset(Dataset):
    """``{"input", "target": 3×H×W float32 in [0, 1], "name"}`` from ``(input file, target file)`` pairs."""

    def __init__(self, pairs: Sequence[tuple[Path, Path]], names: Sequence[str], size: tuple[int, int] | None = None,
                 resample: str = "bicubic") -> None:
        self.pairs, self.names, self.size, self.resample = list(pairs), list(names), size, resample

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | str]:
        src, tgt = self.pairs[i]
        x = load_tensor(src, self.size, self.resample)
        y = load_tensor(tgt, self.size, self.resample)
        if x.shape != y.shape:
            raise DatasetLayoutError(
                f"{src}: size {tuple(x.shape[1:])} differs from its label {tgt} {tuple(y.shape[1:])} "
                "(expected equal sizes, or set eval_size to resize both)"
            )
        return {"input": x, "target": y, "name": self.names[i]}
