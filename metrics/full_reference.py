"""Full-reference image quality, averaged per image (what papers report), correct under DDP.

torchmetrics' own ``PeakSignalNoiseRatio`` pools the squared error over the whole split unless
``dim`` is given; Zero-DCE's table (and most enhancement papers) average per-image scores. These
classes compute one score per image with torchmetrics' functional implementations and keep a
sum and a count, both reduced with ``sum`` across processes.

Conventions (Zero-DCE's evaluation code was never released, so each is a documented choice):
RGB, data range 1.0 for PSNR and SSIM (Gaussian window 11, σ 1.5), MAE on the 0–255 scale as a
mean over pixels and channels.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torchmetrics import Metric
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure


def psnr_per_image(preds: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR of each image, N×C×H×W → N (dB), MSE over C, H, W of that image."""
    return peak_signal_noise_ratio(preds, target, data_range=data_range, dim=(1, 2, 3), reduction="none")


def ssim_per_image(preds: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """SSIM of each image (torchmetrics, Gaussian 11×11, σ 1.5), N×C×H×W → N."""
    return structural_similarity_index_measure(preds, target, data_range=data_range, reduction="none")


def mae_per_image(preds: torch.Tensor, target: torch.Tensor, scale: float = 255.0) -> torch.Tensor:
    """Mean absolute error of each image on the ``[0, scale]`` range, N×C×H×W → N."""
    return (preds - target).abs().flatten(1).mean(1) * scale


class PerImageMean(Metric):
    """Mean over images of a per-image score ``fn(*inputs) -> Tensor[N]`` (e.g. ``fn(preds, target)``).

    Inputs (all N×C×H×W of one shape) are clamped to [0, 1] (unless ``clamp`` is False) and computed in fp32. States: ``total`` and
    ``count`` (sum-reduced). After each ``update``, :attr:`last_scores` holds that batch's N scores (detached),
    which the LightningModules write to ``per_image.csv``.
    """

    full_state_update = False
    clamp: bool = True
    total: torch.Tensor
    count: torch.Tensor

    def __init__(self, fn: Callable[..., torch.Tensor], **kwargs) -> None:
        super().__init__(**kwargs)
        self.fn = fn
        self.last_scores: torch.Tensor | None = None
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, *inputs: torch.Tensor) -> None:
        if not inputs or inputs[0].ndim != 4 or any(t.shape != inputs[0].shape for t in inputs):
            raise ValueError(f"{type(self).__name__}: expected inputs of equal shape N×C×H×W, got "
                             f"{[tuple(t.shape) for t in inputs]}")
        scores = self.fn(*(t.float().clamp(0, 1) if self.clamp else t.float() for t in inputs))
        self.last_scores = scores.detach()
        self.total += scores.double().sum()
        self.count += scores.numel()

    def compute(self) -> torch.Tensor:
        return (self.total / self.count.clamp_min(1)).float()


class PSNR(PerImageMean):
    """Per-image PSNR (dB, data range 1), averaged over images."""

    higher_is_better = True

    def __init__(self, **kwargs) -> None:
        super().__init__(psnr_per_image, **kwargs)


class SSIM(PerImageMean):
    """Per-image SSIM (torchmetrics), averaged over images."""

    higher_is_better = True

    def __init__(self, **kwargs) -> None:
        super().__init__(ssim_per_image, **kwargs)


class MAE(PerImageMean):
    """Per-image mean absolute error on the 0–255 scale, averaged over images."""

    higher_is_better = False

    def __init__(self, **kwargs) -> None:
        super().__init__(mae_per_image, **kwargs)
