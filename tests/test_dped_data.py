"""DPEDDataModule on the real DPED layout written by ``prepare_dped`` from tiny synthetic phone/DSLR pairs:
shapes, ranges, identical augmentation of both patches, full-size predict images, and every layout error naming
the path."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.dped import DPEDDataModule, DPEDPatchDataset
from datamodules.image_io import DatasetLayoutError, write_uint8
from datamodules.synthetic.dped_pairs import write_phone_dslr_pairs
from experiments.prepare_dped import prepare_dped


@pytest.fixture(scope="module")
def dped_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 synthetic pairs (480×360 DSLR) → prepare_dped (SIFT + RANSAC): 1 full-size test photo, 1 test pair."""
    raw = write_phone_dslr_pairs(tmp_path_factory.mktemp("raw"), n_pairs=4, size=(480, 360), seed=0)
    out = tmp_path_factory.mktemp("dped")
    rep = prepare_dped(raw / "phone", raw / "dslr", out, "iphone", n_full_test=1, test_fraction=0.34, workers=1,
                       progress=False)
    assert rep.n_train_patches > 0 and rep.n_test_patches > 0
    return out


def augment_pair(x: torch.Tensor, y: torch.Tensor, k: int, flip: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference of the 8 dihedral transforms in torch (``k`` quarter turns, then an optional horizontal flip) on
    both C×H×W images: what the albumentations ``A.D4`` of ``DPEDPatchDataset(augment=True)`` must match."""
    x, y = torch.rot90(x, k, dims=(-2, -1)), torch.rot90(y, k, dims=(-2, -1))
    if flip:
        x, y = x.flip(-1), y.flip(-1)
    return x, y


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def test_reads_prepared_layout(dped_root: Path) -> None:
    dm = DPEDDataModule(root=str(dped_root), phone="iphone", batch_size=4, num_workers=0, val_max_patches=3)
    dm.setup("fit")
    n_train = len(list((dped_root / "iphone" / "training_data" / "iphone").glob("*.jpg")))
    assert len(dm.train_set) == n_train and len(dm.val_set) == 3
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"input", "target", "name"}
    for key in ("input", "target"):
        t = batch[key]
        assert t.shape == (4, 3, 100, 100) and t.dtype == torch.float32
        assert 0.0 <= t.min() and t.max() <= 1.0
    # an aligned pair: the phone patch resembles its Canon patch far more than a random other one
    x, y = batch["input"], batch["target"]
    assert ((x - y) ** 2).mean() < ((x - y.roll(1, 0)) ** 2).mean()
    dm.setup("test")
    assert len(dm.test_set) == len(list((dped_root / "iphone" / "test_data" / "patches" / "canon").glob("*.jpg")))
    dm.setup("predict")
    full = next(iter(dm.predict_dataloader()))
    assert full["input"].shape[0] == 1 and full["input"].shape[-1] > 100 and "target" not in full
    assert dm.has_validation and not DPEDDataModule(root=str(dped_root), val_max_patches=0).has_validation


def test_train_subset_and_identical_augmentation(dped_root: Path) -> None:
    split = dped_root / "iphone" / "training_data"
    plain = DPEDPatchDataset(split, "iphone", [0])
    aug = DPEDPatchDataset(split, "iphone", [0], augment=True)
    base = plain[0]
    torch.manual_seed(0)
    seen = set()
    for _ in range(24):
        s = aug[0]
        match = [(k, f) for k in range(4) for f in (False, True)
                 if all(torch.equal(a, b) for a, b in zip(augment_pair(base["input"], base["target"], k, f),
                                                          (s["input"], s["target"]), strict=True))]
        assert match, "phone and Canon patch were not transformed identically"
        seen.add(match[0])
    assert len(seen) > 2  # several different transforms were drawn
    dm = DPEDDataModule(root=str(dped_root), train_subset=2, num_workers=0, val_max_patches=0)
    dm.setup("fit")
    assert len(dm.train_set) == 2 and dm.val_dataloader() == []


def test_layout_errors_name_the_path(dped_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match=str(tmp_path / "nowhere" / "iphone")):
        DPEDDataModule(root=str(tmp_path / "nowhere")).setup("fit")
    with pytest.raises(DatasetLayoutError, match="set root to"):  # root pointing at the phone folder itself
        DPEDDataModule(root=str(dped_root / "iphone"), phone="sony").setup("fit")

    root = _copy(dped_root, tmp_path)
    train = root / "iphone" / "training_data"
    n = len(list((train / "canon").glob("*.jpg")))
    last = train / "canon" / f"{n - 1}.jpg"
    last.unlink()  # count mismatch
    with pytest.raises(DatasetLayoutError, match=rf"{n} phone patches .* {n - 1} Canon patches"):
        DPEDDataModule(root=str(root)).setup("fit")
    (train / "iphone" / f"{n - 1}.jpg").unlink()
    (train / "iphone" / "0.jpg").unlink()
    (train / "canon" / "0.jpg").unlink()  # a gap at index 0
    with pytest.raises(DatasetLayoutError, match=str(train / "iphone" / "0.jpg") + ": missing"):
        DPEDDataModule(root=str(root)).setup("fit")

    root = _copy(dped_root, tmp_path / "b")
    patches = root / "iphone" / "test_data" / "patches"
    write_uint8(patches / "canon" / "0.jpg", np.zeros((64, 100, 3), np.uint8))  # wrong patch size
    with pytest.raises(DatasetLayoutError, match=str(patches / "canon" / "0.jpg") + r": patch of size 100×64"):
        DPEDDataModule(root=str(root)).setup("test")
    write_uint8(patches / "canon" / "extra.jpg", np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(DatasetLayoutError, match="extra.jpg: unexpected file name"):
        DPEDDataModule(root=str(root)).setup("test")
    shutil.rmtree(root / "iphone" / "test_data" / "full_size_test_images")
    with pytest.raises(DatasetLayoutError, match="full_size_test_images: folder not found"):
        DPEDDataModule(root=str(root)).setup("predict")
    shutil.rmtree(patches / "iphone")
    with pytest.raises(DatasetLayoutError, match=str(patches / "iphone") + ": folder not found"):
        DPEDDataModule(root=str(root), val_max_patches=2).setup("validate")
    with pytest.raises(ValueError, match="set --data.init_args.root"):
        DPEDDataModule().setup("fit")
