"""Multi-exposure stacks (one folder per scene) for DeepFuse and other exposure-fusion methods.

On-disk layout read (the layout of ``shared/data/exposure_stacks``, Kede Ma's MEF database and the
"DF_ICCV17_data" sequences)::

    <root>/<scene>/<any name>.<ext>      K ≥ 2 aligned exposures of one static scene, same size

``<ext>`` = jpg/jpeg/png/bmp/tif/tiff in any case. File names do **not** give the exposure order
(Tower ``under530 < mean530 < over530``, Cave ``cave4`` darkest … ``cave1`` brightest; digest
``../shared/papers/deepfuse.md`` §5), so each stack is ordered **dark → bright by mean luminance**
(BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` of the whole image; ties keep natural name order).
Hidden files (``.DS_Store``) are ignored; any other non-image file in a scene folder is an error.

Batches are dicts: ``{"sources": N×K×3×H×W float32 RGB in [0, 1] (dark → bright), "name": [scene, ...]}``.

* **train** (``train_root``): random ``crop_size``² crops, the same window for every exposure of a stack
  (``A.RandomCrop`` over all exposures, :mod:`datamodules.paired_transforms`; the position is drawn from a seed
  taken from torch's RNG, so it follows the DataLoader's per-worker seeding). ``exposures="extreme_pair"``
  (default) keeps the darkest and
  brightest exposure: the official code trains on pairs (its ``load_data.py`` feeds channels 0 and 2 of
  3-exposure patches, the middle exposure unused; digest §4). ``exposures="all"`` keeps every exposure
  (stacks in one batch must then have the same K, or ``batch_size`` must be 1). Official patch size:
  77×77 (``cv2.resize`` to 77 in ``load_data.py``; the authors cut their own patches, which were not
  released, so random crops are our substitute). No augmentation in the official code;
  ``flip=True`` adds random horizontal and vertical flips of the whole stack (ours, off by default; the ablation
  ``experiments/deepfuse/ablations/flip.yaml``).
* **val / test** (``val_root``, ``test_root``): whole stacks at native resolution, batch size 1, every
  exposure (``eval_exposures="all"``) or the extreme pair. ``eval_max_side`` optionally resizes so the
  longer side is at most that (the official ``Gen_Input.m`` resizes to ≤ 512 with MATLAB ``imresize``;
  here Pillow bicubic); default native.
* **predict** (``predict_root``): the user's stacks, same layout, native resolution, batch size 1.

Every stack is checked at :meth:`ExposureStackDataModule.setup` from the file headers: fewer than two
images, images of different sizes, a non-image or unreadable file, or (train) a stack smaller than the
crop raise :class:`~datamodules.image_io.DatasetLayoutError` / :class:`~datamodules.image_io.ImageReadError`
naming the folder or file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.base import DarkroomDataModule, Split
from datamodules.dataset_identity import describe_dataset
from datamodules.image_io import (
    DatasetLayoutError,
    load_tensor,
)
from datamodules.paired_transforms import paired_augmentation
from datamodules.stack_folders import ExposureStack, find_stacks
from imaging.stacks import luminance_order

__all__ = [
    "ExposureStack",
    "ExposureStackDataModule",
    "ExposureStackDataset",
    "find_stacks",
    "luminance_order",
    "select_exposures",
]

Exposures = Literal["extreme_pair", "all"]
def select_exposures(images: Tensor, exposures: Exposures) -> Tensor:
    """``"all"``: the stack as is; ``"extreme_pair"``: first and last (darkest, brightest of a sorted stack).

    Shapes: K×C×H×W (sorted dark → bright) → K×… or 2×….
    """
    if exposures == "all":
        return images
    if exposures == "extreme_pair":
        return images[[0, -1]]
    raise ValueError(f"exposures must be 'extreme_pair' or 'all', got {exposures!r}")


class ExposureStackDataset(Dataset):
    """Stacks as ``{"sources": K×3×H×W float32 in [0, 1], dark → bright, "name": scene}``.

    Args:
        stacks: validated stacks (:func:`find_stacks`).
        exposures: ``"extreme_pair"`` or ``"all"``.
        crop_size: side of a random square crop (the same window for all exposures); ``None`` = whole image.
        flip: random horizontal and vertical flips, each with probability ½ (applied to the whole stack).
        crops_per_stack: each stack appears this many times per epoch (a fresh random crop each time).
        max_side: resize (Pillow bicubic) so the longer side is at most this; ``None`` = native size.

    Crops and flips are one :func:`~datamodules.paired_transforms.paired_augmentation` (albumentations, seeded
    per sample from torch's RNG); with neither, albumentations is not called.
    """

    def __init__(
        self,
        stacks: Sequence[ExposureStack],
        exposures: Exposures = "all",
        crop_size: int | None = None,
        flip: bool = False,
        crops_per_stack: int = 1,
        max_side: int | None = None,
    ) -> None:
        select_exposures(torch.zeros(2, 1, 1, 1), exposures)  # validate the option
        self.stacks, self.exposures, self.crop_size = list(stacks), exposures, crop_size
        self.flip, self.crops_per_stack, self.max_side = flip, crops_per_stack, max_side
        self.transform = paired_augmentation(crop_size, flip=flip)

    @property
    def names(self) -> list[str]:
        """Scene names in dataset order (the ids of per-image results)."""
        return [s.name for s in self.stacks]

    def __len__(self) -> int:
        return len(self.stacks) * self.crops_per_stack

    def _size(self, stack: ExposureStack) -> tuple[int, int] | None:
        w, h = stack.size
        if self.max_side is None or max(w, h) <= self.max_side:
            return None
        s = self.max_side / max(w, h)
        return max(1, round(w * s)), max(1, round(h * s))

    def __getitem__(self, i: int) -> dict[str, Tensor | str]:
        stack = self.stacks[i % len(self.stacks)]
        size = self._size(stack)
        images = torch.stack([load_tensor(p, size, "bicubic") for p in stack.files])  # K×3×H×W
        images = select_exposures(images[luminance_order(images)], self.exposures)
        if self.transform is not None:
            images = self.transform.tensors(images)
        return {"sources": images.contiguous(), "name": stack.name}


class ExposureStackDataModule(DarkroomDataModule):
    """Exposure stacks (one folder per scene) for DeepFuse training and MEF-SSIM evaluation.

    Args:
        train_root: folder of scene folders for training (random crops).
        val_root: folder of scene folders for validation (whole stacks; ``None``: no validation).
        test_root: folder of scene folders for the test (whole stacks).
        predict_root: the user's stacks to fuse at native resolution.
        crop_size: training crop side; 77 = the official training patch size (``load_data.py``).
        batch_size: training batch size; 50 = official (``main.py``). Val/test/predict use 1.
        num_workers: DataLoader workers; persistent when > 0.
        exposures: training exposures, ``"extreme_pair"`` (darkest + brightest; official pairs) or ``"all"``.
        eval_exposures: the same for val/test/predict (``"all"``: the whole stack).
        flip: random horizontal/vertical flips in training (not in the official code; off).
        crops_per_stack: random crops per stack per epoch (the authors' patch count is not found).
        val_max_stacks: validation uses at most this many stacks (a fixed random subset drawn with ``seed``).
        eval_max_side: longer side of val/test/predict stacks after resizing (official ``Gen_Input.m``:
            512); ``None`` = native resolution.
        seed: seed of the validation subset.
        dataset_name: the test set's name in results and tables (e.g. ``mefb``); ``None`` = recognised from the
            count where the paper's is known (MEFB: 100 pairs), else ``custom`` (:mod:`datamodules.dataset_identity`).
    """

    def __init__(
        self,
        train_root: str | None = None,
        val_root: str | None = None,
        test_root: str | None = None,
        predict_root: str | None = None,
        crop_size: int = 77,
        batch_size: int = 50,
        num_workers: int = min(4, os.cpu_count() or 1),
        exposures: Exposures = "extreme_pair",
        eval_exposures: Exposures = "all",
        flip: bool = False,
        crops_per_stack: int = 1,
        val_max_stacks: int | None = 8,
        eval_max_side: int | None = None,
        seed: int = 0,
        dataset_name: str | None = None,
    ) -> None:
        super().__init__(batch_size, 1, num_workers)
        if crop_size < 1 or crops_per_stack < 1:
            raise ValueError(f"crop_size and crops_per_stack must be ≥ 1, got {crop_size}, {crops_per_stack}")
        for name, value in (("exposures", exposures), ("eval_exposures", eval_exposures)):
            if value not in ("extreme_pair", "all"):
                raise ValueError(f"{name} must be 'extreme_pair' or 'all', got {value!r}")
        if val_max_stacks is not None and val_max_stacks < 1:
            raise ValueError(f"val_max_stacks must be ≥ 1 or None, got {val_max_stacks}")
        if eval_max_side is not None and eval_max_side < 11:
            raise ValueError(f"eval_max_side must be ≥ 11 (MEF-SSIM windows) or None, got {eval_max_side}")
        self.save_hyperparameters()
        self.train_root, self.val_root, self.test_root, self.predict_root = train_root, val_root, test_root, predict_root
        self.crop_size, self.exposures, self.eval_exposures, self.flip = crop_size, exposures, eval_exposures, flip
        self.crops_per_stack, self.val_max_stacks, self.eval_max_side, self.seed = (
            crops_per_stack, val_max_stacks, eval_max_side, seed)
        self.dataset_name = dataset_name

    def _train_stacks(self) -> list[ExposureStack]:
        stacks = find_stacks(self.train_root, "train_root")
        small = [s for s in stacks if min(s.size) < self.crop_size]
        if small:
            s = small[0]
            raise DatasetLayoutError(
                f"{s.folder}: exposures are {s.size[0]}x{s.size[1]}, smaller than crop_size={self.crop_size} "
                f"({len(small)} such stack(s)); lower crop_size or remove the stack"
            )
        counts = {len(s.files) for s in stacks}
        if self.exposures == "all" and self.batch_size > 1 and len(counts) > 1:
            raise DatasetLayoutError(
                f"{self.train_root}: exposures='all' batches stacks together, but they hold different numbers "
                f"of exposures {sorted(counts)}; use exposures='extreme_pair' or batch_size=1"
            )
        return stacks

    def _eval_set(self, root: str | None, argument: str, max_stacks: int | None) -> ExposureStackDataset:
        stacks = find_stacks(root, argument)
        if max_stacks is not None and len(stacks) > max_stacks:
            keep = np.sort(np.random.default_rng(self.seed).choice(len(stacks), size=max_stacks, replace=False))
            stacks = [stacks[int(i)] for i in keep]
        return ExposureStackDataset(stacks, self.eval_exposures, max_side=self.eval_max_side)

    def build_dataset(self, split: Split) -> ExposureStackDataset:
        if split == "train":
            return ExposureStackDataset(self._train_stacks(), self.exposures, self.crop_size, self.flip,
                                        self.crops_per_stack)
        return self._eval_set(self.split_root(split), f"{split}_root", self.val_max_stacks if split == "val" else None)

    def describe_split(self, split: Split, dataset: ExposureStackDataset) -> dict:
        stacks = dataset.stacks
        files = [f for s in stacks for f in s.files]
        unit = "pairs" if self.eval_exposures == "extreme_pair" or all(len(s.files) == 2 for s in stacks) else "stacks"
        protocol = {"exposures": self.eval_exposures, "resize_max_side": self.eval_max_side,
                    "colour": "Y (BT.601 studio range) for MEF-SSIM", "range": "[0, 255]"}
        return describe_dataset(files, self.split_root(split), len(stacks), unit, protocol, candidates=("mefb",),
                                configured=self.dataset_name, layout="stacks")
