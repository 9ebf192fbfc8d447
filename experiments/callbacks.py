"""Callbacks the ``darkroom`` command adds to every run: results files after testing, the fit timer."""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from datamodules.atomic_files import atomic_write_text
from experiments.env import git_commit


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class NonFiniteMetricError(ValueError):
    """A test metric came out NaN or infinite; ``results.json`` then records it as ``null``, never as a number."""


def _data_args(config: dict) -> dict:
    """The DataModule's arguments in a resolved config (``data.init_args``, or ``data`` itself)."""
    data = config.get("data", {}) or {}
    return (data.get("init_args", data) if isinstance(data, dict) else {}) or {}


def dataset_tag(config: dict) -> str:
    """A file-name tag for the test data of ``config``: ``<test root's folder name>-<8 hex of its path>``."""
    init = _data_args(config)
    root = init.get("test_root") or init.get("root")
    if not root:
        return "test"
    resolved = str(Path(root).expanduser().resolve())
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(resolved).name)[:40] or "root"
    return f"{name}-{hashlib.sha1(resolved.encode()).hexdigest()[:8]}"


class ResultsWriter(Callback):
    """Writes the results of a ``test`` into the run directory.

    Each test data set gets its own file, ``results_<tag>.json`` (:func:`dataset_tag`), so testing one
    checkpoint on several data sets overwrites nothing; the newest is also written as ``results.json``
    (what ``darkroom table`` and ``darkroom compare`` read). Files are written atomically.

    Contents: every ``test/*`` metric (a non-finite value is written as ``null``, listed under
    ``nonfinite_metrics``, and the command then fails with :class:`NonFiniteMetricError`), the paper,
    the precision of training and of evaluation, the world size, the checkpoint and its global step,
    the full resolved config, the git commit, the dataset root(s), the W&B run id and a timestamp.
    """

    def __init__(self, run_dir: str | Path, config: dict, ckpt_path: str | None, wandb_id: str | None,
                 precision: dict[str, str] | None = None, checkpoint_step: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.config = config
        self.ckpt_path = ckpt_path
        self.wandb_id = wandb_id
        self.precision = precision or {}
        self.checkpoint_step = checkpoint_step
        self.path: Path | None = None

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics: dict[str, float | None] = {}
        nonfinite: list[str] = []
        for k, v in trainer.callback_metrics.items():
            if not k.startswith("test/"):
                continue
            value = float(v)
            name = k.split("/", 1)[1]
            if math.isfinite(value):
                metrics[name] = value
            else:
                metrics[name] = None
                nonfinite.append(name)
        roots = {k: v for k, v in _data_args(self.config).items() if k.endswith("root") and v}
        timing = self.run_dir / "timing.json"
        results = {
            "fit_seconds": json.loads(timing.read_text())["fit_seconds"] if timing.exists() else None,
            "paper": getattr(pl_module, "paper", type(pl_module).__name__),
            "model": type(pl_module).__name__,
            "metrics": metrics,
            "nonfinite_metrics": nonfinite,
            "precision": self.precision,
            "world_size": trainer.world_size,
            "checkpoint": str(Path(self.ckpt_path).resolve()) if self.ckpt_path else None,
            "checkpoint_step": self.checkpoint_step,
            "pretrained": getattr(pl_module.hparams, "pretrained", None) if hasattr(pl_module, "hparams") else None,
            "dataset_root": roots,
            "git_commit": git_commit(),
            "wandb_run_id": self.wandb_id,
            "run_dir": str(self.run_dir.resolve()),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "config": _jsonable(self.config),
        }
        text = json.dumps(results, indent=2, allow_nan=False)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / f"results_{dataset_tag(self.config)}.json"
        atomic_write_text(self.path, text)
        atomic_write_text(self.run_dir / "results.json", text)
        if nonfinite:
            raise NonFiniteMetricError(f"{self.path}: test metrics {', '.join(nonfinite)} are not finite "
                                       "(NaN or inf); they are recorded as null")


class FitTimer(Callback):
    """Wall-clock seconds of training, summed over every segment of a resumed run.

    The running total is part of each checkpoint (callback state), so a run killed and resumed counts
    the time of the segment that was killed up to its last checkpoint. Written to
    ``<run_dir>/timing.json`` when training ends (``fit_seconds``, ``global_step``).
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / "timing.json"
        self._t0 = time.perf_counter()
        self._before = 0.0

    def seconds(self) -> float:
        return self._before + time.perf_counter() - self._t0

    def state_dict(self) -> dict[str, Any]:
        return {"fit_seconds": self.seconds()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._before = float(state_dict.get("fit_seconds", 0.0))

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero:
            atomic_write_text(self.path, json.dumps({"fit_seconds": self.seconds(), "global_step": trainer.global_step}))
