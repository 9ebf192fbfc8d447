"""Command-line pieces the tests share, each written once: the short-run trainer and run settings, and per
paper the arguments that point a config at its tiny synthetic dataset (the session fixtures of
``conftest.py``) and shrink its networks.

Imported as ``helpers`` (``from helpers import fast_args``): pytest puts tests/ on sys.path.
"""

from __future__ import annotations

from pathlib import Path

import yaml

PHONES = ("iphone", "sony", "blackberry")  # the DPED phones (the ``dped_root`` fixture writes all three)
DISC_WIDTH = 0.125  # DPED test discriminator: 1/8 width, 0.1M instead of 7.4M parameters

#: How each paper's tests shorten a run: :func:`fast_args`'s settings for ``paper=``. Zero-DCE keeps its
#: (offline) W&B logger; DPED counts iterations (no epoch limit) and validates every step.
PAPER_FAST: dict[str, dict] = {"zero_dce": {"wandb": True}, "deepfuse": {"summary": False},
                               "dped": {"max_epochs": None, "val": "step"}, "refusion": {"max_epochs": None}}


# -- trainer and run ------------------------------------------------------------------------------------------
def run_args(tmp: Path, *, wandb: bool = False, summary: bool = True) -> list[str]:
    """No progress bar, runs under ``tmp/runs``, no W&B logger unless ``wandb`` (then offline, from the
    environment); ``summary=False`` also turns the model summary off."""
    args = ["--trainer.enable_progress_bar", "false"]
    if not summary:
        args += ["--trainer.enable_model_summary", "false"]
    args += ["--run.root", str(tmp / "runs")]
    if not wandb:
        args += ["--run.wandb", "false"]
    return args


def fast_args(tmp: Path, steps: int = 1, *, paper: str | None = None, **settings) -> list[str]:
    """A run of ``steps`` optimiser steps on one validation and one test batch, without the sanity check,
    plus :func:`run_args`; ``paper`` picks that paper's :data:`PAPER_FAST` settings, ``settings`` override them.

    Settings: ``max_epochs`` (1; ``None`` leaves the config's value); ``val``: ``"epoch"`` (the default)
    validates once per epoch, ``"step"`` every step (``val_check_interval 1``, ``check_val_every_n_epoch
    null``), ``None`` passes no validation settings; ``wandb`` and ``summary`` as in :func:`run_args`.
    """
    return _fast_args(tmp, steps, **{**PAPER_FAST.get(paper or "", {}), **settings})


def _fast_args(tmp: Path, steps: int, *, max_epochs: int | None = 1, val: str | None = "epoch",
               wandb: bool = False, summary: bool = True) -> list[str]:
    args = ["--trainer.max_steps", str(steps)]
    if max_epochs is not None:
        args += ["--trainer.max_epochs", str(max_epochs)]
    if val is not None:
        args += ["--trainer.limit_val_batches", "1"]
    args += ["--trainer.limit_test_batches", "1", "--trainer.num_sanity_val_steps", "0"]
    if val == "epoch":
        args += ["--trainer.check_val_every_n_epoch", "1"]
    elif val == "step":
        args += ["--trainer.val_check_interval", "1", "--trainer.check_val_every_n_epoch", "null"]
    elif val is not None:
        raise ValueError(f"val must be 'epoch', 'step' or None, not {val!r}")
    return args + run_args(tmp, wandb=wandb, summary=summary)


# -- per paper: data (and network size) -----------------------------------------------------------------------
def zero_dce_args(root: Path, image_size: int = 32, *, val: bool = True, test: bool = True) -> list[str]:
    """The ``sice_root`` layout: Dataset_Part1 trains, Dataset_Part2 validates (``val``) and tests
    (``test``)."""
    args = ["--data.init_args.train_root", str(root / "Dataset_Part1")]
    if val:
        args += ["--data.init_args.val_root", str(root / "Dataset_Part2")]
    if test:
        args += ["--data.init_args.test_root", str(root / "Dataset_Part2")]
    return args + ["--data.init_args.image_size", str(image_size), "--data.init_args.batch_size", "2",
                   "--data.init_args.num_workers", "0", "--data.init_args.eval_size", "null"]


def deepfuse_args(root: Path, *, batch_size: int = 2, val_split: str = "test") -> list[str]:
    """An exposure-stack root (``train/``, ``test/``), 24-pixel crops; validation on ``root/val_split``."""
    return ["--data.init_args.train_root", str(root / "train"),
            "--data.init_args.val_root", str(root / val_split),
            "--data.init_args.test_root", str(root / "test"), "--data.init_args.crop_size", "24",
            "--data.init_args.batch_size", str(batch_size), "--data.init_args.num_workers", "0"]


def dped_args(root: Path) -> list[str]:
    """The ``dped_root`` layout, a narrow generator (8 channels) and discriminator (:data:`DISC_WIDTH`) so
    that a step takes a fraction of a second on a CPU."""
    return ["--data.init_args.root", str(root), "--data.init_args.batch_size", "2",
            "--data.init_args.num_workers", "0", "--data.init_args.val_max_patches", "2",
            "--model.init_args.generator.init_args.channels", "8",
            "--model.init_args.discriminator.init_args.width", str(DISC_WIDTH)]


def refusion_task(configs: list[str]) -> str:
    """The task of the recipe in ``configs`` (as ``config_args``/``demo_configs`` give them: recipe first)."""
    return yaml.safe_load(Path(configs[1]).read_text())["model"]["init_args"]["task"]


def refusion_args(configs: list[str], fusion_data: dict[str, tuple[Path, str]], *,
                  val_split: str = "test") -> list[str]:
    """The ``fusion_data`` root of the recipe's task, 32-pixel crops, batch 1, one meta step; validation on
    ``root/val_split``."""
    root, layout = fusion_data[refusion_task(configs)]
    return ["--data.init_args.root", str(root), "--data.init_args.layout", layout,
            "--data.init_args.val_root", str(root / val_split), "--data.init_args.crop_size", "32",
            "--data.init_args.batch_size", "1", "--data.init_args.num_workers", "0",
            "--model.init_args.meta_steps", "1"]


# -- configs ----------------------------------------------------------------------------------------------------
def contains(actual, expected) -> bool:
    """``expected`` equals ``actual``, or (for dicts, e.g. a network's ``init_args``) is a subset of it."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and contains(actual[k], v) for k, v in expected.items())
    return actual == expected


def assert_overlay_applied(cli, overlay: Path) -> None:
    """Every ``model.init_args`` / ``data.init_args`` value of an ablation overlay reached the module's or the
    DataModule's hyper-parameters (nested network arguments as a subset)."""
    config = yaml.safe_load(Path(overlay).read_text())
    for section, target in (("model", cli.model), ("data", cli.datamodule)):
        for key, value in ((config.get(section) or {}).get("init_args") or {}).items():
            assert contains(target.hparams[key], value), f"{section}.init_args.{key}"
