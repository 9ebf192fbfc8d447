"""``darkroom reproduce`` end to end on tiny data: 2 one-step epochs, the official-model comparison, the report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
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


# -- the recipes scored by their own test metrics: DeepFuse, ReFusion IVIF, DPED iPhone -------------------------------
_TINY = ["--epochs", "2", "--trainer.limit_train_batches", "1", "--data.init_args.num_workers", "0",
         "--run.wandb", "false", "--trainer.enable_progress_bar", "false"]


def _stand_in(module, path: Path) -> Path:
    """A seeded module's networks as a Darkroom checkpoint: the official model's stand-in (``load_pretrained`` reads
    both kinds), so the tests need no research-only weight file."""
    torch.save({"state_dict": module.state_dict()}, path)
    return path


def _real_crop(path: Path, box: tuple[int, int, int, int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).crop(box))


def _msrs_layout(root: Path, shared_root: Path) -> Path:
    """ReFusion's MSRS layout ``{train,test}/{ir,vi}/<name>.png`` from the real IR–visible pairs of
    ``shared/data/fusion/ir_vis`` (64×64 crops), or, without them, synthetic pairs in the same layout."""
    from datamodules.image_io import write_uint8
    from datamodules.synthetic.fusion_pairs import write_ir_visible

    pairs = shared_root / "fusion" / "ir_vis"
    if not (pairs / "MSRS_00710N_ir.png").is_file():
        return write_ir_visible(root, n_train=2, n_test=1, size=(64, 64))
    for split, names in (("train", ["MSRS_00710N", "TNO_05"]), ("test", ["MSRS_00906N"])):
        for name in names:
            for kind in ("ir", "vi"):
                write_uint8(root / split / kind / f"{name}.png", _real_crop(pairs / f"{name}_{kind}.png",
                                                                           (100, 100, 164, 164)))
    return root


def _dped_layout(root: Path, shared_root: Path) -> Path:
    """DPED's layout ``iphone/{training_data,test_data/patches}/{iphone,canon}/<i>.jpg`` (100×100 patches) from a real
    aligned pair, the under- and normally exposed Venice photos of ``shared/data/exposure_stacks`` (phone = under,
    DSLR = normal), or, without them, noise patches in the same layout."""
    import numpy as np

    from datamodules.image_io import write_uint8

    venice = shared_root / "exposure_stacks" / "Venice"
    rng = np.random.default_rng(0)
    for split, n in (("training_data", 2), ("test_data/patches", 2)):
        for i in range(n):
            box = (100 * i + (0 if split == "training_data" else 300), 100, 100 * i + 100 + (
                0 if split == "training_data" else 300), 200)
            if (venice / "venice_under.png").is_file():
                phone = _real_crop(venice / "venice_under.png", box)[..., :3]
                canon = _real_crop(venice / "venice_normal.png", box)[..., :3]
            else:
                canon = rng.integers(40, 220, (100, 100, 3)).astype(np.uint8)
                phone = (canon * 0.6).astype(np.uint8)
            write_uint8(root / "iphone" / split / "canon" / f"{i}.jpg", np.ascontiguousarray(canon))
            write_uint8(root / "iphone" / split / "iphone" / f"{i}.jpg", np.ascontiguousarray(phone))
    return root


def _assert_metrics_report(out: Path, rows: list[str]) -> str:
    report = (out / "report.md").read_text()
    for row in ["| official | – |", "| ours | 1 |", "| ours | 2 |", *rows]:
        assert row in report, (row, report)
    assert (out / "learning_curve.png").stat().st_size > 1000 and (out / "grid.png").stat().st_size > 1000
    return report


def test_reproduce_deepfuse_holds_out_scenes_and_reports_baselines(stacks_root, tmp_path):
    """Scenes of --data named by --holdout, plus the --test scenes, are the test set (links, nothing copied)."""
    from lightning_modules.deepfuse import DeepFuse

    torch.manual_seed(5)
    reference = _stand_in(DeepFuse(), tmp_path / "ref.ckpt")
    train = stacks_root / "train"
    held_out = sorted(p.name for p in train.iterdir() if p.is_dir())[0]
    out = tmp_path / "out"
    reproduce.main(["deepfuse", "--data", str(train), "--holdout", held_out, "--test", str(stacks_root / "test"),
                    "--reference", str(reference), "--out", str(out), "--data.init_args.crop_size", "24",
                    "--data.init_args.batch_size", "2", "--data.init_args.crops_per_stack", "1", *_TINY])
    split = {s: sorted(p.name for p in (out / "data" / s).iterdir()) for s in ("train", "test")}
    assert held_out not in split["train"] and held_out in split["test"] and len(split["test"]) == 3
    assert all((out / "data" / "train" / n).is_symlink() for n in split["train"])
    report = _assert_metrics_report(out, ["| Mertens (1, 1, 1) | – |", "| exposure mean | – |"])
    assert f"| {held_out} |" in report and "held out from training" in report
    official = json.loads((out / "runs" / "deepfuse" / "eval-official-photos" / "results.json").read_text())
    assert official["dataset"]["count"] == 3 and official["metrics"]["mef_ssim"] > 0


def test_reproduce_deepfuse_refuses_unknown_holdout(stacks_root, tmp_path):
    with pytest.raises(SystemExit, match="no such scene folder"):
        reproduce.main(["deepfuse", "--data", str(stacks_root / "train"), "--holdout", "Nowhere",
                        "--reference", str(tmp_path), "--out", str(tmp_path / "o")])


def test_reproduce_refusion_on_an_msrs_layout(tmp_path):
    """Real IR–visible pairs (when ../shared/data has them) in the MSRS layout a GPU user downloads."""
    from conftest import SHARED

    from lightning_modules.refusion import ReFusion

    torch.manual_seed(5)
    reference = _stand_in(ReFusion(task="ivif"), tmp_path / "ref.ckpt")
    root = _msrs_layout(tmp_path / "MSRS", SHARED)
    out = tmp_path / "out"
    reproduce.main(["refusion_ivif", "--data", str(root), "--reference", str(reference), "--out", str(out),
                    "--data.init_args.crop_size", "32", "--data.init_args.batch_size", "1",
                    "--model.init_args.meta_steps", "1", *_TINY])
    report = _assert_metrics_report(out, ["| pixel mean | – |", "| pixel max | – |"])
    assert "qabf ↑" in report and "1 pair," in report


def test_reproduce_dped_on_the_dped_layout(tmp_path):
    """A real aligned pair (when ../shared/data has it) cut into DPED's patch layout; our narrow generator is tested
    with the same architecture options it was trained with (``--model.…`` reaches our evaluations)."""
    from conftest import SHARED
    from helpers import DISC_WIDTH

    from lightning_modules.dped import DPED

    torch.manual_seed(5)
    reference = _stand_in(DPED(), tmp_path / "ref.ckpt")
    root = _dped_layout(tmp_path / "dped", SHARED)
    out = tmp_path / "out"
    reproduce.main(["dped_iphone", "--data", str(root), "--reference", str(reference), "--out", str(out),
                    "--data.init_args.batch_size", "2", "--model.init_args.generator.init_args.channels", "8",
                    "--model.init_args.discriminator.init_args.width", str(DISC_WIDTH),
                    "--model.init_args.content_network", "torch.nn.Identity", "--trainer.val_check_interval", "1",
                    "--trainer.limit_val_batches", "1", *_TINY])
    _assert_metrics_report(out, ["| phone input | – |"])


def test_model_options_pass_only_the_models():
    assert reproduce.model_options(["--trainer.max_steps", "2", "--model.init_args.lr", "1e-4", "--flag",
                                    "--model.init_args.net.init_args.n_layers=5"]) == [
        "--model.init_args.lr", "1e-4", "--model.init_args.net.init_args.n_layers=5"]


def test_zero_dce_loss_probe_scores_every_epoch_and_the_weight_average(tmp_path):
    """``experiments.zero_dce_loss_probe`` on stand-ins: the official loss per epoch and for the mean of the weights."""
    import numpy as np

    from datamodules.image_io import write_uint8
    from experiments import zero_dce_loss_probe

    rng = np.random.default_rng(0)
    for folder, n in (("train", 3), ("photos", 2)):
        for i in range(n):
            write_uint8(tmp_path / folder / f"{i}.png", rng.integers(0, 120, (40, 48, 3)).astype(np.uint8))
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    _reference(ckpts / "epoch=0001.ckpt")
    torch.save({"state_dict": {f"net.{k}": v * 0.5 for k, v in ZeroDCE(log_images=0).net.state_dict().items()}},
               ckpts / "epoch=0002.ckpt")
    out = zero_dce_loss_probe.main(["--train", str(tmp_path / "train"), "--checkpoints", str(ckpts), "--reference",
                                    str(_reference(tmp_path / "ref.ckpt")), "--n", "3", "--test",
                                    str(tmp_path / "photos"), "--average-from", "1"])
    models = out["models"]
    assert list(models) == ["official", "epoch 1", "epoch 2", "mean of epochs 1-2"] and out["n_train_images"] == 3
    assert {k: models["epoch 1"][k] for k in models["official"]} == models["official"]  # the reference's own weights
    assert models["epoch 1"]["loss_minus_official"] == 0 and models["epoch 1"]["batches_below_official"] == 0
    assert models["epoch 2"]["loss_minus_official"] == pytest.approx(models["epoch 2"]["total"] - models["official"]["total"])
    assert {"spa", "exp", "col", "tv", "total", "brightness"} <= set(models["epoch 2"])
    assert models["mean of epochs 1-2"]["n_photos"] == 2 and models["mean of epochs 1-2"]["psnr_to_official"] > 0
    only = zero_dce_loss_probe.main(["--train", str(tmp_path / "train"), "--checkpoints", str(ckpts), "--reference",
                                     str(tmp_path / "ref.ckpt"), "--n", "0", "--epochs", "2"])
    assert list(only["models"]) == ["official", "epoch 2"] and only["n_train_images"] == 3
