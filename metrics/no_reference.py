"""No-reference image quality for unpaired real photos: NIQE, LOE, mean brightness, colour cast.

Each metric is a functional (``B×3×H×W`` RGB tensor in [0, 1] → ``Tensor[B]``, float64) and a
:class:`~metrics.full_reference.PerImageMean` subclass (per-image scores averaged over images, DDP-safe,
:attr:`last_scores` after each ``update``).

* :func:`niqe` / :class:`NIQE` — BasicSR 1.4.2 ``calculate_niqe(img, crop_border=0, input_order='HWC',
  convert_to='y')``, reproduced step by step (vectorised over blocks). Lower is better.
* :func:`loe` / :class:`LOE` — lightness order error of Wang et al. (NPE, TIP 2013), the authors' MATLAB
  code. Lower is better.
* :func:`mean_brightness` / :class:`MeanBrightness` — mean RGB value.
* :func:`colour_cast` / :class:`ColourCast` — CIELab "equivalent circle" cast factor K = D/M. Lower is
  more neutral.

NIQE and its helpers are in :mod:`metrics.niqe` (re-exported here: :func:`niqe`, :class:`NIQE`,
:func:`niqe_params`, :data:`NIQE_PARAMS_PATH`, :data:`NIQE_PARAMS_SHA256`, :data:`NIQE_BLOCK`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.color import rgb_to_lab
from torch import Tensor

from metrics.full_reference import PerImageMean
from metrics.niqe import NIQE, NIQE_BLOCK, NIQE_PARAMS_PATH, NIQE_PARAMS_SHA256, _check_rgb, niqe, niqe_params

__all__ = [
    "LOE",
    "NIQE",
    "NIQE_BLOCK",
    "NIQE_PARAMS_PATH",
    "NIQE_PARAMS_SHA256",
    "ColourCast",
    "MeanBrightness",
    "colour_cast",
    "loe",
    "mean_brightness",
    "niqe",
    "niqe_params",
]

# Wang et al.'s LOE constants (``win=7`` → 15×15 local max; ``blkwin=50`` samples on the short side)
LOE_WINDOW = 7
LOE_SAMPLES = 50
_PAIR_CHUNK = 1 << 24  # booleans per chunk of LOE's pairwise comparison


# ----------------------------------------------------------------------------------------------- LOE


def _lightness(x: Tensor) -> Tensor:
    """B×3×H×W in [0, 1] → B×H×W float64: ``round(max(R, G, B))`` on 0–255, MATLAB rounding (half up)."""
    return torch.floor(x.detach().double().amax(1) * 255 + 0.5)


def _local_max(lightness: Tensor, win: int) -> Tensor:
    """Wang's ``getlocalmax``: max over the (2·win+1)² window, borders mirrored without repeating the edge
    (``getextpic``; = ``F.pad(mode='reflect')``)."""
    padded = F.pad(lightness[:, None], (win, win, win, win), mode="reflect")
    return F.max_pool2d(padded, 2 * win + 1, stride=1)[:, 0]


def _order_disagreements(a: Tensor, b: Tensor) -> Tensor:
    """B×N, B×N → B×N counts RD_i = #{k : (a_k ≥ a_i) ≠ (b_k ≥ b_i)} by broadcasting, in row chunks."""
    n = a.shape[1]
    chunk = max(1, _PAIR_CHUNK // max(1, a.shape[0] * n))
    parts = []
    for s in range(0, n, chunk):
        fa = a[:, None, :] >= a[:, s : s + chunk, None]
        fb = b[:, None, :] >= b[:, s : s + chunk, None]
        parts.append((fa != fb).sum(2))
    return torch.cat(parts, 1)


@torch.no_grad()
def loe(enhanced: Tensor, original: Tensor) -> Tensor:
    """Lightness order error (LOE) of each enhanced image against its original.

    Definition: Wang, Zheng, Hu & Li, "Naturalness Preserved Enhancement Algorithm for Non-Uniform
    Illumination Images", IEEE TIP 22(9), 2013, Eq. 13; **this is the version of the authors' MATLAB
    code** (NPE project page, shuhangwang.wordpress.com), as redistributed in repository
    ``csjunxu/STAR-TIP2020``, file ``metrics/LOE.m`` (``value = LOE(epic, ipic)``), reproduced exactly:

    1. lightness L = round(max(R, G, B)) on 0–255 (both images);
    2. local maximum over a 15×15 window (``win = 7``), mirrored borders (``getlocalmax``/``getextpic``);
    3. subsampling: ``step = floor(min(H, W)/50)``, samples at 1-based (i·step, j·step),
       i ≤ floor(H/step), j ≤ floor(W/step) (≈ 50 samples on the short side);
    4. RD(x) = Σ_y [L(y) ≥ L(x)] XOR [L_e(y) ≥ L_e(x)] over all samples y (``flag1 = ipic_ds >=
       ipic_ds(i,j)``, ``flag2`` likewise, ``sum(flag1 ~= flag2)``); LOE = mean_x RD(x). (The paper's
       Eq. 13 writes U(L(x), L(y)); with ties the per-x counts differ but their mean is the same.)

    The other version in circulation (StackOverflow question 37596001; e.g. repository
    ``abhishekgupta3/A-single-backlit-image-enhancement-method-for-improvement-of-visibility-of-dark-part``
    file ``loe.m``) skips step 2 and resizes L with bicubic ``imresize`` to 50 px on the short side
    instead of subsampling; its numbers differ. Not implemented here.

    Args:
        enhanced: B×3×H×W RGB in [0, 1].
        original: B×3×H×W RGB in [0, 1], same shape (the low-light input).

    Returns:
        Tensor[B], float64: mean number of order flips per sample point, in [0, N] with N the number of
        samples (≈ 50·50·aspect; 66·50 = 3300 for 1200×900). It is a count, not on the 0–255 scale:
        lightness enters only through its order, after rounding to integer 0–255 levels. 0 when the
        enhancement maps the original's lightness levels through a strictly increasing function (e.g. a
        strictly increasing per-channel look-up table on 8-bit data: it commutes with the max over
        channels and the local max); a continuous increasing tone curve can still score > 0 because
        rounding to 0–255 splits or merges ties. Symmetric in its two arguments. Lower is better.

    Raises:
        ValueError: wrong shapes, or min(H, W) < 50 (no subsampling step).

    Example:
        >>> x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        >>> loe(x, x), bool(loe(1 - x, x) > 0)  # inverting the image flips the lightness order
        (tensor([0.], dtype=torch.float64), True)
    """
    _check_rgb(enhanced, "loe(enhanced)")
    _check_rgb(original, "loe(original)")
    if enhanced.shape != original.shape:
        raise ValueError(f"loe: shapes differ: enhanced {tuple(enhanced.shape)}, original {tuple(original.shape)}")
    h, w = enhanced.shape[-2:]
    if min(h, w) < LOE_SAMPLES:
        raise ValueError(f"loe: image of {h}×{w} pixels; LOE needs min(H, W) ≥ {LOE_SAMPLES}")
    step = min(h, w) // LOE_SAMPLES
    bh, bw = h // step, w // step

    def samples(x: Tensor) -> Tensor:
        local = _local_max(_lightness(x), LOE_WINDOW)
        return local[:, step - 1 : bh * step : step, step - 1 : bw * step : step].reshape(x.shape[0], -1)

    return _order_disagreements(samples(original), samples(enhanced)).double().mean(1)


# ----------------------------------------------------------------------------- brightness and colour


def mean_brightness(x: Tensor) -> Tensor:
    """Mean brightness of each image: the mean of all R, G, B values (= the mean over pixels of the
    intensity (R+G+B)/3, the quantity Zero-DCE's exposure-control loss drives towards E = 0.6).

    Args:
        x: B×3×H×W RGB in [0, 1] (not gamma-decoded; no luma weighting).

    Returns:
        Tensor[B], float64, in [0, 1].

    Example:
        >>> mean_brightness(torch.stack([torch.zeros(3, 2, 2), torch.ones(3, 2, 2)]))
        tensor([0., 1.], dtype=torch.float64)
    """
    _check_rgb(x, "mean_brightness")
    return x.detach().double().mean((1, 2, 3))


def colour_cast(x: Tensor, eps: float = 1e-6) -> Tensor:
    """Colour-cast factor K = D/M of each image ("equivalent circle" in the CIELab a*b* plane).

    D = √(μ_a² + μ_b²) (distance of the mean chromaticity from neutral), M = √(m_a² + m_b²) with
    m_a = mean|a* − μ_a|, m_b = mean|b* − μ_b| (radius of the chromaticity spread); a*, b* of CIELab
    (sRGB, D65, 2°; :func:`kornia.color.rgb_to_lab`, in float64). Formula as implemented in repository
    ``hwp9527/color_cast``, file ``color_cast.py`` (``get_color_cast_factor``), which uses OpenCV's 8-bit
    Lab (a*, b* offset by 128 and rounded); here a*, b* are unrounded floats.

    Args:
        x: B×3×H×W RGB in [0, 1].
        eps: floor for M (a uniform image has M = 0).

    Returns:
        Tensor[B], float64, ≥ 0: large K = mean chromaticity far from neutral relative to the image's own
        chromatic spread (a cast). Lower is more neutral. Scale-free (a*, b* units cancel). On the 17
        shared low-light test photos K ranges 0.2–1.7 (M from 0.4 to 17 a*b* units). For (nearly)
        achromatic images D and M are both ≈ 0 (kornia's sRGB→Lab gives |a*|, |b*| < 0.005 for greys)
        and K is ill-conditioned; read it together with M there.

    Example:
        >>> x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> red = x * torch.tensor([1.0, 0.3, 0.3]).view(1, 3, 1, 1)  # a red cast
        >>> bool((colour_cast(red) > colour_cast(x)).all())
        True
    """
    _check_rgb(x, "colour_cast")
    lab = rgb_to_lab(x.detach().double().clamp(0, 1))
    ab = lab[:, 1:].flatten(2)
    mu = ab.mean(2)
    spread = (ab - mu[..., None]).abs().mean(2)
    return mu.norm(dim=1) / spread.norm(dim=1).clamp_min(eps)


# ------------------------------------------------------------------------------------------- Metrics


class LOE(PerImageMean):
    """Per-image lightness order error (:func:`loe`, Wang et al.'s code), averaged over images. Lower is better.

    Example:
        >>> m = LOE()
        >>> x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        >>> m.update(x, x)
        >>> m.compute()
        tensor(0.)
    """

    higher_is_better = False

    def __init__(self, **kwargs) -> None:
        super().__init__(loe, **kwargs)

    def update(self, preds: Tensor, original: Tensor) -> None:  # type: ignore[override]
        """``preds``: enhanced B×3×H×W in [0, 1]; ``original``: the inputs, same shape."""
        super().update(preds, original)


class MeanBrightness(PerImageMean):
    """Per-image mean RGB value (:func:`mean_brightness`), averaged over images.

    Example:
        >>> m = MeanBrightness()
        >>> m.update(torch.full((2, 3, 4, 4), 0.25))
        >>> m.last_scores, m.compute()
        (tensor([0.2500, 0.2500], dtype=torch.float64), tensor(0.2500))
    """

    higher_is_better = None

    def __init__(self, **kwargs) -> None:
        super().__init__(mean_brightness, **kwargs)

    def update(self, preds: Tensor) -> None:  # type: ignore[override]
        """``preds``: B×3×H×W RGB in [0, 1] (clamped)."""
        super().update(preds)


class ColourCast(PerImageMean):
    """Per-image CIELab colour-cast factor K (:func:`colour_cast`), averaged over images. Lower is better.

    Example:
        >>> m = ColourCast()
        >>> m.update(torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
        >>> m.last_scores.shape, bool(m.compute() >= 0)
        (torch.Size([2]), True)
    """

    higher_is_better = False

    def __init__(self, **kwargs) -> None:
        super().__init__(colour_cast, **kwargs)

    def update(self, preds: Tensor) -> None:  # type: ignore[override]
        """``preds``: B×3×H×W RGB in [0, 1] (clamped)."""
        super().update(preds)
