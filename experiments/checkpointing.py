"""Checkpoints that never lose or rewind work, and resumes that continue exactly.

* :class:`AtomicCheckpointIO`: every checkpoint file (``last.ckpt`` and the best ones) is written to a
  temp file in the checkpoint's own folder, fsynced and renamed over the target
  (:mod:`datamodules.atomic_files`), so a kill at any moment
  leaves either the previous complete file or the new complete file. (Lightning's default goes through
  an fsspec transaction whose temp file lives in ``$TMPDIR``; on another filesystem the final move is a
  copy, and a kill during it leaves a torn file.) Temp files of killed writers are removed when the next
  run starts (:func:`remove_stale_temp_files`).
* :class:`LastCheckpoint`: ``last.ckpt`` is always the latest state. It is written at every training
  epoch end, at the end of training, and every ``every`` steps or minutes inside long epochs
  (``--run.checkpoint_every``); it does not depend on a monitored metric.
* :class:`ResumeState`: stores the global RNG states (torch, CUDA, numpy, Python) in each checkpoint and,
  on a resume, restores them, puts the training sampler at the checkpoint's epoch and position, and
  restarts the training data iterator there.

What a resume guarantees (tested by ``tests/faults/test_kill_resume.py``):

* **at an epoch boundary** (``last.ckpt`` from an epoch end): the step count, the epoch, the data order,
  the worker seeds and the global RNG continue as in an uninterrupted run, so the final weights equal an
  uninterrupted run's to float tolerance;
* **mid-epoch** (an interval checkpoint): the step count, the epoch and the data order continue (the rest
  of the epoch's samples, none repeated or skipped), and random augmentation drawn in the main process
  continues from the restored RNG. Augmentation drawn in DataLoader workers is re-drawn for the rest of
  that epoch (the workers restart at another batch, so each draws from another point of its stream);
  from the next epoch on, the worker seeds are again those of an uninterrupted run.

Measured weight differences after kill and resume: ``tests/faults/NOTES.md``.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.plugins.io import TorchCheckpointIO

from datamodules.atomic_files import atomic_write, remove_stale_temp_files
from datamodules.samplers import ResumableRandomSampler


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with atomic, durable writes (temp file in the same folder, fsync, rename)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options, got {storage_options!r}")
        atomic_write(path, lambda f: torch.save(checkpoint, f))


def parse_interval(spec: str | int | None) -> tuple[str, float] | None:
    """``"500"`` / ``"500steps"`` → ``("steps", 500)``; ``"10min"`` / ``"90s"`` / ``"1h"`` → ``("seconds", …)``.

    Raises:
        ValueError: the text is not one of those forms.
    """
    if spec is None or spec == "" or str(spec).lower() in ("none", "null", "off"):
        return None
    text = str(spec).strip().lower().replace(" ", "")
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(steps?|s|sec|min|m|h)?", text)
    if not m:
        raise ValueError(f"checkpoint interval {spec!r}: expected N steps ('500' or '500steps') or a time "
                         "('90s', '10min', '1h')")
    value, unit = float(m[1]), m[2] or "steps"
    if value <= 0:
        raise ValueError(f"checkpoint interval {spec!r}: must be positive")
    if unit.startswith("step"):
        return ("steps", int(value))
    return ("seconds", value * {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}[unit])


def _as_next_epoch_start(checkpoint: dict[str, Any]) -> None:
    """Record an epoch-end checkpoint's loop state as "epoch finished, next one not started".

    Saved from ``on_train_epoch_end``, the state says "epoch processed, not completed, all its batches
    done". Lightning 2.6 resumes such a file by marking the epoch completed but keeps the epoch loop's
    batch counter at the end, so the next epoch ends at once with no batch trained: one epoch silently
    lost. Marking the epoch completed and zeroing the per-epoch counters (the totals, which give
    ``global_step``, are kept) makes the resume start the next epoch at its first batch.
    """
    fit = checkpoint.get("loops", {}).get("fit_loop")
    if not fit:
        return
    for tracker in (fit["epoch_progress"]["total"], fit["epoch_progress"]["current"]):
        tracker["completed"] = tracker["processed"]
    batch = fit["epoch_loop.batch_progress"]
    batch["current"] = {k: 0 for k in batch["current"]}
    batch["is_last_batch"] = False
    sched = fit.get("epoch_loop.scheduler_progress")
    if sched:
        sched["current"] = {k: 0 for k in sched["current"]}


class LastCheckpoint(Callback):
    """Writes ``<dirpath>/last.ckpt`` (the latest training state) at every epoch end, at the end of
    training and every ``every`` steps or seconds (see :func:`parse_interval`; ``None``: epoch ends only).

    With ``keep_epochs`` each epoch end's state is also kept as ``epoch=NNNN.ckpt`` (``NNNN`` = the epochs
    completed), for learning curves evaluated afterwards; resuming still reads ``last.ckpt``.
    Under DDP rank 0 decides time-based saves and broadcasts the decision, so all ranks save together.
    """

    FILENAME = "last.ckpt"

    def __init__(self, dirpath: str | Path, every: str | int | None = "10min", keep_epochs: bool = False) -> None:
        self.dirpath = Path(dirpath)
        self.keep_epochs = keep_epochs
        self.interval = parse_interval(every)
        self._last_save_time = time.monotonic()
        self._last_saved: tuple[int, str] | None = None
        self._saving: str | None = None

    @property
    def path(self) -> Path:
        return self.dirpath / self.FILENAME

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if trainer.is_global_zero:
            self.dirpath.mkdir(parents=True, exist_ok=True)
            remove_stale_temp_files(self.dirpath)

    def _save(self, trainer: Trainer, kind: str) -> None:
        key = (trainer.global_step, kind)
        if self._last_saved == key or trainer.sanity_checking:
            return
        self._saving = kind
        try:
            trainer.save_checkpoint(self.path, weights_only=False)
        finally:
            self._saving = None
        self._last_saved = key
        self._last_save_time = time.monotonic()

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        if self._saving == "epoch":
            _as_next_epoch_start(checkpoint)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.interval is None:
            return
        unit, value = self.interval
        if unit == "steps":
            due = trainer.global_step > 0 and trainer.global_step % int(value) == 0
        else:
            due = time.monotonic() - self._last_save_time >= value
            if trainer.world_size > 1:
                due = bool(trainer.strategy.broadcast(due, src=0))
        if due:
            self._save(trainer, "step")

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._save(trainer, "epoch")
        if self.keep_epochs and trainer.is_global_zero and self.path.is_file():
            kept = self.dirpath / f"epoch={trainer.current_epoch + 1:04d}.ckpt"
            try:  # last.ckpt is replaced by rename, so a hard link keeps this epoch's file
                kept.unlink(missing_ok=True)
                os.link(self.path, kept)
            except OSError:
                shutil.copy2(self.path, kept)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._last_saved is None or self._last_saved[0] != trainer.global_step:
            self._save(trainer, "end")


def collect_rng_states() -> dict[str, Any]:
    """Lightning's global RNG states in types that ``torch.load(weights_only=True)`` accepts (numpy's as lists)."""
    states = _collect_rng_states(include_cuda=torch.cuda.is_available())
    name, keys, pos, has_gauss, gauss = states["numpy"]
    states["numpy"] = (str(name), [int(k) for k in keys], int(pos), int(has_gauss), float(gauss))
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Inverse of :func:`collect_rng_states`."""
    states = dict(states)
    name, keys, pos, has_gauss, gauss = states["numpy"]
    states["numpy"] = (name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss)
    if "torch.cuda" in states and not torch.cuda.is_available():
        states.pop("torch.cuda")
    _set_rng_states(states)


def _train_samplers(trainer: Trainer) -> list[tuple[ResumableRandomSampler, int]]:
    """The training loaders' resumable samplers with their batch sizes."""
    loader = trainer.fit_loop._combined_loader
    found = []
    for dl in (loader.flattened if loader is not None else []):
        sampler = getattr(dl, "sampler", None)
        if isinstance(sampler, ResumableRandomSampler):
            found.append((sampler, dl.batch_size or 1))
    return found


class ResumeState(Callback):
    """Puts what an exact resume needs into every checkpoint, and restores it when a fit resumes.

    Saved under ``checkpoint["callbacks"]["ResumeState"]``: the global RNG states and the model's
    class path (``checkpoint["darkroom"]["model_class"]``, which ``darkroom`` checks against the config).
    On resume (``on_train_start``, after Lightning has restored the weights, optimiser and loop counters):
    the RNG states are set back, every :class:`~datamodules.samplers.ResumableRandomSampler` is put at the
    checkpoint's epoch and skips the batches of that epoch already trained, and the training iterator is
    re-created so that the first batch is the one an uninterrupted run would train next.
    """

    def __init__(self) -> None:
        self._restored: dict | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"rng": collect_rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = state_dict

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        cls = type(pl_module)
        checkpoint.setdefault("darkroom", {})["model_class"] = f"{cls.__module__}.{cls.__qualname__}"

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._restored is None:
            return
        state, self._restored = self._restored, None
        fit_loop = trainer.fit_loop
        epoch = fit_loop.epoch_progress.current.processed
        mid_epoch = fit_loop.epoch_progress.current.processed == fit_loop.epoch_progress.current.completed
        # a save from on_train_batch_end counts its batch as processed, not yet completed
        done = fit_loop.epoch_loop.batch_progress.current.processed if mid_epoch else 0
        samplers = _train_samplers(trainer)
        for sampler, batch_size in samplers:
            sampler.set_epoch(epoch)
            sampler.skip = min(done * batch_size, sampler.num_samples)
        if "rng" in state:
            set_rng_states(state["rng"])
        if samplers and fit_loop._data_fetcher is not None:
            iter(fit_loop._data_fetcher)  # the iterator Lightning made before the restore started at batch 0
