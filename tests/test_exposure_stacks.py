"""ExposureStackDataModule and the synthetic exposure-stack writer: layout, luminance order, identical
crops across exposures, extreme pairs, the real shared stacks, and clear errors for malformed stacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.exposure_stacks import ExposureStackDataModule, ExposureStackDataset, find_stacks
from datamodules.image_io import DatasetLayoutError, ImageReadError
from datamodules.synthetic.exposure_stacks import write_exposure_stacks


def _dm(root: Path, **kwargs) -> ExposureStackDataModule:
    kwargs = {"crop_size": 24, "batch_size": 2, "num_workers": 0, **kwargs}
    return ExposureStackDataModule(train_root=str(root / "train"), val_root=str(root / "test"),
                                   test_root=str(root / "test"), **kwargs)


def _write(path: Path, value: int, size: tuple[int, int] = (40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    arr = np.clip(rng.normal(value, 10, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path)


def test_synthetic_layout_and_determinism(stacks_root, tmp_path):
    assert (stacks_root / "README.txt").read_text().startswith("Synthetic exposure stacks")
    scenes = sorted((stacks_root / "train").iterdir())
    assert len(scenes) == 3 and len(list((stacks_root / "test").iterdir())) == 2
    files = sorted(p.name for p in scenes[0].iterdir())
    assert files == ["1.png", "2.png", "3.png"]
    means = [np.asarray(Image.open(scenes[0] / f)).mean() for f in files]
    assert means[0] < means[1] < means[2]  # -3, 0, +3 EV: dark -> bright
    assert Image.open(scenes[0] / "1.png").size == (64, 48)
    again = write_exposure_stacks(tmp_path, n_train=3, n_test=2, size=(64, 48), seed=0)
    assert (again / "train" / scenes[0].name / "2.png").read_bytes() == (scenes[0] / "2.png").read_bytes()
    with pytest.raises(FileExistsError):
        (tmp_path / "other" / "train").mkdir(parents=True)
        write_exposure_stacks(tmp_path / "other", n_train=1, n_test=1)


def test_order_by_luminance_not_by_name(tmp_path):
    # names sort bright -> dark (like Cave: cave1 brightest), the loader must still give dark -> bright
    for name, value in (("a_bright", 200), ("b_mid", 120), ("c_dark", 40)):
        _write(tmp_path / "test" / "scene" / f"{name}.png", value)
    dm = ExposureStackDataModule(test_root=str(tmp_path / "test"), num_workers=0)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert batch["sources"].shape == (1, 3, 3, 30, 40) and batch["name"] == ["scene"]
    means = batch["sources"][0].mean(dim=(1, 2, 3))
    assert torch.all(means[1:] > means[:-1])


def _window_matches(full: torch.Tensor, crop: torch.Tensor) -> torch.Tensor:
    """Boolean map of the top-left corners where ``crop`` (3×c×c) equals a window of ``full`` (3×H×W)."""
    c = crop.shape[-1]
    windows = full.unfold(-2, c, 1).unfold(-2, c, 1)  # 3×h'×w'×c×c
    return (windows - crop[:, None, None]).abs().amax(dim=(0, 3, 4)) == 0


def test_train_crops_identical_across_exposures_and_extreme_pair(stacks_root):
    dm = _dm(stacks_root, exposures="extreme_pair", flip=True)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["sources"].shape == (2, 2, 3, 24, 24)
    assert 0.0 <= batch["sources"].min() and batch["sources"].max() <= 1.0
    stacks = {s.name: s for s in dm.train_set.stacks}
    for sample, name in zip(batch["sources"], batch["name"], strict=True):
        full = ExposureStackDataset([stacks[name]], "all")[0]["sources"]  # 3 exposures, dark -> bright
        found = False
        for dims in ([], [-1], [-2], [-1, -2]):  # the flip is applied to the whole stack
            crop = sample.flip(dims) if dims else sample
            same_window = _window_matches(full[0], crop[0]) & _window_matches(full[2], crop[1])
            found = found or bool(same_window.any())
        assert found, f"{name}: the darkest and brightest crops do not come from one window"


def test_all_exposures_and_val_stacks(stacks_root):
    dm = _dm(stacks_root, exposures="all", val_max_stacks=1)
    dm.setup("fit")
    assert next(iter(dm.train_dataloader()))["sources"].shape == (2, 3, 3, 24, 24)
    val = list(dm.val_dataloader())
    assert len(val) == 1 and val[0]["sources"].shape == (1, 3, 3, 48, 64)


def test_real_exposure_stacks_load(shared):
    root = shared("exposure_stacks")
    stacks = {s.name: s for s in find_stacks(root)}
    assert {"Venice", "Cave", "Tower", "Office"} <= set(stacks)
    assert stacks["Office"].size == (512, 340) and len(stacks["Office"].files) == 6
    dm = ExposureStackDataModule(test_root=str(root), num_workers=0)
    dm.setup("test")
    names = [s.name for s in dm.test_set.stacks]
    sample = dm.test_set[names.index("Cave")]
    assert sample["sources"].shape == (4, 3, 384, 512)
    # Cave: cave4 darkest ... cave1 brightest (shared/data/README.md)
    means = sample["sources"].mean(dim=(1, 2, 3))
    assert torch.all(means[1:] > means[:-1])


def test_bad_stacks_name_the_culprit(tmp_path):
    _write(tmp_path / "sizes" / "s" / "1.png", 50, (40, 30))
    _write(tmp_path / "sizes" / "s" / "2.png", 150, (40, 32))
    with pytest.raises(DatasetLayoutError, match=r"sizes/s: exposures differ in size"):
        find_stacks(tmp_path / "sizes")

    _write(tmp_path / "single" / "only" / "1.png", 50)
    with pytest.raises(DatasetLayoutError, match=r"single/only: exposure stack has 1 image"):
        find_stacks(tmp_path / "single")

    _write(tmp_path / "corrupt" / "c" / "1.png", 50)
    (tmp_path / "corrupt" / "c" / "2.png").write_bytes(b"not a png at all")
    with pytest.raises(ImageReadError, match=r"corrupt/c/2\.png"):
        find_stacks(tmp_path / "corrupt")

    _write(tmp_path / "junk" / "j" / "1.png", 50)
    _write(tmp_path / "junk" / "j" / "2.png", 150)
    (tmp_path / "junk" / "j" / "notes.txt").write_text("x")
    with pytest.raises(DatasetLayoutError, match=r"junk/j/notes\.txt: not an image file"):
        find_stacks(tmp_path / "junk")

    with pytest.raises(DatasetLayoutError, match="no scene folders"):
        find_stacks(tmp_path / "junk" / "j")
    dm = ExposureStackDataModule(train_root=str(tmp_path / "junk"), crop_size=16, num_workers=0)
    with pytest.raises(DatasetLayoutError, match="notes.txt"):
        dm.setup("fit")
    small = ExposureStackDataModule(train_root=str(tmp_path / "sizes"), crop_size=64, num_workers=0)
    with pytest.raises(DatasetLayoutError):
        small.setup("fit")
