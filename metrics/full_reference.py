"""Full-reference image quality, averaged per image (what papers report), correct under DDP.

torchmetrics' own ``PeakSignalNoiseRatio`` pools the squared error over the whole split unless
``dim`` is given; Zero-DCE's table (and most enhancement papers) average per-image scores. These
classes compute one score per image with torchmetrics' functional implementations and keep a
sum and a count, both reduced with ``sum`` across processes.

Conventions (Zero-DCE's evaluation code was never released, so each is a documented choice):
RGB, data range 1.0 for PSNR and SSIM (Gaussian window 11, σ 1.5, mean over the three channels), MAE on
the 0–255 scale as a mean over pixels and channels. Data range 1 on [0, 1] images equals data range 255
on 8-bit images, so it is not a variant.

Variants the field mixes, each an explicit option whose name goes into the metric's column
(:data:`VARIANTS`):

* ``gtmean``: the output scaled so its mean equals the label's mean (over all RGB values of each), then
  clipped to [0, 1]; an image aligned with itself is unchanged.
* ``gtmean_llflow``: LLFlow's form (repo wyf0912/LLFlow ``code/test.py``, after KinD's
  ``evaluate_LOLdataset.py``): output scaled by ``mean(grey(label)) / mean(output)``, where grey is
  OpenCV's ``0.299 R + 0.587 G + 0.114 B`` and the output's mean is over all RGB values; clipped.
* ``y``: PSNR/SSIM on BT.601 studio-range luma ``Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255``
  (BasicSR's ``test_y_channel`` convention), instead of RGB.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from kornia.color import rgb_to_grayscale
from torchmetrics import Metric
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from imaging.precision import autocast_off

#: metric-variant name → description (the column of a variant is ``<metric>_<variant>``).
VARIANTS: dict[str, str] = {
    "gtmean": "output scaled to the label's mean RGB value, clipped to [0, 1]",
    "gtmean_llflow": "output scaled by mean(grey(label)) / mean(output) as LLFlow's test.py, clipped to [0, 1]",
    "y": "on BT.601 studio-range luma Y (BasicSR test_y_channel) instead of RGB",
}


def luma_bt601(x: torch.Tensor) -> torch.Tensor:
    """BT.601 studio-range luma of RGB in [0, 1]: N×3×H×W → N×1×H×W in [16/255, 235/255] (BasicSR ``rgb2ycbcr``).

    Example:
        >>> (luma_bt601(torch.ones(1, 3, 1, 1)) * 255).round()
        tensor([[[[235.]]]])
    """
    r, g, b = x.unbind(1)
    return ((16.0 + 65.481 * r + 128.553 * g + 24.966 * b) / 255.0).unsqueeze(1)


def gt_mean_align(preds: torch.Tensor, target: torch.Tensor, statistic: str = "rgb") -> torch.Tensor:
    """Scale each output image so its mean brightness equals its label's, then clip to [0, 1].

    Args:
        preds, target: N×3×H×W in [0, 1].
        statistic: ``"rgb"`` (mean over all RGB values of both) or ``"llflow"`` (label mean of OpenCV grey
            ``0.299 R + 0.587 G + 0.114 B``, output mean over all RGB values: LLFlow ``code/test.py``).

    Returns:
        N×3×H×W in [0, 1].

    Example:
        >>> gt_mean_align(torch.full((1, 3, 2, 2), 0.2), torch.full((1, 3, 2, 2), 0.4))[0, 0, 0, 0]
        tensor(0.4000)
    """
    if statistic == "rgb":
        goal = target.flatten(1).mean(1)
    elif statistic == "llflow":
        goal = rgb_to_grayscale(target).flatten(1).mean(1)  # kornia: 0.299 R + 0.587 G + 0.114 B, as OpenCV
    else:
        raise ValueError(f"gt_mean_align: statistic must be 'rgb' or 'llflow', got {statistic!r}")
    scale = goal / preds.flatten(1).mean(1).clamp_min(1e-12)
    return (preds * scale.view(-1, 1, 1, 1)).clamp(0, 1)


def apply_variant(preds: torch.Tensor, target: torch.Tensor, variant: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(preds, target)`` as the metric variant sees them (see :data:`VARIANTS`; ``None`` = as they are).

    Example:
        >>> [t.shape[1] for t in apply_variant(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4), "y")]
        [1, 1]
    """
    if variant is None:
        return preds, target
    if variant == "gtmean":
        return gt_mean_align(preds, target, "rgb"), target
    if variant == "gtmean_llflow":
        return gt_mean_align(preds, target, "llflow"), target
    if variant == "y":
        return luma_bt601(preds), luma_bt601(target)
    raise ValueError(f"unknown metric variant {variant!r}; expected one of {sorted(VARIANTS)}")


def _variant_score(fn: Callable[..., torch.Tensor], variant: str | None, preds: torch.Tensor,
                   target: torch.Tensor) -> torch.Tensor:
    return fn(*apply_variant(preds, target, variant))


def psnr_per_image(preds: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR of each image, N×C×H×W → N (dB), MSE over C, H, W of that image (torchmetrics'
    ``peak_signal_noise_ratio`` with ``dim=(1, 2, 3)``; inputs in [0, ``data_range``]).

    Example:
        >>> psnr_per_image(torch.full((2, 3, 4, 4), 0.5), torch.full((2, 3, 4, 4), 0.6))  # 10·log10(1/0.01)
        tensor([20.0000, 20.0000])
    """
    return peak_signal_noise_ratio(preds, target, data_range=data_range, dim=(1, 2, 3), reduction="none")


def ssim_per_image(preds: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """SSIM of each image (torchmetrics ``structural_similarity_index_measure``: Gaussian 11×11, σ 1.5, mean over
    channels), N×C×H×W in [0, ``data_range``] → N, values in [−1, 1].

    Example:
        >>> x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> ssim_per_image(x, x)
        tensor([1., 1.])
    """
    return structural_similarity_index_measure(preds, target, data_range=data_range, reduction="none")


def mae_per_image(preds: torch.Tensor, target: torch.Tensor, scale: float = 255.0) -> torch.Tensor:
    """Mean absolute error of each image on the ``[0, scale]`` range, N×C×H×W → N.

    Example:
        >>> mae_per_image(torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.1))
        tensor([25.5000])
    """
    return (preds - target).abs().flatten(1).mean(1) * scale


class PerImageMean(Metric):
    """Mean over images of a per-image score ``fn(*inputs) -> Tensor[N]`` (e.g. ``fn(preds, target)``).

    Inputs (all N×C×H×W of one shape) are clamped to [0, 1] (unless ``clamp`` is False) and computed in fp32. States: ``total`` and
    ``count`` (sum-reduced). After each ``update``, :attr:`last_scores` holds that batch's N scores (detached),
    which the LightningModules write to ``per_image.csv``. ``compute()``: the mean (float32; 0 before any update).

    Example:
        >>> m = PerImageMean(lambda p, t: (p - t).abs().flatten(1).amax(1))
        >>> m.update(torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.25))
        >>> m.last_scores, m.compute()
        (tensor([0.2500, 0.2500]), tensor(0.2500))
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
        with autocast_off(inputs[0].device.type):  # scores in fp32 even inside a mixed-precision step
            scores = self.fn(*(t.float().clamp(0, 1) if self.clamp else t.float() for t in inputs))
        self.last_scores = scores.detach()
        self.total += scores.double().sum()
        self.count += scores.numel()

    def compute(self) -> torch.Tensor:
        return (self.total / self.count.clamp_min(1)).float()


class PSNR(PerImageMean):
    """Per-image PSNR (dB, data range 1, :func:`psnr_per_image`), averaged over images; ``variant`` from
    :data:`VARIANTS`. ``update(preds, target)``: N×3×H×W each, clamped to [0, 1].

    Example:
        >>> m = PSNR("gtmean")
        >>> m.update(torch.full((1, 3, 4, 4), 0.25), torch.full((1, 3, 4, 4), 0.5))
        >>> m.compute()  # aligned to the label's mean: identical, infinite PSNR
        tensor(inf)
    """

    higher_is_better = True

    def __init__(self, variant: str | None = None, **kwargs) -> None:
        apply_variant(torch.zeros(1, 3, 1, 1), torch.zeros(1, 3, 1, 1), variant)  # validate the name
        super().__init__(partial(_variant_score, psnr_per_image, variant), **kwargs)


class SSIM(PerImageMean):
    """Per-image SSIM (:func:`ssim_per_image`), averaged over images; ``variant`` from :data:`VARIANTS`.
    ``update(preds, target)``: N×3×H×W each, clamped to [0, 1].

    Example:
        >>> m = SSIM("y")
        >>> x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> m.update(x, x)
        >>> m.compute()
        tensor(1.)
    """

    higher_is_better = True

    def __init__(self, variant: str | None = None, **kwargs) -> None:
        apply_variant(torch.zeros(1, 3, 1, 1), torch.zeros(1, 3, 1, 1), variant)
        super().__init__(partial(_variant_score, ssim_per_image, variant), **kwargs)


class MAE(PerImageMean):
    """Per-image mean absolute error on the 0–255 scale (:func:`mae_per_image`), averaged over images.

    Example:
        >>> m = MAE()
        >>> m.update(torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2))
        >>> m.compute()
        tensor(255.)
    """

    higher_is_better = False

    def __init__(self, **kwargs) -> None:
        super().__init__(mae_per_image, **kwargs)
