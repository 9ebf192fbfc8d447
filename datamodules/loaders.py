"""The DataLoader every Darkroom DataModule builds (one place for samplers, workers, pinning, clear errors)."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.samplers import ResumableRandomSampler, UnpaddedDistributedSampler


def make_loader(dataset: Dataset | None, owner: str, what: str, batch_size: int, shuffle: bool,
                num_workers: int) -> DataLoader:
    """A DataLoader over ``dataset`` with Darkroom's samplers (see :mod:`datamodules.samplers`).

    ``shuffle=True`` (training): :class:`ResumableRandomSampler`, whose order and worker seeds depend
    only on the seed and the epoch, so a resumed run continues the data order exactly.
    ``shuffle=False`` (evaluation): :class:`UnpaddedDistributedSampler`, so under DDP every sample is
    evaluated once. Workers are not persistent: each epoch's workers are seeded afresh from
    ``(seed, epoch)``, which a resumed run can reproduce; persistent workers would carry their RNG
    state across epochs.

    Raises:
        RuntimeError: ``dataset`` is None, i.e. ``setup()`` was not run for that stage (or its root is unset).
    """
    if dataset is None:
        raise RuntimeError(f"{owner}: {what} data is not set up; call setup() with its stage first "
                           f"(and give the {what} root)")
    generator = torch.Generator()
    sampler = (ResumableRandomSampler(dataset, loader_generator=generator) if shuffle
               else UnpaddedDistributedSampler(dataset))
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      generator=generator, pin_memory=torch.cuda.is_available(), drop_last=False)
