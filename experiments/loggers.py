"""Run directories and the loggers of every run: W&B (always) + CSV (for local tables).

A run directory ``runs/<group>/<name>/`` holds ``logs/<job>_<k>/`` (``metrics.csv`` and the resolved
``config.yaml`` of each command), ``checkpoints/``, ``wandb/``, ``images/`` and, after ``test``,
``results.json``. Its W&B run id is kept in
``wandb_id.txt`` so that resuming from a checkpoint of the run continues the same W&B run.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger

WANDB_PROJECT = "darkroom"


def run_dir_of_checkpoint(ckpt_path: str | Path) -> Path | None:
    """``runs/g/n/checkpoints/last.ckpt`` → ``runs/g/n`` (None if the checkpoint is not in a run dir)."""
    ckpt = Path(ckpt_path).resolve()
    run = ckpt.parent.parent
    if ckpt.parent.name == "checkpoints" and ((run / "wandb_id.txt").exists() or (run / "logs").is_dir()):
        return run
    return None


def new_run_name(prefix: str) -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def wandb_id(run_dir: Path) -> str:
    """The run's W&B id, created once and stored in ``run_dir/wandb_id.txt``."""
    path = run_dir / "wandb_id.txt"
    if path.exists():
        return path.read_text().strip()
    run_dir.mkdir(parents=True, exist_ok=True)
    run_id = secrets.token_hex(4)  # W&B ids are short lowercase alphanumerics
    path.write_text(run_id)
    return run_id


def make_loggers(run_dir: Path, *, group: str, name: str, tags: list[str], job_type: str,
                 config: dict | None = None, use_wandb: bool = True) -> list[Logger]:
    """A CSV logger (first, so ``trainer.log_dir`` is its folder) and W&B.

    CSV: ``run_dir/logs/<job>_<k>/metrics.csv`` with a new ``k`` for each command, so a resumed fit
    or a later test never overwrites earlier curves (the resolved config is saved beside it).

    W&B: project ``darkroom``, group = paper, job type = subcommand, tags from the config. The
    fit run and later test runs of one run directory share the run id (``resume="allow"``).
    """
    logs = run_dir / "logs"
    k = len(list(logs.glob(f"{job_type}_*"))) if logs.is_dir() else 0
    loggers: list[Logger] = [CSVLogger(save_dir=str(run_dir), name="logs", version=f"{job_type}_{k}")]
    if use_wandb:
        run_id = wandb_id(run_dir)
        if job_type != "fit":  # test/validate/predict get their own W&B run in the same group
            run_id = f"{run_id}-{job_type}"
        wandb_logger = WandbLogger(project=WANDB_PROJECT, group=group,
                                   name=name if job_type == "fit" else f"{name}-{job_type}", tags=list(tags),
                                   job_type=job_type, save_dir=str(run_dir), id=run_id, resume="allow", config=config)
        # Lightning always passes anonymous=None, and wandb ≥ 0.19 warns "the anonymous setting has no effect"
        # whenever the key is there
        getattr(wandb_logger, "_wandb_init", {}).pop("anonymous", None)
        loggers.append(wandb_logger)
    return loggers
