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
        results = {
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
