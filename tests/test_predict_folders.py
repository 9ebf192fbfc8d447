"""``darkroom predict`` on real folder layouts: nested folders mirrored in the output, names that cannot collide,
unreadable files (stop before writing anything, or ``--run.skip_bad``), the summary line, and the Zero-DCE++ CLI
path against the official reference output."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.dped import DPEDDataModule
from datamodules.image_io import ImageReadError, list_images_recursive, load_tensor, predict_images
from datamodules.sice import SICEDataModule
from experiments.prediction_writer import ImageWriter, UnsafeOutputError

REPO = Path(__file__).resolve().parents[1]
LAYOUT = ("DICM/01.jpg", "DICM/2.jpg", "DICM/10.png", "LIME/1.bmp", "real/sub/a.PNG", "top.tif")


def photos(root: Path, names=LAYOUT, size=(9, 11)) -> Path:
    rng = np.random.default_rng(0)
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 90, (*size, 3), dtype=np.uint8)).save(root / name)
    return root


def truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a valid header, truncated pixel data
    return path


def tree(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def predict_cli(folder: Path, out: Path, tmp_path: Path, *extra: str, config: str = "paper.yaml"):
    from experiments.cli import cli_main

    return cli_main(["predict", "-c", str(REPO / "experiments" / "zero_dce" / config),
                     "--data.init_args.predict_root", str(folder), "--data.init_args.num_workers", "0",
                     "--run.output_dir", str(out), "--run.root", str(tmp_path / "runs"), "--run.wandb", "false",
                     "--trainer.enable_progress_bar", "false", *extra])


# ------------------------------------------------------------------------------------------------ listing
def test_recursive_listing_natural_order_and_relative_names(tmp_path):
    root = photos(tmp_path / "in", (*LAYOUT, ".hidden/x.png", "DICM/.y.jpg"))
    (root / "DICM" / "notes.txt").write_text("ignored")
    listed = list_images_recursive(root)
    assert [n for _, n in listed] == ["DICM/01", "DICM/2", "DICM/10", "LIME/1", "real/sub/a", "top"]
    assert [p.relative_to(root).as_posix() for p, _ in listed] == list(LAYOUT)


def test_recursive_names_never_collide(tmp_path):
    root = photos(tmp_path / "in", ("d/a.jpg", "d/a.png", "d/b.jpg", "e/a.jpg", "x.png"))
    names = [n for _, n in list_images_recursive(root)]
    assert names == ["d/a_jpg", "d/a_png", "d/b", "e/a", "x"]
    flat = photos(tmp_path / "flat", ("a.jpg", "a.PNG"))
    assert [n for _, n in list_images_recursive(flat)] == ["a_jpg", "a_PNG"]  # as unique_names did


def test_case_insensitive_clash_gets_an_index(tmp_path):
    root = photos(tmp_path / "in", ("D/a.jpg", "d/a.png"))
    if len({p.parent.name for p in root.rglob("*.*")}) < 2:
        pytest.skip("case-insensitive file system: D and d are one folder")
    names = sorted(n.casefold() for _, n in list_images_recursive(root))
    assert len(set(names)) == 2


def test_datamodules_predict_nested_folders(tmp_path):
    root = photos(tmp_path / "in")
    for dm in (SICEDataModule(predict_root=str(root), num_workers=0),
               DPEDDataModule(root=str(tmp_path), predict_root=str(root), num_workers=0)):
        dm.setup("predict")
        assert dm.predict_set.names == ["DICM/01", "DICM/2", "DICM/10", "LIME/1", "real/sub/a", "top"]
        assert dm.predict_set.skipped == []
        batch = next(iter(dm.predict_dataloader()))
        assert batch["name"] == ["DICM/01"] and batch["input"].shape == (1, 3, 9, 11)


def test_datamodule_decodes_every_file(tmp_path):
    root = photos(tmp_path / "in")
    bad = truncate(root / "LIME" / "1.bmp")
    with pytest.raises(ImageReadError, match=f"{bad}.*truncated.*--run.skip_bad true") as err:
        SICEDataModule(predict_root=str(root), num_workers=0).setup("predict")
    assert "\n" not in str(err.value)
    files, names, skipped = predict_images(root, skip_bad=True)
    assert "LIME/1" not in names and len(files) == 5 and [p for p, _ in skipped] == [bad]


# --------------------------------------------------------------------------------------------------- writer
def test_writer_creates_subfolders_and_refuses_escapes(tmp_path):
    out = tmp_path / "out"
    writer = ImageWriter(out)
    writer.claim(["DICM/01", "a"], ["x", "y"])
    assert writer.target("DICM/01") == out / "DICM" / "01.png"
    for bad in ("../x", "/abs", "a//b", "a/./b", "a\\b", ""):
        with pytest.raises(UnsafeOutputError, match="not a plain file name"):
            writer.target(bad)
    with pytest.raises(UnsafeOutputError, match="same output file"):
        ImageWriter(out).claim(["DICM/01", "dicm/01"], ["x", "y"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out.mkdir(exist_ok=True)
    (out / "link").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UnsafeOutputError, match="outside --run.output_dir"):
        ImageWriter(out).claim(["link/a"], ["x"])
    assert list(elsewhere.iterdir()) == []


# ------------------------------------------------------------------------------------------ through the CLI
def test_cli_mirrors_nested_folders_with_a_summary(tmp_path, capsys):
    root = photos(tmp_path / "in", (*LAYOUT, "DICM/01.png"))  # DICM/01.jpg and DICM/01.png: both kept
    out = tmp_path / "out"
    cli = predict_cli(root, out, tmp_path)
    assert tree(out) == ["DICM/01_jpg.png", "DICM/01_png.png", "DICM/10.png", "DICM/2.png", "LIME/1.png",
                         "real/sub/a.png", "top.png"]
    assert Image.open(out / "real" / "sub" / "a.png").size == (11, 9)
    summary = [line for line in capsys.readouterr().out.splitlines() if line.startswith("predict: ")]
    assert len(summary) == 1 and summary[0].startswith(f"predict: 7 images written to {out}, 0 skipped, ")
    assert summary[0].endswith(" s") and cli.image_writer.summary == summary[0]
    assert cli.trainer.predict_loop.predictions == []  # outputs are on disk, not kept in memory


def test_cli_corrupt_file_stops_before_writing_anything(tmp_path):
    root = photos(tmp_path / "in")
    bad = truncate(root / "real" / "sub" / "a.PNG")
    out = tmp_path / "out"
    with pytest.raises(ImageReadError, match=f"{bad}: cannot decode") as err:
        predict_cli(root, out, tmp_path)
    assert "\n" not in str(err.value) and "--run.skip_bad true" in str(err.value)
    assert not out.exists() or tree(out) == []


def test_cli_skip_bad_reports_and_skips(tmp_path, capsys):
    root = photos(tmp_path / "in")
    bad = truncate(root / "DICM" / "2.jpg")
    out = tmp_path / "out"
    predict_cli(root, out, tmp_path, "--run.skip_bad", "true")
    assert "DICM/2.png" not in tree(out) and len(tree(out)) == 5
    captured = capsys.readouterr()
    line = next(x for x in captured.err.splitlines() if x.startswith("predict: skipped"))
    assert line.startswith(f"predict: skipped (unreadable): {bad}: cannot decode the file (") and "runcated" in line
    assert f"predict: 5 images written to {out}, 1 skipped, " in captured.out


# ------------------------------------------------------------------------------ Zero-DCE++ vs the official code
@pytest.mark.parametrize("tile", ["512", "64"])  # 324² is whole with 512 tiles, two-pass tiled with 64 tiles
def test_cli_zero_dce_pp_matches_the_official_output(shared, tmp_path, capsys, tile):
    image = shared("lowlight/test/LIME/6.bmp")
    ref = np.asarray(Image.open(shared("reference/zero_dce_pp_sf12/LIME/6.png")).convert("RGB")).astype(int)
    root = tmp_path / "in"
    (root / "LIME").mkdir(parents=True)
    os.symlink(image, root / "LIME" / "6.bmp")  # the research-only file is linked, never copied
    out = tmp_path / "out"
    predict_cli(root, out, tmp_path, "--model.init_args.pretrained", str(shared("weights/zero_dce_pp/Epoch99.pth")),
                "--run.tile_size", tile, config="paper_pp.yaml")
    got = np.asarray(Image.open(out / "LIME" / "6.png").convert("RGB")).astype(int)
    assert got.shape == ref.shape == (324, 324, 3)  # cropped to a multiple of 12 (326 → 324) as the official test
    assert np.abs(got - ref).max() == 0  # measured: 0 grey levels (padding instead of the crop: 13)
    assert "cropped 326×326 → 324×324" in capsys.readouterr().err


def test_official_zero_dce_pp_crop_vs_pad(shared):
    from lightning_modules.zero_dce import ZeroDCE

    x = load_tensor(shared("lowlight/test/LIME/6.bmp"))[None]  # the official reading: uint8 / 255
    ref = np.load(shared("reference/zero_dce_pp_sf12/LIME/6_float32.npz"))["enhanced"]
    model = ZeroDCE.from_official(shared("weights/zero_dce_pp/Epoch99.pth"), variant="zero_dce_pp").eval()
    with torch.no_grad():
        crop = model.enhance(x, fit="crop")[0].permute(1, 2, 0).numpy()
        pad = model.enhance(x, fit="pad")[0, :, :324, :324].permute(1, 2, 0).numpy()
    assert np.abs(crop - ref).max() <= 1e-6
    assert np.abs(pad - ref).max() > 0.01  # why predict crops: padding changes the curve maps near the border


# ------------------------------------------------------------------------------------------------ the command
def test_predict_writes_no_wandb_run_unless_asked(tmp_path):
    from experiments.cli import cli_main

    folder = photos(tmp_path / "in", ("a.png",))
    base = ["predict", "-c", str(REPO / "experiments" / "zero_dce" / "paper.yaml"), "--data.init_args.predict_root",
            str(folder), "--data.init_args.num_workers", "0", "--trainer.enable_progress_bar", "false"]
    cli = cli_main([*base, "--run.root", str(tmp_path / "quiet")])
    assert (cli.run_dir / "predictions" / "a.png").is_file()
    assert not (cli.run_dir / "wandb").exists() and not (cli.run_dir / "wandb_id.txt").exists()
    asked = cli_main([*base, "--run.root", str(tmp_path / "asked"), "--run.wandb", "true"])
    assert (asked.run_dir / "wandb").is_dir()


def test_a_failed_command_prints_one_line_and_leaves_no_run_directory(tmp_path, capsys):
    from experiments.cli import main

    runs = tmp_path / "runs"
    args = ["predict", "-c", str(REPO / "experiments" / "zero_dce" / "paper.yaml"), "--data.init_args.predict_root",
            str(tmp_path / "missing"), "--run.root", str(runs)]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("darkroom: error:")]
    assert err == [f"darkroom: error: {tmp_path / 'missing'}: predict_root folder not found (expected a folder of "
                   "photos to enhance (sub-folders allowed))"]
    assert not runs.exists() or not any(runs.rglob("*"))
    from datamodules.image_io import DatasetLayoutError

    with pytest.raises(DatasetLayoutError):  # --debug: the exception itself, with its traceback
        main([*args, "--debug"])
    assert "DARKROOM_DEBUG" not in os.environ  # --debug holds for that command only
