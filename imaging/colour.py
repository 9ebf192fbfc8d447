"""Colour conversions and normalisation shared by the papers (DeepFuse, ReFusion, the fusion metrics and baselines).

* :func:`rgb_to_ycbcr` / :func:`ycbcr_to_rgb`: BT.601 YCbCr through kornia, full range (kornia's JPEG definition;
  ReFusion's chroma recombination) or studio range (MATLAB ``rgb2ycbcr`` / 255, what DeepFuse's official MATLAB
  pipeline uses);
* :func:`minmax_normalize`: per-image min–max to [0, 1] (DeepFuse ``main.py``; ReFusion's output normalisation).
"""

from __future__ import annotations

from typing import Literal

import kornia.color
import torch
from torch import Tensor

__all__ = ["STUDIO_C", "STUDIO_Y", "YCbCrRange", "minmax_normalize", "rgb_to_ycbcr", "ycbcr_to_rgb"]

YCbCrRange = Literal["studio", "full"]


def minmax_normalize(x: Tensor, eps: float = 1e-12) -> Tensor:
    """Per-image min–max normalisation to [0, 1] over all non-batch dims.

    SOURCE: official ``main.py`` (``(x − min)/(max − min)·255``, on 0–255; here on [0, 1]).
    A constant image (max = min) maps to 0 instead of NaN.

    Shapes: N×… → N×… in [0, 1].
    """
    flat = x.flatten(1)
    lo = flat.amin(dim=1).view(-1, *([1] * (x.dim() - 1)))
    hi = flat.amax(dim=1).view(-1, *([1] * (x.dim() - 1)))
    return (x - lo) / (hi - lo).clamp_min(eps)


STUDIO_Y = (16.0 / 255.0, 219.0 / 255.0)  # offset, gain: MATLAB rgb2ycbcr Y = 16 + 219·Y_full
STUDIO_C = (128.0 / 255.0, 224.0 / 255.0)  # C = 128 + 224·(C_full − 0.5)


def rgb_to_ycbcr(rgb: Tensor, ycbcr_range: YCbCrRange = "studio") -> Tensor:
    """RGB → YCbCr (BT.601) with kornia, on …×3×H×W tensors in [0, 1].

    ``"studio"`` = MATLAB ``rgb2ycbcr`` divided by 255 (Y ∈ [16, 235]/255, Cb/Cr ∈ [16, 240]/255,
    neutral chroma 128/255), what the official DeepFuse pipeline (``Gen_Input.m``, ``Gen_Result.m``)
    uses; it is an affine map of kornia's full-range (JPEG) YCbCr (Y ∈ [0, 1], neutral chroma 0.5).
    kornia rounds the chroma coefficients to 3 decimals (differences < 0.1 grey level).
    """
    ycc = kornia.color.rgb_to_ycbcr(rgb)
    if ycbcr_range == "full":
        return ycc
    if ycbcr_range != "studio":
        raise ValueError(f"range must be 'studio' or 'full', got {ycbcr_range!r}")
    y, cbcr = ycc[..., :1, :, :], ycc[..., 1:, :, :]
    return torch.cat([STUDIO_Y[0] + STUDIO_Y[1] * y, STUDIO_C[0] + STUDIO_C[1] * (cbcr - 0.5)], dim=-3)


def ycbcr_to_rgb(ycc: Tensor, ycbcr_range: YCbCrRange = "studio") -> Tensor:
    """Inverse of :func:`rgb_to_ycbcr` (…×3×H×W → …×3×H×W RGB, not clamped)."""
    if ycbcr_range == "studio":
        y, cbcr = ycc[..., :1, :, :], ycc[..., 1:, :, :]
        ycc = torch.cat([(y - STUDIO_Y[0]) / STUDIO_Y[1], (cbcr - STUDIO_C[0]) / STUDIO_C[1] + 0.5], dim=-3)
    elif ycbcr_range != "full":
        raise ValueError(f"range must be 'studio' or 'full', got {ycbcr_range!r}")
    return kornia.color.ycbcr_to_rgb(ycc)
