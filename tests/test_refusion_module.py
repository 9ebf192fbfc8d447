"""ReFusion LightningModule: every config runs a fit step, official weights on colour/grey pairs, meta vs fixed loss,
results.json with the baselines (2-process DDP on CPU: test_ddp.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from helpers import assert_overlay_applied, fast_args, refusion_args
from lightning.pytorch import Trainer

from datamodules.fusion_pairs import FusionPairDataModule
from datamodules.image_io import load_tensor
from experiments.cli import cli_main
from experiments.demos import config_args
from experiments.demos.refusion_parts import ZeroInitFusionNet
from lightning_modules.refusion import LossProposalNet, ReFusion, is_grey
from metrics.fusion import evaluate

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "experiments" / "refusion"
FIT_CONFIGS = sorted(p for p in CONFIGS.glob("*.yaml") if p.name != "results.yaml")
ABLATIONS = sorted((CONFIGS / "ablations").glob("*.yaml"))


def _args(config: Path, fusion_data: dict, tmp: Path) -> list[str]:
    configs = config_args(config)
    return [*configs, *refusion_args(configs, fusion_data), *fast_args(tmp, paper="refusion"), "--run.name", "run"]


def test_sweeps_and_results_are_valid_yaml():
    results = yaml.safe_load((CONFIGS / "results.yaml").read_text())
    ours = [r for t in results["tables"] for r in t["rows"] if r["method"] == "ReFusion"]
    assert ours and all(v is None for r in ours for k, v in r.items() if k in results["tables"][0]["metrics"])
    for name in ("learnable_vs_fixed", "meta_steps"):
        sweep = yaml.safe_load((CONFIGS / "sweeps" / f"{name}.yaml").read_text())
        assert sweep["command"][:5] == ["${env}", "darkroom", "fit", "-c", "experiments/refusion/ivif.yaml"]
        assert sweep["command"][-1] == "${args}" and sweep["metric"]["name"] == "val/qabf"


@pytest.mark.parametrize("config", FIT_CONFIGS, ids=lambda p: p.name)
def test_every_config_runs_a_step(config, fusion_data, tmp_path):
    cli = cli_main(["fit", *_args(config, fusion_data, tmp_path)])
    assert cli.trainer.global_step == 1
    metrics = cli.trainer.callback_metrics
    meta = [v for k, v in metrics.items() if k.startswith("train/meta_loss")]
    assert torch.isfinite(metrics["train/loss"]) and meta and all(torch.isfinite(v) for v in meta)
    if config.name == "demo.yaml":  # test → results.json holds ReFusion and both baselines
        ckpt = tmp_path / "runs" / "refusion" / "run" / "checkpoints" / "last.ckpt"
        test = cli_main(["test", *_args(config, fusion_data, tmp_path), "--ckpt_path", str(ckpt)])
        results = json.loads(Path(test.results_writer.path).read_text())
        assert {"qabf", "mean_qabf", "max_qabf", "en", "mean_ssim", "max_vif"} <= set(results["metrics"])
        assert results["paper"] == "refusion"
        samples = Path(results["run_dir"]) / "samples"  # what `darkroom compare` lays out across runs
        assert list((samples / "input").glob("*.png")) and list((samples / "output").glob("*.png"))


@pytest.mark.parametrize("config", ABLATIONS, ids=lambda p: p.name)
def test_every_ablation_config_runs_a_step(config, fusion_data, tmp_path):
    args = _args(CONFIGS / "ivif.yaml", fusion_data, tmp_path)
    cli = cli_main(["fit", *args[:2], "-c", str(config), *args[2:]])  # recipe, overlay, then the test's arguments
    assert_overlay_applied(cli, config)
    assert cli.datamodule.train_set.transform is not None  # albumentations crop (and flips in flip.yaml)
    assert cli.trainer.global_step == 1 and torch.isfinite(cli.trainer.callback_metrics["train/loss"])


def _p_state(model: ReFusion) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.loss_proposal.state_dict().items()}


@pytest.mark.parametrize("meta", [True, False])
def test_meta_step_updates_loss_proposal_only_in_meta_mode(meta, fusion_data):
    torch.manual_seed(0)
    root, _ = fusion_data["mfif"]
    model = ReFusion(task="mfif", meta=meta, meta_steps=1, meta_accumulation=1, lr=1e-3, log_images=False)
    p0, f0 = _p_state(model), model.fusion.project_out_1.weight.clone()
    dm = FusionPairDataModule("mfif", root=str(root), crop_size=32, batch_size=1, num_workers=0)
    trainer = Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, limit_val_batches=0, accelerator="cpu")
    trainer.fit(model, dm)
    changed = [k for k, v in model.loss_proposal.state_dict().items() if not torch.equal(v, p0[k])]
    assert bool(changed) == meta
    assert not torch.equal(model.fusion.project_out_1.weight, f0)  # F trained in both modes
    assert trainer.global_step == 2  # one per fusion-phase batch; meta iterations do not count


def test_zero_init_output_starts_at_half_and_learns(fusion_data):
    """The demo's zero-initialised F (:class:`ZeroInitFusionNet`): F is a constant 0.5 at init, yet the meta and fusion steps reach all of F and P."""
    torch.manual_seed(0)
    root, _ = fusion_data["mfif"]
    model = ReFusion(fusion=ZeroInitFusionNet(), loss_proposal=LossProposalNet(order_equivariant=True), task="mfif",
                     meta_steps=1, meta_accumulation=1, lr=1e-3, log_images=False)
    x = torch.rand(1, 2, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(model.fuse_y(x, normalize=False), torch.full((1, 1, 16, 16), 0.5))
    p0, f0 = _p_state(model), model.fusion.project_in_1.weight.clone()
    dm = FusionPairDataModule("mfif", root=str(root), crop_size=32, batch_size=1, num_workers=0)
    trainer = Trainer(max_epochs=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, limit_val_batches=0, accelerator="cpu")
    trainer.fit(model, dm)
    assert all(not torch.equal(v, p0[k]) for k, v in model.loss_proposal.state_dict().items() if "out3" in k)
    assert not torch.equal(model.fusion.project_in_1.weight, f0)  # gradients got past the zeroed last conv
    with torch.no_grad():
        assert model.fuse_y(x, normalize=False).std() > 0


def test_from_official_forward_colour_and_grey(shared):
    ir = load_tensor(shared("fusion/ir_vis/MSRS_00710N_ir.png"))[:, 200:264, 300:364]
    vi = load_tensor(shared("fusion/ir_vis/MSRS_00710N_vi.png"))[:, 200:264, 300:364]
    model = ReFusion.from_official(shared("weights/refusion/ReFusion_IVIF.pth"), task="ivif")
    assert not model.training
    with torch.no_grad():
        colour = model(torch.stack([ir, vi])[None])
        grey = model(torch.stack([ir[:1], vi[:1]])[None])
    assert colour.shape == (1, 3, 64, 64) and grey.shape == (1, 1, 64, 64)
    assert bool(is_grey(ir[None])) and not bool(is_grey(colour))  # one colour source → its chroma
    y = 0.299 * colour[:, 0] + 0.587 * colour[:, 1] + 0.114 * colour[:, 2]
    with torch.no_grad():
        fused_y = model.fuse_y(model.luma(torch.stack([ir, vi])[None]))[:, 0]
    assert (y - fused_y).abs().mean() < 5e-3  # Y kept up to the RGB clipping of the recombination
    assert grey.min() == 0 and grey.max() == 1  # official min–max normalisation


def test_official_mri_pet_matches_port_validation(shared):
    """Official MIF weights on MRI-PET 14 (256×256): Qabf/EN within rounding of the research team's values."""
    pet = load_tensor(shared("fusion/medical/MRI_PET_14_pet.png"))
    mri = load_tensor(shared("fusion/medical/MRI_PET_14_mri.png"))
    model = ReFusion.from_official(shared("weights/refusion/ReFusion_MIF.pth"), task="mif")
    with torch.no_grad():
        fused = model(torch.stack([pet, mri])[None])[0]
    q = torch.round(fused * 255.0)  # the saved 8-bit image, re-read as OpenCV grey (rounded)
    grey = torch.round(0.299 * q[0] + 0.587 * q[1] + 0.114 * q[2]) / 255.0

    def src_grey(x: torch.Tensor) -> torch.Tensor:
        return torch.round((0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]) * 255.0) / 255.0

    values = evaluate(grey[None], torch.stack([src_grey(pet), src_grey(mri)])[:, None], metrics=("EN", "Qabf"))
    assert values["Qabf"] == pytest.approx(0.8125, abs=0.01)
    assert values["EN"] == pytest.approx(5.5563, abs=0.05)
