"""Identical random crops, flips and 90° rotations of several aligned images, through albumentations.

The one place where the paired datasets crop and augment: an exposure stack
(:class:`~datamodules.exposure_stacks.ExposureStackDataset`: the same crop window and flips for all K exposures),
a fusion pair (:class:`~datamodules.fusion_pairs.FusionPairDataset`: the same crop and flips for both sources) and
a DPED phone/DSLR patch pair (:class:`~datamodules.dped.DPEDPatchDataset`: the same one of the 8 flips/90°
rotations for both patches).

The K images of one sample are the targets ``image, image1, …, image{K-1}`` of one :class:`albumentations.Compose`,
all of type ``"image"`` (``additional_targets``), so albumentations draws each transform's parameters once per call
and applies them to every target. Crops and flips only move pixels: values and dtype (float32 in [0, 1]) are kept.

**Randomness.** albumentations draws from its own generators (a ``numpy.random.Generator`` and a
``random.Random``), not from torch's. Each call draws one seed from **torch's global RNG** (:func:`torch_seed`,
one ``torch.randint``) and hands the Compose and all its transforms *one shared* generator pair seeded with it
(``Compose.set_random_state``). torch's RNG is what the DataLoader seeds in each worker from the loader's
generator, which :class:`~datamodules.samplers.ResumableRandomSampler` re-seeds with ``seed + epoch`` (under
``darkroom``, Lightning's ``pl_worker_init_function`` then mixes in the worker id and the rank); so, as with
the ``torch.randint`` crops before, the augmentation of epoch ``e`` is a function of ``(seed, e)`` and a resumed
run repeats it (with ``num_workers=0`` the draws come from the main process's RNG, seeded by ``seed_everything``).
``Compose(seed=s)`` / ``set_random_seed(s)`` is deliberately not used: it gives *every* transform its own generator
seeded with the same ``s``, so the first draws coincide and, e.g., the horizontal and the vertical flip would
always be applied together (and the crop position would be tied to them).

With neither a crop nor augmentation (evaluation splits; DPED's official recipe) :func:`paired_augmentation`
returns ``None`` and the datasets do not call albumentations at all. The official DeepFuse and ReFusion recipes
crop only (flips are the ablations ``experiments/{deepfuse,refusion}/ablations/flip.yaml``; DPED's rotations
``experiments/dped/ablations/augment.yaml``).

albumentations is pinned to 2.0.8, its last MIT-licensed release (``pyproject.toml``, ``constraints.txt``); its
successor ``albumentationsx`` is AGPL-3.0.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network version check at import

import albumentations as A  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

__all__ = ["PairedTransform", "paired_augmentation", "target_names", "torch_seed"]


def target_names(n: int) -> list[str]:
    """The albumentations target names of ``n`` images: ``["image", "image1", …, "image{n-1}"]``."""
    return ["image", *(f"image{i}" for i in range(1, n))]


def torch_seed() -> int:
    """A seed in [0, 2³²) drawn from torch's global RNG (one ``torch.randint`` call)."""
    return int(torch.randint(0, 2**32, (), dtype=torch.int64))


class PairedTransform:
    """Apply the same random albumentations transforms to K aligned images.

    Args:
        transforms: albumentations transforms, applied in order (e.g. ``A.RandomCrop``, ``A.HorizontalFlip``).

    Call with a sequence of K H×W×C numpy arrays of one H×W (checked by albumentations), or use
    :meth:`tensors` for a K×C×H×W tensor. Targets for more images are added on first use, so K may differ from
    call to call (stacks with different numbers of exposures).
    """

    def __init__(self, transforms: Sequence[A.BasicTransform]) -> None:
        self.compose = A.Compose(list(transforms), p=1.0)
        self.n_targets = 1

    def __call__(self, images: Sequence[np.ndarray], seed: int | None = None) -> list[np.ndarray]:
        """The transformed images, in input order (H×W×C → h×w×C numpy, same dtype).

        Args:
            images: K ≥ 1 H×W×C arrays.
            seed: seed of this call's draws; ``None`` = :func:`torch_seed` (see the module docstring).
        """
        if not images:
            raise ValueError("PairedTransform needs at least one image")
        names = target_names(len(images))
        if len(names) > self.n_targets:
            self.compose.add_targets({name: "image" for name in names[self.n_targets:]})
            self.n_targets = len(names)
        seed = torch_seed() if seed is None else seed
        self.compose.set_random_state(np.random.default_rng(seed), random.Random(seed))
        out = self.compose(**dict(zip(names, images, strict=True)))
        return [out[name] for name in names]

    def tensors(self, images: Tensor, seed: int | None = None) -> Tensor:
        """K×C×H×W tensor (CPU) → K×C×h×w contiguous tensor of the same dtype, one transform for all K images.

        The images are made contiguous H×W×C once, by torch (albumentations would otherwise copy each
        non-contiguous view itself, ~3× slower: 2.8 vs 7.9 ms for 3×3×768×1024, against ~21 ms to read one such PNG).
        """
        out = self(list(images.permute(0, 2, 3, 1).contiguous().numpy()), seed)
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def paired_augmentation(crop_size: int | None = None, flip: bool = False,
                        dihedral: bool = False) -> PairedTransform | None:
    """The paired datasets' crop and augmentation; ``None`` when nothing is asked (no albumentations call).

    Args:
        crop_size: a random ``crop_size``² crop (``A.RandomCrop``), uniform over the positions; ``None``: no crop.
        flip: then a random horizontal and, independently, a random vertical flip (``A.HorizontalFlip``,
            ``A.VerticalFlip``, each with probability ½).
        dihedral: then one of the 8 flips/90° rotations, uniformly (``A.D4``; needs square images).
    """
    transforms: list[A.BasicTransform] = []
    if crop_size is not None:
        transforms.append(A.RandomCrop(height=crop_size, width=crop_size, p=1.0))
    if flip:
        transforms += [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]
    if dihedral:
        transforms.append(A.D4(p=1.0))
    return PairedTransform(transforms) if transforms else None
