"""A callback that kills its own process with SIGKILL at a given step (fault-injection tests only).

Used from a config file: ``trainer: {callbacks: [{class_path: killer.KillAt, init_args: {step: 17}}]}``
with ``tests/faults`` on ``PYTHONPATH``. SIGKILL gives the process no chance to clean up, as a crash,
an OOM kill or a pre-empted node would not.
"""

from __future__ import annotations

import os
import signal

from lightning.pytorch import Callback


class KillAt(Callback):
    """SIGKILL this process when training step ``step`` is about to start (``global_step == step``)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class RecordBatches(Callback):
    """Appends ``<global_step> <batch names>`` to ``path`` for every training batch (the data order)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        with open(self.path, "a") as f:
            f.write(f"{trainer.global_step} {' '.join(batch['name'])}\n")
