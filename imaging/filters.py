"""Image filters shared by losses, metrics and networks: separable windows and their 'valid' filtering (MEF-SSIM,
:mod:`losses.mef_ssim`; the fusion metrics, :mod:`metrics.fusion`) and the Sobel gradient magnitude (ReFusion's
losses and its loss proposal network)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["filter_valid", "gaussian_1d", "sobel_gradient"]


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
    two depthwise 1-D convolutions (:func:`_filter_valid_conv`). Differentiable either way.
    """
    if x.dtype == torch.float64 and x.device.type == "cpu":
        size = kernel_1d.numel()
        h, w = x.shape[-2:]
        taps = kernel_1d.tolist()
        rows = x[..., :, : w - size + 1] * taps[0]
        for i in range(1, size):
            rows.add_(x[..., :, i : i + w - size + 1], alpha=taps[i])
        out = rows[..., : h - size + 1, :] * taps[0]
        for i in range(1, size):
            out.add_(rows[..., i : i + h - size + 1, :], alpha=taps[i])
        return out
    return _filter_valid_conv(x, kernel_1d)


def _filter_valid_conv(x: Tensor, kernel_1d: Tensor) -> Tensor:
    """:func:`filter_valid` as two depthwise 1-D convolutions: the M maps of …×H×W are the M channels of one
    1×M×H×W image, filtered with ``groups=M`` (one conv call per pass, not one single-channel image per map).

    Bit-identical to filtering the maps as M separate single-channel images (an (M, 1, H, W) batch with a
    1×1×1×k kernel), forward and gradient, in float32 and float64 — except float32 gradients of windows of ≥ 15
    taps (oneDNN sums those in another order; no float32 caller has one): tests/test_filtering.py, on the CPU.
    On a CPU in float32, forward + backward of the 5- and 9-map 640×480 stacks of MEF-SSIM is 10–14× faster
    with one thread, the whole MEF-SSIM loss ~6.5× (benchmarks/mef_ssim_speed.py).
    """
    size = kernel_1d.numel()
    h, w = x.shape[-2:]
    lead = x.shape[:-2]
    maps = math.prod(lead)
    if maps == 0:  # an empty batch: conv2d refuses groups=0
        return x[..., : h - size + 1, : w - size + 1] * 0
    k = kernel_1d.to(dtype=x.dtype, device=x.device)
    y = x.reshape(1, maps, h, w)
    y = F.conv2d(y, k.view(1, 1, 1, size).expand(maps, 1, 1, size), groups=maps)
    y = F.conv2d(y, k.view(1, 1, size, 1).expand(maps, 1, size, 1), groups=maps)
    return y.reshape(*lead, h - size + 1, w - size + 1)


def _sobel_kernel(dtype: torch.dtype, device: torch.device) -> Tensor:
    """2×1×3×3 kernel: Sobel_x and Sobel_y (unnormalised)."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=dtype, device=device)
    return torch.stack([kx, kx.t()]).unsqueeze(1)


def sobel_gradient(image: Tensor, kernel: Tensor | None = None) -> Tensor:
    """``|Sobel_x ∗ x| + |Sobel_y ∗ x|`` per channel, zero padding 1.

    Args:
        image: (*, C, H, W) tensor, any leading dims (e.g. N×K×C×H×W sources).
        kernel: optional 2×1×3×3 Sobel kernel (a module buffer); built on the fly when None.

    Returns:
        Tensor of the same shape as ``image``, values ≥ 0 (up to 8 for inputs in [0, 1]).

    SOURCE: ReFusion training copy / TDFusion ``utils.py`` (``Sobelxy``: ``F.conv2d(x, k, padding=1)``, abs, sum).
    """
    if image.ndim < 3:
        raise ValueError(f"sobel_gradient expects (*, C, H, W), got shape {tuple(image.shape)}")
    if kernel is None:
        kernel = _sobel_kernel(image.dtype, image.device)
    shape = image.shape
    x = image.reshape(-1, 1, shape[-2], shape[-1])
    g = F.conv2d(x, kernel.to(dtype=x.dtype), padding=1)
    return (g[:, 0].abs() + g[:, 1].abs()).reshape(shape)
