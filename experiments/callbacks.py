"""Callbacks the ``darkroom`` command adds to every run: results.json after testing, prediction files."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from datamodules.image_io import write_image
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


class ResultsWriter(Callback):
    """Writes ``results.json`` into the run directory at the end of ``test``.

    Contents: every ``test/*`` metric, the paper, the full resolved config, the git commit, the
    checkpoint path, the dataset root(s), the W&B run id, and a timestamp — everything
    ``darkroom table`` / ``darkroom compare`` need, without W&B.
    """

    def __init__(self, run_dir: str | Path, config: dict, ckpt_path: str | None, wandb_id: str | None) -> None:
        self.run_dir = Path(run_dir)
        self.config = config
        self.ckpt_path = ckpt_path
        self.wandb_id = wandb_id
        self.path: Path | None = None

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = {k.split("/", 1)[1]: float(v) for k, v in trainer.callback_metrics.items()
                   if k.startswith("test/")}
        data = self.config.get("data", {}) or {}
        init = data.get("init_args", data) if isinstance(data, dict) else {}
        roots = {k: v for k, v in (init or {}).items() if k.endswith("root") and v}
        timing = self.run_dir / "timing.json"
        results = {
            "fit_seconds": json.loads(timing.read_text())["fit_seconds"] if timing.exists() else None,
            "paper": getattr(pl_module, "paper", type(pl_module).__name__),
            "model": type(pl_module).__name__,
            "metrics": metrics,
            "checkpoint": str(Path(self.ckpt_path).resolve()) if self.ckpt_path else None,
            "pretrained": getattr(pl_module.hparams, "pretrained", None) if hasattr(pl_module, "hparams") else None,
            "dataset_root": roots,
            "git_commit": git_commit(),
            "wandb_run_id": self.wandb_id,
            "run_dir": str(self.run_dir.resolve()),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "config": _jsonable(self.config),
        }
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / "results.json"
        self.path.write_text(json.dumps(results, indent=2))


class FitTimer(Callback):
    """Wall-clock seconds of the training loop (``on_train_start`` → ``on_train_end``), written to
    ``<run_dir>/timing.json`` so sweeps can report their own overhead beyond training."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / "timing.json"
        self._t0 = 0.0

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero:
            previous = json.loads(self.path.read_text()) if self.path.exists() else {}
            total = previous.get("fit_seconds", 0.0) + time.perf_counter() - self._t0
            self.path.write_text(json.dumps({"fit_seconds": total, "global_step": trainer.global_step}))


class ImageWriter(BasePredictionWriter):
    """Writes each predicted image as ``<output_dir>/<name>.png`` at full resolution.

    ``predict_step`` returns ``{"output": N×C×H×W in [0, 1], "name": [str, ...]}``.
    """

    def __init__(self, output_dir: str | Path) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.written: list[Path] = []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        for image, name in zip(prediction["output"], prediction["name"], strict=True):
            self.written.append(write_image(self.output_dir / f"{name}.png", image))
