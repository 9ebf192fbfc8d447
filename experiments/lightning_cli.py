"""The LightningCLI behind ``darkroom fit|validate|test|predict`` (see :mod:`experiments.cli`)."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

from experiments.env import configure_environment

configure_environment()
warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
warnings.filterwarnings("ignore", message=".*treespec, LeafSpec.*")
warnings.filterwarnings("ignore", message=".*callbacks used to create the checkpoint need to be provided.*")
for _name in ("lightning.pytorch", "lightning.fabric"):  # drop Lightning's advertising tips from run output
    for _handler in logging.getLogger(_name).handlers:
        _handler.addFilter(lambda record: "💡 Tip" not in record.getMessage())

from lightning.pytorch import LightningDataModule, LightningModule, Trainer  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI  # noqa: E402

from experiments.callbacks import FitTimer, ImageWriter, ResultsWriter  # noqa: E402
from experiments.loggers import make_loggers, new_run_name, run_dir_of_checkpoint, wandb_id  # noqa: E402

_RUN_NAME_ENV = "DARKROOM_RUN_NAME"


class DarkroomCLI(LightningCLI):
    """LightningCLI with Darkroom's run directories, loggers and result files.

    Extra arguments (in every subcommand, and in YAML under ``run:``):
    ``--run.name`` (default: ``<model>-<timestamp>``), ``--run.group`` (default: the model's
    ``paper``), ``--run.tags``, ``--run.root`` (default ``runs``), ``--run.wandb`` (default true),
    ``--run.output_dir`` (predict: where the PNGs go; default ``<run dir>/predictions``).
    A ``--ckpt_path`` inside an existing run directory makes the command work in that run directory
    (resume continues the same W&B run).
    """

    def __init__(self, args: list[str] | None = None, run: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        self.run_dir: Path | None = None
        self.results_writer: ResultsWriter | None = None
        self.image_writer: ImageWriter | None = None
        super().__init__(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
            run=run,
            **kwargs,
        )
        if run:
            _finish_wandb()

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--run.name", type=str | None, default=None, help="Run name (directory and W&B name).")
        parser.add_argument("--run.group", type=str | None, default=None, help="W&B group; default: the paper.")
        parser.add_argument("--run.tags", type=list[str], default=[], help="W&B tags, e.g. the ablation name.")
        parser.add_argument("--run.root", type=str, default="runs", help="Parent folder of run directories.")
        parser.add_argument("--run.wandb", type=bool, default=True, help="Log to Weights & Biases.")
        parser.add_argument("--run.output_dir", type=str | None, default=None,
                            help="predict: folder for the output PNGs (default <run dir>/predictions).")
        parser.add_argument("--run.test_after_fit", type=bool, default=False,
                            help="fit: test the best checkpoint when training ends and write results.json "
                                 "(what sweep runs do).")

    def after_fit(self) -> None:
        if self.config["fit"]["run"].test_after_fit:
            _run_test_after_fit(self)

    # -- run directory -------------------------------------------------------------------------
    def _resolve_run_dir(self, run: Any, ckpt_path: str | None, group: str) -> Path:
        existing = run_dir_of_checkpoint(ckpt_path) if ckpt_path else None
        if existing is not None:
            return existing
        name = run.name
        if name is None:
            # DDP children re-execute this command: they must land in the parent's run directory.
            inherited = os.environ.get(_RUN_NAME_ENV)
            if inherited and os.environ.get("LOCAL_RANK", "0") != "0":
                name = inherited
            else:
                name = new_run_name(type(self.model).__name__.lower())
        os.environ[_RUN_NAME_ENV] = name
        return Path(run.root) / group / name

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        sub = self.subcommand or "fit"
        cfg = self.config[sub] if self.subcommand else self.config
        run = cfg["run"]
        ckpt_path = cfg.get("ckpt_path")
        group = run.group or getattr(self.model, "paper", type(self.model).__name__.lower())
        self.run_dir = self._resolve_run_dir(run, ckpt_path, group)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        config_dict = _namespace_to_dict(cfg)

        trainer_cfg = self._get(self.config_init, "trainer", default={})
        if trainer_cfg.get("logger") in (None, True):
            tags = list(run.tags) + list(getattr(self.model, "tags", []))
            kwargs["logger"] = make_loggers(self.run_dir, group=group, name=self.run_dir.name, tags=tags,
                                            job_type=sub, config=config_dict, use_wandb=run.wandb)
        kwargs.setdefault("default_root_dir", str(self.run_dir))

        callbacks = list(trainer_cfg.get("callbacks") or [])
        if sub == "fit" and trainer_cfg.get("enable_checkpointing", True) is not False:
            monitor, mode = getattr(self.model, "monitor", (None, "min"))
            if not _has_validation(self.datamodule):
                monitor = None
            callbacks.append(ModelCheckpoint(dirpath=str(self.run_dir / "checkpoints"), monitor=monitor, mode=mode,
                                             save_last=True, save_top_k=1,
                                             filename="best-{step}" if monitor else "{step}"))
            callbacks.append(FitTimer(self.run_dir))
        self._config_dict = config_dict
        self._wandb_id = wandb_id(self.run_dir) if run.wandb else None
        if sub == "test":
            self.results_writer = ResultsWriter(self.run_dir, config_dict, ckpt_path, self._wandb_id)
            callbacks.append(self.results_writer)
        if sub == "predict":
            self.image_writer = ImageWriter(run.output_dir or self.run_dir / "predictions")
            callbacks.append(self.image_writer)
        kwargs["callbacks"] = callbacks
        return super().instantiate_trainer(**kwargs)


def _best_checkpoint(trainer: Trainer) -> str | None:
    cb = trainer.checkpoint_callback
    if cb is None:
        return None
    return cb.best_model_path or cb.last_model_path or None


def _finish_wandb() -> None:
    """Close the W&B run of this command so the next in-process command (demo, sweep) starts its own."""
    import wandb

    if wandb.run is not None:
        wandb.finish()


def _run_test_after_fit(cli: DarkroomCLI) -> None:
    """Test the best (else last) checkpoint of the fit that just ended, in the same process and W&B run."""
    ckpt = _best_checkpoint(cli.trainer)
    cli.results_writer = ResultsWriter(cli.run_dir, cli._config_dict, ckpt, cli._wandb_id)
    cli.trainer.callbacks.append(cli.results_writer)
    cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt)


def _has_validation(datamodule: LightningDataModule | None) -> bool:
    if datamodule is None:
        return False
    hp = getattr(datamodule, "hparams", {})
    return any(hp.get(k) for k in ("val_root", "val_dir")) or bool(getattr(datamodule, "has_validation", False))


def _namespace_to_dict(ns: Any) -> dict:
    try:
        return ns.clone().as_dict()
    except AttributeError:
        return dict(ns)


