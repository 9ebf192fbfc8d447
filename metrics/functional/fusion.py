"""Image-fusion metrics as functions, with the conventions of the evaluator the fusion papers use.

SOURCE: repo Zhaozixiang1228/MMIF-CDDFuse, file ``utils/Evaluator.py`` ("CDDFuse"); the conventions (0–255 grey
levels, MI in nats, VIF and SSIM summed over the sources, SSIM with scikit-image 0.19.3's data range 2, PSNR with
the fused image's peak, Qabf's quirk) and the literature variants are listed in :mod:`metrics.functional.fusion_core`,
which holds the implementations. ``../shared/papers/metrics.md`` §4.

Shapes: a fused image is H×W, 1×H×W (one image) or N×1×H×W (a batch); its sources are K×H×W, K×1×H×W or a list
of K images (one image) or N×K×1×H×W (a batch). Functions return a 0-d tensor for one image and a tensor of shape
(N,) for a batch, float64, detached (not differentiable). Inputs must be float tensors in [0, 1]: a maximum above
1.5 is refused as probable 0–255 data, and with ``quantize=True`` (default) 255·x is rounded to integer grey levels
(clipped to [0, 255]), as the evaluator reading an 8-bit file sees it.

The per-image ``Metric`` classes that average these over a test set are in :mod:`metrics.fusion`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from metrics.functional.fusion_core import (
    _SSIM_GAUSS_WIN,
    _SSIM_WIN,
    _VIF_MIN_SIZE,
    DEFAULT_METRICS,
    _ag,
    _ag_matlab,
    _cc,
    _check_names,
    _compute_all,
    _entropy,
    _mi,
    _mi_bits,
    _mse,
    _out,
    _prepare,
    _prepare_single,
    _psnr,
    _psnr_255,
    _psnr_tang,
    _qabf,
    _scd,
    _sd,
    _sf,
    _sf_vifb,
    _ssim_gauss_valid,
    _ssim_tm,
    _ssim_uniform,
    _vif,
    _vif_avg,
)

__all__ = [
    "average_gradient",
    "correlation_coefficient",
    "entropy",
    "evaluate",
    "mean_squared_error",
    "mutual_information",
    "peak_signal_noise_ratio",
    "qabf",
    "read_evaluator_grey",
    "spatial_frequency",
    "standard_deviation",
    "structural_similarity",
    "sum_of_correlation_differences",
    "visual_information_fidelity",
]


def entropy(image: Tensor) -> Tensor:
    """EN: Shannon entropy in bits of the 256-bin grey-level histogram.

    EN = −Σ_l p_l·log2 p_l, with p the histogram of ``uint8(round(255·image))``.
    SOURCE: CDDFuse ``Evaluator.EN`` (identical in Tang's MATLAB code and VIFB).

    Args:
        image: H×W, 1×H×W or N×1×H×W, float in [0, 1].

    Returns:
        0-d tensor (or (N,)) in [0, 8]; 0 for a constant image.

    Example:
        >>> entropy(torch.cat([torch.zeros(4, 4), torch.ones(4, 4)]))  # two equally frequent levels: 1 bit
        tensor(1., dtype=torch.float64)
    """
    f, b = _prepare_single(image, quantize=True)
    return _out(_entropy(f), b)


def standard_deviation(image: Tensor, quantize: bool = True) -> Tensor:
    """SD: population standard deviation sqrt(mean((F − μ)²)) on the 0–255 scale.

    SOURCE: CDDFuse ``Evaluator.SD`` (``np.std``). Shapes as :func:`entropy`; range [0, 127.5].

    Example:
        >>> standard_deviation(torch.cat([torch.zeros(4, 4), torch.ones(4, 4)]))
        tensor(127.5000, dtype=torch.float64)
    """
    f, b = _prepare_single(image, quantize)
    return _out(_sd(f), b)


def spatial_frequency(image: Tensor, quantize: bool = True, normalisation: str = "cddfuse") -> Tensor:
    """SF = sqrt(RF² + CF²) on the 0–255 scale.

    ``normalisation="cddfuse"`` (SOURCE: CDDFuse ``Evaluator.SF``): RF² = mean over H×(W−1) of the
    squared horizontal differences, CF² = mean over (H−1)×W of the squared vertical ones.
    ``"vifb"`` (SOURCE: VIFB/MEFB ``metricsSpatial_frequency``): both sums divided by H·W.
    Shapes as :func:`entropy`; ≥ 0, 0 for a constant image.

    Example:
        >>> spatial_frequency(torch.full((2, 1, 8, 8), 0.5))  # a batch of two flat images
        tensor([0., 0.], dtype=torch.float64)
    """
    f, b = _prepare_single(image, quantize)
    if normalisation not in ("cddfuse", "vifb"):
        raise ValueError(f"`normalisation` must be 'cddfuse' or 'vifb', got {normalisation!r}")
    return _out(_sf(f) if normalisation == "cddfuse" else _sf_vifb(f), b)


def average_gradient(image: Tensor, quantize: bool = True, normalisation: str = "cddfuse") -> Tensor:
    """AG: mean of sqrt((G_x² + G_y²)/2) on the 0–255 scale.

    G_x, G_y are ``np.gradient`` differences (central /2 inside, one-sided at the borders).
    ``normalisation="cddfuse"`` (SOURCE: CDDFuse ``Evaluator.AG``): mean over H×W pixels;
    ``"matlab"`` (SOURCE: Tang's MATLAB / VIFB): the sum divided by (H−1)(W−1).
    Shapes as :func:`entropy`; ≥ 0, 0 for a constant image.

    Example:
        >>> average_gradient(torch.full((8, 8), 0.5), normalisation="matlab")
        tensor(0., dtype=torch.float64)
    """
    f, b = _prepare_single(image, quantize)
    if normalisation not in ("cddfuse", "matlab"):
        raise ValueError(f"`normalisation` must be 'cddfuse' or 'matlab', got {normalisation!r}")
    return _out(_ag(f) if normalisation == "cddfuse" else _ag_matlab(f), b)


def mutual_information(fused: Tensor, sources: Tensor | Sequence[Tensor], bits: bool = False) -> Tensor:
    """MI = Σ_k MI(S_k, F) from 256×256 joint histograms of integer grey levels.

    MI(S, F) = Σ_{s,f} p(s,f)·log(p(s,f)/(p(s)p(f))), natural log (**nats**) by default, as
    scikit-learn ``mutual_info_score`` (SOURCE: CDDFuse ``Evaluator.MI``); ``bits=True`` divides by
    ln 2 (Qu et al. / Tang MATLAB without its uint8+1 saturation). Images are rounded to levels.
    MI(F, F) = EN(F)·ln 2. Shapes: see the module docstring. Returns ≥ 0.

    Example:
        >>> f = torch.cat([torch.zeros(4, 4), torch.ones(4, 4)])  # EN = 1 bit
        >>> round(float(mutual_information(f, [f, f])), 4)  # 2·EN·ln 2
        1.3863
    """
    f, s, b = _prepare(fused, sources, quantize=True)
    return _out(_mi_bits(f, s) if bits else _mi(f, s), b)


def sum_of_correlation_differences(
    fused: Tensor, sources: Tensor | Sequence[Tensor], quantize: bool = True
) -> Tensor:
    """SCD = corr(A, F − B) + corr(B, F − A), Pearson over all pixels; exactly two sources.

    SOURCE: Aslantas & Bendes 2015; CDDFuse ``Evaluator.SCD``. Range [−2, 2].

    Example:
        >>> a, b = torch.rand(2, 32, 32, generator=torch.Generator().manual_seed(0))
        >>> -2 <= float(sum_of_correlation_differences((a + b) / 2, [a, b])) <= 2
        True
    """
    f, s, b = _prepare(fused, sources, quantize)
    return _out(_scd(f, s), b)


def correlation_coefficient(fused: Tensor, sources: Tensor | Sequence[Tensor], quantize: bool = True) -> Tensor:
    """CC = mean_k corr(S_k, F), Pearson over all pixels (SOURCE: CDDFuse ``Evaluator.CC``). Range [−1, 1].

    Example:
        >>> a = torch.rand(16, 16, generator=torch.Generator().manual_seed(0))
        >>> round(float(correlation_coefficient(a, [a, a])), 6)
        1.0
    """
    f, s, b = _prepare(fused, sources, quantize)
    return _out(_cc(f, s), b)


def mean_squared_error(fused: Tensor, sources: Tensor | Sequence[Tensor], quantize: bool = True) -> Tensor:
    """MSE = mean_k mean((S_k − F)²) on the 0–255 scale (SOURCE: CDDFuse ``Evaluator.MSE``).

    Example:
        >>> mean_squared_error(torch.full((4, 4), 0.2), [torch.full((4, 4), 0.2), torch.full((4, 4), 0.0)])
        tensor(1300.5000, dtype=torch.float64)
    """
    f, s, b = _prepare(fused, sources, quantize)
    return _out(_mse(f, s), b)


def peak_signal_noise_ratio(
    fused: Tensor, sources: Tensor | Sequence[Tensor], quantize: bool = True, peak: str = "fused"
) -> Tensor:
    """PSNR = 10·log10(P² / MSE) in dB, MSE as :func:`mean_squared_error`.

    ``peak="fused"``: P = max(F) (SOURCE: CDDFuse ``Evaluator.PSNR``); ``"255"``: P = 255;
    ``"tang"``: Tang's MATLAB ``PSNR_evaluation`` = the peak-255 value + 20·log10(255) (≈ +48.13 dB).

    Example:
        >>> f, s = torch.ones(4, 4), torch.full((2, 4, 4), 0.8)  # 255 vs 204: MSE 51², PSNR 10·log10(25)
        >>> round(float(peak_signal_noise_ratio(f, s)), 3), round(float(peak_signal_noise_ratio(f, s, peak="tang")), 3)
        (13.979, 62.11)
    """
    f, s, b = _prepare(fused, sources, quantize)
    fns = {"fused": _psnr, "255": _psnr_255, "tang": _psnr_tang}
    if peak not in fns:
        raise ValueError(f"`peak` must be one of {sorted(fns)}, got {peak!r}")
    return _out(fns[peak](f, s), b)


def visual_information_fidelity(
    fused: Tensor, sources: Tensor | Sequence[Tensor], quantize: bool = True, reduction: str = "sum"
) -> Tensor:
    """VIF = Σ_k VIFp(S_k, F), pixel-domain multi-scale VIF (Sheikh & Bovik), σ_n² = 2, on 0–255.

    4 scales, Gaussian windows N = 17, 9, 5, 3 (σ = N/5), 'valid' filtering, 2× subsampling;
    VIFp = Σ log10(1 + g²σ_S²/(σ_v² + σ_n²)) / Σ log10(1 + σ_S²/σ_n²); NaN (a flat source) → 1.
    SOURCE: CDDFuse ``compare_viff``; torchmetrics ``visual_information_fidelity`` has the same
    definition (``VIF_tm_sum`` calls it; equal within 1e-12) but filters with full 2-D float64
    convolutions, ~10× slower on a CPU than the separable filtering used here. ``reduction="sum"`` (CDDFuse) or ``"mean"`` (TDFusion / sewar).
    Needs H, W ≥ 41.

    Example:
        >>> a = torch.rand(48, 48, generator=torch.Generator().manual_seed(0))
        >>> round(float(visual_information_fidelity(a, [a, a])), 4)  # VIFp(A, A) = 1 per source
        2.0
    """
    f, s, b = _prepare(fused, sources, quantize, _VIF_MIN_SIZE)
    if reduction not in ("sum", "mean"):
        raise ValueError(f"`reduction` must be 'sum' or 'mean', got {reduction!r}")
    return _out(_vif(f, s) if reduction == "sum" else _vif_avg(f, s), b)


def qabf(fused: Tensor, sources: Tensor | Sequence[Tensor], quantize: bool = True) -> Tensor:
    """Q^AB/F (Xydeas & Petrović 2000): edge information transferred from the sources to F.

    Sobel S_x = [[−1,0,1],[−2,0,2],[−1,0,1]], S_y = [[1,2,1],[0,0,0],[−1,−2,−1]] ('same', zero
    padding); g = sqrt(S_x² + S_y²), α = atan(S_y/S_x) (π/2 where S_x = 0). G_SF = min(g_S, g_F) /
    max(g_S, g_F), but g_F where g_S = g_F (CDDFuse quirk: flat areas give 0); A_SF = 1 − |α_S − α_F|/(π/2);
    Q_SF = Tg/(1 + e^{kg(G − Dg)}) · Ta/(1 + e^{ka(A − Da)}), Tg 0.9994, kg −15, Dg 0.5, Ta 0.9879,
    ka −22, Da 0.8; Qabf = Σ_k Σ Q_{S_k F}·g_{S_k} / Σ_k Σ g_{S_k} (NaN if every source is flat).
    SOURCE: CDDFuse ``Evaluator.Qabf``. Range [0, 1).

    Example:
        >>> a, b = torch.rand(2, 32, 32, generator=torch.Generator().manual_seed(0))
        >>> 0 <= float(qabf(a, [a, b])) < 1
        True
    """
    f, s, b = _prepare(fused, sources, quantize, 3)
    return _out(_qabf(f, s), b)


def structural_similarity(
    fused: Tensor,
    sources: Tensor | Sequence[Tensor],
    quantize: bool = True,
    data_range: float = 2.0,
    reduction: str = "sum",
    window: str = "skimage",
) -> Tensor:
    """SSIM(F, S_k) summed (or averaged) over the sources, images on 0–255.

    ``window="skimage"`` (default; SOURCE: CDDFuse ``Evaluator.SSIM`` = scikit-image
    ``structural_similarity`` defaults): 7×7 uniform window, sample covariance (×49/48),
    C1 = (0.01·data_range)², C2 = (0.03·data_range)², mean of the map with its 3-pixel border cropped.
    ``data_range=2`` reproduces scikit-image 0.19.3 on float input (what the papers printed);
    255 is the corrected call. ``window="vifb"``: Gaussian 11×11 σ 1.5 (MATLAB ``fspecial``), 'valid',
    L = 255 (SOURCE: VIFB ``metricsSsim``). ``window="torchmetrics"``: torchmetrics SSIM
    (Gaussian 11, σ 1.5, reflect padding), L = 255. ``data_range`` only applies to "skimage".

    Example:
        >>> a = torch.rand(16, 16, generator=torch.Generator().manual_seed(0))
        >>> structural_similarity(a, [a, a]), structural_similarity(a, [a, a], reduction="mean")
        (tensor(2., dtype=torch.float64), tensor(1., dtype=torch.float64))
    """
    f, s, b = _prepare(fused, sources, quantize, _SSIM_GAUSS_WIN if window != "skimage" else _SSIM_WIN)
    if reduction not in ("sum", "mean"):
        raise ValueError(f"`reduction` must be 'sum' or 'mean', got {reduction!r}")
    if window == "skimage":
        if not data_range > 0:
            raise ValueError(f"`data_range` must be positive, got {data_range}")
        per = _ssim_uniform(f, s, float(data_range))
    elif window == "vifb":
        per = _ssim_gauss_valid(f, s)
    elif window == "torchmetrics":
        per = _ssim_tm(f, s)
    else:
        raise ValueError(f"`window` must be 'skimage', 'vifb' or 'torchmetrics', got {window!r}")
    return _out(per.sum(dim=1) if reduction == "sum" else per.mean(dim=1), b)


def evaluate(
    fused: Tensor,
    sources: Tensor | Sequence[Tensor],
    metrics: Sequence[str] = DEFAULT_METRICS,
    quantize: bool = True,
) -> dict[str, float]:
    """All requested fusion metrics of one fused image (or the per-image mean over a batch).

    Args:
        fused: grey fused image H×W or 1×H×W (or a batch N×1×H×W), float in [0, 1].
        sources: its sources K×H×W, K×1×H×W or a list of K images (or N×K×1×H×W); K = 2 for SCD.
        metrics: names from :data:`ALL_METRICS`; default :data:`DEFAULT_METRICS` (CDDFuse's set).
        quantize: round 255·x to integer grey levels first (the evaluator scores 8-bit files).

    Returns:
        ``{name: value}`` as Python floats, conventions of the module docstring.

    Example:
        >>> a, b = torch.rand(2, 64, 64, generator=torch.Generator().manual_seed(0))
        >>> sorted(evaluate((a + b) / 2, [a, b], metrics=("EN", "MI")))
        ['EN', 'MI']
    """
    names = _check_names(metrics)
    f, s, _ = _prepare(fused, sources, quantize)
    table = _compute_all(f, s, names).mean(dim=0)
    return {m: float(v) for m, v in zip(names, table, strict=True)}


def read_evaluator_grey(path: str | Path) -> Tensor:
    """Read an image file as the fusion evaluator does, as a 1×H×W float32 tensor in [0, 1].

    ``np.round(cv2.cvtColor(cv2.imread(path).astype('float32'), cv2.COLOR_BGR2GRAY)) / 255``:
    grey files become three equal channels first; Y = 0.299R + 0.587G + 0.114B, rounded.
    SOURCE: CDDFuse ``utils/Evaluator.py`` ``image_read_cv2(path, 'GRAY')``.
    """
    import cv2
    import numpy as np

    img = cv2.imread(str(path))
    if img is None:
        raise FileNotFoundError(f"{path}: cannot read as an image (expected an 8-bit PNG/JPEG/BMP/TIFF)")
    grey = np.round(cv2.cvtColor(img.astype("float32"), cv2.COLOR_BGR2GRAY))
    return torch.from_numpy(grey.astype(np.float32) / 255.0).unsqueeze(0)
