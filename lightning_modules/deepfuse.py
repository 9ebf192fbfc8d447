"""DeepFuse (Prabhakar, Srikar & Babu, ICCV 2017): unsupervised deep exposure fusion.

A CNN fuses the **luminance** (Y) of an exposure stack; chrominance is fused by a fixed per-pixel
rule; the network is trained to maximise MEF-SSIM (``losses``). This file holds the networks and the
fusion helpers; the ``DeepFuse`` LightningModule follows at the end of the file.

SOURCES: official repository KRamPrabhakar/DeepFuse (commit 2a776ba, Theano/Lasagne, inference only):
``main.py`` (architecture, min–max output), ``getres.py`` (weights loading, ``scipy.misc.imsave``),
``Gen_Result.m`` (colour pipeline); ``../shared/papers/deepfuse.md`` (digest). The paper's body
could not be retrieved: the "paper" architecture is the variant of the third-party port
SunnerLi/DeepFuse.pytorch and is **unverified** against the paper.

Scales. The official code feeds raw Y on the 0–255 scale (MATLAB ``rgb2ycbcr``, studio range
16–235) and min–max normalises the output to [0, 255]. Darkroom feeds Y in [0, 1] (the same studio
range divided by 255: [16/255, 235/255]) and min–max normalises to [0, 1]. For the official
architecture this is the *same* model: it has no bias and LeakyReLU is positively homogeneous,
so ``net(a·x) = a·net(x)`` for every a > 0, and min–max normalisation removes ``a``. (For the same
reason summing or averaging the K branch features gives the same normalised output.) The "paper"
variant has biases, so there the scale matters; it maps [0, 1] to [−1, 1] internally, as that port does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import kornia.color
import numpy as np
import torch
from torch import Tensor, nn

from lightning_modules.fusion_baselines import stack_sources

__all__ = [
    "OFFICIAL_WEIGHTS_SOURCE",
    "DeepFuseNet",
    "fuse_chroma",
    "fuse_rgb",
    "load_official_deepfuse",
    "minmax_normalize",
    "rgb_to_ycbcr",
    "select_extreme_exposures",
    "stretch_contrast",
    "ycbcr_to_rgb",
]

Architecture = Literal["official", "paper"]
YCbCrRange = Literal["studio", "full"]

OFFICIAL_WEIGHTS_SOURCE = (
    "DF_model_Epoch99.npz from https://github.com/KRamPrabhakar/DeepFuse (file at the repository root, "
    "added in commit 2a776ba; research use only, not commercial)"
)

# (out, in, kernel) of the six released layers, in the order of the npz arrays arr_0 … arr_5.
_OFFICIAL_LAYERS: tuple[tuple[int, int, int], ...] = (
    (32, 1, 3),  # conv1 = conv3 (tied, per branch)
    (64, 32, 5),  # conv11 = conv13 (tied, per branch)
    (64, 64, 7),  # conv40 (after the sum)
    (32, 64, 5),  # conv4
    (16, 32, 5),  # conv41
    (1, 16, 7),  # conv5 (output)
)


def minmax_normalize(x: Tensor, eps: float = 1e-12) -> Tensor:
    """Per-image min–max normalisation to [0, 1] over all non-batch dims.

    SOURCE: official ``main.py`` (``(x − min)/(max − min)·255``, on 0–255; here on [0, 1]).
    A constant image (max = min) maps to 0 instead of NaN.

    Shapes: N×… → N×… in [0, 1].
    """
    flat = x.flatten(1)
    lo = flat.amin(dim=1).view(-1, *([1] * (x.dim() - 1)))
    hi = flat.amax(dim=1).view(-1, *([1] * (x.dim() - 1)))
    return (x - lo) / (hi - lo).clamp_min(eps)


def _conv(c_in: int, c_out: int, k: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, stride=1, padding=k // 2, bias=bias)  # zero 'same' padding


class DeepFuseNet(nn.Module):
    """DeepFuse luminance-fusion CNN: K tied feature branches merged by summation.

    ``architecture="official"`` (default; SOURCE: official ``main.py``, released weights): all
    convolutions stride 1, zero 'same' padding, **no bias**, LeakyReLU(``negative_slope`` = 0.01) after
    every layer including the last, Glorot-normal init::

        per exposure (tied): conv 3×3 1→32, conv 5×5 32→64
        sum over exposures → conv 7×7 64→64 → conv 5×5 64→32 → conv 5×5 32→16 → conv 7×7 16→1

    316,976 parameters.

    ``architecture="paper"`` (digest §2.2, per the SunnerLi/DeepFuse.pytorch port — **unverified**
    against the paper's text): with biases, C1 5×5 1→16 (LeakyReLU), C2 7×7 16→32 (ReLU), tied per
    branch; sum; C3 7×7 32→32 (LeakyReLU), C4 5×5 32→16 (LeakyReLU), C5 5×5 16→1 (tanh); inputs mapped
    [0, 1] → [−1, 1] and the tanh output back to [0, 1]; optional BatchNorm after every convolution
    (the port uses it). 88,961 parameters without BatchNorm (our count, not a paper number).

    The official code fuses pairs only; K > 2 exposures are fused by summing the K tied-branch
    features (ours; the architecture allows it, the paper's rule for stacks was not found). The sum
    makes the output invariant to the order of the exposures.

    Args:
        architecture: ``"official"`` (released model) or ``"paper"`` (unverified port variant).
        negative_slope: LeakyReLU slope (0.01 = Lasagne ``leaky_rectify``).
        normalize_output: min–max normalise each fused image to [0, 1] (the official ``main.py``
            does this at test time and, in its commented training code, before the MEF-SSIM loss).
            With False the raw last activation is returned.
        batch_norm: BatchNorm after every convolution; only for ``architecture="paper"``.

    Shapes:
        x: N×K×1×H×W (K ≥ 2) luminance of the exposures, in [0, 1] (studio-range Y/255 for the
        official weights) — or a sequence of K tensors N×1×H×W.
        returns N×1×H×W: in [0, 1] with ``normalize_output``; otherwise the raw output on the
        input's scale (official: ≈ the input's Y range, unbounded).
    """

    def __init__(
        self,
        architecture: Architecture = "official",
        negative_slope: float = 0.01,
        normalize_output: bool = True,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if architecture not in ("official", "paper"):
            raise ValueError(f"architecture must be 'official' or 'paper', got {architecture!r}")
        if batch_norm and architecture == "official":
            raise ValueError("batch_norm is only available for architecture='paper' (the released model has none)")
        self.architecture = architecture
        self.normalize_output = normalize_output
        act = nn.LeakyReLU(negative_slope)
        if architecture == "official":
            convs = [_conv(i, o, k, bias=False) for o, i, k in _OFFICIAL_LAYERS]
            self.pre = nn.Sequential(convs[0], act, convs[1], act)
            self.post = nn.Sequential(convs[2], act, convs[3], act, convs[4], act, convs[5], act)
        else:

            def block(c_in: int, c_out: int, k: int, activation: nn.Module) -> list[nn.Module]:
                layers: list[nn.Module] = [_conv(c_in, c_out, k, bias=True)]
                if batch_norm:
                    layers.append(nn.BatchNorm2d(c_out))
                return [*layers, activation]

            self.pre = nn.Sequential(*block(1, 16, 5, act), *block(16, 32, 7, nn.ReLU()))
            self.post = nn.Sequential(
                *block(32, 32, 7, act), *block(32, 16, 5, act), *block(16, 1, 5, nn.Tanh())
            )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_normal_(m.weight)  # Lasagne GlorotNormal (official)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def features(self, x: Tensor | Sequence[Tensor]) -> Tensor:
        """Tied pre-fusion features summed over the K exposures: N×K×1×H×W → N×F×H×W."""
        x = stack_sources(x, channels=1)
        n, k, _, h, w = x.shape
        if self.architecture == "paper":
            x = x * 2.0 - 1.0
        f = self.pre(x.reshape(n * k, 1, h, w))  # all exposures through the tied layers at once
        return f.view(n, k, *f.shape[1:]).sum(dim=1)

    def forward(self, x: Tensor | Sequence[Tensor]) -> Tensor:
        y = self.post(self.features(x))
        if self.architecture == "paper":
            y = (y + 1.0) * 0.5
        return minmax_normalize(y) if self.normalize_output else y


def load_official_deepfuse(
    path: str | Path, *, normalize_output: bool = True, map_location: str | torch.device = "cpu"
) -> DeepFuseNet:
    """Build the official :class:`DeepFuseNet` with the authors' released weights.

    ``DF_model_Epoch99.npz`` holds six float32 arrays ``arr_0`` … ``arr_5`` (Lasagne parameter order,
    tied weights once, no biases) in (out, in, kh, kw) layout. Lasagne's ``flip_filters=True`` makes
    them *true* convolutions, so both spatial axes are flipped for PyTorch's cross-correlation.

    SOURCE: official ``getres.py`` / ``main.py``; layouts per ``weights/deepfuse/tensors.txt``.

    Raises:
        FileNotFoundError: ``path`` does not exist (names the expected file and where it comes from).
        ValueError: the file lacks an array or an array has the wrong shape.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: DeepFuse official weights not found; expected {OFFICIAL_WEIGHTS_SOURCE}"
        )
    net = DeepFuseNet("official", normalize_output=normalize_output)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    with np.load(path, allow_pickle=False) as npz:
        for i, conv in enumerate(convs):
            key = f"arr_{i}"
            if key not in npz.files:
                raise ValueError(f"{path}: array {key!r} missing (found {sorted(npz.files)}); expected {OFFICIAL_WEIGHTS_SOURCE}")
            w = npz[key]
            if tuple(w.shape) != tuple(conv.weight.shape):
                raise ValueError(f"{path}: {key} has shape {w.shape}, expected {tuple(conv.weight.shape)}")
            flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1], dtype=np.float32)
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(flipped))
    return net.to(map_location).eval()


# ---------------------------------------------------------------------------------------------
# Colour
# ---------------------------------------------------------------------------------------------

_STUDIO_Y = (16.0 / 255.0, 219.0 / 255.0)  # offset, gain: MATLAB rgb2ycbcr Y = 16 + 219·Y_full
_STUDIO_C = (128.0 / 255.0, 224.0 / 255.0)  # C = 128 + 224·(C_full − 0.5)


def rgb_to_ycbcr(rgb: Tensor, ycbcr_range: YCbCrRange = "studio") -> Tensor:
    """RGB → YCbCr (BT.601) with kornia, on …×3×H×W tensors in [0, 1].

    ``"studio"`` = MATLAB ``rgb2ycbcr`` divided by 255 (Y ∈ [16, 235]/255, Cb/Cr ∈ [16, 240]/255,
    neutral chroma 128/255), what the official DeepFuse pipeline (``Gen_Input.m``, ``Gen_Result.m``)
    uses; it is an affine map of kornia's full-range (JPEG) YCbCr (Y ∈ [0, 1], neutral chroma 0.5).
    kornia rounds the chroma coefficients to 3 decimals (differences < 0.1 grey level).
    """
    ycc = kornia.color.rgb_to_ycbcr(rgb)
    if ycbcr_range == "full":
        return ycc
    if ycbcr_range != "studio":
        raise ValueError(f"range must be 'studio' or 'full', got {ycbcr_range!r}")
    y, cbcr = ycc[..., :1, :, :], ycc[..., 1:, :, :]
    return torch.cat([_STUDIO_Y[0] + _STUDIO_Y[1] * y, _STUDIO_C[0] + _STUDIO_C[1] * (cbcr - 0.5)], dim=-3)


def ycbcr_to_rgb(ycc: Tensor, ycbcr_range: YCbCrRange = "studio") -> Tensor:
    """Inverse of :func:`rgb_to_ycbcr` (…×3×H×W → …×3×H×W RGB, not clamped)."""
    if ycbcr_range == "studio":
        y, cbcr = ycc[..., :1, :, :], ycc[..., 1:, :, :]
        ycc = torch.cat([(y - _STUDIO_Y[0]) / _STUDIO_Y[1], (cbcr - _STUDIO_C[0]) / _STUDIO_C[1] + 0.5], dim=-3)
    elif ycbcr_range != "full":
        raise ValueError(f"range must be 'studio' or 'full', got {ycbcr_range!r}")
    return kornia.color.ycbcr_to_rgb(ycc)


def _fuse_plane(c: Tensor, tau: float) -> Tensor:
    w = (c - tau).abs()
    den = w.sum(dim=1)
    fused = (c * w).sum(dim=1) / torch.where(den > 0, den, torch.ones_like(den))
    return torch.where(den > 0, fused, torch.full_like(fused, tau))


def fuse_chroma(cb: Tensor, cr: Tensor, tau: float = 128.0 / 255.0) -> tuple[Tensor, Tensor]:
    """Official per-pixel chroma fusion: ``C_f = Σ_k C_k·|C_k − τ| / Σ_k |C_k − τ|``.

    Each exposure's chroma is weighted by its distance from neutral grey τ, per pixel and per
    plane; where every exposure is exactly neutral (0/0) the result is τ. SOURCE: official
    ``Gen_Result.m`` (τ = 128 on 0–255 → 128/255 here, studio range; use τ = 0.5 for kornia's
    full-range YCbCr).

    Shapes:
        cb, cr: N×K×… (dim 1 = exposures, e.g. N×K×1×H×W), same shape → (cb_f, cr_f) each N×….

    Raises:
        ValueError: shapes differ or fewer than 3 dims.
    """
    if cb.shape != cr.shape:
        raise ValueError(f"cb and cr must have the same shape, got {tuple(cb.shape)} and {tuple(cr.shape)}")
    if cb.dim() < 3:
        raise ValueError(f"cb/cr must be N×K×… (dim 1 = exposures), got shape {tuple(cb.shape)}")
    return _fuse_plane(cb, tau), _fuse_plane(cr, tau)


def stretch_contrast(y: Tensor, tol: tuple[float, float] = (0.01, 0.99)) -> Tensor:
    """MATLAB ``imadjust(I)`` with its default ``stretchlim(I)`` limits, per image.

    The image is first quantised to 8 bits (the official pipeline reads the saved uint8 PNG); with
    the 256-level histogram, ``low`` = first level whose CDF exceeds ``tol[0]``, ``high`` = first level
    whose CDF reaches ``tol[1]`` (low = high → [0, 1]); output ``clip((I − low)/(high − low), 0, 1)``.
    SOURCE: official ``Gen_Result.m`` (``J = imadjust(im2double(fused_l))``). Not differentiable.

    Shapes: N×1×H×W in [0, 1] → N×1×H×W in [0, 1].
    """
    n = y.shape[0]
    levels = torch.clamp(y.detach().flatten(1) * 255.0 + 0.5, 0, 255).long()
    hist = torch.zeros(n, 256, dtype=torch.float64, device=y.device).scatter_add_(
        1, levels, torch.ones_like(levels, dtype=torch.float64)
    )
    cdf = hist.cumsum(1) / hist.sum(1, keepdim=True)
    low = (cdf > tol[0]).double().argmax(1)
    high = (cdf >= tol[1]).double().argmax(1)
    flat = low == high
    low = torch.where(flat, torch.zeros_like(low), low).to(y.dtype) / 255.0
    high = torch.where(flat, torch.full_like(high, 255), high).to(y.dtype) / 255.0
    q = levels.view_as(y).to(y.dtype) / 255.0
    shape = (n,) + (1,) * (y.dim() - 1)
    return ((q - low.view(shape)) / (high - low).view(shape)).clamp(0.0, 1.0)


def fuse_rgb(
    net: nn.Module,
    sources: Tensor | Sequence[Tensor],
    *,
    ycbcr: YCbCrRange = "studio",
    tau: float | None = None,
    luma: Literal["official", "minmax", "raw"] = "official",
) -> Tensor:
    """Fuse an RGB exposure stack: Y by ``net``, Cb/Cr by :func:`fuse_chroma`, back to RGB.

    SOURCE: official ``Gen_Input.m`` / ``Gen_Result.m`` (MATLAB ``rgb2ycbcr`` = ``ycbcr="studio"``).
    ``luma`` decides how the net's output becomes the fused Y:

    * ``"official"``: min–max to [0, 1], quantise to 8 bits (the saved PNG), MATLAB ``imadjust``
      (:func:`stretch_contrast`), then map into the Y range (studio: ``16 + 219·J``). Not differentiable.
    * ``"minmax"``: min–max to [0, 1], then into the Y range.
    * ``"raw"``: the net's output is used as Y as it is (a net trained to output Y directly).

    Unlike ``Gen_Result.m`` the YCbCr image is not rounded to uint8 before conversion to RGB.

    Args:
        net: maps N×K×1×H×W luminance to N×1×H×W (e.g. :class:`DeepFuseNet`).
        sources: N×K×3×H×W RGB in [0, 1], K ≥ 2 (or a sequence of K tensors N×3×H×W).
        ycbcr: ``"studio"`` (official) or ``"full"`` (kornia / JPEG range).
        tau: neutral chroma; default 128/255 (studio) or 0.5 (full).

    Returns:
        N×3×H×W RGB clamped to [0, 1].
    """
    sources = stack_sources(sources, channels=3)
    if luma not in ("official", "minmax", "raw"):
        raise ValueError(f"luma must be 'official', 'minmax' or 'raw', got {luma!r}")
    if tau is None:
        tau = _STUDIO_C[0] if ycbcr == "studio" else 0.5
    ycc = rgb_to_ycbcr(sources, ycbcr)  # N×K×3×H×W
    y = net(ycc[:, :, :1])
    if luma != "raw":
        j = minmax_normalize(y)
        if luma == "official":
            j = stretch_contrast(j)
        offset, gain = _STUDIO_Y if ycbcr == "studio" else (0.0, 1.0)
        y = offset + gain * j
    cb, cr = fuse_chroma(ycc[:, :, 1:2], ycc[:, :, 2:3], tau)
    return ycbcr_to_rgb(torch.cat([y, cb, cr], dim=1), ycbcr).clamp(0.0, 1.0)


def select_extreme_exposures(sources: Tensor | Sequence[Tensor]) -> Tensor:
    """Keep the darkest and the brightest source (by mean intensity) of each stack.

    For fusing K > 2 exposures with the pair-trained official model (an option, ours; the paper's
    rule for stacks was not found). File names do not give exposure order, so the mean decides.

    Shapes: N×K×C×H×W → N×2×C×H×W (darkest first).
    """
    sources = stack_sources(sources)
    means = sources.flatten(2).mean(dim=2)  # N×K
    idx = torch.stack([means.argmin(dim=1), means.argmax(dim=1)], dim=1)  # N×2
    idx = idx.view(*idx.shape, 1, 1, 1).expand(-1, -1, *sources.shape[2:])
    return sources.gather(1, idx)


# ---- LightningModule ----
