"""Separable windows and their 'valid' filtering, shared by MEF-SSIM (:mod:`losses.mef_ssim`) and the fusion
metrics (:mod:`metrics.fusion`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["filter_valid", "gaussian_1d"]


def gaussian_1d(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Normalised 1-D Gaussian g (computed in float64) with outer(g, g) = MATLAB ``fspecial('gaussian', size, sigma)``.

    fspecial zeroes entries below eps·max; for the windows used in this project (MEF-SSIM 11/1.5; VIF 17/3.4,
    9/1.8, 5/1, 3/0.6) the smallest corner is > 1e-5·max, so nothing is zeroed and the window is separable.
    """
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(x * x) / (2.0 * sigma * sigma))
    return (g / g.sum()).to(dtype=dtype, device=device)


def filter_valid(x: Tensor, kernel_1d: Tensor) -> Tensor:
    """'valid' 2-D correlation of every map of …×H×W with the separable window ``outer(k, k)`` (MATLAB
    ``filter2(kᵀk, ·, 'valid')``; = convolution for the symmetric windows used here) → …×(H−k+1)×(W−k+1).

    On a CPU in float64 it is a sum of shifted slices (a loop over the k taps, not over pixels): CPU float64
    convolution has no fast kernel, and the shifted multiply-adds are 3–8× faster with the same sums. Elsewhere:
    two depthwise 1-D convolutions. Differentiable either way.
    """
    size = kernel_1d.numel()
    h, w = x.shape[-2:]
    if x.dtype == torch.float64 and x.device.type == "cpu":
        taps = kernel_1d.tolist()
        rows = x[..., :, : w - size + 1] * taps[0]
        for i in range(1, size):
            rows.add_(x[..., :, i : i + w - size + 1], alpha=taps[i])
        out = rows[..., : h - size + 1, :] * taps[0]
        for i in range(1, size):
            out.add_(rows[..., i : i + h - size + 1, :], alpha=taps[i])
        return out
    lead = x.shape[:-2]
    y = x.reshape(-1, 1, h, w)
    y = F.conv2d(y, kernel_1d.to(x.dtype).view(1, 1, 1, size))
    y = F.conv2d(y, kernel_1d.to(x.dtype).view(1, 1, size, 1))
    return y.reshape(*lead, h - size + 1, w - size + 1)
