"""Evaluation in fp32 whatever precision training uses.

``--trainer.precision bf16-mixed`` (or ``16-mixed``) runs every step under autocast, validation, test and
predict included, where it changes the reported numbers: one fp32 checkpoint tested under bf16-mixed
scored Zero-DCE SSIM 0.464 → 0.391 and ReFusion EN 7.49 → 4.44. :class:`FP32EvalMixedPrecision` keeps
autocast for training only; validation, test and predict steps run with autocast disabled, so metrics
are computed in fp32. Reduced-precision evaluation is a named choice, recorded in ``results.json``:
``--run.eval_precision autocast`` (the training autocast for whole steps) or ``bf16`` (test/predict: only the
networks under bf16 autocast, see :mod:`lightning_modules.inference`).
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager
from typing import Literal

import torch
from lightning.fabric.connector import _convert_precision_to_unified_args
from lightning.pytorch.plugins.precision import MixedPrecision

MIXED = ("bf16-mixed", "16-mixed")
EvalPrecision = Literal["32", "autocast", "bf16"]


class FP32EvalMixedPrecision(MixedPrecision):
    """:class:`MixedPrecision` for training steps; validation, test and predict steps in fp32."""

    @contextmanager
    def _fp32(self) -> Generator[None, None, None]:
        with torch.autocast(self.device, enabled=False):
            yield

    def val_step_context(self):  # type: ignore[override]
        return self._fp32()

    def test_step_context(self):  # type: ignore[override]
        return self._fp32()

    def predict_step_context(self):  # type: ignore[override]
        return self._fp32()


def autocast_device(accelerator: str | None) -> str:
    """The autocast device type for a Trainer ``accelerator`` setting (``auto`` picks CUDA when present)."""
    acc = (accelerator or "auto").lower() if isinstance(accelerator, str) else "auto"
    if acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available()):
        return "cuda"
    return "cpu"


def normalise_precision(precision: str | int | None) -> str:
    """Lightning's aliases (``bf16``, ``16``, ``32``) → the full names (``bf16-mixed``, ``16-mixed``, ``32-true``),
    by the Trainer's own rule; ``None`` is the Trainer's default, ``32-true``."""
    return _convert_precision_to_unified_args(precision) or "32-true"


def evaluation_precision(train_precision: str, eval_precision: EvalPrecision) -> str:
    """What validation/test/predict actually run in, for ``results.json``."""
    if eval_precision == "bf16":
        return "bf16 networks (autocast), fp32 metrics"
    if train_precision in MIXED:
        return "32-true" if eval_precision == "32" else f"{train_precision} (autocast)"
    return train_precision
