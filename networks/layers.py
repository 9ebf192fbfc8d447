"""The one convolution helper the networks share."""

from __future__ import annotations

from torch import nn

__all__ = ["conv"]


def conv(c_in: int, c_out: int, kernel_size: int = 1, groups: int = 1, bias: bool = False) -> nn.Conv2d:
    """A stride-1 ``nn.Conv2d`` with zero 'same' padding (``kernel_size // 2``, odd kernels), bias-free by default
    (ReFusion's official ``ReFusion.py`` and DeepFuse's official ``main.py`` layers)."""
    return nn.Conv2d(c_in, c_out, kernel_size, stride=1, padding=kernel_size // 2, groups=groups, bias=bias)
