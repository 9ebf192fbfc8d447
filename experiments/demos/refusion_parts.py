"""The ReFusion demo's own parts: what a 16-epoch CPU run on 48 synthetic pairs needs and the official recipe does not.

They live here, in the demo layer, not in the networks or the training system: ``experiments/refusion/demo.yaml``
names them by ``class_path``. Why each exists, with the measurements, is in ``experiments/refusion/NOTES.md``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from lightning_modules.refusion import ReFusion
from networks.refusion import FusionNet

__all__ = ["DemoReFusion", "ZeroInitFusionNet"]


class ZeroInitFusionNet(FusionNet):
    """F whose last convolution (``project_out_1``) starts at zero, so F starts at a constant 0.5 and learns the sign
    of its output path from the loss (the official init is PyTorch's default). Weights loaded afterwards replace it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        nn.init.zeros_(self.project_out_1.weight)


class DemoReFusion(ReFusion):
    """ReFusion with ``first_meta_steps`` meta iterations in the first official epoch, so that P learns its focus
    weights before F's first fusion pass (the official recipe's first meta phase has hundreds of P updates).

    Args:
        first_meta_steps: meta iterations of official epoch 0 (``None`` = ``meta_steps``); capped, like
            ``meta_steps``, by the batches of one epoch (2 per meta iteration).
        **kwargs: :class:`~lightning_modules.refusion.ReFusion`'s arguments.
    """

    def __init__(self, *args: Any, first_meta_steps: int | None = None, **kwargs: Any) -> None:
        if first_meta_steps is not None and first_meta_steps < 1:
            raise ValueError(f"first_meta_steps must be ≥ 1, got {first_meta_steps}")
        super().__init__(*args, **kwargs)
        self.first_meta_steps = first_meta_steps

    def meta_steps_now(self) -> int:
        if self.official_epoch == 0 and self.first_meta_steps is not None:
            return self.first_meta_steps
        return super().meta_steps_now()
