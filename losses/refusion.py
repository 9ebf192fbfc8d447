"""ReFusion's learnable fusion loss and its source-reconstruction loss.

Notation (all tensors float, images in [0, 1]): ``sources`` N×K×C×H×W (K sources, ReFusion: K = 2, C = 1 grey / Y),
``fused`` N×C×H×W, per-pixel weights N×K×1×H×W (broadcast over C) or N×K×C×H×W, summing to 1 over K when they come
from :class:`~lightning_modules.refusion.LossProposalNet` (softmax over the sources).

Gradient operator (training copy of ReFusion and TDFusion ``utils.py``): ``∇x = |Sobel_x ∗ x| + |Sobel_y ∗ x|``,
depthwise 3×3, zero padding 1, unnormalised kernels ``[[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]`` and its transpose.
(kornia's ``spatial_gradient`` normalises and replicate-pads, so it is not used.)

Both losses run in float32 (float64 for float64 inputs) with autocast disabled (:func:`losses._common.fp32`), like
the other losses of this package: under bf16 autocast the Sobel convolutions ran in bfloat16, and ∇L_f (w.r.t. the fused image) was ~9% off
in norm (measured on random 64×64 pairs; tests/test_device_agnostic.py). :func:`sobel_gradient` itself follows
autocast (it is also a layer of :class:`~lightning_modules.refusion.LossProposalNet`).

SOURCES: ReFusion (Bai et al., IJCV 2024) framework figure (official repo HaowenBai/HaowenBai.github.io,
``images_paper/ReFusion.png``) for the structure; the training copy derived from the official training release
(utilities file) for the exact form: weights enter **squared**, the reconstruction error takes the pixel-wise
**max** over the two sources. See ``../shared/papers/refusion.md`` §3.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from imaging.filters import _sobel_kernel, sobel_gradient  # noqa: F401  (re-exported)
from losses._common import Reduction, check_reduction, check_tensor, fp32, reduce

__all__ = [
    "sobel_gradient",
    "fusion_loss_terms",
    "refusion_fusion_loss",
    "refusion_reconstruction_loss",
    "ReFusionFusionLoss",
    "ReFusionReconstructionLoss",
]


def _check_sources(fused: Tensor, sources: Tensor, who: str) -> None:
    check_tensor(sources, f"{who}(sources)", "N×K×C×H×W", ndim=5, what="sources")
    check_tensor(fused, f"{who}(fused)", "N×C×H×W", ndim=4, what="a fused image")
    n, _, c, h, w = sources.shape
    if tuple(fused.shape) != (n, c, h, w):
        raise ValueError(
            f"{who}: fused image {tuple(fused.shape)} does not match the sources {tuple(sources.shape)} "
            f"(expected {(n, c, h, w)})"
        )


def _check_weights(weights: Tensor, sources: Tensor, name: str) -> None:
    check_tensor(weights, f"refusion_fusion_loss({name})", "N×K×1×H×W or N×K×C×H×W", ndim=5, what="weights")
    n, k, c, h, w = sources.shape
    if tuple(weights.shape) not in {(n, k, 1, h, w), (n, k, c, h, w)}:
        raise ValueError(
            f"refusion_fusion_loss: {name} must be N×K×1×H×W or N×K×C×H×W = {(n, k, 1, h, w)} "
            f"for sources {tuple(sources.shape)}, got {tuple(weights.shape)}"
        )


@fp32(keep_float64=True)
def fusion_loss_terms(
    fused: Tensor,
    sources: Tensor,
    intensity_weights: Tensor,
    gradient_weights: Tensor,
    squared_weights: bool = True,
    reduction: Reduction = "mean",
    sobel_kernel: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The two terms of ReFusion's parameterised fusion loss, before the gradient coefficient α1.

    ``L_int = mean_{n,c,i,j} Σ_k w_k^p (I_k − F)²`` and ``L_grad = mean_{n,c,i,j} Σ_k v_k^p (∇I_k − ∇F)²`` with
    p = 2 (``squared_weights=True``, official training code: ``mean(w_A²(A − F)²) + mean(w_B²(B − F)²)``) or
    p = 1 (paper figure: ``(1/HW) Σ_ij Σ_k w_k (I_k − I_f)²``).

    Args:
        fused: N×C×H×W fused image in [0, 1].
        sources: N×K×C×H×W sources in [0, 1].
        intensity_weights: w, N×K×1×H×W (or N×K×C×H×W), e.g. softmax over K.
        gradient_weights: v, same shape rules as ``intensity_weights``.
        squared_weights: True = code (w²), False = paper figure (w).
        reduction: 'mean' (as the code), 'sum', or 'none' (per-pixel maps N×C×H×W, already summed over K).
        sobel_kernel: optional 2×1×3×3 kernel buffer (see :func:`sobel_gradient`).

    Returns:
        (intensity term, gradient term), each a scalar (or N×C×H×W for ``reduction='none'``).

    SOURCE: ReFusion framework figure (L_f) and training copy ``Fusionloss_int`` / ``Fusionloss_grad``; digest §3.

    Example:
        >>> s = torch.rand(1, 2, 1, 8, 8); w = torch.full((1, 2, 1, 8, 8), 0.5)
        >>> [t.shape for t in fusion_loss_terms(s[:, 0], s, w, w, reduction="none")]
        [torch.Size([1, 1, 8, 8]), torch.Size([1, 1, 8, 8])]
    """
    check_reduction(reduction)
    _check_sources(fused, sources, "refusion_fusion_loss")
    _check_weights(intensity_weights, sources, "intensity_weights")
    _check_weights(gradient_weights, sources, "gradient_weights")
    power = 2 if squared_weights else 1
    f = fused.unsqueeze(1)
    intensity = (intensity_weights.pow(power) * (sources - f).square()).sum(1)
    grad_sources = sobel_gradient(sources, sobel_kernel)
    grad_fused = sobel_gradient(fused, sobel_kernel).unsqueeze(1)
    gradient = (gradient_weights.pow(power) * (grad_sources - grad_fused).square()).sum(1)
    return reduce(intensity, reduction), reduce(gradient, reduction)


def refusion_fusion_loss(
    fused: Tensor,
    sources: Tensor,
    intensity_weights: Tensor,
    gradient_weights: Tensor,
    alpha_grad: float = 1.0,
    intensity_weight: float = 1.0,
    squared_weights: bool = True,
    reduction: Reduction = "mean",
    sobel_kernel: Tensor | None = None,
) -> Tensor:
    """ReFusion's learnable fusion loss ``L_f = c_int·L_int + α1·L_grad`` (see :func:`fusion_loss_terms`).

    Args:
        fused, sources, intensity_weights, gradient_weights, squared_weights, reduction: as in
            :func:`fusion_loss_terms`.
        alpha_grad: α1. The training copy ramps it ``coef·(epoch + 1)/num_epochs``; the ramp is the
            LightningModule's job. Default 1 (TDFusion ``coef_f_grad = 1``).
        intensity_weight: c_int, 1 in the code.

    Returns:
        Scalar (or N×C×H×W map for ``reduction='none'``), ≥ 0.

    Example:
        >>> s = torch.rand(2, 2, 1, 8, 8); f = torch.rand(2, 1, 8, 8); w = torch.full((2, 2, 1, 8, 8), 0.5)
        >>> refusion_fusion_loss(f, s, w, w).shape
        torch.Size([])
    """
    intensity, gradient = fusion_loss_terms(
        fused, sources, intensity_weights, gradient_weights, squared_weights, reduction, sobel_kernel
    )
    return intensity_weight * intensity + alpha_grad * gradient


@fp32(keep_float64=True)
def refusion_reconstruction_loss(
    reconstructed: Tensor,
    sources: Tensor,
    grad_weight: float = 1.0,
    intensity_weight: float = 1.0,
    source_reduction: Literal["max", "mean"] = "max",
    reduction: Reduction = "mean",
    sobel_kernel: Tensor | None = None,
) -> Tensor:
    """Reconstruction loss of the sources from the fused image (ReFusion's meta objective L_r).

    ``L_r = c_int·mean(max_k |I_k − Î_k|)² + c_grad·mean(max_k |∇I_k − ∇Î_k|)²`` (pixel-wise max over the
    sources, official training code). ``source_reduction='mean'`` averages over the sources instead: an ablation
    option of this port, NOT from the paper or the code (the paper's exact form was not readable).

    Args:
        reconstructed: N×K×C×H×W reconstructions Î_k in [0, 1].
        sources: N×K×C×H×W targets I_k in [0, 1] (same shape).
        grad_weight, intensity_weight: coefficients, 1 and 1 in the code.
        source_reduction: 'max' (code) or 'mean' (ablation).
        reduction: 'mean', 'sum' or 'none' (N×C×H×W map).
        sobel_kernel: optional 2×1×3×3 kernel buffer (see :func:`sobel_gradient`).

    Returns:
        Scalar (or N×C×H×W), ≥ 0.

    SOURCE: training copy (utilities file) ``Reconstruction loss``; digest §3.

    Example:
        >>> s = torch.rand(2, 2, 1, 8, 8)
        >>> refusion_reconstruction_loss(s, s)
        tensor(0.)
    """
    check_reduction(reduction)
    check_tensor(reconstructed, "refusion_reconstruction_loss(reconstructed)", "N×K×C×H×W", ndim=5,
                 what="reconstructions", same_as=("sources", sources))
    if source_reduction not in ("max", "mean"):
        raise ValueError(f"source_reduction must be 'max' or 'mean', got {source_reduction!r}")

    def over_sources(x: Tensor) -> Tensor:
        return x.amax(1) if source_reduction == "max" else x.mean(1)

    intensity = over_sources((sources - reconstructed).abs()).square()
    grad_error = (sobel_gradient(sources, sobel_kernel) - sobel_gradient(reconstructed, sobel_kernel)).abs()
    gradient = over_sources(grad_error).square()
    return reduce(intensity_weight * intensity + grad_weight * gradient, reduction)


class ReFusionFusionLoss(nn.Module):
    """Module wrapper of :func:`refusion_fusion_loss` (``loss_weight`` scales the result); the Sobel kernel is a
    non-persistent buffer.

    Example:
        >>> s = torch.rand(1, 2, 1, 8, 8); w = torch.full((1, 2, 1, 8, 8), 0.5)
        >>> ReFusionFusionLoss(reduction="none")(s[:, 0], s, w, w).shape
        torch.Size([1, 1, 8, 8])
    """

    def __init__(
        self,
        alpha_grad: float = 1.0,
        intensity_weight: float = 1.0,
        squared_weights: bool = True,
        loss_weight: float = 1.0,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        self.alpha_grad = alpha_grad
        self.intensity_weight = intensity_weight
        self.squared_weights = squared_weights
        self.loss_weight = loss_weight
        self.reduction: Reduction = reduction
        self.register_buffer(
            "sobel_kernel", _sobel_kernel(torch.float32, torch.device("cpu")), persistent=False
        )

    def forward(
        self, fused: Tensor, sources: Tensor, intensity_weights: Tensor, gradient_weights: Tensor
    ) -> Tensor:
        return self.loss_weight * refusion_fusion_loss(
            fused,
            sources,
            intensity_weights,
            gradient_weights,
            alpha_grad=self.alpha_grad,
            intensity_weight=self.intensity_weight,
            squared_weights=self.squared_weights,
            reduction=self.reduction,
            sobel_kernel=self.sobel_kernel,
        )


class ReFusionReconstructionLoss(nn.Module):
    """Module wrapper of :func:`refusion_reconstruction_loss` (``loss_weight`` scales the result); the Sobel
    kernel is a non-persistent buffer.

    Example:
        >>> s = torch.rand(1, 2, 1, 8, 8)
        >>> ReFusionReconstructionLoss(loss_weight=2.0)(s, s)
        tensor(0.)
    """

    def __init__(
        self,
        grad_weight: float = 1.0,
        intensity_weight: float = 1.0,
        source_reduction: Literal["max", "mean"] = "max",
        loss_weight: float = 1.0,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        self.grad_weight = grad_weight
        self.intensity_weight = intensity_weight
        self.source_reduction: Literal["max", "mean"] = source_reduction
        self.loss_weight = loss_weight
        self.reduction: Reduction = reduction
        self.register_buffer(
            "sobel_kernel", _sobel_kernel(torch.float32, torch.device("cpu")), persistent=False
        )

    def forward(self, reconstructed: Tensor, sources: Tensor) -> Tensor:
        return self.loss_weight * refusion_reconstruction_loss(
            reconstructed,
            sources,
            grad_weight=self.grad_weight,
            intensity_weight=self.intensity_weight,
            source_reduction=self.source_reduction,
            reduction=self.reduction,
            sobel_kernel=self.sobel_kernel,
        )
