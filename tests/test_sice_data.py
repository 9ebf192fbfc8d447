"""Synthetic SICE data (camera model + writer) and the SICE DataModule."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.image_io import DatasetLayoutError, ImageReadError
from datamodules.sice import SICEDataModule, find_pairs, find_train_images, pairs_per_sequence, unique_names
from datamodules.synthetic.camera import crf, inverse_crf, render_exposure
from datamodules.synthetic.sice import write_sice

SIZE = (40, 30)  # (width, height) of the synthetic images: small, so the whole file runs in seconds
EVS = (-4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0)


@pytest.fixture(scope="module")
def sice_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sice(tmp_path_factory.mktemp("sice"), n_train=4, n_test=3, size=SIZE, exposures=EVS, seed=0)


def _dm(**kw) -> SICEDataModule:
    kw.setdefault("num_workers", 0)
    return SICEDataModule(**kw)


def _copy_part2(src: Path, dst: Path) -> Path:
    shutil.copytree(src / "Dataset_Part2", dst)
    return dst


# ------------------------------------------------------------------------------------------ camera model
def test_crf_is_monotone_with_exact_inverse() -> None:
    x = np.linspace(0.0, 1.0, 4097)
    for shoulder in (4.0, 1.0, math.inf):
        y = crf(x, shoulder)
        assert y[0] == 0.0 and y[-1] == pytest.approx(1.0, abs=1e-12)
        assert np.all(np.diff(y) > 0)
        np.testing.assert_allclose(inverse_crf(y, shoulder), x, atol=1e-12)
    # a camera curve brightens the shadows (concave): mid-grey linear 0.18 encodes well above 0.18
    assert crf(np.array(0.18)) > 0.45
    np.testing.assert_allclose(inverse_crf(np.array([0, 255], dtype=np.uint8)), [0.0, 1.0], atol=1e-12)


def test_render_exposure_noise_free_and_noise_level() -> None:
    rng = np.random.default_rng(0)
    scene = np.full((64, 64, 3), 0.1)
    clean = render_exposure(scene, 2.0, rng, shot_noise=0.0, read_noise=0.0)
    assert clean.dtype == np.uint8 and np.all(clean == np.floor(crf(0.2) * 255 + 0.5))
    assert np.all(render_exposure(scene, 64.0, rng) == 255)  # clipped highlights
    # Poisson–Gaussian: variance in the linear domain = shot·signal + read²
    noisy = render_exposure(scene, 1.0, rng, shot_noise=5e-4, read_noise=2e-3, bits=16)
    assert noisy.dtype == np.uint16
    std = inverse_crf(noisy).std()
    assert std == pytest.approx(math.sqrt(5e-4 * 0.1 + 2e-3**2), rel=0.1)
    a = render_exposure(scene, 1.0, np.random.default_rng(5))
    b = render_exposure(scene, 1.0, np.random.default_rng(5))
    assert np.array_equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"exposure": 0.0}, ValueError, "exposure"),
        ({"bits": 17}, ValueError, "bits"),
        ({"rng": 3}, TypeError, "Generator"),
        ({"linear": -np.ones((2, 2, 3))}, ValueError, "linear"),
    ],
)
def test_render_exposure_bad_input(kwargs: dict, err: type, match: str) -> None:
    args = {"linear": np.ones((2, 2, 3)) * 0.5, "exposure": 1.0, "rng": np.random.default_rng(0)} | kwargs
    with pytest.raises(err, match=match):
        render_exposure(**args)


# ------------------------------------------------------------------------------------------ synthetic SICE
def test_write_sice_layout(sice_root: Path) -> None:
    for part, n in (("Dataset_Part1", 4), ("Dataset_Part2", 3)):
        d = sice_root / part
        seqs = sorted(p.name for p in d.iterdir() if p.is_dir() and p.name != "Label")
        assert seqs == [str(i) for i in range(1, n + 1)]
        assert sorted(p.name for p in (d / "Label").iterdir()) == [f"{i}.JPG" for i in range(1, n + 1)]
        for s in seqs:
            assert sorted(p.name for p in (d / s).iterdir()) == [f"{k}.JPG" for k in range(1, len(EVS) + 1)]
        with Image.open(d / "1" / "1.JPG") as img:
            assert img.size == SIZE and img.mode == "RGB" and img.format == "JPEG"
    assert "write_sice" in (sice_root / "README.txt").read_text()


def test_exposures_get_brighter_and_label_is_mid(sice_root: Path) -> None:
    for part in ("Dataset_Part1", "Dataset_Part2"):
        for seq in ("1", "2"):
            means = [np.asarray(Image.open(sice_root / part / seq / f"{k}.JPG")).mean() for k in range(1, len(EVS) + 1)]
            assert np.all(np.diff(means) > 0), means
            label = np.asarray(Image.open(sice_root / part / "Label" / f"{seq}.JPG")).mean()
            assert means[2] < label < means[-1]  # the 3 low-light inputs are darker than the label


def test_write_sice_deterministic(tmp_path: Path) -> None:
    kw = {"n_train": 1, "n_test": 1, "size": (24, 18), "exposures": (-2.0, 0.0)}
    a, b, c = (write_sice(tmp_path / n, seed=s, **kw) for n, s in (("a", 3), ("b", 3), ("c", 4)))
    files = sorted(p.relative_to(a) for p in a.rglob("*.JPG"))
    assert len(files) == 2 * (2 + 1)
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert any((a / f).read_bytes() != (c / f).read_bytes() for f in files)
    write_sice(a, seed=3, **kw)  # rewriting its own dataset is allowed
    with pytest.raises(ValueError, match="increasing"):
        write_sice(tmp_path / "d", exposures=(0.0, -1.0))
    (tmp_path / "e" / "Dataset_Part1").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="refusing"):
        write_sice(tmp_path / "e", **kw)


# ------------------------------------------------------------------------------------------ DataModule
def test_datamodule_reads_sice(sice_root: Path) -> None:
    dm = _dm(train_root=str(sice_root / "Dataset_Part1"), val_root=str(sice_root / "Dataset_Part2"),
             test_root=str(sice_root / "Dataset_Part2"), image_size=32, batch_size=5, eval_size=(48, 36),
             val_max_pairs=4, eval_batch_size=5)
    assert _dm().eval_batch_size == 1  # full-resolution evaluation defaults to one image per batch
    dm.setup("fit")
    dm.setup("test")
    assert len(dm.train_set) == 4 * len(EVS)  # every sequence image, labels excluded
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"input", "name"}
    assert batch["input"].shape == (5, 3, 32, 32) and batch["input"].dtype == torch.float32
    assert 0.0 <= batch["input"].min() and batch["input"].max() <= 1.0
    assert len(set(dm.train_set.names)) == len(dm.train_set)
    assert len(dm.test_set) == 3 * (len(EVS) // 2)
    assert len(dm.val_set) == 4
    batch = next(iter(dm.test_dataloader()))
    assert set(batch) == {"input", "target", "name"}
    assert batch["input"].shape == batch["target"].shape == (5, 3, 36, 48)
    assert batch["name"][:3] == ["1_1", "1_2", "1_3"]
    assert torch.all(batch["input"].mean(dim=(1, 2, 3))[:3] < batch["target"].mean(dim=(1, 2, 3))[:3])
    summary = dm.summary()
    assert "28 images" in summary and "9 pairs" in summary and "4 pairs" in summary
    # validation subset: deterministic given the seed
    dm2 = _dm(val_root=str(sice_root / "Dataset_Part2"), val_max_pairs=4, eval_size=None)
    dm2.setup("validate")
    assert dm2.val_set.names == dm.val_set.names
    x = dm2.val_set[0]
    assert x["input"].shape == x["target"].shape == (3, SIZE[1], SIZE[0])


def test_pair_protocol_counts(sice_root: Path, tmp_path: Path) -> None:
    root = _copy_part2(sice_root, tmp_path / "p2")
    (root / "2" / "7.JPG").unlink()  # K = 6 → 3
    for k in (6, 7):
        (root / "3" / f"{k}.JPG").unlink()  # K = 5 → 2
    (root / "3" / "notes.txt").write_text("not an image, ignored")
    assert [pairs_per_sequence(k) for k in (5, 6, 7, 8, 9)] == [2, 3, 3, 4, 4]
    pairs = find_pairs(root)
    assert len(pairs) == 3 + 3 + 2
    assert [p.name for p, _ in pairs[-2:]] == ["1.JPG", "2.JPG"] and pairs[-1][1].name == "3.JPG"
    assert len(find_pairs(root, "all")) == 7 + 6 + 5 and len(find_pairs(root, "1")) == 3
    # label lookup: lower-case folder, any extension case
    (root / "Label").rename(root / "label")
    Image.open(root / "label" / "1.JPG").save(root / "label" / "1.Png")
    (root / "label" / "1.JPG").unlink()
    assert find_pairs(root)[0][1].name == "1.Png"
    with pytest.raises(ValueError, match="low_per_sequence"):
        _dm(low_per_sequence="third")


def test_flat_folder_training(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name in ("1.jpg", "2.JPG", "10.png"):
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(tmp_path / name)
    dm = _dm(train_root=str(tmp_path), image_size=16, batch_size=2)
    dm.setup("fit")
    assert [p.name for p in dm.train_set.files] == ["1.jpg", "2.JPG", "10.png"]  # .JPG is not skipped
    assert dm.train_set.names == ["1", "2", "10"]
    assert next(iter(dm.train_dataloader()))["input"].shape == (2, 3, 16, 16)
    assert dm.val_dataloader() == []  # no val_root: Lightning skips validation


def test_official_training_folder_is_listed(shared) -> None:
    root = shared("lowlight/train")
    files = find_train_images(root)
    assert len(files) == 2002 and files[0].name == "1.jpg" and files[-1].name == "2002.jpg"
    x = SICEDataModule(train_root=str(root), image_size=64, num_workers=0)
    from datamodules.sice import ImageFileDataset

    item = ImageFileDataset(files[:1], ["1"], (64, 64))[0]
    assert item["input"].shape == (3, 64, 64)
    assert x.summary().startswith("SICEDataModule\n  train:   2002 images")


def test_predict_native_size_mixed_case_and_modes(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (23, 37, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.JPG", quality=95)
    Image.fromarray(rgb).save(tmp_path / "a.png")  # same stem as a.JPG
    Image.fromarray(rgb[:, :, 0]).save(tmp_path / "grey.Bmp")
    rgba = np.dstack([rgb, np.zeros((23, 37), np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "rgba.PNG")
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "pal.png")
    cv2.imwrite(str(tmp_path / "deep.TIF"), np.full((29, 41, 3), 65535, np.uint16))
    (tmp_path / "readme.txt").write_text("ignored")
    dm = _dm(predict_root=str(tmp_path))
    dm.setup("predict")
    batches = {b["name"][0]: b["input"] for b in dm.predict_dataloader()}
    assert set(batches) == {"a_JPG", "a_png", "grey", "rgba", "pal", "deep"}
    assert all(x.shape[0] == 1 and x.shape[1] == 3 for x in batches.values())
    assert batches["a_png"].shape == (1, 3, 23, 37) and batches["deep"].shape == (1, 3, 29, 41)
    torch.testing.assert_close(batches["a_png"][0], torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
    assert torch.all(batches["deep"] == 1.0)  # 16-bit 65535 → 1.0
    g = batches["grey"][0]
    assert torch.equal(g[0], g[1]) and torch.equal(g[1], g[2])
    torch.testing.assert_close(batches["rgba"], batches["a_png"])  # alpha dropped, colour kept
    assert unique_names([Path("x/a.jpg"), Path("y/a.jpg"), Path("a.png")]) == ["a_jpg", "a_jpg_1", "a_png"]


# ------------------------------------------------------------------------------------------ bad input
def test_missing_and_empty_roots(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match=r"nowhere.*not found"):
        _dm(train_root=str(tmp_path / "nowhere")).setup("fit")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"empty.*no image files"):
        _dm(train_root=str(tmp_path / "empty")).setup("fit")
    with pytest.raises(DatasetLayoutError, match=r"empty.*no image files"):
        _dm(predict_root=str(tmp_path / "empty")).setup("predict")
    with pytest.raises(DatasetLayoutError, match=r"empty: no image files found at any depth"):
        _dm(test_root=str(tmp_path / "empty")).setup("test")
    with pytest.raises(ValueError, match="set --data.init_args.train_root"):
        _dm().setup("fit")


def test_sequence_without_label(sice_root: Path, tmp_path: Path) -> None:
    root = _copy_part2(sice_root, tmp_path / "p2")
    (root / "Label" / "2.JPG").unlink()
    with pytest.raises(DatasetLayoutError, match=r"p2/2: Part2 image with no label.*Label/2\."):
        _dm(test_root=str(root)).setup("test")
    shutil.rmtree(root / "Label")
    with pytest.raises(DatasetLayoutError, match=r"p2: no Label/ folder"):
        _dm(val_root=str(root)).setup("validate")
    dm = _dm(test_root=str(root))  # without labels, a test root is a folder of unpaired photos
    dm.setup("test")
    assert dm.test_set.groups[0] == "1" and dm.test_set.names[0].startswith("1/")
    assert dm.describe("test")["layout"] == "unpaired"


def test_unreadable_file_fails_at_setup(sice_root: Path, tmp_path: Path) -> None:
    root = _copy_part2(sice_root, tmp_path / "p2")
    (root / "3" / "2.JPG").write_bytes(b"this is not a jpeg")
    with pytest.raises(ImageReadError, match=r"p2/3/2\.JPG: not a readable image"):
        _dm(test_root=str(root)).setup("test")
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(flat / "ok.png")
    (flat / "bad.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(ImageReadError, match=r"flat/bad\.png"):
        _dm(train_root=str(flat)).setup("fit")


def test_native_size_mismatch_is_reported(sice_root: Path, tmp_path: Path) -> None:
    root = _copy_part2(sice_root, tmp_path / "p2")
    Image.new("RGB", (10, 10)).save(root / "Label" / "1.JPG")
    with pytest.raises(DatasetLayoutError, match=r"p2/1/1\.JPG: size .* differs from its label"):
        _dm(test_root=str(root), eval_size=None).setup("test")
    _dm(test_root=str(root)).setup("test")  # with eval_size both are resized: fine
