"""The DPED LightningModule through the `darkroom` command: every config in experiments/dped runs a step, the VGG
error names where the weights go, manual optimisation updates G and D, the VGG stays out of checkpoints,
results.json, the official metrics (MS-SSIM against a port of the official ssim.py) and the released generator
on an odd-sized image (the 2-process DDP fit on CPU: test_ddp.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import DISC_WIDTH, PHONES, assert_overlay_applied, dped_args, fast_args, run_args
from lightning.pytorch import Trainer

from datamodules.dped import DPEDDataModule
from datamodules.image_io import read_image
from experiments.cli import cli_main
from experiments.demos import config_args, demo_configs
from lightning_modules.dped import DPED, DPEDDiscriminator, DPEDGenerator
from losses.vgg import VGG19Features
from metrics.dped import ms_ssim_dped, psnr_dped

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "experiments" / "dped"
FULL_CONFIGS = sorted(p for p in CONFIGS.glob("*.yaml") if p.name != "results.yaml")
ABLATIONS = sorted((CONFIGS / "ablations").glob("*.yaml"))
RANDOM_VGG = '{"class_path": "losses.vgg.VGG19Features", "init_args": {"pretrained": false}}'


def small_dped(random_vgg: bool = False, **kwargs) -> DPED:
    """A DPED with an 8-channel generator and a 1/8-width discriminator (test doubles of the official networks)."""
    vgg = VGG19Features("relu5_4", pretrained=False) if random_vgg else None
    return DPED(generator=DPEDGenerator(channels=8), discriminator=DPEDDiscriminator(width=DISC_WIDTH),
                content_network=vgg, **kwargs)


@pytest.mark.parametrize("config", ABLATIONS, ids=lambda p: p.name)
def test_every_ablation_config_runs_a_step(config: Path, dped_root: Path, tmp_path: Path) -> None:
    cli = cli_main(["fit", "-c", str(CONFIGS / "iphone.yaml"), "-c", str(config), *dped_args(dped_root),
                    *fast_args(tmp_path, paper="dped"), "--run.name", "ablation",
                    "--model.init_args.content_network", RANDOM_VGG])
    assert_overlay_applied(cli, config)
    if "augment" in config.stem:
        assert cli.datamodule.train_set.transform is not None  # albumentations flips/rotations
    assert cli.trainer.global_step == 1 and torch.isfinite(cli.trainer.callback_metrics["train/loss"])


def test_sweep_and_results_yaml() -> None:
    sweep = yaml.safe_load((CONFIGS / "sweeps" / "loss_ablation.yaml").read_text())
    assert sweep["command"][:5] == ["${env}", "darkroom", "fit", "-c", "experiments/dped/iphone.yaml"]
    values = [json.loads(v) for v in sweep["parameters"]["model.init_args.loss_weights"]["values"]]
    assert values == [{}, {"content": 0.0}, {"color": 0.0}, {"texture": 0.0}, {"tv": 0.0}]
    results = yaml.safe_load((CONFIGS / "results.yaml").read_text())
    paper_rows = results["tables"][0]["rows"]
    assert all(r["psnr"] is None and r["ssim"] is None for r in paper_rows)  # the paper was not retrieved


@pytest.mark.parametrize("config", FULL_CONFIGS, ids=lambda p: p.name)
def test_every_config_runs_a_step(config: Path, dped_root: Path, tmp_path: Path) -> None:
    extra = []
    if config.stem in ("iphone", "reproduce"):  # content on, with a random-init VGG-19 (no weights on this machine)
        extra = ["--model.init_args.content_network", RANDOM_VGG]
    elif config.stem in PHONES:  # content off, in the form the loss-ablation sweep passes it
        extra = ['--model.init_args.loss_weights={"content": 0.0}']
    cli = cli_main(["fit", *config_args(config), *dped_args(dped_root), *fast_args(tmp_path, paper="dped"),
                    "--run.name", "step", *extra])
    assert cli.trainer.global_step == 1  # one iteration = one G and one D update
    metrics = cli.trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"]) and "val/psnr" in metrics and "train/loss_d" in metrics
    if config.stem in PHONES and config.stem != "iphone":  # the sweep value switched the term off
        assert cli.model.weights == {"content": 0.0, "color": 0.5, "texture": 1.0, "tv": 2000.0}
        assert "train/loss_content" not in metrics and "train/loss_color" in metrics
    if config.stem == "iphone":
        assert "train/loss_content" in metrics
        ckpt = torch.load(tmp_path / "runs" / "dped" / "step" / "checkpoints" / "last.ckpt", map_location="cpu",
                          weights_only=False)
        assert not [k for k in ckpt["state_dict"] if ".vgg." in k]  # the frozen VGG-19 stays out
        assert len(ckpt["optimizer_states"]) == 2
        model = small_dped(random_vgg=True)
        model.load_state_dict(ckpt["state_dict"])  # strict: nothing else missing


def test_sweep_value_switches_a_term_off(dped_root: Path, tmp_path: Path) -> None:
    """The sweep's form on the sweep's config (iphone.yaml); that such a run trains without the term is checked on
    sony.yaml and blackberry.yaml in :func:`test_every_config_runs_a_step`."""
    cli = cli_main(["-c", str(CONFIGS / "iphone.yaml"), *dped_args(dped_root),
                    *fast_args(tmp_path, paper="dped"), '--model.init_args.loss_weights={"content": 0.0}',
                    "--run.name", "sweep"], run=False)
    assert cli.model.weights == {"content": 0.0, "color": 0.5, "texture": 1.0, "tv": 2000.0}
    assert cli.model.build_loss().vgg is None  # no VGG-19 built, so no content term


def test_content_on_without_vgg_names_where_to_put_it(dped_root: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DARKROOM_VGG19", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    expected = str(tmp_path / "torch_home" / "hub" / "checkpoints" / "imagenet-vgg-verydeep-19.mat")
    with pytest.raises(FileNotFoundError, match="VGG-19 weights not found") as err:
        cli_main(["fit", "-c", str(CONFIGS / "iphone.yaml"), *dped_args(dped_root),
                  *fast_args(tmp_path, paper="dped")])
    assert expected in str(err.value) and "DARKROOM_VGG19" in str(err.value)


def test_pixel_content_stand_in_is_the_per_pixel_mse(dped_root: Path, tmp_path: Path) -> None:
    """``content_network: torch.nn.Identity`` (the demo's stand-in without VGG-19 weights) needs no weight file and makes the
    content term the plain MSE on [0, 1]; an unknown backbone is refused."""
    cli = cli_main([*demo_configs("dped"), *dped_args(dped_root), *fast_args(tmp_path, paper="dped")],
                   run=False)
    assert cli.model.hparams.content_network["class_path"] == "torch.nn.Identity"
    assert cli.model.weights["content"] > 0
    loss = cli.model.build_loss()
    e, d = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    terms = loss(e, d, torch.zeros(2, 2))
    torch.testing.assert_close(terms["content"], (e - d).pow(2).mean())
    assert "content-identity" in cli.model.tags
    with pytest.raises(TypeError, match="a network must be an nn.Module or a"):
        DPED(content_network="resnet")  # type: ignore[arg-type]


def test_manual_step_updates_generator_and_discriminator(dped_root: Path) -> None:
    torch.manual_seed(0)
    model = small_dped(loss_weights={"content": 0.0}, log_images=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    dm = DPEDDataModule(root=str(dped_root), batch_size=2, num_workers=0, val_max_patches=0)
    trainer = Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, dm)
    assert trainer.global_step == 1
    changed = {n.split(".")[0] for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"generator", "discriminator"}
    assert all(p.requires_grad for p in model.parameters())  # toggling restored
    assert model.trainer.callback_metrics["train/loss_texture"] < 0  # Σ log p(enhanced) (DPED #8)


def test_test_writes_results_json(dped_root: Path, tmp_path: Path) -> None:
    config = demo_configs("dped")
    cli_main(["fit", *config, *dped_args(dped_root), *fast_args(tmp_path, paper="dped"), "--run.name", "r"])
    last = tmp_path / "runs" / "dped" / "r" / "checkpoints" / "last.ckpt"
    test = cli_main(["test", *config, *dped_args(dped_root), *fast_args(tmp_path, paper="dped"),
                     "--ckpt_path", str(last)])
    results = json.loads(Path(test.results_writer.path).read_text())
    assert {"psnr", "ms_ssim", "psnr_batch", "input_psnr", "input_ms_ssim"} <= set(results["metrics"])
    assert results["paper"] == "dped" and results["dataset_root"]["root"] == str(dped_root)
    samples = Path(results["run_dir"]) / "samples"  # what `darkroom compare` lays out across runs
    assert all(list((samples / c).glob("*.png")) for c in ("input", "output", "target"))
    out = tmp_path / "enhanced"
    cli_main(["predict", *config, *dped_args(dped_root), "--ckpt_path", str(last), "--run.output_dir",
              str(out), *run_args(tmp_path)])
    assert read_image(out / "photo.png").shape == (37, 53, 3)  # full-size image at native resolution


def _ms_ssim_google(img1: np.ndarray, img2: np.ndarray) -> float:
    """Port of the official DPED ``ssim.MultiScaleSSIM`` (Google's NumPy code), N×H×W×C on [0, 255]."""
    from scipy import signal
    from scipy.ndimage import convolve

    def one_scale(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
        size = min(11, a.shape[1], a.shape[2])
        sigma = size * 1.5 / 11
        r = size // 2
        off, stop = (0.5, r) if size % 2 == 0 else (0.0, r + 1)
        x, y = np.mgrid[off - r:stop, off - r:stop]
        g = np.exp(-((x**2 + y**2) / (2.0 * sigma**2)))
        w = (g / g.sum()).reshape(1, size, size, 1)
        mu1, mu2 = signal.fftconvolve(a, w, mode="valid"), signal.fftconvolve(b, w, mode="valid")
        s11 = signal.fftconvolve(a * a, w, mode="valid") - mu1 * mu1
        s22 = signal.fftconvolve(b * b, w, mode="valid") - mu2 * mu2
        s12 = signal.fftconvolve(a * b, w, mode="valid") - mu1 * mu2
        c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
        v1, v2 = 2.0 * s12 + c2, s11 + s22 + c2
        return float(np.mean(((2.0 * mu1 * mu2 + c1) * v1) / ((mu1 * mu1 + mu2 * mu2 + c1) * v2))), float(
            np.mean(v1 / v2))

    weights = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
    mssim, mcs = [], []
    for _ in range(5):
        s, c = one_scale(img1, img2)
        mssim.append(s)
        mcs.append(c)
        img1, img2 = (convolve(im, np.ones((1, 2, 2, 1)) / 4.0, mode="reflect")[:, ::2, ::2, :] for im in (img1, img2))
    return float(np.prod(np.array(mcs[:4]) ** weights[:4]) * mssim[4] ** weights[4])


@pytest.mark.parametrize("size", [(100, 100), (37, 53)])
def test_metrics_match_the_official_formulas(size: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    target = rng.random((1, *size, 3))
    preds = np.clip(target + 0.1 * rng.standard_normal(target.shape), -0.08, 1.08)  # unclipped range of G
    ours = ms_ssim_dped(torch.from_numpy(preds).permute(0, 3, 1, 2), torch.from_numpy(target).permute(0, 3, 1, 2))
    assert ours.item() == pytest.approx(_ms_ssim_google(preds * 255, target * 255), abs=1e-9)
    mse = np.mean((preds - target) ** 2)
    psnr = psnr_dped(torch.from_numpy(preds).permute(0, 3, 1, 2), torch.from_numpy(target).permute(0, 3, 1, 2))
    assert psnr.item() == pytest.approx(20 * np.log10(1 / np.sqrt(mse)), abs=1e-4)


def test_from_official_on_an_odd_sized_image(shared) -> None:
    prefix = shared("weights/dped/iphone_orig.index").with_suffix("")
    ref_dir = shared("reference/dped_official")
    model = DPED.from_official(prefix).eval()
    crop = read_image(ref_dir / "A_venice_normal_r40_c170_100x100_input.png")
    expected = np.load(ref_dir / "A_venice_normal_r40_c170_100x100_output.npz")["output"]
    with torch.no_grad():
        out = model(torch.from_numpy(crop).permute(2, 0, 1)[None])
        odd = model(torch.from_numpy(crop[:37, :53]).permute(2, 0, 1)[None].contiguous())
    assert np.abs(out[0].permute(1, 2, 0).numpy() - expected).max() < 1e-5
    assert odd.shape == (1, 3, 37, 53) and odd.min() > -0.08 and odd.max() < 1.08
