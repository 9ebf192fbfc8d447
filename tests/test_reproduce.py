"""``darkroom reproduce`` end to end on tiny data: 2 one-step epochs, the official-model comparison, the report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from datamodules.image_io import load_tensor
from experiments import reproduce
from experiments.reproduce_report import curve_png
from lightning_modules.zero_dce import ZeroDCE


@pytest.fixture(scope="module")
def photos_and_train(tmp_path_factory) -> tuple[Path, Path]:
    """Training images (a synthetic SICE Part1) and 3 unpaired "photos" in two folders, large enough for NIQE."""
    from datamodules.synthetic.sice import write_sice

    root = write_sice(tmp_path_factory.mktemp("repro"), n_train=2, n_test=3, size=(256, 192), seed=3)
    photos = root / "photos"
    part2 = sorted((root / "Dataset_Part2").glob("[0-9]*/*"))[:3]
    for i, src in enumerate(part2):
        dst = photos / ("A" if i < 2 else "B") / f"p{i}{src.suffix}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    return root / "Dataset_Part1", photos


def _reference(path: Path, variant: str = "zero_dce") -> Path:
    """A stand-in for the official weights: a Darkroom checkpoint of a seeded Zero-DCE (``load_pretrained`` reads
    both kinds the same way), so the test needs no research-only file."""
    torch.manual_seed(7)
    net = ZeroDCE(variant=variant, log_images=0).net
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, path)
    return path


@pytest.mark.parametrize("name", ["zero_dce", "zero_dce_pp"])
def test_reproduce_two_epochs_writes_report_curve_and_grid(name, photos_and_train, tmp_path):
    """Zero-DCE++ also exercises the crop: its official test crops 256×192 photos to 252×192 (multiples of 12)."""
    train, photos = photos_and_train
    out = tmp_path / "out"
    reference = _reference(tmp_path / "ref.ckpt", name)
    args = [name, "--data", str(train), "--test", str(photos), "--reference", str(reference),
            "--out", str(out), "--epochs", "2", "--trainer.limit_train_batches", "1", "--data.init_args.image_size",
            "32", "--data.init_args.batch_size", "2", "--data.init_args.num_workers", "0", "--run.wandb", "false",
            "--trainer.enable_progress_bar", "false"]
    reproduce.main(args)
    runs = out / "runs" / name
    ckpts = reproduce.epoch_checkpoints(runs / "train" / "checkpoints")
    assert [e for e, _ in ckpts] == [1, 2]
    first, second = (torch.load(p, weights_only=True)["state_dict"] for _, p in ckpts)
    assert any(not torch.equal(first[k], second[k]) for k in first if k.startswith("net."))  # each epoch its own
    report = (out / "report.md").read_text()
    assert "| official | – |" in report and "| ours | 1 |" in report and "| ours | 2 |" in report
    assert "3 images" in report and "## Per photo, epoch 2" in report
    assert report.count("| A_p0 |") == 1  # one row per photo, ids from folder + name
    for png in ("learning_curve.png", "grid.png"):
        assert (out / png).stat().st_size > 1000
    labels = sorted(p.name for p in (out / "official_labels" / "Label").iterdir())
    assert labels == ["A_p0.png", "A_p1.png", "B_p2.png"]
    # a second call resumes: training is complete, every evaluation is reused, the report is rewritten
    if name == "zero_dce_pp":
        assert load_tensor(out / "official_labels" / "A_p0" / "A_p0.png").shape[-2:] == (192, 252)
    tags = {d.name: json.loads((d / "results.json").read_text())["config"]["run"]["tags"]
            for d in runs.glob("eval-*")}
    assert tags["eval-epoch0002-photos"] == ["reproduction", "ours", "epoch-2"]  # what results.yaml's rows select
    assert tags["eval-epoch0002-to-official"] == ["reproduction", "to-official", "epoch-2"]
    assert tags["eval-official-photos"] == ["reproduction", "official"]
    mtime = (runs / "eval-epoch0002-photos" / "results.json").stat().st_mtime
    reproduce.main(args)
    assert (runs / "eval-epoch0002-photos" / "results.json").stat().st_mtime == mtime


def test_reproduce_refuses_missing_inputs(tmp_path, capsys):
    with pytest.raises(SystemExit):
        reproduce.main(["zero_dce", "--data", str(tmp_path / "nope"), "--test", str(tmp_path), "--reference",
                        str(tmp_path)])
    err = capsys.readouterr().err
    assert "--data" in err and "not found" in err


def test_curve_png_has_points_and_target(tmp_path):
    path = curve_png([(1, 20.5), (2, 24.0), (3, 26.5)], tmp_path / "c.png", "t", target=30.0)
    from PIL import Image

    img = Image.open(path).convert("RGB")
    assert img.size == (640, 400)
    colours = {img.getpixel((x, y)) for x in range(60, 620) for y in range(36, 356)}
    assert (200, 0, 0) in colours and (0, 70, 160) in colours  # the target line and the curve
