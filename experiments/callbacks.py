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
from lightning_modules.base import DarkroomModule
from lightning_modules.per_image import column_means, gather_rows, group_summaries, order_rows, rows_to_csv


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


def dataset_tag(test_root: str | Path | None) -> str:
    """A file-name tag for the test data: ``<test root's folder name>-<8 hex of its path>`` (``test`` without one)."""
    if not test_root:
        return "test"
    resolved = str(Path(test_root).expanduser().resolve())
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(resolved).name)[:40] or "root"
    return f"{name}-{hashlib.sha1(resolved.encode()).hexdigest()[:8]}"


class ResultsWriter(Callback):
    """Writes the results of a ``test`` into the run directory.

    Each test data set gets its own file, ``results_<tag>.json`` (:func:`dataset_tag`), so testing one
    checkpoint on several data sets overwrites nothing; the newest is also written as ``results.json``
    (what ``darkroom table`` and ``darkroom compare`` read), and its per-image rows as ``per_image.csv``
    (and ``per_image_<tag>.csv``). Files are written atomically.

    Contents: every ``test/*`` metric — a metric with per-image values is the **mean of the rows of
    ``per_image.csv``** (the papers average per image); per-group means for grouped data (unpaired photo
    folders); a non-finite value is written as ``null``, listed under ``nonfinite_metrics``, and the command
    then fails with :class:`NonFiniteMetricError`. Also: the ``dataset`` that was evaluated (name, root,
    count, file-list hash, protocol: the DataModule's ``describe``), the model ``variant``, the ``training``
    length of the checkpoint, the paper, the precision of training and of evaluation, the world size, the
    checkpoint, the full resolved config, the git commit, the W&B run id and a timestamp.
    """

    def __init__(self, run_dir: str | Path, config: dict, ckpt_path: str | None, wandb_id: str | None,
                 precision: dict[str, str] | None = None, checkpoint_step: int | None = None,
                 checkpoint_epoch: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.config = config
        self.ckpt_path = ckpt_path
        self.wandb_id = wandb_id
        self.precision = precision or {}
        self.checkpoint_step = checkpoint_step
        self.checkpoint_epoch = checkpoint_epoch
        self.path: Path | None = None
        self._rows: list[dict] = []

    def on_test_epoch_end(self, trainer: Trainer, pl_module: DarkroomModule) -> None:
        self._rows = gather_rows(pl_module.per_image.rows.values(), trainer.world_size)

    def _metrics(self, trainer: Trainer, means: dict[str, float]) -> tuple[dict[str, float | None], list[str]]:
        values = {k.split("/", 1)[1]: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        values.update(means)  # per-image columns: the mean of the rows
        metrics = {k: (v if math.isfinite(v) else None) for k, v in values.items()}
        return metrics, [k for k, v in metrics.items() if v is None]

    def on_test_end(self, trainer: Trainer, pl_module: DarkroomModule) -> None:
        if not trainer.is_global_zero:
            return
        dm = trainer.datamodule
        test_set = dm.test_set if dm is not None else None
        rows = order_rows(self._rows, test_set.names if test_set is not None else None)
        metrics, nonfinite = self._metrics(trainer, column_means(rows))
        groups = {g: {"count": v["count"], "metrics": {k: (x if math.isfinite(x) else None)
                                                       for k, x in v["metrics"].items()}}
                  for g, v in group_summaries(rows).items()}
        roots = dm.roots() if dm is not None else {}
        timing = self.run_dir / "timing.json"
        pretrained = pl_module.pretrained_path
        results = {
            "fit_seconds": json.loads(timing.read_text())["fit_seconds"] if timing.exists() else None,
            "paper": pl_module.paper,
            "model": type(pl_module).__name__,
            "variant": pl_module.variant,
            "dataset": dm.describe("test") if dm is not None else None,
            "metrics": metrics,
            "metric_variants": pl_module.metric_variants,
            "groups": groups,
            "per_image_rows": len(rows),
            "nonfinite_metrics": nonfinite,
            "training": {"steps": self.checkpoint_step, "epochs": self.checkpoint_epoch,
                         "from": "checkpoint" if self.ckpt_path else ("pretrained" if pretrained else "untrained")},
            "precision": self.precision,
            "world_size": trainer.world_size,
            "checkpoint": str(Path(self.ckpt_path).resolve()) if self.ckpt_path else None,
            "checkpoint_step": self.checkpoint_step,
            "pretrained": pretrained,
            "dataset_root": roots,
            "git_commit": git_commit(),
            "wandb_run_id": self.wandb_id,
            "run_dir": str(self.run_dir.resolve()),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "config": _jsonable(self.config),
        }
        text = json.dumps(results, indent=2, allow_nan=False)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tag = dataset_tag(dm.split_root("test") if dm is not None else None)
        self.path = self.run_dir / f"results_{tag}.json"
        atomic_write_text(self.path, text)
        atomic_write_text(self.run_dir / "results.json", text)
        if rows:
            csv_text = rows_to_csv(rows)
            atomic_write_text(self.run_dir / f"per_image_{tag}.csv", csv_text)
            atomic_write_text(self.run_dir / "per_image.csv", csv_text)
        if nonfinite:
            bad = {m: [r["id"] for r in rows if r.get(m) is not None and not math.isfinite(float(r[m]))]
                   for m in nonfinite}
            which = "; ".join(f"{m} of {', '.join(ids[:5])}{' …' if len(ids) > 5 else ''}" for m, ids in bad.items()
                              if ids)
            raise NonFiniteMetricError(f"{self.path}: test metrics {', '.join(nonfinite)} are not finite "
                                       f"(NaN or inf); they are recorded as null"
                                       + (f" (non-finite per image: {which}; see per_image.csv)" if which else ""))


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
