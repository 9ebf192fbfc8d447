"""The DataLoader every Darkroom DataModule builds (one place for workers, pinning, clear errors)."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset


def make_loader(dataset: Dataset | None, owner: str, what: str, batch_size: int, shuffle: bool,
                num_workers: int) -> DataLoader:
    """A DataLoader over ``dataset``; Lightning adds the DistributedSampler under DDP.

    Raises:
        RuntimeError: ``dataset`` is None, i.e. ``setup()`` was not run for that stage (or its root is unset).
    """
    if dataset is None:
        raise RuntimeError(f"{owner}: {what} data is not set up; call setup() with its stage first "
                           f"(and give the {what} root)")
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      persistent_workers=num_workers > 0, pin_memory=torch.cuda.is_available(), drop_last=False)
