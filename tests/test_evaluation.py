"""Evaluation a researcher can put beside a paper: dataset identity, per-image results, unpaired photos,
metric variants, captioned grids."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import require_niqe_model
from PIL import Image

from datamodules.dataset_identity import describe_dataset, file_list_sha256, identify
from datamodules.fusion_pairs import FusionPairDataModule, UnpairedFilesWarning, find_pairs
from datamodules.sice import SICEDataModule
from experiments.cli import cli_main
from lightning_modules.image_grid import make_grid
from lightning_modules.per_image import PerImageRows, column_means, rows_to_csv
from metrics.full_reference import PSNR, SSIM, gt_mean_align, luma_bt601

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "experiments" / "zero_dce" / "paper.yaml"


def _run_args(tmp: Path) -> list[str]:
    return ["--trainer.enable_progress_bar", "false", "--run.root", str(tmp / "runs"), "--run.wandb", "false",
            "--data.init_args.num_workers", "0"]


def _rows(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------------------- identity
def test_identify_by_count_config_and_hash():
    assert identify(767, "x", ["sice_part2"])["name"] == "sice_part2"
    assert identify(767, "x", ["sice_part2"])["named_by"] == "count"
    assert identify(11, "x", ["sice_part2"])["name"] == "custom"
    named = identify(11, "x", ["sice_part2"], configured="sice_part2")
    assert named["name"] == "sice_part2" and named["named_by"] == "config"
    assert named["paper_count"] == 767 and named["count_matches_paper"] is False
    # TNO's count is not found: never recognised by count, only by name
    assert identify(25, "x", ["msrs", "tno", "roadscene"])["name"] == "custom"
    assert identify(361, "x", ["msrs", "tno", "roadscene"])["name"] == "msrs"


def test_file_list_hash_is_of_the_sorted_relative_list(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        (root / "x").mkdir(parents=True)
        for name in ("x/1.png", "2.png"):
            (root / name).write_bytes(b"")
    h = file_list_sha256([a / "2.png", a / "x" / "1.png"], a)
    assert h == file_list_sha256([b / "x" / "1.png", b / "2.png"], b)  # same list elsewhere, any order
    (a / "3.png").write_bytes(b"")
    assert h != file_list_sha256([a / "2.png", a / "x" / "1.png", a / "3.png"], a)
    block = describe_dataset([a / "2.png"], a, 1, "images", {"resize": None})
    assert block["name"] == "custom" and block["root"] == str(a.resolve()) and len(block["sha256"]) == 64


def test_file_list_hash_of_a_root_of_linked_folders(tmp_path):
    """A test set assembled from links to scene folders elsewhere (``darkroom reproduce --holdout``) hashes by the
    names under its root, as the same folders copied there would."""
    elsewhere, linked, copied = tmp_path / "elsewhere" / "scene", tmp_path / "linked", tmp_path / "copied" / "scene"
    for folder in (elsewhere, copied):
        folder.mkdir(parents=True)
        (folder / "1.png").write_bytes(b"")
    linked.mkdir()
    (linked / "scene").symlink_to(elsewhere, target_is_directory=True)
    assert file_list_sha256([linked / "scene" / "1.png"], linked) == file_list_sha256([copied / "1.png"],
                                                                                      copied.parent)


def test_sice_describe_part2_and_named(sice_root):
    dm = SICEDataModule(test_root=str(sice_root / "Dataset_Part2"), num_workers=0, eval_size=None)
    block = dm.describe("test")
    assert block["layout"] == "sice_part2" and block["name"] == "custom" and block["unit"] == "pairs"
    assert block["count"] == len(dm._test_set()) and block["protocol"]["pairs"] == "low_per_sequence=half"
    named = SICEDataModule(test_root=str(sice_root / "Dataset_Part2"), num_workers=0, dataset_name="sice_part2")
    assert named.describe("test")["count_matches_paper"] is False


# ------------------------------------------------------------------------------------ per-image rows
def test_per_image_rows_merge_and_csv():
    rows = PerImageRows()
    rows.add(["a", "b"], {"psnr": torch.tensor([10.0, 20.0])})
    rows.add(["a", "b"], {"input_psnr": torch.tensor([1.0, 3.0])}, groups=["g", "h"])
    listed = list(rows.rows.values())
    assert column_means(listed) == {"psnr": 15.0, "input_psnr": 2.0}
    text = rows_to_csv(listed)
    assert text.splitlines()[0] == "id,group,psnr,input_psnr"
    with pytest.raises(ValueError, match="3 values for 2 images"):
        rows.add(["a", "b"], {"ssim": torch.ones(3)})


def test_test_writes_per_image_csv_whose_mean_is_the_summary(sice_root, tmp_path):
    cli = cli_main(["test", "-c", str(CONFIG), *_run_args(tmp_path),
                    "--data.init_args.test_root", str(sice_root / "Dataset_Part2"),
                    "--data.init_args.eval_size", "[64, 48]", "--data.init_args.eval_batch_size", "2",
                    "--model.init_args.metric_variants", "[gtmean, y]"])
    run = cli.run_dir
    results = json.loads((run / "results.json").read_text())
    rows = _rows(run / "per_image.csv")
    n = len(cli.datamodule.test_set)
    assert len(rows) == n == results["dataset"]["count"] == results["per_image_rows"]
    assert [r["id"] for r in rows] == cli.datamodule.test_set.names
    for column in ("psnr", "ssim", "mae", "input_psnr", "psnr_gtmean", "ssim_y"):
        mean = sum(float(r[column]) for r in rows) / n
        assert results["metrics"][column] == pytest.approx(mean, rel=1e-12)
        logged = float(cli.trainer.callback_metrics[f"test/{column}"])
        assert logged == pytest.approx(mean, rel=1e-5)  # the torchmetrics value agrees
    assert results["dataset"]["name"] == "custom" and results["variant"] == "zero_dce"
    assert results["training"]["from"] == "untrained" and "psnr_gtmean" in results["metric_variants"]
    note = (run / "samples" / "README.txt").read_text()
    assert note.startswith(f"{min(8, n)} of {n} test images")
    assert sorted(p.stem for p in (run / "samples" / "output").glob("*.png")) == sorted(r["id"] for r in rows)[:8]


def _photo(path: Path, size: tuple[int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = size
    base = np.linspace(0, 60, w)[None, :, None] + np.linspace(0, 30, h)[:, None, None]
    img = np.clip(base + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


def test_unpaired_nested_folder_is_evaluated_per_folder(tmp_path):
    require_niqe_model()
    root = tmp_path / "test_data"
    _photo(root / "DICM" / "01.jpg", (200, 130), 0)  # NIQE needs two 96×96 blocks
    _photo(root / "DICM" / "02.png", (100, 210), 1)
    _photo(root / "LIME" / "1.bmp", (197, 120), 2)
    _photo(root / "top.png", (130, 193), 3)
    cli = cli_main(["test", "-c", str(CONFIG), *_run_args(tmp_path), "--data.init_args.test_root", str(root)])
    results = json.loads((cli.run_dir / "results.json").read_text())
    rows = _rows(cli.run_dir / "per_image.csv")
    assert [r["id"] for r in rows] == ["DICM/01", "DICM/02", "LIME/1", "top"]
    assert [r["group"] for r in rows] == ["DICM", "DICM", "LIME", ""]
    assert results["dataset"]["layout"] == "unpaired" and results["dataset"]["count"] == 4
    assert set(results["groups"]) == {"", "DICM", "LIME"}
    assert results["groups"]["DICM"]["count"] == 2
    dicm = [float(r["niqe"]) for r in rows if r["group"] == "DICM"]
    assert results["groups"]["DICM"]["metrics"]["niqe"] == pytest.approx(sum(dicm) / 2)
    for column in ("niqe", "loe", "brightness", "colour_cast", "input_niqe", "input_brightness"):
        assert math.isfinite(results["metrics"][column]), column
    assert results["metrics"]["brightness"] != results["metrics"]["input_brightness"]
    assert (cli.run_dir / "samples" / "output" / "DICM" / "01.png").is_file()


def test_unpaired_root_without_images_names_the_folder(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    dm = SICEDataModule(test_root=str(tmp_path / "empty"), num_workers=0)
    with pytest.raises(FileNotFoundError, match=r"empty: no image files found at any depth"):
        dm.setup("test")


# ------------------------------------------------------------------------------------ metric variants
def test_gt_mean_alignment_of_an_image_with_itself():
    x = torch.rand(2, 3, 24, 20, generator=torch.Generator().manual_seed(0)) * 0.8
    assert torch.allclose(gt_mean_align(x, x), x, atol=1e-6)
    grey = x[:, :1].expand(-1, 3, -1, -1)
    assert torch.allclose(gt_mean_align(grey, grey, "llflow"), grey, atol=1e-6)
    dark = x * 0.25
    aligned = gt_mean_align(dark, x)
    assert aligned.mean().item() == pytest.approx(x.mean().item(), rel=1e-4)
    psnr = PSNR("gtmean")
    psnr.update(dark, x)
    plain = PSNR()
    plain.update(dark, x)
    assert psnr.compute() > plain.compute() + 5  # a brightness gap is forgiven
    with pytest.raises(ValueError, match="unknown metric variant 'nope'"):
        SSIM("nope")


def test_y_variant_is_luma():
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = luma_bt601(x)
    assert y.shape == (1, 1, 32, 32) and 16 / 255 <= y.min() and y.max() <= 235 / 255
    white = luma_bt601(torch.ones(1, 3, 1, 1))
    assert white.item() == pytest.approx(235 / 255, abs=1e-4)


# --------------------------------------------------------------------------------------- fusion pairs
def test_every_unpaired_fusion_file_is_reported(tmp_path):
    for name in ("a_near", "a_far", "c_1", "c_2", "stray", "notes_x"):
        _photo(tmp_path / f"{name}.png", (16, 16), 0)
    with pytest.warns(UnpairedFilesWarning, match=r"2 image file\(s\) not paired .*notes_x.png, stray.png"):
        pairs = find_pairs(tmp_path, "mfif", "suffix")
    assert [p.name for p in pairs] == ["a", "c"]  # both conventions (_near/_far and _1/_2) are read
    (tmp_path / "c_2.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"c_1.png"):  # a one-sided pair is an error
        find_pairs(tmp_path, "mfif", "suffix")


def test_shared_multi_focus_reads_both_conventions(shared):
    root = shared("fusion/multi_focus")
    assert [p.name for p in find_pairs(root, "mfif", "suffix")] == ["Lytro_c01", "MFIF_5", "MFIF_14"]
    dm = FusionPairDataModule("mfif", test_root=str(root), layout="suffix", num_workers=0)
    block = dm.describe("test")
    assert block["name"] == "custom" and block["count"] == 3 and block["files"] == 6


# ---------------------------------------------------------------------------------------------- grids
def test_grid_has_a_caption_header_and_row_ids():
    cols = [torch.zeros(2, 3, 20, 30), torch.ones(2, 3, 20, 30) * 0.5]
    plain = make_grid(cols, height=40)
    captioned = make_grid(cols, height=40, captions=["input", "output"], row_names=["DICM/01", "DICM/02"])
    assert captioned.shape[-2] == plain.shape[-2] + 16 and captioned.shape[-1] > plain.shape[-1]
    header = captioned[:, :16]
    assert (header < 0.5).any()  # text was drawn
