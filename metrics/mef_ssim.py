"""MEF-SSIM (Ma, Zeng & Wang, TIP 2015) as a torchmetrics ``Metric``: per-image scores, averaged.

The score itself is :func:`metrics.functional.mef_ssim.mef_ssim` (one implementation; DeepFuse's loss,
:class:`losses.mef_ssim.MEFSSIMLoss`, derives from it). ``multiscale=True`` gives ``mef_ms_ssim`` (oQ), the number the MEFB benchmark reports;
``False`` gives single-scale ``mef_ssim`` (Q). Inputs are grey / Y images: convert RGB first
(MEFB: MATLAB ``rgb2gray``; DeepFuse: Y of ``rgb2ycbcr``); the conversion changes the numbers.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from metrics.functional.mef_ssim import mef_ssim

__all__ = ["MEFSSIM"]


class MEFSSIM(Metric):
    """Mean over images of MEF-SSIM(fused, sources), correct under DDP (sum-reduced states).

    Args:
        multiscale: 3-scale oQ (``mef_ms_ssim.m``) instead of single-scale Q (``mef_ssim.m``).
        data_range: value of white in the inputs (1.0 for [0, 1]); rescaled to 0–255 internally.
        **kwargs: passed to :class:`torchmetrics.Metric`.

    ``update(fused, sources)``: fused N×1×H×W, sources N×K×1×H×W (K ≥ 2). ``compute()`` returns
    the mean of the per-image scores seen so far (float32 scalar; NaN before any update);
    :attr:`last_scores` holds the last batch's N scores.

    Example:
        >>> m = MEFSSIM()
        >>> stack = torch.rand(2, 2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> m.update(stack[:, 0], stack)
        >>> m.last_scores.shape, bool(-1 <= m.compute() <= 1)
        (torch.Size([2]), True)
    """

    is_differentiable = True
    higher_is_better = True
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0
    score_sum: Tensor
    count: Tensor

    def __init__(self, multiscale: bool = False, data_range: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if not data_range > 0:
            raise ValueError(f"data_range: expected a positive number, got {data_range!r}")
        self.multiscale = multiscale
        self.data_range = data_range
        self.last_scores: Tensor | None = None  # the last batch's N scores (for per-image results)
        self.add_state("score_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, fused: Tensor, sources: Tensor) -> None:
        """Add the scores of a batch: fused N×1×H×W, sources N×K×1×H×W."""
        scores = mef_ssim(fused, sources, multiscale=self.multiscale, data_range=self.data_range)
        self.last_scores = scores.detach()
        self.score_sum += scores.detach().to(self.score_sum.dtype).sum()
        self.count += scores.numel()

    def compute(self) -> Tensor:
        """Mean per-image MEF-SSIM."""
        return (self.score_sum / self.count).float()
