"""DPED evaluation (Ignatov et al., ICCV 2017) as the official ``train_model.py`` computes it.

SOURCE: aiff22/DPED @ ebb0131, ``train_model.py`` (PSNR) and ``ssim.py`` (Google's NumPy ``MultiScaleSSIM``);
digest ``../shared/papers/dped.md`` §7–8, ``metrics.md`` §2. The official script scores the **unclipped**
generator output (range (−0.08, 1.08)) against the DSLR patches on [0, 1]:

* PSNR = 20·log10(1/√MSE); official: MSE pooled over each test batch, averaged over batches
  (:class:`DPEDBatchPSNR`); the main figure is per-image PSNR averaged over patches (:class:`DPEDPSNR`).
* MS-SSIM (:func:`ms_ssim_dped`, :class:`DPEDMSSSIM`): 5 scales, weights 0.0448 … 0.1333, Gaussian window 11,
  σ 1.5, **shrunk to min(11, H, W) with σ scaled by the same ratio** at small scales (100 → 50 → 25 → 13 → 7 px),
  'valid' windows, K1 0.01, K2 0.03, 2×2 box downsampling with 'reflect' borders. torchmetrics'
  ``MultiScaleStructuralSimilarityIndexMeasure`` cannot be used: with 5 scales and kernel 11 it refuses images
  smaller than 176 px (it pads instead of shrinking the window), so it rejects DPED's 100×100 patches.

Per-image means reuse :class:`metrics.full_reference.PerImageMean` (sum and count states, reduced with ``sum``
across processes, so they are correct under DDP), without its clamping to [0, 1].
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from metrics.full_reference import PerImageMean

__all__ = ["DPEDBatchPSNR", "DPEDMSSSIM", "DPEDPSNR", "UnclippedPerImageMean", "ms_ssim_dped", "psnr_dped"]

_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _gauss_window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``ssim._FSpecialGauss``: size×size Gaussian on the grid −r..r (half-integer offsets for even sizes)."""
    radius = size // 2
    if size % 2 == 0:
        coords = torch.arange(-radius, radius, dtype=dtype, device=device) + 0.5
    else:
        coords = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    g = torch.exp(-(coords[:, None] ** 2 + coords[None, :] ** 2) / (2.0 * sigma**2))
    return g / g.sum()


def _ssim_cs_google(x: Tensor, y: Tensor, filter_size: int = 11, filter_sigma: float = 1.5,
                    k1: float = 0.01, k2: float = 0.03, max_val: float = 1.0) -> tuple[Tensor, Tensor]:
    """``ssim._SSIMForMultiScale`` per image: (SSIM, contrast-structure), each N, means over C and the valid map."""
    n, c, h, w = x.shape
    size = min(filter_size, h, w)
    sigma = size * filter_sigma / filter_size
    win = _gauss_window(size, sigma, x.dtype, x.device).expand(c, 1, size, size)

    def filt(t: Tensor) -> Tensor:
        return F.conv2d(t, win, groups=c)  # 'valid'

    mu1, mu2 = filt(x), filt(y)
    s11 = filt(x * x) - mu1 * mu1
    s22 = filt(y * y) - mu2 * mu2
    s12 = filt(x * y) - mu1 * mu2
    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    v1, v2 = 2.0 * s12 + c2, s11 + s22 + c2
    ssim = ((2.0 * mu1 * mu2 + c1) * v1) / ((mu1 * mu1 + mu2 * mu2 + c1) * v2)
    return ssim.flatten(1).mean(1), (v1 / v2).flatten(1).mean(1)


def ms_ssim_dped(preds: Tensor, target: Tensor) -> Tensor:
    """MS-SSIM of each image as the official DPED ``ssim.MultiScaleSSIM``, N×C×H×W (values on [0, 1]) → N.

    Computed in float64 (as the NumPy original) on unclipped inputs (the scale L = 1 on [0, 1] equals the
    official L = 255 on ×255 inputs). Differences from the official call: statistics are averaged per image
    (the official call averages over its whole batch before the product over scales), and a negative
    contrast-structure value is clamped to 0 before the fractional power (NaN in the official code).

    Returns:
        Tensor[N] in [0, 1], in ``preds``' floating dtype (float32 otherwise).

    Example:
        >>> x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        >>> ms_ssim_dped(x, x)
        tensor([1., 1.])
    """
    x, y = preds.double(), target.double()
    weights = torch.tensor(_MS_SSIM_WEIGHTS, dtype=x.dtype, device=x.device)
    values = []
    for level in range(len(_MS_SSIM_WEIGHTS)):
        ssim, cs = _ssim_cs_google(x, y)
        values.append(cs if level < len(_MS_SSIM_WEIGHTS) - 1 else ssim)
        if level < len(_MS_SSIM_WEIGHTS) - 1:
            # scipy.ndimage.convolve(·, ones(2, 2)/4, mode='reflect') then [::2, ::2]: mean of pixels (2i, 2i+1),
            # the last pixel repeated at an odd border.
            pad = (0, x.shape[-1] % 2, 0, x.shape[-2] % 2)
            x = F.avg_pool2d(F.pad(x, pad, mode="replicate"), 2)
            y = F.avg_pool2d(F.pad(y, pad, mode="replicate"), 2)
    stacked = torch.stack(values, dim=1).clamp_min(0)
    return (stacked**weights).prod(dim=1).to(preds.dtype if preds.is_floating_point() else torch.float32)


def psnr_dped(preds: Tensor, target: Tensor) -> Tensor:
    """PSNR of each image as the official script's formula, ``20·log10(1/√MSE)`` on [0, 1], unclipped: N×C×H×W → N
    (dB, float32).

    Example:
        >>> psnr_dped(torch.full((1, 3, 4, 4), 1.05), torch.full((1, 3, 4, 4), 0.95))  # unclipped: MSE 0.01
        tensor([20.0000])
    """
    mse = (preds.float() - target.float()).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse)


class UnclippedPerImageMean(PerImageMean):
    """:class:`metrics.full_reference.PerImageMean` without clamping to [0, 1] (the official DPED evaluation
    scores the raw (−0.08, 1.08) output); see :class:`DPEDPSNR` for an example."""

    clamp = False


class DPEDPSNR(UnclippedPerImageMean):
    """Per-image PSNR (dB, [0, 1], unclipped output, :func:`psnr_dped`), averaged over patches.

    Example:
        >>> m = DPEDPSNR()
        >>> m.update(torch.full((2, 3, 4, 4), 1.05), torch.full((2, 3, 4, 4), 0.95))
        >>> m.last_scores, m.compute()
        (tensor([20.0000, 20.0000]), tensor(20.0000))
    """

    higher_is_better = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(psnr_dped, **kwargs)


class DPEDMSSSIM(UnclippedPerImageMean):
    """Per-image MS-SSIM as the official DPED ``ssim.py`` (:func:`ms_ssim_dped`), averaged over patches.

    Example:
        >>> m = DPEDMSSSIM()
        >>> x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        >>> m.update(x, x)
        >>> m.compute()
        tensor(1.)
    """

    higher_is_better = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(ms_ssim_dped, **kwargs)


class DPEDBatchPSNR(Metric):
    """The official training-script PSNR: per batch, MSE pooled over the batch, then the mean over batches.

    Depends on the evaluation batch size (official: the training batch, 50; the official script also drops the
    last incomplete batch, which we keep). Under DDP each process's batch counts as one batch.

    Example:
        >>> m = DPEDBatchPSNR()
        >>> m.update(torch.full((2, 3, 4, 4), 0.5), torch.full((2, 3, 4, 4), 0.6))
        >>> m.compute()
        tensor(20.0000)
    """

    higher_is_better = True
    full_state_update = False
    total: Tensor
    count: Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        mse = (preds.float() - target.float()).pow(2).mean()
        self.total += (10.0 * torch.log10(1.0 / mse)).double()
        self.count += 1

    def compute(self) -> Tensor:
        return (self.total / self.count.clamp_min(1)).float()
