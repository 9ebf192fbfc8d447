"""MEF-SSIM (Ma, Zeng & Wang, TIP 2015): quality of a multi-exposure fused image, as functions.

One implementation serves the metric (:class:`metrics.mef_ssim.MEFSSIM`) and DeepFuse's training loss
(:class:`losses.mef_ssim.MEFSSIMLoss`, which derives from these functions, as kornia's losses derive from its
metrics). It reproduces Kede Ma's reference MATLAB ``mef_ssim.m`` / ``mef_ms_ssim.m``
(copies in repo xingchenzhang/MEFB ``metrics/``) in value, vectorised over patches and exposures.

Reference definition (grey stack x_1..x_K and fused y on the 0–255 scale; every *valid* 11×11
window, N = 121 pixels, map (H − 10)×(W − 10)):

1. box window: μ_k = mean, c_k = sqrt(max(N·σ_k², 0)) + 0.001 (σ_k² = E[x_k²] − μ_k²); ĉ = max_k c_k.
2. R = (‖Σ_k (x_k − μ_k)‖ + ε) / (Σ_k ‖x_k − μ_k‖ + ε); R > 1 → 1 − ε; p = min(tan(πR/2), 10).
3. w_k = (c_k / 11)^p + ε, normalised over k; s̄ = Σ_k w_k (x_k − μ_k) / c_k;
   x̂ = ĉ·s̄/‖s̄‖ where ‖s̄‖ > 0 (else x̂ = s̄ = 0). No luminance term.
4. Gaussian window (11×11, σ = 1.5, ``fspecial``): q = (2σ_x̂y + C) / (σ_x̂² + σ_y² + C),
   C = (0.03·255)² = 58.5225; Q = mean of the q map. ε = MATLAB ``eps`` = 2.22e-16.

Multi-scale (``mef_ms_ssim.m``): 3 levels, β = [0.0448, 0.2856, 0.3001]/sum, oQ = Π_l Q_l^β_l; between
levels a 2×2 mean (``imfilter(·, ones(2)/4, 'symmetric', 'same')``: the window covers the pixel, its
right and lower neighbours; the last row/column is repeated for odd sizes) then every second pixel,
i.e. ``avg_pool2d(2)`` after replicate-padding one row/column at the bottom/right of odd sizes.
The reference returns −Inf when min(H, W)/4 < 11; here that raises ``ValueError``.

How it is vectorised (our derivation, equal in exact arithmetic): x̂ inside a window is the linear
combination Σ_k a_k (x_k − μ_k) with a_k = ĉ·b_k/‖s̄‖, b_k = w_k/c_k, so every quantity above is a
quadratic form in the local covariance matrices of the exposures (and of y):

* box covariances Σᴮ_kl = B(x_k x_l) − B(x_k)B(x_l): c_k, ‖Σ_k(x_k − μ_k)‖² = N·1ᵀΣᴮ1, ‖s̄‖² = N·bᵀΣᴮb;
* Gaussian covariances Σᴳ: σ_x̂² = ĉ²·bᵀΣᴳb/‖s̄‖², σ_x̂y = ĉ·Σ_k b_k Σᴳ_ky/‖s̄‖, σ_y² = Σᴳ_yy,

with B, G the 'valid' box and Gaussian filters (separable: one depthwise ``conv2d`` per pass over all maps; shifted
multiply-adds for float64 on the CPU, where convolution is slow). Cost O(K²·H·W), no unfold.

Numerics. Everything runs in float32 (float64 if an input is float64) with autocast disabled.
Images are shifted by their (detached) global means first, which leaves every covariance unchanged
but shrinks the cancellation in E[x²] − μ². A flat exposure patch (σ² = 0) is where the reference
divides (x − μ)/c with c = 0.001: its contribution is exactly 0 there, but the moment form would
amplify rounding noise by 1/c². So a box variance below ``64·eps(dtype)·E[x'²]`` (x' = shifted
image) is treated as exactly 0 and that exposure's covariances in the window are zeroed; in float64
this only ever affects genuinely flat windows (the reference's own value there is rounding noise:
MATLAB's ``filter2`` variance has the same cancellation), in float32 windows with σ ≲ 0.35 grey
levels. Square roots are guarded (value 0 and gradient 0 at 0), ‖s̄‖ = 0 gives σ_x̂ = σ_x̂y = 0 as in
the reference, and p is computed as tan(π/2·min(R, R₁₀)) with tan(π/2·R₁₀) = 10, which equals the
reference's capped value without evaluating tan near π/2. Gradients are finite everywhere.

Checked against the reference values in ``shared/data/reference/mef_ssim`` (Octave running the
original ``.m``) and a per-patch NumPy transcription of ``mef_ssim.m`` (``tests/mef_ssim_naive.py``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from imaging.filters import filter_valid, gaussian_1d
from imaging.precision import autocast_off

__all__ = [
    "MEF_SSIM_C",
    "MS_WEIGHTS",
    "mef_ssim",
    "mef_ssim_per_scale",
]

#: Window side of ``mef_ssim.m`` (``fspecial('gaussian', 11, 1.5)`` and the 11×11 box window).
WINDOW_SIZE: int = 11
#: Gaussian σ of the SSIM window.
GAUSSIAN_SIGMA: float = 1.5
#: C = (K·L)² with K = 0.03, L = 255 (``mef_ssim.m`` default).
MEF_SSIM_C: float = (0.03 * 255.0) ** 2
#: Constant added to the signal strength c_k (``mef_ssim.m``: "avoid instability").
CONTRAST_EPS: float = 0.001
#: Cap on the exponent p (``mef_ssim.m``: "large number such as 10 is equivalent to taking maximum").
P_CAP: float = 10.0
#: MATLAB ``eps`` (double precision), used by the reference whatever the working precision.
MATLAB_EPS: float = 2.220446049250313e-16
#: Scale weights of ``mef_ms_ssim.m``: [0.0448, 0.2856, 0.3001] / sum.
MS_WEIGHTS: tuple[float, ...] = tuple(w / (0.0448 + 0.2856 + 0.3001) for w in (0.0448, 0.2856, 0.3001))
#: R above which tan(πR/2) ≥ 10, so p is capped.
_R_CAP: float = 2.0 / math.pi * math.atan(P_CAP)
#: Box variances below this many ``eps(dtype)`` of E[x'²] are rounding noise, treated as 0.
_FLAT_TOL_EPS: float = 64.0


# --------------------------------------------------------------------------------------------
# helpers


def _safe_sqrt(x: Tensor) -> Tensor:
    """sqrt(max(x, 0)) whose gradient is 0 (not inf/NaN) where x ≤ 0."""
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, 1.0).sqrt(), 0.0)


def _downsample(x: Tensor) -> Tensor:
    """``imfilter(x, ones(2)/4, 'symmetric', 'same')`` then ``(1:2:end, 1:2:end)``, N×M×H×W."""
    pad_h, pad_w = x.shape[-2] % 2, x.shape[-1] % 2
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return F.avg_pool2d(x, kernel_size=2, stride=2)


def _check_inputs(fused: Tensor, sources: Tensor, levels: int) -> None:
    if not isinstance(fused, Tensor):
        raise TypeError(f"fused: expected a torch.Tensor N×1×H×W, got {type(fused).__name__}")
    if not isinstance(sources, Tensor):
        raise TypeError(f"sources: expected a torch.Tensor N×K×1×H×W, got {type(sources).__name__}")
    if not fused.is_floating_point() or not sources.is_floating_point():
        raise TypeError(f"fused, sources: expected floating-point tensors, got {fused.dtype} and {sources.dtype}")
    if fused.ndim != 4 or fused.shape[1] != 1:
        raise ValueError(
            f"fused: expected a grey batch N×1×H×W (convert to grey / Y first), got shape {tuple(fused.shape)}"
        )
    if sources.ndim != 5 or sources.shape[2] != 1:
        raise ValueError(
            f"sources: expected grey exposure stacks N×K×1×H×W (convert to grey / Y first), "
            f"got shape {tuple(sources.shape)}"
        )
    if sources.shape[1] < 2:
        raise ValueError(f"sources: expected K ≥ 2 exposures (dim 1), got K = {sources.shape[1]}")
    if sources.shape[0] != fused.shape[0]:
        raise ValueError(
            f"sources: batch size {sources.shape[0]} does not match fused batch size {fused.shape[0]}"
        )
    if sources.shape[-2:] != fused.shape[-2:]:
        raise ValueError(
            f"sources: spatial size {tuple(sources.shape[-2:])} does not match fused {tuple(fused.shape[-2:])}"
        )
    min_side = WINDOW_SIZE * 2 ** (levels - 1)  # mef_ms_ssim.m: min(H, W) / 2^(levels-1) ≥ 11
    if min(fused.shape[-2:]) < min_side:
        raise ValueError(
            f"fused: MEF-SSIM needs H and W ≥ {min_side} (11×11 windows"
            + (f", {levels} scales with 2× downsampling" if levels > 1 else "")
            + f"), got {tuple(fused.shape[-2:])}"
        )


# --------------------------------------------------------------------------------------------
# core


def _mef_ssim_single_scale(x: Tensor, y: Tensor) -> Tensor:
    """Q of ``mef_ssim.m`` for stacks x (N×K×H×W) and fused y (N×1×H×W), 0–255 scale → Tensor[N]."""
    k = x.shape[1]
    dtype, device = x.dtype, x.device
    npix = float(WINDOW_SIZE * WINDOW_SIZE)

    # covariances are shift-invariant: centre each image on its global mean (less cancellation)
    x = x - x.mean(dim=(-2, -1), keepdim=True).detach()
    y = y - y.mean(dim=(-2, -1), keepdim=True).detach()

    iu, ju = torch.triu_indices(k, k, device=device)  # the K(K+1)/2 pairs k ≤ l, row by row
    n_pairs = iu.numel()
    # pair (a, a) sits at a·K − a(a−1)/2 in that order (host arithmetic: nonzero() would sync the device)
    diag = torch.tensor([a * k - a * (a - 1) // 2 for a in range(k)], device=device)
    # a quadratic form vᵀΣv over the symmetric K×K matrix = Σ_pairs mult·v_k·v_l·Σ_kl
    mult = torch.where(iu == ju, 1.0, 2.0).to(dtype).view(1, n_pairs, 1, 1)

    prods = x[:, iu] * x[:, ju]  # N×P×H×W
    box = torch.full((WINDOW_SIZE,), 1.0 / WINDOW_SIZE, dtype=dtype, device=device)
    gauss = gaussian_1d(WINDOW_SIZE, GAUSSIAN_SIGMA, dtype, device)

    b_stats = filter_valid(torch.cat([x, prods], 1), box)
    g_stats = filter_valid(torch.cat([x, prods, x * y, y, y * y], 1), gauss)

    mu_b, e_b = b_stats[:, :k], b_stats[:, k:]
    cov_b = e_b - mu_b[:, iu] * mu_b[:, ju]  # N×P×h×w
    mu_g, e_g = g_stats[:, :k], g_stats[:, k : k + n_pairs]
    e_gxy, mu_gy, e_gyy = g_stats[:, k + n_pairs : 2 * k + n_pairs], g_stats[:, -2:-1], g_stats[:, -1]
    cov_g = e_g - mu_g[:, iu] * mu_g[:, ju]
    cov_gxy = e_gxy - mu_g * mu_gy  # N×K×h×w
    var_gy = (e_gyy - mu_gy.squeeze(1).square()).clamp_min(0.0)  # N×h×w

    # flat exposure windows: variance within rounding noise of E[x'^2] -> exactly 0
    live = cov_b[:, diag] > _FLAT_TOL_EPS * torch.finfo(dtype).eps * e_b[:, diag]  # N×K×h×w
    live_pair = live[:, iu] & live[:, ju]
    cov_b = torch.where(live_pair, cov_b, 0.0)
    cov_g = torch.where(live_pair, cov_g, 0.0)
    cov_gxy = torch.where(live, cov_gxy, 0.0)

    # 1. signal strength (contrast) per exposure and the desired contrast
    norm_k = _safe_sqrt(npix * cov_b[:, diag])  # ‖x_k − μ_k‖, N×K×h×w
    c = norm_k + CONTRAST_EPS
    c_hat = c.amax(dim=1)  # N×h×w

    # 2. structural consistency R -> exponent p
    num = _safe_sqrt(npix * (mult * cov_b).sum(dim=1))  # ‖Σ_k (x_k − μ_k)‖
    r = (num + MATLAB_EPS) / (norm_k.sum(dim=1) + MATLAB_EPS)
    p = torch.tan((math.pi / 2.0) * r.clamp_max(_R_CAP)).clamp_max(P_CAP)

    # 3. structure weights and the desired structure s̄ = Σ_k b_k (x_k − μ_k), b_k = w_k / c_k
    wmap = (c / WINDOW_SIZE).pow(p.unsqueeze(1)) + MATLAB_EPS
    b = wmap / (wmap.sum(dim=1, keepdim=True) * c)
    bb = mult * b[:, iu] * b[:, ju]
    sbar_sq = (npix * (bb * cov_b).sum(dim=1)).clamp_min(0.0)  # ‖s̄‖²
    g_energy = (bb * cov_g).sum(dim=1).clamp_min(0.0)  # Gaussian-weighted variance of s̄
    g_cross = (b * cov_gxy).sum(dim=1)  # Gaussian-weighted covariance of s̄ and y

    # x̂ = ĉ s̄/‖s̄‖ where ‖s̄‖ > 0, else x̂ = s̄ = 0 (reference: `if norm(rBlock(:)) > 0`)
    has_structure = sbar_sq > 0
    inv_norm = torch.where(has_structure, sbar_sq, 1.0).rsqrt()
    inv_norm = torch.where(has_structure, inv_norm, 0.0)
    scale = c_hat * inv_norm
    var_xhat = scale.square() * g_energy
    cov_xhat_y = scale * g_cross

    # 4. contrast-structure comparison with the Gaussian window, mean over the valid map
    q = (2.0 * cov_xhat_y + MEF_SSIM_C) / (var_xhat + var_gy + MEF_SSIM_C)
    return q.mean(dim=(-2, -1))


def mef_ssim_per_scale(
    fused: Tensor, sources: Tensor, levels: int = 1, data_range: float = 1.0
) -> Tensor:
    """Q_l of ``mef_ms_ssim.m`` at each of ``levels`` scales (level 1 = full resolution).

    Args:
        fused: fused grey image, N×1×H×W, values in [0, ``data_range``].
        sources: grey exposure stacks, N×K×1×H×W (K ≥ 2, any order), same range.
        levels: number of scales; for ``levels > 1`` min(H, W) / 2^(levels−1) must be ≥ 11.
        data_range: value of white in the inputs (1.0 for [0, 1] images, 255.0 for 0–255 data);
            the inputs are rescaled to 0–255, the scale the constants assume.

    Returns:
        Tensor N×levels (float32, or float64 if an input is float64), each Q_l in [−1, 1].

    Raises:
        ValueError: ``levels`` < 1, ``data_range`` ≤ 0, or the inputs of :func:`mef_ssim`'s ``Raises``.

    Example:
        >>> stack = torch.rand(2, 3, 1, 48, 48, generator=torch.Generator().manual_seed(0))
        >>> mef_ssim_per_scale(stack.mean(1), stack, levels=3).shape
        torch.Size([2, 3])
    """
    if not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels: expected an int ≥ 1, got {levels!r}")
    if not data_range > 0:
        raise ValueError(f"data_range: expected a positive number, got {data_range!r}")
    _check_inputs(fused, sources, levels)
    dtype = torch.float64 if torch.float64 in (fused.dtype, sources.dtype) else torch.float32
    with autocast_off(fused.device.type):
        scale = 255.0 / float(data_range)
        x = sources.to(dtype).squeeze(2) * scale
        y = fused.to(dtype) * scale
        scores = []
        for level in range(levels):
            if level > 0:
                both = _downsample(torch.cat([x, y], dim=1))
                x, y = both[:, :-1], both[:, -1:]
            scores.append(_mef_ssim_single_scale(x, y))
        return torch.stack(scores, dim=1)


def mef_ssim(fused: Tensor, sources: Tensor, multiscale: bool = False, data_range: float = 1.0) -> Tensor:
    r"""MEF-SSIM of each fused image against its exposure stack (Ma, Zeng & Wang, TIP 2015).

    Single scale = Q of ``mef_ssim.m``; ``multiscale=True`` = oQ of ``mef_ms_ssim.m``
    (3 scales, oQ = Π_l Q_l^{β_l}, β = [0.0448, 0.2856, 0.3001]/sum). See the module docstring for
    the formula. Higher is better, 1 for a perfect fusion; invariant to the order of the exposures.

    Args:
        fused: N×1×H×W grey (or Y) fused image in [0, ``data_range``]; H, W ≥ 11 (≥ 44 multi-scale).
        sources: N×K×1×H×W grey exposure stacks, K ≥ 2, same size and range.
        multiscale: 3-scale ``mef_ms_ssim`` instead of single-scale ``mef_ssim``.
        data_range: value of white in the inputs; they are rescaled to 0–255 internally.

    Returns:
        Tensor[N], float32 (float64 if an input is float64); differentiable, autocast disabled.
        Multi-scale: a scale with Q_l ≤ 0 gives NaN (MATLAB returns a complex number there).

    Raises:
        ValueError: wrong shapes, K < 2, mismatched batch or size, image too small.

    Example:
        >>> stack = torch.rand(2, 3, 1, 32, 32)
        >>> mef_ssim(stack.mean(1), stack).shape
        torch.Size([2])
    """
    if multiscale:
        per_scale = mef_ssim_per_scale(fused, sources, levels=len(MS_WEIGHTS), data_range=data_range)
        weights = torch.tensor(MS_WEIGHTS, dtype=per_scale.dtype, device=per_scale.device)
        return per_scale.pow(weights).prod(dim=1)
    return mef_ssim_per_scale(fused, sources, levels=1, data_range=data_range)[:, 0]
