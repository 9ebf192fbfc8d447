"""Image-fusion metrics, the 0–255 float64 implementations, with the conventions of the papers' evaluator.

The CDDFuse / DDFM / ReFusion group evaluates fused images with one script, SOURCE: repo
Zhaozixiang1228/MMIF-CDDFuse, file ``utils/Evaluator.py`` (called "CDDFuse" below). Its conventions
change the numbers, so they are reproduced exactly (see ``../shared/papers/metrics.md`` §4):

* grey images on the **0–255** scale: inputs here are float tensors in [0, 1] and are multiplied by
  255 inside. By default (``quantize=True``) they are also rounded to integer grey levels, because
  the evaluator reads 8-bit files: a fused float output is scored as the 8-bit image it would be
  saved as. :func:`read_evaluator_grey` reads a file exactly like the evaluator does;
* MI in **nats** (scikit-learn ``mutual_info_score``), summed over the sources;
* VIF (VIFp, σ_n² = 2) and SSIM **summed** over the two sources (so they can exceed 1);
* SSIM = scikit-image ``structural_similarity`` defaults (7×7 uniform window, sample covariance,
  3-pixel border cropped) with ``data_range = 2`` — what scikit-image 0.19.3 (pinned by ReFusion)
  silently used for float input, i.e. what CDDFuse printed. ``SSIM_dr255`` is the "fixed" call;
* PSNR uses the fused image's maximum as the peak, not 255;
* Qabf with Xydeas–Petrović constants and CDDFuse's ``G = g_F where g_A == g_F`` quirk.

Other conventions found in the literature are available under their own names (``MI_bits``,
``AG_matlab``, ``SF_vifb``, ``PSNR_255``, ``PSNR_tang``, ``SSIM_dr255``, ``SSIM_vifb_sum``,
``SSIM_uint8_avg``, ``SSIM_tm_avg``, ``VIF_tm_sum``, ``VIF_sewar_avg``); their definitions are the
ones of ``reference/fusion_metrics/fusion_metrics_shared.json`` (``conventions``).

Shapes: a fused image is H×W, 1×H×W (one image) or N×1×H×W (a batch); its sources are K×H×W,
K×1×H×W or a list of K images (one image) or N×K×1×H×W (a batch). Functions return a 0-d tensor
for one image and a tensor of shape (N,) for a batch. Everything is computed in float64.
Inputs must be float tensors; a maximum above 1.5 is refused as probable 0–255 data, and with
``quantize=True`` values slightly outside [0, 1] are clipped, as saving an 8-bit file would.

torchmetrics is used where it has the same definition and is not much slower: the ``SSIM_tm_avg``
variant, and ``VIF_tm_sum`` (its ``visual_information_fidelity``, the same definition as CDDFuse's
VIFp; ``VIF`` itself uses separable filtering, ~10× faster on a CPU, and equals it to 1e-12).
torchmetrics' ``mutual_info_score`` has the same definition as MI but scores one pair per call;
MI here is a batched joint histogram.

This module holds the implementations (fused N×H×W, sources N×K×H×W on 0–255 float64 → (N,)), the input
checks and conversions every entry point shares (:func:`_prepare`), and the registry of metric names
(:data:`DEFAULT_METRICS`, :data:`ALL_METRICS`, :func:`_compute_all`). The public functions are in
:mod:`metrics.functional.fusion`, the torchmetrics ``Metric`` classes in :mod:`metrics.fusion`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure as _tm_ssim
from torchmetrics.functional.image import visual_information_fidelity as _tm_vif

from imaging.filters import filter_valid, gaussian_1d

__all__ = [
    "ALL_METRICS",
    "DEFAULT_METRICS",
    "QABF_DA",
    "QABF_DG",
    "QABF_KA",
    "QABF_KG",
    "QABF_TA",
    "QABF_TG",
    "VIF_SIGMA_N_SQ",
]

#: Qabf constants (Xydeas & Petrović 2000, as in CDDFuse ``Qabf_getQabf``; L = 1).
QABF_TG, QABF_KG, QABF_DG = 0.9994, -15.0, 0.5
QABF_TA, QABF_KA, QABF_DA = 0.9879, -22.0, 0.8
#: VIFp constants (Sheikh & Bovik; CDDFuse ``compare_viff``).
VIF_SIGMA_N_SQ = 2.0
_VIF_MIN_SIZE = 41  # 4 scales of 'valid' filtering and 2× subsampling (torchmetrics' check)
_SSIM_WIN = 7  # scikit-image default window (uniform)
_SSIM_GAUSS_WIN = 11  # Wang et al. / VIFB Gaussian window, σ = 1.5


# --------------------------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------------------------
def _check_float(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"`{name}` must be a float tensor with values in [0, 1], got dtype {x.dtype}")
    if x.numel() and float(x.detach().amax()) > 1.5:
        raise ValueError(
            f"`{name}` has values up to {float(x.detach().amax()):.4g}; expected images in [0, 1] "
            "(divide 0-255 images by 255; the metrics scale to 0-255 inside)"
        )


def _to_255(x: Tensor, quantize: bool) -> Tensor:
    x = x.detach().to(torch.float64) * 255.0
    return torch.round(x.clamp(0.0, 255.0)) if quantize else x


def _fused_batch(fused: Tensor, name: str = "fused") -> tuple[Tensor, bool]:
    """H×W / 1×H×W → (1×H×W, False); N×1×H×W → (N×H×W, True)."""
    _check_float(fused, name)
    if fused.ndim == 2:
        return fused.unsqueeze(0), False
    if fused.ndim == 3 and fused.shape[0] == 1:
        return fused, False
    if fused.ndim == 4 and fused.shape[1] == 1:
        return fused[:, 0], True
    raise ValueError(
        f"`{name}` must be a grey image H×W or 1×H×W, or a batch N×1×H×W; got shape {tuple(fused.shape)}"
    )


def _sources_batch(sources: Tensor | Sequence[Tensor], batched: bool, n: int) -> Tensor:
    """Sources → N×K×H×W, following the layout of the fused image."""
    if isinstance(sources, (list, tuple)):
        if batched:
            raise ValueError("`sources` as a list is for one image; for a batch pass a tensor N×K×1×H×W")
        if not sources:
            raise ValueError("`sources` is empty; expected at least one source image")
        items = []
        for i, s in enumerate(sources):
            _check_float(s, f"sources[{i}]")
            if not (s.ndim == 2 or (s.ndim == 3 and s.shape[0] == 1)):
                raise ValueError(f"`sources[{i}]` must be a grey image H×W or 1×H×W; got shape {tuple(s.shape)}")
            items.append(s.reshape(s.shape[-2:]))
        shapes = {tuple(s.shape) for s in items}
        if len(shapes) != 1:
            raise ValueError(f"`sources` images differ in size: {sorted(shapes)}")
        return torch.stack(items).unsqueeze(0)
    _check_float(sources, "sources")
    if not batched:
        if sources.ndim == 3:
            return sources.unsqueeze(0)
        if sources.ndim == 4 and sources.shape[1] == 1:
            return sources[:, 0].unsqueeze(0)
        raise ValueError(
            "`sources` for one fused image must be K×H×W, K×1×H×W or a list of H×W images; "
            f"got shape {tuple(sources.shape)}"
        )
    if sources.ndim != 5 or sources.shape[2] != 1:
        raise ValueError(
            f"`sources` for a batch of fused images N×1×H×W must be N×K×1×H×W (grey); got shape {tuple(sources.shape)}"
        )
    if sources.shape[0] != n:
        raise ValueError(f"`sources` has {sources.shape[0]} images but `fused` has {n}; expected the same N")
    return sources[:, :, 0]


def _prepare(
    fused: Tensor, sources: Tensor | Sequence[Tensor], quantize: bool, min_size: int = 2
) -> tuple[Tensor, Tensor, bool]:
    """Validate and convert to 0–255 float64: fused N×H×W, sources N×K×H×W, and whether batched."""
    f, batched = _fused_batch(fused)
    s = _sources_batch(sources, batched, f.shape[0])
    if s.shape[-2:] != f.shape[-2:]:
        raise ValueError(
            f"`sources` are {tuple(s.shape[-2:])} (H×W) but `fused` is {tuple(f.shape[-2:])}; expected the same size"
        )
    _check_size(f, min_size)
    return _to_255(f, quantize), _to_255(s.to(f.device), quantize), batched


def _prepare_single(image: Tensor, quantize: bool, min_size: int = 2) -> tuple[Tensor, bool]:
    f, batched = _fused_batch(image, "image")
    _check_size(f, min_size)
    return _to_255(f, quantize), batched


def _check_size(f: Tensor, min_size: int) -> None:
    h, w = f.shape[-2:]
    if h < min_size or w < min_size:
        raise ValueError(f"images are {h}×{w}; this metric needs at least {min_size}×{min_size} pixels")


def _out(values: Tensor, batched: bool) -> Tensor:
    return values if batched else values[0]


def _levels(x: Tensor) -> Tensor:
    """Integer grey levels 0..255 (``np.uint8(np.round(x))`` for x in [0, 255])."""
    return torch.round(x).clamp(0, 255).to(torch.int64)


def _pearson(x: Tensor, y: Tensor) -> Tensor:
    """Pearson correlation over the last two dims (CDDFuse CC/SCD formula)."""
    xc = x - x.mean(dim=(-2, -1), keepdim=True)
    yc = y - y.mean(dim=(-2, -1), keepdim=True)
    return (xc * yc).sum(dim=(-2, -1)) / torch.sqrt((xc * xc).sum(dim=(-2, -1)) * (yc * yc).sum(dim=(-2, -1)))


# --------------------------------------------------------------------------------------------
# core implementations on 0–255 float64: fused N×H×W, sources N×K×H×W → (N,)
# --------------------------------------------------------------------------------------------
def _entropy(f: Tensor) -> Tensor:
    n = f.shape[0]
    idx = _levels(f).reshape(n, -1) + 256 * torch.arange(n, device=f.device)[:, None]
    p = torch.bincount(idx.flatten(), minlength=256 * n).reshape(n, 256).to(torch.float64)
    p = p / p.sum(dim=1, keepdim=True)
    return -(p * torch.log2(torch.where(p > 0, p, torch.ones_like(p)))).sum(dim=1)


def _sd(f: Tensor) -> Tensor:
    return f.flatten(1).std(dim=1, correction=0)


def _row_col_sq(f: Tensor) -> tuple[Tensor, Tensor]:
    rf = (f[..., :, 1:] - f[..., :, :-1]).square()
    cf = (f[..., 1:, :] - f[..., :-1, :]).square()
    return rf, cf


def _sf(f: Tensor) -> Tensor:
    rf, cf = _row_col_sq(f)
    return torch.sqrt(rf.mean(dim=(-2, -1)) + cf.mean(dim=(-2, -1)))


def _sf_vifb(f: Tensor) -> Tensor:
    rf, cf = _row_col_sq(f)
    mn = f.shape[-2] * f.shape[-1]
    return torch.sqrt(rf.sum(dim=(-2, -1)) / mn + cf.sum(dim=(-2, -1)) / mn)


def _gradient_magnitude(f: Tensor) -> Tensor:
    """sqrt((G_x² + G_y²)/2) with ``np.gradient`` differences (central inside, one-sided at borders)."""
    gx = torch.cat(
        [f[..., :, 1:2] - f[..., :, :1], (f[..., :, 2:] - f[..., :, :-2]) / 2, f[..., :, -1:] - f[..., :, -2:-1]], -1
    )
    gy = torch.cat(
        [f[..., 1:2, :] - f[..., :1, :], (f[..., 2:, :] - f[..., :-2, :]) / 2, f[..., -1:, :] - f[..., -2:-1, :]], -2
    )
    return torch.sqrt((gx * gx + gy * gy) / 2)


def _ag(f: Tensor) -> Tensor:
    return _gradient_magnitude(f).mean(dim=(-2, -1))


def _ag_matlab(f: Tensor) -> Tensor:
    h, w = f.shape[-2:]
    return _gradient_magnitude(f).sum(dim=(-2, -1)) / ((h - 1) * (w - 1))


def _mi(f: Tensor, s: Tensor) -> Tensor:
    n, k = s.shape[:2]
    lf = _levels(f).reshape(n, 1, -1)
    ls = _levels(s).reshape(n, k, -1)
    pair = torch.arange(n * k, device=f.device).reshape(n, k, 1)
    idx = (pair * 256 + ls) * 256 + lf
    joint = torch.bincount(idx.flatten(), minlength=n * k * 65536).reshape(n, k, 256, 256).to(torch.float64)
    joint = joint / joint.sum(dim=(-2, -1), keepdim=True)
    ps = joint.sum(dim=-1, keepdim=True)
    pf = joint.sum(dim=-2, keepdim=True)
    nz = joint > 0
    safe = torch.where(nz, joint, torch.ones_like(joint))
    terms = torch.where(nz, joint * (torch.log(safe) - torch.log(ps * pf + ~nz)), torch.zeros_like(joint))
    return terms.sum(dim=(-2, -1)).sum(dim=1)


def _mi_bits(f: Tensor, s: Tensor) -> Tensor:
    return _mi(f, s) / math.log(2.0)


def _mse(f: Tensor, s: Tensor) -> Tensor:
    return (s - f.unsqueeze(1)).square().mean(dim=(-2, -1)).mean(dim=1)


def _psnr(f: Tensor, s: Tensor) -> Tensor:
    peak = f.flatten(1).amax(dim=1)
    return 10 * torch.log10(peak * peak / _mse(f, s))


def _psnr_255(f: Tensor, s: Tensor) -> Tensor:
    return 10 * torch.log10(255.0**2 / _mse(f, s))


def _psnr_tang(f: Tensor, s: Tensor) -> Tensor:
    return _psnr_255(f, s) + 20 * math.log10(255.0)


def _cc(f: Tensor, s: Tensor) -> Tensor:
    return _pearson(s, f.unsqueeze(1)).mean(dim=1)


def _scd(f: Tensor, s: Tensor) -> Tensor:
    if s.shape[1] != 2:
        raise ValueError(f"SCD is defined for two sources; got K = {s.shape[1]}")
    a, b = s[:, 0], s[:, 1]
    return _pearson(a, f - b) + _pearson(b, f - a)


def _pairs(f: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
    """Fused repeated over the sources: both (N·K)×1×H×W."""
    n, k, h, w = s.shape
    return f.unsqueeze(1).expand(n, k, h, w).reshape(n * k, 1, h, w), s.reshape(n * k, 1, h, w)


def _vif_pairs(f: Tensor, s: Tensor) -> Tensor:
    """VIFp(source, fused) per pair, N×K, as CDDFuse ``compare_viff`` (NaN → 1).

    Same definition as torchmetrics ``visual_information_fidelity`` (see ``VIF_tm_sum``), but with
    separable filtering: torchmetrics' full 2-D float64 ``conv2d`` is ~10× slower on a CPU.
    """
    _check_size(f, _VIF_MIN_SIZE)
    dist, ref = _pairs(f, s)
    b = ref.shape[0]
    eps = 1e-10
    num = torch.zeros(b, dtype=ref.dtype, device=ref.device)
    den = torch.zeros_like(num)
    for scale in range(1, 5):  # 4 scales (a loop over scales, not pixels)
        n = 2 ** (5 - scale) + 1
        g = gaussian_1d(n, n / 5.0, ref.dtype, ref.device)
        if scale > 1:
            both = filter_valid(torch.cat([ref, dist]), g)[..., ::2, ::2]
            ref, dist = both[:b], both[b:]
        stats = filter_valid(torch.cat([ref, dist, ref * ref, dist * dist, ref * dist]), g)
        mu1, mu2, e11, e22, e12 = stats.split(b)
        s1 = (e11 - mu1 * mu1).clamp_min(0)
        s2 = (e22 - mu2 * mu2).clamp_min(0)
        s12 = e12 - mu1 * mu2
        gain = s12 / (s1 + eps)
        sv = s2 - gain * s12
        flat_ref = s1 < eps
        gain = torch.where(flat_ref, 0.0, gain)
        sv = torch.where(flat_ref, s2, sv)
        s1 = torch.where(flat_ref, 0.0, s1)
        flat_dist = s2 < eps
        gain = torch.where(flat_dist, 0.0, gain)
        sv = torch.where(flat_dist, 0.0, sv)
        neg = gain < 0
        sv = torch.where(neg, s2, sv)
        gain = torch.where(neg, 0.0, gain)
        sv = torch.where(sv <= eps, eps, sv)
        num += torch.log10(1 + gain * gain * s1 / (sv + VIF_SIGMA_N_SQ)).sum(dim=(1, 2, 3))
        den += torch.log10(1 + s1 / VIF_SIGMA_N_SQ).sum(dim=(1, 2, 3))
    v = (num / den).reshape(s.shape[:2])
    return torch.where(torch.isnan(v), torch.ones_like(v), v)


def _vif_tm(f: Tensor, s: Tensor) -> Tensor:
    """Σ_k torchmetrics ``visual_information_fidelity(F, S_k)`` (σ_n² = 2), NaN → 1."""
    _check_size(f, _VIF_MIN_SIZE)
    ff, ss = _pairs(f, s)
    v = _tm_vif(ff, ss, sigma_n_sq=VIF_SIGMA_N_SQ, reduction="none").reshape(s.shape[:2])
    return torch.where(torch.isnan(v), torch.ones_like(v), v).sum(dim=1)


def _vif(f: Tensor, s: Tensor) -> Tensor:
    return _vif_pairs(f, s).sum(dim=1)


def _vif_avg(f: Tensor, s: Tensor) -> Tensor:
    return _vif_pairs(f, s).mean(dim=1)


def _ssim_uniform(f: Tensor, s: Tensor, data_range: float) -> Tensor:
    """scikit-image ``structural_similarity`` defaults per pair, N×K."""
    _check_size(f, _SSIM_WIN)
    x, y = _pairs(f, s)
    win = _SSIM_WIN
    cov_norm = win * win / (win * win - 1.0)  # sample covariance

    box = torch.full((win,), 1.0 / win, dtype=x.dtype, device=x.device)

    def filt(t: Tensor) -> Tensor:  # 'valid' = skimage's reflect-filtered map with the border cropped
        return filter_valid(t, box)

    ux, uy = filt(x), filt(y)
    vx = cov_norm * (filt(x * x) - ux * ux)
    vy = cov_norm * (filt(y * y) - uy * uy)
    vxy = cov_norm * (filt(x * y) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    smap = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return smap.mean(dim=(-3, -2, -1)).reshape(s.shape[:2])


def _ssim_gauss_valid(f: Tensor, s: Tensor) -> Tensor:
    """Wang et al. / VIFB ``metricsSsim``: Gaussian 11×11 σ 1.5, 'valid', L = 255, per pair N×K."""
    _check_size(f, _SSIM_GAUSS_WIN)
    x, y = _pairs(f, s)
    g = gaussian_1d(_SSIM_GAUSS_WIN, 1.5, x.dtype, x.device)

    def filt(t: Tensor) -> Tensor:
        return filter_valid(t, g)

    ux, uy = filt(x), filt(y)
    vx, vy, vxy = filt(x * x) - ux * ux, filt(y * y) - uy * uy, filt(x * y) - ux * uy
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    smap = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return smap.mean(dim=(-3, -2, -1)).reshape(s.shape[:2])


def _ssim_tm(f: Tensor, s: Tensor) -> Tensor:
    """torchmetrics SSIM (Gaussian 11, σ 1.5, reflect padding), data_range 255, per pair N×K."""
    _check_size(f, _SSIM_GAUSS_WIN)
    x, y = _pairs(f, s)
    return _tm_ssim(x, y, data_range=255.0, reduction="none").reshape(s.shape[:2])


def _sobel(x: Tensor) -> tuple[Tensor, Tensor]:
    """Gradient magnitude and angle (CDDFuse ``Qabf_getArray``), x: B×H×W.

    ``convolve2d(x, h, 'same')`` with zero padding, h3 = [[−1,0,1],[−2,0,2],[−1,0,1]] (x) and
    h1 = [[1,2,1],[0,0,0],[−1,−2,−1]] (y); both are separable, so they are written as shifted
    differences and [1, 2, 1] smoothing of the zero-padded image (exact on integer images).
    """
    p = F.pad(x, (1, 1, 1, 1))
    h, w = x.shape[-2:]
    # convolution flips the kernel: sx[i, j] = Σ_r (1,2,1)_r (p[i+r, j] − p[i+r, j+2])
    dx = p[..., :, :w] - p[..., :, 2:]
    sx = dx[..., :h, :] + 2 * dx[..., 1 : h + 1, :] + dx[..., 2:, :]
    dy = p[..., 2:, :] - p[..., :h, :]
    sy = dy[..., :, :w] + 2 * dy[..., :, 1 : w + 1] + dy[..., :, 2:]
    mag = torch.sqrt(sx * sx + sy * sy)
    zero = sx == 0
    angle = torch.where(zero, torch.full_like(sx, math.pi / 2), torch.atan(sy / torch.where(zero, 1.0, sx)))
    return mag, angle


def _qabf(f: Tensor, s: Tensor) -> Tensor:
    n, k, h, w = s.shape
    gf, af = _sobel(f)
    gs, as_ = _sobel(s.reshape(n * k, h, w))
    gs, as_ = gs.reshape(n, k, h, w), as_.reshape(n, k, h, w)
    gf, af = gf.unsqueeze(1), af.unsqueeze(1)
    one = torch.ones_like(gs)
    ratio = torch.where(
        gs > gf,
        gf / torch.where(gs > gf, gs, one),
        torch.where(gs == gf, gf.expand_as(gs), gs / torch.where(gs < gf, gf.expand_as(gs), one)),
    )
    a = 1 - (as_ - af).abs() / (math.pi / 2)
    qg = QABF_TG / (1 + torch.exp(QABF_KG * (ratio - QABF_DG)))
    qa = QABF_TA / (1 + torch.exp(QABF_KA * (a - QABF_DA)))
    return (qg * qa * gs).sum(dim=(1, 2, 3)) / gs.sum(dim=(1, 2, 3))


# name → (implementation, needs sources). Implementations take 0–255 float64 tensors.
_PAIR_METRICS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "MI": _mi,
    "SCD": _scd,
    "VIF": _vif,
    "Qabf": _qabf,
    "SSIM": lambda f, s: _ssim_uniform(f, s, 2.0).sum(dim=1),
    "CC": _cc,
    "MSE": _mse,
    "PSNR": _psnr,
    "MI_bits": _mi_bits,
    "PSNR_255": _psnr_255,
    "PSNR_tang": _psnr_tang,
    "SSIM_dr255": lambda f, s: _ssim_uniform(f, s, 255.0).sum(dim=1),
    "SSIM_uint8_avg": lambda f, s: _ssim_uniform(torch.round(f), torch.round(s), 255.0).mean(dim=1),
    "SSIM_tm_avg": lambda f, s: _ssim_tm(f, s).mean(dim=1),
    "SSIM_vifb_sum": lambda f, s: _ssim_gauss_valid(f, s).sum(dim=1),
    "VIF_tm_sum": _vif_tm,
    "VIF_sewar_avg": _vif_avg,
}
_SINGLE_METRICS: dict[str, Callable[[Tensor], Tensor]] = {
    "EN": _entropy,
    "SD": _sd,
    "SF": _sf,
    "AG": _ag,
    "AG_matlab": _ag_matlab,
    "SF_vifb": _sf_vifb,
}
#: The metrics of the CDDFuse evaluator, in its print order (plus CC, PSNR); ``SSIM`` = skimage, range 2, summed.
DEFAULT_METRICS: tuple[str, ...] = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "CC", "PSNR")
#: Every available name: the defaults, MSE and the literature variants (keys of the shared reference JSON).
ALL_METRICS: tuple[str, ...] = DEFAULT_METRICS + tuple(
    m for m in (*_SINGLE_METRICS, *_PAIR_METRICS) if m not in DEFAULT_METRICS
)


def _check_names(metrics: Sequence[str]) -> tuple[str, ...]:
    if isinstance(metrics, str):
        metrics = (metrics,)
    names = tuple(metrics)
    if not names:
        raise ValueError(f"`metrics` is empty; expected names from {ALL_METRICS}")
    unknown = [m for m in names if m not in _SINGLE_METRICS and m not in _PAIR_METRICS]
    if unknown:
        raise ValueError(f"`metrics` has unknown names {unknown}; expected names from {ALL_METRICS}")
    if len(set(names)) != len(names):
        raise ValueError(f"`metrics` has duplicate names: {names}")
    return names


def _compute_all(f: Tensor, s: Tensor, names: Sequence[str]) -> Tensor:
    """(N, M) table of per-image values, columns in the order of ``names``."""
    cols = [_SINGLE_METRICS[m](f) if m in _SINGLE_METRICS else _PAIR_METRICS[m](f, s) for m in names]
    return torch.stack(cols, dim=1)
