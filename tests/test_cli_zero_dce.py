"""The `darkroom` command on Zero-DCE: every config runs a step, print_config round-trips, results.json,
resume, predict at full resolution (2-process DDP on CPU: test_ddp.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import contains, fast_args, run_args, zero_dce_args

from experiments.cli import cli_main
from experiments.demos import config_args, demo_configs

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "experiments" / "zero_dce"
FULL_CONFIGS = sorted(p for p in CONFIGS.glob("*.yaml") if p.name != "results.yaml")
PARTIAL_CONFIGS = sorted((CONFIGS / "ablations").glob("*.yaml"))


def test_sweeps_and_results_are_valid_yaml():
    for path in [CONFIGS / "results.yaml", *sorted((CONFIGS / "sweeps").glob("*.yaml"))]:
        data = yaml.safe_load(path.read_text())
        assert data, path
    sweep = yaml.safe_load((CONFIGS / "sweeps" / "loss_ablation.yaml").read_text())
    assert sweep["command"][:3] == ["${env}", "darkroom", "fit"]
    assert len(sweep["parameters"]["model.init_args.loss_weights"]["values"]) == 5


@pytest.mark.parametrize("config", FULL_CONFIGS, ids=lambda p: p.name)
def test_every_full_config_runs_a_step(config, sice_root, tmp_path):
    cli = cli_main(["fit", *config_args(config), *zero_dce_args(sice_root),
                    *fast_args(tmp_path, paper="zero_dce")])
    assert cli.trainer.global_step == 1
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])


@pytest.mark.parametrize("config", PARTIAL_CONFIGS, ids=lambda p: p.name)
def test_every_ablation_config_runs_a_step(config, sice_root, tmp_path):
    cli = cli_main(["fit", "-c", str(CONFIGS / "paper.yaml"), "-c", str(config), *zero_dce_args(sice_root),
                    *fast_args(tmp_path, paper="zero_dce")])
    overrides = yaml.safe_load(config.read_text())["model"]["init_args"]
    for key, value in overrides.items():
        assert contains(getattr(cli.model.hparams, key), value), key
    assert cli.trainer.global_step == 1


def test_print_config_round_trips(tmp_path):
    def dump(*cfgs: str) -> str:
        out = subprocess.run([sys.executable, "-m", "experiments.cli", "fit", *sum((["-c", c] for c in cfgs), []),
                              "--print_config"], capture_output=True, text=True, cwd=REPO, check=True)
        return out.stdout

    first = dump(str(CONFIGS / "paper.yaml"), str(CONFIGS / "ablations" / "3-32-8.yaml"))
    saved = tmp_path / "printed.yaml"
    saved.write_text(first)
    assert dump(str(saved)) == first
    cfg = yaml.safe_load(first)
    assert cfg["model"]["init_args"]["net"]["init_args"]["n_layers"] == 3
    assert cfg["model"]["init_args"]["loss_weights"]["tv"] == 200.0


def test_fit_resume_test_predict(sice_root, tmp_path):
    config = demo_configs("zero_dce")
    args = [*config, *zero_dce_args(sice_root), "--run.name", "resume"]
    fit = cli_main(["fit", *args, *fast_args(tmp_path, 2, paper="zero_dce"), "--trainer.max_epochs", "5"])
    run_dir = tmp_path / "runs" / "zero_dce" / "resume"
    last = run_dir / "checkpoints" / "last.ckpt"
    assert fit.trainer.global_step == 2 and last.exists()
    wandb_id = (run_dir / "wandb_id.txt").read_text()
    assert (run_dir / "logs" / "fit_0" / "config.yaml").exists()
    assert (run_dir / "logs" / "fit_0" / "metrics.csv").exists()

    resumed = cli_main(["fit", *args, *fast_args(tmp_path, 4, paper="zero_dce"), "--trainer.max_epochs", "5",
                        "--ckpt_path", str(last)])
    assert resumed.trainer.global_step == 4
    assert (run_dir / "logs" / "fit_0" / "metrics.csv").exists()  # the first run's curves are kept
    assert (run_dir / "logs" / "fit_1" / "metrics.csv").exists()
    assert resumed.run_dir == run_dir
    wandb_logger = [lg for lg in resumed.trainer.loggers if type(lg).__name__ == "WandbLogger"][0]
    assert wandb_logger.version == wandb_id
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 4
    assert len(list((run_dir / "wandb").glob(f"offline-run-*-{wandb_id}"))) >= 1

    test = cli_main(["test", *args, *fast_args(tmp_path, paper="zero_dce"), "--ckpt_path", str(last)])
    results = json.loads((run_dir / "results.json").read_text())
    assert results == json.loads(Path(test.results_writer.path).read_text())
    assert {"psnr", "ssim", "mae", "input_psnr"} <= set(results["metrics"])
    assert results["checkpoint"] == str(last.resolve())
    assert results["config"]["model"]["class_path"] == "lightning_modules.zero_dce.ZeroDCE"
    assert results["dataset_root"]["test_root"].endswith("Dataset_Part2")
    assert results["git_commit"]

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    from PIL import Image

    Image.fromarray(rng.integers(0, 80, (37, 53, 3), dtype=np.uint8)).save(photos / "odd.PNG")
    Image.fromarray(rng.integers(0, 80, (20, 31, 3), dtype=np.uint8)).save(photos / "small.jpg")
    out = tmp_path / "enhanced"
    cli_main(["predict", *config, "--data.init_args.predict_root", str(photos), "--ckpt_path", str(last),
              "--run.output_dir", str(out), *run_args(tmp_path, wandb=True)])
    written = {p.name: Image.open(p).size for p in out.glob("*.png")}
    assert written == {"odd.png": (53, 37), "small.png": (31, 20)}


def test_an_integer_batch_limit_is_a_count_of_batches(tmp_path):
    """``--trainer.limit_val_batches 1`` is one batch (Lightning 2.6's ``float | int`` made it 1.0 = every batch);
    ``1.0`` and ``0.25`` stay fractions (experiments/trainer.py)."""
    config = str(REPO / "experiments" / "zero_dce" / "paper.yaml")
    cli = cli_main(["-c", config, "--trainer.limit_val_batches", "1", "--trainer.limit_train_batches=0.25",
                    "--trainer.limit_test_batches", "1.0", "--run.root", str(tmp_path), "--run.wandb", "false"],
                   run=False)
    assert type(cli.trainer.limit_val_batches) is int and cli.trainer.limit_val_batches == 1
    assert cli.trainer.limit_train_batches == 0.25 and type(cli.trainer.limit_test_batches) is float


@pytest.mark.parametrize("typo, suggestion", [
    (["--data.init_args.trian_root", "x"], "Option 'trian_root' is not accepted; did you mean --data.init_args.train_root?"),
    (["--trainer.max_epocs", "3"], "unrecognized arguments: --trainer.max_epocs 3; did you mean --trainer.max_epochs?"),
])
def test_a_config_typo_is_one_line_with_the_nearest_option(typo, suggestion, capsys):
    from experiments.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(REPO / "experiments" / "zero_dce" / "paper.yaml"), *typo])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("darkroom fit: error: ") and suggestion in err[0], err
