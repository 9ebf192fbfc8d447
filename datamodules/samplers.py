"""Samplers that make training resumable and distributed evaluation exact.

Both subclass :class:`torch.utils.data.DistributedSampler`, so Lightning keeps them under DDP instead of
wrapping the loader in its own (padded) sampler; with one process they behave as plain samplers.

* :class:`ResumableRandomSampler` (training): the permutation of epoch ``e`` is a pure function of
  ``(seed, e)`` (not of the global RNG), the loader's worker seeds are re-drawn from the same pair at
  every :meth:`set_epoch`, and :attr:`skip` drops the first samples of the epoch, so a run resumed from
  a checkpoint sees exactly the samples an uninterrupted run would have seen, in the same order.
* :class:`UnpaddedDistributedSampler` (validation, test, predict): rank ``r`` of ``W`` takes indices
  ``r, r + W, r + 2W, …`` with no padding, so every sample is evaluated exactly once (PyTorch's
  ``DistributedSampler`` repeats samples until the count divides by ``W``, which double-counts them in
  the metrics).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def global_seed() -> int:
    """The seed of ``seed_everything`` (``PL_GLOBAL_SEED``), else 0."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


class ResumableRandomSampler(DistributedSampler):
    """Shuffled indices; epoch ``e`` uses ``torch.randperm(n, generator=seed + e)`` (PyTorch's DistributedSampler rule).

    Args:
        dataset: the training dataset (length ``n``).
        seed: base seed (default: the ``seed_everything`` seed).
        loader_generator: the ``generator`` of the DataLoader that uses this sampler; it is re-seeded
            with ``seed + e`` at :meth:`set_epoch`, which fixes the workers' base seed, so random
            augmentation in the workers is a function of the epoch too.

    Attributes:
        skip: samples of this rank to drop from the start of the current epoch (set on a mid-epoch resume;
            it applies to the next iteration only).
    """

    def __init__(self, dataset: Dataset, seed: int | None = None,
                 loader_generator: torch.Generator | None = None) -> None:
        world, rank = _world()
        super().__init__(dataset, num_replicas=world, rank=rank, shuffle=True,
                         seed=global_seed() if seed is None else seed, drop_last=False)
        self.loader_generator = loader_generator
        self.skip = 0
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        if self.loader_generator is not None:
            self.loader_generator.manual_seed(self.seed + epoch)

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        skip, self.skip = self.skip, 0
        return iter(indices[skip:])


class UnpaddedDistributedSampler(DistributedSampler):
    """In-order indices ``rank, rank + W, …`` of the dataset, each sample on exactly one rank (no padding)."""

    def __init__(self, dataset: Dataset) -> None:
        world, rank = _world()
        if len(dataset) < world:  # type: ignore[arg-type]
            # a rank without a batch skips its loop while the others wait for it in the metric sync
            raise ValueError(f"{len(dataset)} evaluation samples on {world} processes: each process needs at "  # type: ignore[arg-type]
                             f"least one; use --trainer.devices {len(dataset)} or fewer")  # type: ignore[arg-type]
        super().__init__(dataset, num_replicas=world, rank=rank, shuffle=False, drop_last=False)
        self.num_samples = len(range(rank, len(dataset), world))  # type: ignore[arg-type]
        self.total_size = len(dataset)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))
