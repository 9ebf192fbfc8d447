"""datamodules.paired_transforms: one albumentations transform for K aligned images — identical crops, flips and
90° rotations across all targets (checked against slicing the originals), independent flips, determinism given
torch's seed, (seed, epoch)-determinism through the DataLoader workers, and no albumentations without augmentation."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.dped import DPEDPatchDataset
from datamodules.exposure_stacks import ExposureStackDataModule, ExposureStackDataset, find_stacks
from datamodules.fusion_pairs import FusionPairDataset, find_pairs
from datamodules.image_io import load_tensor, write_uint8
from datamodules.paired_transforms import PairedTransform, paired_augmentation, target_names, torch_seed
from datamodules.synthetic.exposure_stacks import write_exposure_stacks
from imaging.stacks import luminance_order

H, W, C, CROP = 12, 10, 3, 5


def _images(k: int, seed: int = 0) -> list[np.ndarray]:
    """K different random H×W×C float32 images in [0, 1] (every window is unique)."""
    rng = np.random.default_rng(seed)
    return [rng.random((H, W, C), dtype=np.float32) for _ in range(k)]


def _windows(image: np.ndarray, out: np.ndarray) -> set[tuple[int, int, bool, bool]]:
    """(top, left, hflip, vflip) of every crop-then-flip of ``image`` whose pixels equal ``out``."""
    h, w = out.shape[:2]
    found = set()
    for top, left, hf, vf in itertools.product(range(H - h + 1), range(W - w + 1), (False, True), (False, True)):
        crop = image[top : top + h, left : left + w]
        crop = crop[:, ::-1] if hf else crop
        crop = crop[::-1] if vf else crop
        if np.array_equal(crop, out):
            found.add((top, left, hf, vf))
    return found


def test_target_names_and_nothing_to_do():
    assert target_names(1) == ["image"] and target_names(3) == ["image", "image1", "image2"]
    assert paired_augmentation() is None  # the official recipes: the datasets never call albumentations


def test_identical_crop_and_flips_across_all_targets():
    transform = paired_augmentation(CROP, flip=True)
    images = _images(4)
    drawn = set()
    for seed in range(40):
        out = transform(images, seed=seed)
        assert [o.shape for o in out] == [(CROP, CROP, C)] * 4 and all(o.dtype == np.float32 for o in out)
        per_image = [_windows(im, o) for im, o in zip(images, out, strict=True)]
        assert all(len(p) == 1 for p in per_image)  # random pixels: one window explains each output
        assert all(p == per_image[0] for p in per_image), f"seed {seed}: targets transformed differently"
        drawn |= per_image[0]
    assert {(hf, vf) for *_, hf, vf in drawn} == {(False, False), (False, True), (True, False), (True, True)}
    assert len({(t, left) for t, left, *_ in drawn}) > 10  # the crop position varies, independently of the flips


def test_dihedral_matches_the_eight_torch_transforms():
    transform = paired_augmentation(dihedral=True)
    x = torch.rand(2, C, 6, 6)
    group = {(k, f): torch.rot90(x, k, dims=(-2, -1)).flip(-1) if f else torch.rot90(x, k, dims=(-2, -1))
             for k in range(4) for f in (False, True)}
    seen = set()
    for seed in range(64):
        out = transform.tensors(x, seed=seed)
        match = [g for g, ref in group.items() if torch.equal(out, ref)]  # both images by the same element
        assert len(match) == 1
        seen.add(match[0])
    assert len(seen) == 8


def test_tensors_shape_dtype_and_varying_k():
    transform = paired_augmentation(CROP, flip=True)
    for k in (2, 5, 3):  # targets are added when a stack has more images than seen so far
        x = torch.rand(k, C, H, W)
        out = transform.tensors(x, seed=k)
        assert out.shape == (k, C, CROP, CROP) and out.dtype == torch.float32 and out.is_contiguous()
        ref = transform([im.permute(1, 2, 0).numpy() for im in x], seed=k)
        assert torch.equal(out, torch.from_numpy(np.stack(ref)).permute(0, 3, 1, 2))
        assert 0 <= out.min() and out.max() <= 1


def test_deterministic_given_the_torch_seed():
    images = _images(3)

    def draws(transform: PairedTransform) -> list[np.ndarray]:
        torch.manual_seed(7)
        return [o for _ in range(6) for o in transform(images)]

    first = draws(paired_augmentation(CROP, flip=True))
    again = draws(paired_augmentation(CROP, flip=True))  # a fresh instance: no state besides torch's RNG
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    torch.manual_seed(7)
    seed = torch_seed()
    assert all(np.array_equal(a, b) for a, b in
               zip(first[:3], paired_augmentation(CROP, flip=True)(images, seed=seed), strict=True))
    torch.manual_seed(8)
    other = [o for _ in range(6) for o in paired_augmentation(CROP, flip=True)(images)]
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


@pytest.fixture(scope="module")
def stacks_root(tmp_path_factory) -> Path:
    return write_exposure_stacks(tmp_path_factory.mktemp("stacks"), n_train=4, n_test=1, size=(40, 32), seed=0)


def test_same_seed_and_epoch_give_the_same_crops_in_workers(stacks_root):
    """Through the real training loader (ResumableRandomSampler, one worker): epoch e's augmentation is a function
    of (seed, e), which is what a resumed run relies on."""
    dm = ExposureStackDataModule(train_root=str(stacks_root / "train"), crop_size=16, batch_size=4, num_workers=1,
                                 flip=True, exposures="all")
    dm.setup("fit")

    def epoch(e: int) -> torch.Tensor:
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(e)
        return next(iter(loader))["sources"]

    torch.manual_seed(123)  # the main process's RNG does not matter: the workers are seeded from (seed, epoch)
    first = epoch(0)
    torch.manual_seed(456)
    assert torch.equal(first, epoch(0))
    assert not torch.equal(first, epoch(1))


def test_datasets_without_augmentation_do_not_call_albumentations(stacks_root, tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("albumentations called without augmentation")

    monkeypatch.setattr(PairedTransform, "__call__", forbidden)
    stacks = find_stacks(stacks_root / "train", "train_root")
    stack_ds = ExposureStackDataset(stacks, "all")
    full = torch.stack([load_tensor(p, None, "bicubic") for p in stacks[0].files])
    assert stack_ds.transform is None and torch.equal(stack_ds[0]["sources"], full[luminance_order(full)])

    pairs = find_pairs(stacks_root / "train", "meif", layout="stacks")
    pair_ds = FusionPairDataset(pairs)
    assert pair_ds.transform is None and torch.equal(pair_ds[0]["sources"], full[luminance_order(full)][[0, -1]])

    rng = np.random.default_rng(0)
    for folder in ("iphone", "canon"):
        write_uint8(tmp_path / folder / "0.jpg", rng.integers(0, 256, (100, 100, 3), dtype=np.uint8))
    patch_ds = DPEDPatchDataset(tmp_path, "iphone", [0])
    sample = patch_ds[0]
    assert patch_ds.transform is None and torch.equal(sample["input"], load_tensor(tmp_path / "iphone" / "0.jpg"))
    assert torch.equal(sample["target"], load_tensor(tmp_path / "canon" / "0.jpg"))
