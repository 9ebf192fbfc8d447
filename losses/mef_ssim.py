"""DeepFuse's MEF-SSIM loss (Prabhakar et al., ICCV 2017), derived from the metric.

The score is :func:`metrics.functional.mef_ssim.mef_ssim` (Ma, Zeng & Wang, TIP 2015; one implementation
for the metric :class:`metrics.mef_ssim.MEFSSIM` and this loss, as kornia's ``losses/ssim.py`` derives from
its ``metrics/ssim.py``): formula, numerics and the reference it is checked against are documented there.
:func:`mef_ssim`, :func:`mef_ssim_per_scale`, :data:`MEF_SSIM_C` and :data:`MS_WEIGHTS` are re-exported here,
where earlier code imports them from.
"""

from __future__ import annotations

from torch import Tensor, nn

from losses._common import Reduction, check_reduction, reduce
from metrics.functional.mef_ssim import MEF_SSIM_C, MS_WEIGHTS, mef_ssim, mef_ssim_per_scale

__all__ = [
    "MEFSSIMLoss",
    "MEF_SSIM_C",
    "MS_WEIGHTS",
    "mef_ssim",
    "mef_ssim_loss",
    "mef_ssim_per_scale",
]


def mef_ssim_loss(
    fused: Tensor,
    sources: Tensor,
    multiscale: bool = False,
    reduction: Reduction = "mean",
    data_range: float = 1.0,
) -> Tensor:
    r"""``reduce(1 − MEF-SSIM(fused, sources))`` over the batch (see :class:`MEFSSIMLoss`).

    Args:
        fused: N×1×H×W grey (or Y) fused image in [0, ``data_range``]; H, W ≥ 11 (≥ 44 multi-scale).
        sources: N×K×1×H×W grey exposure stacks, K ≥ 2, same size and range.
        multiscale: the 3-scale oQ instead of the single-scale Q.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` over the batch.
        data_range: value of white in the inputs (see :func:`mef_ssim`).

    Returns:
        Scalar (N for ``reduction="none"``) in [0, 2], 0 for a perfect fusion; float32 (float64 for float64
        inputs), autocast disabled, differentiable.

    Example:
        >>> stack = torch.rand(2, 2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> mef_ssim_loss(stack[:, 0], stack, reduction="none").shape
        torch.Size([2])
    """
    check_reduction(reduction)
    return reduce(1.0 - mef_ssim(fused, sources, multiscale=multiscale, data_range=data_range), reduction)


class MEFSSIMLoss(nn.Module):
    r"""DeepFuse's unsupervised loss: ``loss_weight · reduce(1 − MEF-SSIM(fused, sources))``.

    Official remnants of DeepFuse's training code (``main.py``, commented out) min–max scale the
    prediction to [0, 255] and use an unreleased ``mef_ssim_loss_wo_wmap``; its exact form is not
    found, so ``1 − Q`` (single scale by default) is our choice, labelled as such.

    Args:
        multiscale: use the 3-scale oQ instead of the single-scale Q.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` over the batch.
        loss_weight: multiplier of the loss.
        data_range: value of white in the inputs (see :func:`mef_ssim`).

    Shape:
        fused N×1×H×W, sources N×K×1×H×W → scalar, or N for ``reduction="none"``.

    Example:
        >>> stack = torch.rand(1, 2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> float(MEFSSIMLoss()(stack[:, 0], stack)) > 0
        True
    """

    def __init__(
        self,
        multiscale: bool = False,
        reduction: Reduction = "mean",
        loss_weight: float = 1.0,
        data_range: float = 1.0,
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        self.multiscale = multiscale
        self.reduction: Reduction = reduction
        self.loss_weight = loss_weight
        self.data_range = data_range

    def forward(self, fused: Tensor, sources: Tensor) -> Tensor:
        loss = mef_ssim_loss(fused, sources, self.multiscale, self.reduction, self.data_range)
        return self.loss_weight * loss

    def extra_repr(self) -> str:
        return f"multiscale={self.multiscale}, reduction={self.reduction!r}, loss_weight={self.loss_weight}"
