"""The DeepFuse LightningModule and its configs: every config runs a fit step, forward shapes and range,
the released weights in a module, the MEF-SSIM training signal, results.json with the baselines
(the 2-process DDP fit on CPU: test_ddp.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from helpers import assert_overlay_applied, deepfuse_args, fast_args

from experiments.cli import cli_main
from experiments.demos import config_args, demo_configs
from experiments.lightning_cli import last_checkpoint
from lightning_modules.deepfuse import DeepFuse, rgb_to_ycbcr

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "experiments" / "deepfuse"
FULL_CONFIGS = sorted(p for p in CONFIGS.glob("*.yaml") if p.name != "results.yaml")
ABLATIONS = sorted((CONFIGS / "ablations").glob("*.yaml"))


def test_sweeps_and_results_are_valid_yaml():
    for path in [CONFIGS / "results.yaml", *sorted((CONFIGS / "sweeps").glob("*.yaml"))]:
        assert yaml.safe_load(path.read_text()), path
    loss = yaml.safe_load((CONFIGS / "sweeps" / "loss_comparison.yaml").read_text())
    assert loss["command"][:5] == ["${env}", "darkroom", "fit", "-c", "experiments/deepfuse/paper.yaml"]
    assert loss["parameters"]["model.init_args.loss"]["values"] == ["mef_ssim", "l1", "mse"]
    pairs = yaml.safe_load((CONFIGS / "sweeps" / "pairs_vs_stacks.yaml").read_text())
    assert pairs["parameters"]["data.init_args.exposures"]["values"] == ["extreme_pair", "all"]
    tables = {t["name"]: t for t in yaml.safe_load((CONFIGS / "results.yaml").read_text())["tables"]}
    mefb = tables["mefb_average"]["rows"]
    assert {"method": "DeepFuse (released DF_model_Epoch99)", "ms_mef_ssim": 0.896786}.items() <= mefb[19].items()


@pytest.mark.parametrize("config", FULL_CONFIGS, ids=lambda p: p.name)
def test_every_config_runs_a_step(config, small_stacks_root, tmp_path):
    cli = cli_main(["fit", *config_args(config), *deepfuse_args(small_stacks_root),
                    *fast_args(tmp_path, paper="deepfuse")])
    assert cli.trainer.global_step == 1
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])


@pytest.mark.parametrize("config", ABLATIONS, ids=lambda p: p.name)
def test_every_ablation_config_runs_a_step(config, small_stacks_root, tmp_path):
    cli = cli_main(["fit", "-c", str(CONFIGS / "paper.yaml"), "-c", str(config), *deepfuse_args(small_stacks_root),
                    *fast_args(tmp_path, paper="deepfuse")])
    assert_overlay_applied(cli, config)
    assert cli.datamodule.train_set.transform is not None  # albumentations crops and flips
    assert cli.trainer.global_step == 1 and torch.isfinite(cli.trainer.callback_metrics["train/loss"])


@pytest.mark.parametrize("loss", ["l1", "mse"])
def test_pixel_losses_run_a_step(loss, small_stacks_root, tmp_path):
    cli = cli_main(["fit", *demo_configs("deepfuse"), *deepfuse_args(small_stacks_root),
                    *fast_args(tmp_path, paper="deepfuse"), "--model.init_args.loss", loss,
                    "--model.init_args.pixel_target", "mertens"])
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])
    assert -1 <= float(cli.trainer.callback_metrics["train/mef_ssim"]) <= 1  # MEF-SSIM lies in [-1, 1]


def test_forward_shapes_and_range():
    torch.manual_seed(0)
    model = DeepFuse(log_images=0).eval()
    for k in (2, 3):
        sources = torch.rand(2, k, 3, 20, 28)
        with torch.no_grad():
            fused = model(sources)
        assert fused.shape == (2, 3, 20, 28) and fused.dtype == torch.float32
        assert 0.0 <= fused.min() and fused.max() <= 1.0
    with pytest.raises(ValueError, match="K = 1"):
        model(torch.rand(1, 1, 3, 20, 28))


def test_from_official_forward(shared):
    path = shared("weights/deepfuse/DF_model_Epoch99.npz")
    model = DeepFuse.from_official(path).eval()
    stack = torch.stack([torch.full((3, 32, 32), 0.1), torch.full((3, 32, 32), 0.9)]).unsqueeze(0)
    stack = stack + 0.05 * torch.rand_like(stack)
    with torch.no_grad():
        fused = model(stack)
    assert fused.shape == (1, 3, 32, 32) and torch.isfinite(fused).all()
    assert model.hparams.pretrained == str(path)


def test_training_steps_improve_mef_ssim(small_stacks_root):
    from datamodules.exposure_stacks import ExposureStackDataset, find_stacks

    torch.manual_seed(0)
    stacks = find_stacks(small_stacks_root / "train")
    sources = ExposureStackDataset(stacks, "extreme_pair")[0]["sources"][None, ..., :32, :32]
    model = DeepFuse(log_images=0)
    opt = model.configure_optimizers()
    y = rgb_to_ycbcr(sources)[:, :, :1]
    losses = []
    for _ in range(4):
        loss = model.training_step({"sources": sources}, 0)
        opt.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.net.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    with torch.no_grad():
        from losses.mef_ssim import mef_ssim

        assert mef_ssim(model.net(y), y).item() == pytest.approx(1 - model.training_step({"sources": sources}, 0).item(),
                                                                  abs=1e-5)


def test_test_writes_results_with_baselines(small_stacks_root, tmp_path):
    args = [*demo_configs("deepfuse"), *deepfuse_args(small_stacks_root),
            *fast_args(tmp_path, paper="deepfuse"), "--run.name", "t"]
    fit = cli_main(["fit", *args])
    last = last_checkpoint(fit.trainer)
    test = cli_main(["test", *args, "--ckpt_path", last])
    results = json.loads(Path(test.results_writer.path).read_text())
    metrics = results["metrics"]
    assert {"mef_ssim", "ms_mef_ssim", "mean_mef_ssim", "mean_ms_mef_ssim", "mertens_mef_ssim",
            "mertens_ms_mef_ssim"} <= set(metrics)
    assert all(0 < v <= 1 for v in metrics.values())
    assert results["paper"] == "deepfuse"
    assert test.model.last_grid_path is not None and Path(test.model.last_grid_path).is_file()
    samples = Path(results["run_dir"]) / "samples"  # what `darkroom compare` lays out across runs
    assert list((samples / "input").glob("*.png")) and list((samples / "output").glob("*.png"))
