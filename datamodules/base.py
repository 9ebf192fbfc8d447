"""The contract every Darkroom DataModule keeps, and its plumbing written once: :class:`DarkroomDataModule`.

A DataModule has four splits, ``train``, ``val``, ``test`` and ``predict``, each read from a root folder. A
subclass says where each root is (:meth:`~DarkroomDataModule.split_root`), how to build a split's dataset
(:meth:`~DarkroomDataModule.build_dataset`) and what its test set is (:meth:`~DarkroomDataModule.describe_split`);
this class does the rest: which splits a Lightning stage sets up, the loaders (:func:`datamodules.loaders.make_loader`),
whether there is validation, and the ``dataset`` block of ``results.json``. The ``darkroom`` command and the results
writer ask these methods; they never read a DataModule's argument names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import lightning as L
from torch.utils.data import DataLoader, Dataset

from datamodules.loaders import make_loader

Split = Literal["train", "val", "test", "predict"]
SPLITS: tuple[Split, ...] = ("train", "val", "test", "predict")

# the splits a Lightning stage needs (set up even without a root, so that the dataset names the missing root), and
# those it sets up only when their root is configured; ``None`` (Lightning's "all") sets up every configured split
_STAGE_SPLITS: dict[str | None, tuple[tuple[Split, ...], tuple[Split, ...]]] = {
    "fit": (("train",), ("val",)),
    "validate": (("val",), ()),
    "test": (("test",), ()),
    "predict": (("predict",), ()),
    None: ((), SPLITS),
}
_LOADER_NAMES = {"train": "train", "val": "validation", "test": "test", "predict": "predict"}


class DarkroomDataModule(L.LightningDataModule):
    """Base of the four papers' DataModules: split roots, stage dispatch, loaders, ``has_validation``, ``describe``.

    Subclasses implement :meth:`build_dataset` and :meth:`describe_split`, and keep their roots in
    ``train_root`` / ``val_root`` / ``test_root`` / ``predict_root`` (or override :meth:`split_root`). After
    ``setup(stage)`` the datasets are ``train_set``, ``val_set``, ``test_set``, ``predict_set``.

    Args:
        batch_size: training batch size.
        eval_batch_size: validation/test batch size (predict always uses 1: native sizes differ).
        num_workers: DataLoader workers (see :func:`datamodules.loaders.make_loader`).
    """

    def __init__(self, batch_size: int, eval_batch_size: int = 1, num_workers: int = 0) -> None:
        super().__init__()
        for name, value, low in (("batch_size", batch_size, 1), ("eval_batch_size", eval_batch_size, 1),
                                 ("num_workers", num_workers, 0)):
            if value < low:
                raise ValueError(f"{name} must be ≥ {low}, got {value}")
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.train_root: str | None = None
        self.val_root: str | None = None
        self.test_root: str | None = None
        self.predict_root: str | None = None
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.predict_set: Dataset | None = None
        #: predict: report and leave out files that cannot be decoded (``--run.skip_bad``) instead of stopping
        self.predict_skip_bad = False

    # -- the contract ------------------------------------------------------------------------------
    def split_root(self, split: Split) -> str | Path | None:
        """The root folder of ``split``, or ``None`` when that split is not configured."""
        return getattr(self, f"{split}_root")

    def build_dataset(self, split: Split) -> Dataset:
        """Find and check the files of ``split`` and return its dataset.

        Raises:
            ValueError / :class:`~datamodules.image_io.DatasetLayoutError`: the root is unset or not in the expected
                layout; the message names the argument, the folder and the layout expected.
        """
        raise NotImplementedError

    def describe_split(self, split: Split, dataset: Dataset) -> dict:
        """The ``dataset`` block of ``results.json`` for ``dataset`` (see :mod:`datamodules.dataset_identity`)."""
        raise NotImplementedError

    def batch_size_of(self, split: Split, dataset: Dataset) -> int:
        """Batch size of ``split``: ``batch_size`` for training, ``eval_batch_size`` for val/test, 1 for predict."""
        return {"train": self.batch_size, "predict": 1}.get(split, self.eval_batch_size)

    # -- derived, written once ---------------------------------------------------------------------
    @property
    def has_validation(self) -> bool:
        """Whether ``fit`` validates (the ``darkroom`` command then keeps the best checkpoint by the monitor)."""
        return self.split_root("val") is not None

    def roots(self) -> dict[str, str]:
        """The configured data folders by argument name (``{"test_root": …}``): ``results.json``'s ``dataset_root``."""
        return {f"{s}_root": str(self.split_root(s)) for s in SPLITS if self.configured(s)}

    def configured(self, split: Split) -> bool:
        return self.split_root(split) is not None

    def dataset(self, split: Split) -> Dataset:
        """The set-up dataset of ``split``, built now if ``setup`` has not built it."""
        ds = getattr(self, f"{split}_set")
        if ds is None:
            ds = self.build_dataset(split)
            setattr(self, f"{split}_set", ds)
        return ds

    def setup(self, stage: str | None = None) -> None:
        """Find and check the files of ``stage`` ("fit", "validate", "test", "predict"; ``None``: every configured
        split). A stage's own split is set up even without a root, so that the error names the missing argument;
        ``fit`` validates only when a validation root is configured."""
        if stage not in _STAGE_SPLITS:
            raise ValueError(f"{type(self).__name__}.setup: unknown stage {stage!r}")
        required, optional = _STAGE_SPLITS[stage]
        for split in required + tuple(s for s in optional if self.configured(s)):
            setattr(self, f"{split}_set", self.build_dataset(split))

    def _loader(self, split: Split, shuffle: bool = False) -> DataLoader:
        ds = getattr(self, f"{split}_set")
        batch = self.batch_size_of(split, ds) if ds is not None else 1
        return make_loader(ds, type(self).__name__, _LOADER_NAMES[split], batch, shuffle, self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        if not self.has_validation:
            return []  # no validation data: Lightning skips the validation loop
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")

    def describe(self, stage: str = "test") -> dict | None:
        """The ``dataset`` block of ``results.json`` for the ``test`` split (``None`` for other stages or without a
        test root): name, root, count, file-list hash and protocol (:mod:`datamodules.dataset_identity`)."""
        if stage != "test" or not self.configured("test"):
            return None
        return self.describe_split("test", self.dataset("test"))
