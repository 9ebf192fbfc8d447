"""FusionPairDataModule on every real layout (tiny temp folders), on the shared fusion pairs, and on the synthetic
generators; bad pairs fail at setup() naming the files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.fusion_pairs import FusionPairDataModule, find_pairs
from datamodules.image_io import DatasetLayoutError, read_image
from datamodules.synthetic.fusion_pairs import write_ir_visible, write_multi_focus


def _img(path: Path, size: tuple[int, int] = (24, 20), grey: bool = False, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    w, h = size
    arr = rng.integers(0, 256, (h, w) if grey else (h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _folder_pair(root: Path, a: str, b: str, stems: tuple[str, ...] = ("1", "2"), ext_b: str = ".png") -> Path:
    for i, s in enumerate(stems):
        _img(root / a / f"{s}.png", grey=True, seed=i)
        _img(root / b / f"{s}{ext_b}", seed=10 + i)
    return root


@pytest.mark.parametrize(
    ("task", "a", "b"),
    [("ivif", "ir", "vi"), ("ivif", "infrared", "visible"), ("mfif", "near", "far"),
     ("mfif", "source_1", "source_2"), ("meif", "under", "over"), ("mif", "PET", "MRI"), ("mif", "CT", "MRI"),
     ("mif", "CT_PET_SPECT", "MRI")],
)
def test_folder_layouts(tmp_path, task, a, b):
    root = _folder_pair(tmp_path / "test", a, b, ext_b=".jpg")
    pairs = find_pairs(root, task)
    assert [p.name for p in pairs] == ["1", "2"]
    assert pairs[0].first.parent.name == a and pairs[0].second.parent.name == b  # official input order
    dm = FusionPairDataModule(task, test_root=str(root), num_workers=0)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert batch["sources"].shape == (1, 2, 3, 20, 24) and batch["name"] == ["1"]
    grey_src = batch["sources"][0, 0]
    assert torch.equal(grey_src[0], grey_src[1])  # the grey file is replicated, the module detects it
    assert 0 <= batch["sources"].min() and batch["sources"].max() <= 1


def test_training_crops_are_aligned_and_root_shortcut(tmp_path):
    for split in ("train", "test"):
        for i in range(3):
            arr = _img(tmp_path / "msrs" / split / "ir" / f"{i:05d}N.png", (40, 30), seed=i)
            (tmp_path / "msrs" / split / "vi").mkdir(parents=True, exist_ok=True)
            (tmp_path / "msrs" / split / "vi" / arr.name).write_bytes(arr.read_bytes())  # identical partner
    dm = FusionPairDataModule("ivif", root=str(tmp_path / "msrs"), crop_size=16, batch_size=2, num_workers=0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["sources"].shape == (2, 2, 3, 16, 16)
    assert torch.equal(batch["sources"][:, 0], batch["sources"][:, 1])  # same crop position in both sources
    assert dm.hparams.test_root.endswith("test") and not dm.has_validation


def test_suffix_and_stacks_layouts(tmp_path):
    lytro = tmp_path / "lytro"
    for s in ("c_01", "c_02"):
        _img(lytro / f"{s}_1.tif")
        _img(lytro / f"{s}_2.tif", seed=1)
    assert [p.name for p in find_pairs(lytro, "mfif", "suffix")] == ["c_01", "c_02"]
    stacks = tmp_path / "mefb"
    for k, level in enumerate((30, 220, 120)):  # unsorted exposures: darkest and brightest are chosen
        Image.fromarray(np.full((20, 24, 3), level, np.uint8)).save(stacks / "scene" / f"{k}.png") if (
            stacks / "scene").mkdir(parents=True, exist_ok=True) is None else None
    dm = FusionPairDataModule("meif", test_root=str(stacks), layout="stacks", num_workers=0)
    dm.setup("test")
    src = next(iter(dm.test_dataloader()))["sources"][0]
    assert src[0].mean().item() == pytest.approx(30 / 255) and src[1].mean().item() == pytest.approx(220 / 255)


def test_missing_partner_and_size_mismatch_name_the_files(tmp_path):
    root = _folder_pair(tmp_path / "a", "ir", "vi", stems=("1", "2"))
    (root / "vi" / "2.png").unlink()
    _img(root / "vi" / "3.png")
    with pytest.raises(DatasetLayoutError, match=r"2\.png.*3\.png"):
        FusionPairDataModule("ivif", test_root=str(root), num_workers=0).setup("test")
    root = _folder_pair(tmp_path / "b", "near", "far", stems=("x",))
    _img(root / "far" / "x.png", size=(30, 20))
    with pytest.raises(DatasetLayoutError, match=r"near/x\.png.*far/x\.png.*differ in size"):
        find_pairs(root, "mfif")
    with pytest.raises(DatasetLayoutError, match="no source folders for task 'mfif'"):
        find_pairs(tmp_path / "a", "mfif")
    both = _folder_pair(tmp_path / "c", "CT", "MRI")
    _folder_pair(both, "PET", "MRI")
    with pytest.raises(DatasetLayoutError, match="several medical modalities"):
        find_pairs(both, "mif")
    assert len(find_pairs(both, "mif", folders=["PET", "MRI"])) == 2
    with pytest.raises(DatasetLayoutError, match="smaller than crop_size"):
        FusionPairDataModule("mif", train_root=str(both), folders=["PET", "MRI"], crop_size=64).setup("fit")


def test_shared_fusion_pairs(shared):
    ir_vis = shared("fusion/ir_vis")
    pairs = {p.name: p for p in find_pairs(ir_vis, "ivif", "suffix")}
    assert set(pairs) == {"MSRS_00710N", "MSRS_00906N", "TNO_05", "RoadScene_FLIR_04722", "VIFB_fight"}
    assert pairs["MSRS_00710N"].size == (640, 480) and pairs["MSRS_00710N"].first.name == "MSRS_00710N_ir.png"
    mf = shared("fusion/multi_focus")
    assert [p.name for p in find_pairs(mf, "mfif", "suffix")] == ["Lytro_c01", "MFIF_5", "MFIF_14"]
    assert [p.name for p in find_pairs(mf, "mfif", "suffix", suffixes=["_1", "_2"])] == ["Lytro_c01"]
    med = shared("fusion/medical")
    with pytest.raises(DatasetLayoutError, match="several medical modalities"):
        find_pairs(med, "mif", "suffix")
    pet = find_pairs(med, "mif", "suffix", suffixes=["_pet", "_mri"])
    assert [(p.name, p.first.name) for p in pet] == [("MRI_PET_14", "MRI_PET_14_pet.png")]
    dm = FusionPairDataModule("ivif", test_root=str(ir_vis), layout="suffix", num_workers=0)
    dm.setup("test")
    assert len(dm.test_set) == 5


def test_synthetic_multi_focus(tmp_path):
    root = write_multi_focus(tmp_path / "mf", n_train=2, n_test=1, size=(48, 40), seed=3)
    again = write_multi_focus(tmp_path / "mf2", n_train=2, n_test=1, size=(48, 40), seed=3)
    pairs = find_pairs(root / "train", "mfif")
    assert len(pairs) == 2 and pairs[0].size == (48, 40)
    assert (root / "train" / "near" / f"{pairs[0].name}.png").read_bytes() == (
        again / "train" / "near" / f"{pairs[0].name}.png").read_bytes()
    for p in pairs:
        near, far = read_image(p.first), read_image(p.second)
        ref = read_image(root / "train" / "reference" / f"{p.name}.png")
        in_focus_err = np.minimum(np.abs(near - ref), np.abs(far - ref)).mean()
        assert in_focus_err < 0.25 * np.abs(near - far).mean()  # every pixel is sharp in one source
        assert np.abs(near - far).mean() > 1e-3  # both focus regions exist


def test_synthetic_ir_visible(tmp_path):
    root = write_ir_visible(tmp_path / "iv", n_train=2, n_test=1, size=(48, 40), seed=0)
    pairs = find_pairs(root / "test", "ivif")
    assert len(pairs) == 1
    with Image.open(pairs[0].first) as ir:
        assert ir.mode == "L"
    ir, vi = read_image(pairs[0].first)[..., 0], read_image(pairs[0].second).mean(-1)
    assert ir.max() > 0.6 and abs(np.corrcoef(ir.ravel(), vi.ravel())[0, 1]) < 0.9  # different structures
