"""DPED (Ignatov et al., ICCV 2017) phone/DSLR patch pairs, read from the dataset's real on-disk layout.

Layout (official ``load_dataset.py`` / ``test_model.py`` of aiff22/DPED @ ebb0131; digest
``../shared/papers/dped.md`` §5), ``<phone>`` ∈ {``iphone``, ``sony``, ``blackberry``} (or any name given to
``darkroom prepare dped --phone``)::

    <root>/<phone>/training_data/<phone>/<i>.jpg      phone patch i (100×100 RGB)
    <root>/<phone>/training_data/canon/<i>.jpg        the aligned Canon 70D patch i
    <root>/<phone>/test_data/patches/<phone>/<i>.jpg  test patches, same convention
    <root>/<phone>/test_data/patches/canon/<i>.jpg
    <root>/<phone>/test_data/full_size_test_images/*.jpg   whole phone photos (no Canon counterpart)

``i = 0 … N−1`` must be contiguous and identical in the phone and Canon folders: the official loader reads
``str(i) + '.jpg'`` for ``i < N`` (N = number of files), so a gap or an unmatched file breaks it.
:func:`experiments.prepare_dped.prepare_dped` (``darkroom prepare dped``) writes exactly this layout from raw
phone/DSLR photo pairs.

Splits:

* **train**: every training pair (or a fixed random ``train_subset``), shuffled each epoch. The official
  script instead loads a random 30,000-pair subset into RAM, re-draws it every 1,000 iterations and samples
  batches with replacement from it (digest §4); uniform shuffling over all pairs is our equivalent.
* **val**: a fixed random subset of ``val_max_patches`` test patches (``None`` = all of them, as the official
  script evaluates every 1,000 iterations; ``0`` = no validation).
* **test**: all test patches.
* **predict**: the full-size test photos (or any folder ``predict_root``), one image per batch at native
  resolution. The official ``test_model.py`` resizes each photo to the phone's native resolution first; the
  released full-size images already have it, so we do not resize.

Batches are dicts: ``{"input": N×3×100×100 phone, "target": N×3×100×100 Canon, "name": list[str]}`` (name = the
patch index) for train/val/test, ``{"input": 1×3×H×W, "name"}`` for predict; float32 RGB in [0, 1]. The official
loader stores patches as ``float16(x)/255`` (a quantisation we skip).

Augmentation (``augment=True``; the official code uses none, so the default is off; the ablation
``experiments/dped/ablations/augment.yaml``): one of the 8 flips/90° rotations (``A.D4``,
:mod:`datamodules.paired_transforms`), drawn per pair and applied identically to the phone and the Canon patch.

Errors (at :meth:`DPEDDataModule.setup`): missing folders, a count mismatch between the phone and Canon
folders, a gap in the index, image files with non-numeric names, unreadable files or patches of the wrong
size raise :class:`~datamodules.image_io.DatasetLayoutError` / :class:`~datamodules.image_io.ImageReadError`
naming the path and what was expected.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.base import DarkroomDataModule, Split
from datamodules.dataset_identity import KNOWN_DATASETS, describe_dataset
from datamodules.image_datasets import ImageFileDataset
from datamodules.image_io import (
    DatasetLayoutError,
    RootNotSetError,
    check_image_header,
    is_image,
    load_tensor,
    predict_images,
)
from datamodules.paired_transforms import paired_augmentation

__all__ = ["DPED_LAYOUT", "DPEDDataModule", "DPEDPatchDataset", "find_patch_pairs"]

DPED_LAYOUT = (
    "<root>/<phone>/training_data/{<phone>,canon}/<i>.jpg, <root>/<phone>/test_data/patches/{<phone>,canon}/<i>.jpg "
    "and <root>/<phone>/test_data/full_size_test_images/*.jpg with i = 0..N-1 contiguous"
)
DSLR_FOLDER = "canon"
_INDEX_NAME = re.compile(r"^(\d+)\.jpg$")


def _indices(folder: Path) -> list[int]:
    """Patch indices of ``folder/<i>.jpg``; an image file with another name is a layout error."""
    if not folder.is_dir():
        raise DatasetLayoutError(f"{folder}: folder not found (expected DPED layout {DPED_LAYOUT})")
    out: list[int] = []
    for p in folder.iterdir():
        if not p.is_file() or p.name.startswith("."):
            continue
        m = _INDEX_NAME.match(p.name)
        if m:
            out.append(int(m.group(1)))
        elif is_image(p):
            raise DatasetLayoutError(
                f"{p}: unexpected file name (expected patches named <i>.jpg, i = 0..N-1, as the official loader "
                "reads them)"
            )
    if not out:
        raise DatasetLayoutError(f"{folder}: no patches <i>.jpg found (expected DPED layout {DPED_LAYOUT})")
    return sorted(out)


def find_patch_pairs(split_dir: str | Path, phone: str) -> int:
    """Check ``split_dir/{phone,canon}/<i>.jpg`` and return the number of pairs N.

    Raises:
        DatasetLayoutError: a folder is missing or empty, the two folders hold different numbers of patches, or
            the index has a gap (the message names the first missing file).
    """
    split_dir = Path(split_dir)
    phone_dir, dslr_dir = split_dir / phone, split_dir / DSLR_FOLDER
    a, b = _indices(phone_dir), _indices(dslr_dir)
    if len(a) != len(b):
        only = sorted(set(a) ^ set(b))
        where = [f"{phone_dir if i in set(a) else dslr_dir}/{i}.jpg" for i in only[:5]]
        raise DatasetLayoutError(
            f"{split_dir}: {len(a)} phone patches in {phone_dir} but {len(b)} Canon patches in {dslr_dir} "
            f"(expected the same index in both; without a partner: {', '.join(where)})"
        )
    for folder, idx in ((phone_dir, a), (dslr_dir, b)):
        if idx[-1] != len(idx) - 1:
            missing = next(i for i, v in enumerate(idx) if i != v)
            raise DatasetLayoutError(
                f"{folder / f'{missing}.jpg'}: missing — patch indices must be contiguous 0..{len(idx) - 1} "
                f"(found {len(idx)} files, largest index {idx[-1]}); the official loader stops at a gap"
            )
    return len(a)


class DPEDPatchDataset(Dataset):
    """Patch pairs ``{"input": phone 3×S×S, "target": Canon 3×S×S, "name": str(i)}`` of one DPED split folder.

    Args:
        split_dir: ``…/training_data`` or ``…/test_data/patches``.
        phone: phone folder name.
        indices: the patch indices to serve.
        patch_size: expected side S (DPED: 100); a file of another size raises :class:`DatasetLayoutError`.
        augment: one of the 8 flips/90° rotations, drawn per pair and applied to both patches (``A.D4`` through
            :func:`~datamodules.paired_transforms.paired_augmentation`, seeded per sample from torch's RNG, which
            the DataLoader seeds per worker from ``(seed, epoch)``); off: albumentations is not called.
    """

    def __init__(self, split_dir: str | Path, phone: str, indices: Sequence[int], patch_size: int = 100,
                 augment: bool = False) -> None:
        self.phone_dir = Path(split_dir) / phone
        self.dslr_dir = Path(split_dir) / DSLR_FOLDER
        self.indices = [int(i) for i in indices]
        self.patch_size, self.augment = patch_size, augment
        self.transform = paired_augmentation(dihedral=augment)

    @property
    def names(self) -> list[str]:
        """Patch ids in dataset order (the ids of per-image results)."""
        return [str(i) for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def _load(self, path: Path) -> torch.Tensor:
        t = load_tensor(path)
        if tuple(t.shape[1:]) != (self.patch_size, self.patch_size):
            raise DatasetLayoutError(
                f"{path}: patch of size {t.shape[2]}×{t.shape[1]} (expected {self.patch_size}×{self.patch_size})"
            )
        return t

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | str]:
        idx = self.indices[i]
        x = self._load(self.phone_dir / f"{idx}.jpg")
        y = self._load(self.dslr_dir / f"{idx}.jpg")
        if self.transform is not None:
            x, y = self.transform.tensors(torch.stack([x, y]))
        return {"input": x, "target": y, "name": str(idx)}


class DPEDDataModule(DarkroomDataModule):
    """DPED patches of one phone for training/validation/test, full-size photos for predict.

    Args:
        root: the DPED root holding ``<phone>/training_data`` and ``<phone>/test_data`` (see module docstring).
        phone: ``"iphone"``, ``"sony"``, ``"blackberry"`` (or another folder name written by ``prepare dped``).
        batch_size: training batch (official 50).
        eval_batch_size: validation/test batch (``None`` = ``batch_size``).
        num_workers: DataLoader workers; persistent when > 0.
        train_subset: use a fixed random subset of this many training pairs (``None`` = all).
        val_max_patches: validation on a fixed random subset of this many test patches (``None`` = all, as the
            official script; ``0`` = no validation).
        predict_root: folder of photos to enhance (``None`` = ``<root>/<phone>/test_data/full_size_test_images``).
        augment: identical random flip/rot90 on both patches of a pair (official: none → False).
        patch_size: expected patch side (DPED: 100; the discriminator's fc layer is sized for it).
        check_all_files: read the header of every patch at setup (slow for the 160K-pair sets); otherwise the
            first, the last and ``check_sample`` random pairs of each split are checked, and every file is
            checked again when it is read.
        check_sample: number of random pairs checked per split when ``check_all_files`` is False.
        seed: seed of the subsets and the header sample.
        dataset_name: the test set's name in results and tables (``dped_<phone>_patches`` for the official test
            patches); ``None`` = ``custom``: the paper's patch count is not found, so the layout alone cannot
            identify the set (:mod:`datamodules.dataset_identity`).
    """

    def __init__(
        self,
        root: str | None = None,
        phone: str = "iphone",
        batch_size: int = 50,
        eval_batch_size: int | None = None,
        num_workers: int = min(4, os.cpu_count() or 1),
        train_subset: int | None = None,
        val_max_patches: int | None = None,
        predict_root: str | None = None,
        augment: bool = False,
        patch_size: int = 100,
        check_all_files: bool = False,
        check_sample: int = 32,
        seed: int = 0,
        dataset_name: str | None = None,
    ) -> None:
        super().__init__(batch_size, eval_batch_size or batch_size, num_workers)
        if not phone or any(c in phone for c in "/\\") or phone in (".", ".."):
            raise ValueError(f"phone must be a plain folder name such as 'iphone', got {phone!r}")
        for name, value, low in (("patch_size", patch_size, 1), ("check_sample", check_sample, 0)):
            if value < low:
                raise ValueError(f"{name} must be ≥ {low}, got {value}")
        for name, value, low in (("train_subset", train_subset, 1), ("val_max_patches", val_max_patches, 0)):
            if value is not None and value < low:
                raise ValueError(f"{name} must be ≥ {low} or None, got {value}")
        self.save_hyperparameters()
        self.root, self.phone = root, phone
        self.train_subset, self.val_max_patches = train_subset, val_max_patches
        self.augment, self.patch_size, self.seed = augment, patch_size, seed
        self.check_all_files, self.check_sample = check_all_files, check_sample
        self.dataset_name = dataset_name
        if root is not None:
            phone_dir = Path(root).expanduser() / phone
            self.train_root = str(phone_dir / "training_data")
            self.test_root = str(phone_dir / "test_data" / "patches")
            self.val_root = self.test_root if val_max_patches != 0 else None
        self.predict_root = predict_root if predict_root is not None or root is None else str(
            Path(root).expanduser() / phone / "test_data" / "full_size_test_images")

    # ----------------------------------------------------------------------------------- discovery
    def phone_root(self) -> Path:
        """``<root>/<phone>``, checked to exist."""
        if self.root is None:
            raise RootNotSetError("root", f"a folder with the layout {DPED_LAYOUT}")
        root = Path(self.root).expanduser()
        path = root / self.phone
        if not path.is_dir():
            hint = ""
            if (root / "training_data").is_dir():
                hint = f"; {root} itself looks like a phone folder: set root to {root.parent} and phone to {root.name!r}"
            raise DatasetLayoutError(f"{path}: phone folder not found (expected {DPED_LAYOUT}){hint}")
        return path

    def _check_sizes(self, split_dir: Path, indices: Sequence[int]) -> None:
        if self.check_all_files:
            chosen = list(indices)
        else:
            rng = np.random.default_rng(self.seed)
            extra = rng.choice(len(indices), size=min(self.check_sample, len(indices)), replace=False)
            chosen = sorted({indices[0], indices[-1], *(indices[int(j)] for j in extra)})
        s = self.patch_size
        for i in chosen:
            for folder in (self.phone, DSLR_FOLDER):
                path = split_dir / folder / f"{i}.jpg"
                w, h = check_image_header(path)
                if (w, h) != (s, s):
                    raise DatasetLayoutError(f"{path}: patch of size {w}×{h} (expected {s}×{s})")

    def _split(self, rel: str, limit: int | None, augment: bool) -> DPEDPatchDataset:
        split_dir = self.phone_root() / rel
        if not split_dir.is_dir():
            raise DatasetLayoutError(f"{split_dir}: folder not found (expected DPED layout {DPED_LAYOUT})")
        n = find_patch_pairs(split_dir, self.phone)
        indices = list(range(n))
        if limit is not None and limit < n:
            indices = sorted(int(i) for i in np.random.default_rng(self.seed).choice(n, size=limit, replace=False))
        self._check_sizes(split_dir, indices)
        return DPEDPatchDataset(split_dir, self.phone, indices, self.patch_size, augment)

    def build_dataset(self, split: Split) -> Dataset:
        if split == "train":
            return self._split("training_data", self.train_subset, self.augment)
        if split in ("val", "test"):
            return self._split("test_data/patches", self.val_max_patches if split == "val" else None, False)
        if self.hparams.predict_root is None:
            self.phone_root()  # the default folder: raises naming the unset root or the missing phone folder
        files, names, skipped = predict_images(Path(self.predict_root), what="full-size phone photos to enhance",
                                               skip_bad=self.predict_skip_bad)  # any depth
        dataset = ImageFileDataset(files, names, None)
        dataset.skipped = skipped  # (file, reason) of unreadable files left out (--run.skip_bad)
        return dataset

    def roots(self) -> dict[str, str]:
        """``root`` (the DPED folder, as given) and the split folders derived from it."""
        return {**({"root": str(self.root)} if self.root is not None else {}), **super().roots()}

    def describe_split(self, split: Split, ds: DPEDPatchDataset) -> dict:
        files = [d / f"{i}.jpg" for i in ds.indices for d in (ds.phone_dir, ds.dslr_dir)]
        protocol = {"phone": self.phone, "patch_size": self.patch_size, "colour": "rgb",
                    "range": "[0, 1] unclipped output", "eval_batch_size": self.eval_batch_size}
        known = tuple(n for n in KNOWN_DATASETS if n == f"dped_{self.phone}_patches")
        return describe_dataset(files, ds.phone_dir.parent, len(ds), "patches", protocol, candidates=known,
                                configured=self.dataset_name, layout="dped_patches")

    def summary(self) -> str:
        """Counts and folders of the splits that are set up."""
        lines = [f"DPEDDataModule ({self.phone}, root {self.root})"]
        for label, ds in (("train", self.train_set), ("val", self.val_set), ("test", self.test_set)):
            if ds is not None:
                lines.append(f"  {label + ':':7} {len(ds)} pairs from {ds.phone_dir.parent}")
        if self.predict_set is not None:
            lines.append(f"  predict: {len(self.predict_set)} full-size images")
        return "\n".join(lines)
