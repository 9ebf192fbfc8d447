"""The four zero-reference losses of Zero-DCE (CVPR 2020) and Zero-DCE++ (TPAMI 2021).

Each loss is a function returning a scalar (the mean that the official training script
optimises) and a thin ``nn.Module`` wrapper with ``loss_weight`` and ``form``. :class:`ZeroDCELoss`
is built from those four modules and owns the official weights of each variant
(:meth:`ZeroDCELoss.official_weights`).

Two forms per term (defaults follow the official code, which produced the released weights;
the author: "follow the code", Li-Chongyi/Zero-DCE #19):

=========  =======================================================  ==========================================
term       ``form="official"`` (``Zero-DCE_code/Myloss.py``)         ``form="paper"`` ([CVPR] Eq. 4–7)
=========  =======================================================  ==========================================
L_spa      (ΔI − ΔY)², signed differences, zero padding              (|ΔY| − |ΔI|)², existing neighbours only
L_exp      mean (P16(Ȳ) − E)²  (squared)                             mean |P16(Ȳ) − E|  (L1)
L_col      sqrt(d_RG² + d_RB² + d_GB²), d = (J^p − J^q)²             d_RG + d_RB + d_GB
L_tvA      2·[Σ(∇_y A)²/((H−1)W) + Σ(∇_x A)²/(H(W−1))]/B              mean_n Σ_c mean_px (|∇_x A| + |∇_y A|)²
=========  =======================================================  ==========================================

All terms are computed in float32 with autocast disabled (inputs are cast with ``.float()``,
:func:`losses._common.fp32`), so they are safe under ``bf16-mixed`` / ``16-mixed`` precision.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losses._common import check_tensor, fp32

__all__ = [
    "FORMS",
    "VARIANTS",
    "OFFICIAL_WEIGHTS_ZERO_DCE",
    "OFFICIAL_WEIGHTS_ZERO_DCE_PP",
    "PAPER_WEIGHTS",
    "ColorConstancyLoss",
    "ExposureControlLoss",
    "IlluminationSmoothnessLoss",
    "SpatialConsistencyLoss",
    "ZeroDCELoss",
    "color_constancy",
    "exposure_control",
    "illumination_smoothness",
    "spatial_direction_kernel",
    "spatial_consistency",
]

FORMS: tuple[str, ...] = ("official", "paper")
TERMS: tuple[str, ...] = ("spa", "exp", "col", "tv")
#: The networks whose official training scripts set the default weights (``networks.zero_dce``).
VARIANTS: tuple[str, ...] = ("zero_dce", "zero_dce_pp")

#: Official Zero-DCE weights, file ``Zero-DCE_code/lowlight_train.py``.
OFFICIAL_WEIGHTS_ZERO_DCE: dict[str, float] = {"spa": 1.0, "exp": 10.0, "col": 5.0, "tv": 200.0}
#: Official Zero-DCE++ weights, file ``Zero-DCE++/lowlight_train.py`` (1600·3 maps = 200·24 maps).
OFFICIAL_WEIGHTS_ZERO_DCE_PP: dict[str, float] = {"spa": 1.0, "exp": 10.0, "col": 5.0, "tv": 1600.0}
_OFFICIAL_WEIGHTS: dict[str, dict[str, float]] = {
    "zero_dce": OFFICIAL_WEIGHTS_ZERO_DCE,
    "zero_dce_pp": OFFICIAL_WEIGHTS_ZERO_DCE_PP,
}
#: Paper weights [CVPR Eq. 8, §4], [TPAMI §5.1].
PAPER_WEIGHTS: dict[str, float] = {"spa": 1.0, "exp": 1.0, "col": 0.5, "tv": 20.0}

# Smallest value under the colour-loss square root: sqrt has an infinite derivative at 0, so a
# perfectly grey image would give NaN gradients. Values below this only occur when the channel
# means differ by < ~1e-7.5, where the loss is ~1e-15 anyway; the clamp then blocks the gradient.
_SQRT_FLOOR = 1e-30


# --------------------------------------------------------------------------------------------
# helpers


def _check_form(form: str, where: str) -> None:
    if form not in FORMS:
        raise ValueError(f"{where}: unknown form {form!r}; expected one of {FORMS}")


def _check_image(x: Any, name: str, min_size: int = 1, like: tuple[str, Tensor] | None = None) -> None:
    check_tensor(x, name, "N×3×H×W", ndim=4, sizes={1: 3}, what="an RGB batch", same_as=like,
                 min_size=min_size, min_size_reason="region the loss pools over")


def spatial_direction_kernel(device: torch.device | str | None = None) -> Tensor:
    """The official four difference kernels (left, right, up, down) as a 4×1×3×3 float32 tensor.

    Convolved with a map ``v`` (padding 1) they give ``v_i − v_j`` for the neighbour ``j`` to the
    left, right, above and below of each cell ``i`` (official ``L_spa.weight_left`` … ``weight_down``).

    Example:
        >>> spatial_direction_kernel()[0, 0]  # left
        tensor([[ 0.,  0.,  0.],
                [-1.,  1.,  0.],
                [ 0.,  0.,  0.]])
    """
    k = torch.zeros(4, 1, 3, 3, device=device)
    k[:, 0, 1, 1] = 1.0
    k[0, 0, 1, 0] = -1.0  # left
    k[1, 0, 1, 2] = -1.0  # right
    k[2, 0, 0, 1] = -1.0  # up
    k[3, 0, 2, 1] = -1.0  # down
    return k


# --------------------------------------------------------------------------------------------
# functional losses


@fp32()
def spatial_consistency(
    enhanced: Tensor,
    original: Tensor,
    form: str = "official",
    *,
    region_size: int = 4,
    kernel: Tensor | None = None,
) -> Tensor:
    r"""Spatial consistency loss L_spa: enhancement keeps the contrast between neighbouring regions.

    With Ȳ, Ī the channel means of the enhanced and original images, average-pooled over
    ``region_size``² regions (4×4, stride 4), and Ω(i) the 4 neighbours (left, right, up, down):

    * ``"official"`` (``Zero-DCE_code/Myloss.py``, class ``L_spa``):
      :math:`\frac{1}{BK}\sum_b\sum_i\sum_{j\in\Omega(i)} ((Ī_i − Ī_j) − (Ȳ_i − Ȳ_j))^2`
      with signed differences and **zero padding**: border cells are compared with 0.
    * ``"paper"`` ([CVPR] Eq. 4): :math:`\frac{1}{BK}\sum_b\sum_i\sum_{j\in\Omega(i)} (|Ȳ_i − Ȳ_j| − |Ī_i − Ī_j|)^2`.
      The paper does not say what happens at the border; here only existing neighbours count
      (replicate padding, whose differences are 0).

    K is the number of regions per image. The loss is symmetric in its two image arguments
    (the official training call passes them in swapped order; harmless).

    Args:
        enhanced: N×3×H×W enhanced image Y, values in [0, 1].
        original: N×3×H×W input image I, same shape.
        form: ``"official"`` or ``"paper"``.
        region_size: side of the pooled regions (4 in paper and code).
        kernel: optional precomputed :func:`spatial_direction_kernel` (the module keeps it as a buffer).

    Returns:
        scalar float32 tensor, ≥ 0; 0 when the enhancement keeps every regional difference.

    Example:
        >>> x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
        >>> spatial_consistency(x, x)
        tensor(0.)
    """
    _check_form(form, "spatial_consistency")
    _check_image(enhanced, "spatial_consistency(enhanced)", region_size)
    _check_image(original, "spatial_consistency(original)", region_size, like=("enhanced", enhanced))
    n = enhanced.shape[0]
    both = torch.cat([original, enhanced], 0).mean(1, keepdim=True)
    pooled = F.avg_pool2d(both, region_size)
    if kernel is None:
        kernel = spatial_direction_kernel(pooled.device)
    kernel = kernel.to(device=pooled.device, dtype=torch.float32)
    if form == "official":
        diffs = F.conv2d(pooled, kernel, padding=1)
        d_org, d_enh = diffs[:n], diffs[n:]
        per_cell = (d_org - d_enh).pow(2).sum(1)
    else:
        diffs = F.conv2d(F.pad(pooled, (1, 1, 1, 1), mode="replicate"), kernel).abs()
        d_org, d_enh = diffs[:n], diffs[n:]
        per_cell = (d_enh - d_org).pow(2).sum(1)
    return per_cell.mean()


@fp32()
def exposure_control(
    enhanced: Tensor, patch_size: int = 16, well_exposed: float = 0.6, form: str = "official"
) -> Tensor:
    r"""Exposure control loss L_exp: local mean intensity close to the well-exposedness level E.

    With Ȳ the channel mean of the enhanced image, average-pooled over non-overlapping
    ``patch_size``² regions (16×16):

    * ``"official"`` (``Zero-DCE_code/Myloss.py``, class ``L_exp``): :math:`\operatorname{mean}(P_{16}(Ȳ) − E)^2`
      (squared, Li-Chongyi/Zero-DCE #40).
    * ``"paper"`` ([CVPR] Eq. 5): :math:`\frac{1}{M}\sum_k |P_{16}(Ȳ)_k − E|` (L1).

    The mean runs over all regions of all images (as the official code). E = 0.6 in paper and code
    ([TPAMI] Table 2 also tries 0.4, 0.5, 0.7).

    Args:
        enhanced: N×3×H×W, values in [0, 1]; H, W ≥ ``patch_size`` (a remainder is dropped, as AvgPool2d).
        patch_size: region side.
        well_exposed: the level E.
        form: ``"official"`` or ``"paper"``.

    Returns:
        scalar float32 tensor, ≥ 0; 0 when every region's mean is E.

    Example:
        >>> exposure_control(torch.full((1, 3, 16, 16), 0.5))
        tensor(0.0100)
    """
    _check_form(form, "exposure_control")
    _check_image(enhanced, "exposure_control(enhanced)", patch_size)
    pooled = F.avg_pool2d(enhanced.mean(1, keepdim=True), patch_size)
    d = pooled - well_exposed
    return d.pow(2).mean() if form == "official" else d.abs().mean()


@fp32()
def color_constancy(enhanced: Tensor, form: str = "official") -> Tensor:
    r"""Colour constancy loss L_col (grey-world): the three channel means should agree.

    With J^c the mean of channel c of one image and d_pq = (J^p − J^q)²:

    * ``"official"`` (``Zero-DCE_code/Myloss.py``, class ``L_color``):
      :math:`\sqrt{d_{RG}^2 + d_{RB}^2 + d_{GB}^2}` per image: **4th powers under a square root**
      (Li-Chongyi/Zero-DCE #6, #40). Implementation detail: the square root's argument is floored
      at 1e-30 so a perfectly grey image gives a zero gradient instead of NaN.
    * ``"paper"`` ([CVPR] Eq. 6): :math:`d_{RG} + d_{RB} + d_{GB}` per image.

    Returns the mean over the batch (official training: ``torch.mean(L_color(enhanced))``).

    Args:
        enhanced: N×3×H×W, values in [0, 1].
        form: ``"official"`` or ``"paper"``.

    Returns:
        scalar float32 tensor, ≥ 0; 0 for a grey image.

    Example:
        >>> y = torch.zeros(1, 3, 2, 2); y[:, 0] = 1.0  # pure red: d_RG = d_RB = 1, d_GB = 0
        >>> color_constancy(y), color_constancy(y, "paper")
        (tensor(1.4142), tensor(2.))
    """
    _check_form(form, "color_constancy")
    _check_image(enhanced, "color_constancy(enhanced)")
    mean_rgb = enhanced.mean((2, 3))
    r, g, b = mean_rgb.unbind(1)
    d_rg, d_rb, d_gb = (r - g).pow(2), (r - b).pow(2), (b - g).pow(2)
    if form == "official":
        per_image = (d_rg.pow(2) + d_rb.pow(2) + d_gb.pow(2)).clamp_min(_SQRT_FLOOR).sqrt()
    else:
        per_image = d_rg + d_rb + d_gb
    return per_image.mean()


@fp32()
def illumination_smoothness(curve_maps: Tensor, form: str = "official") -> Tensor:
    r"""Illumination smoothness loss L_tvA: total variation of the curve-parameter maps A.

    * ``"official"`` (``Zero-DCE_code/Myloss.py``, class ``L_TV``):
      :math:`\frac{2}{B}\left[\frac{\sum(\nabla_y A)^2}{(H−1)W} + \frac{\sum(\nabla_x A)^2}{H(W−1)}\right]`,
      sums over batch, **all** map channels and pixels: squared gradients, no cross term, a hidden
      factor 2 (Li-Chongyi/Zero-DCE #70); it grows with the number of maps (24 for Zero-DCE, 3
      for Zero-DCE++, hence TV weights 200 vs 1600).
    * ``"paper"`` ([CVPR] Eq. 7): :math:`\frac{1}{N}\sum_{n=1}^{N}\sum_{c\in\{R,G,B\}} (|\nabla_x A_n^c| + |\nabla_y A_n^c|)^2`
      with N = C/3 maps. The paper does not say how pixels are aggregated; here the per-pixel value
      is averaged over the (H−1)×(W−1) pixels where both forward differences exist, then
      averaged over the batch.

    Args:
        curve_maps: N×3n×H×W curve parameter maps (n maps of 3 channels; n = 1 for a shared map),
            H, W ≥ 2.
        form: ``"official"`` or ``"paper"``.

    Returns:
        scalar float32 tensor, ≥ 0; 0 for constant maps.

    Example:
        >>> illumination_smoothness(torch.full((1, 3, 4, 4), -0.2))
        tensor(0.)
    """
    _check_form(form, "illumination_smoothness")
    name = "illumination_smoothness(curve_maps)"
    layout = "N×3n×H×W"
    check_tensor(curve_maps, name, layout, ndim=4, what="curve maps")
    if curve_maps.shape[1] == 0 or curve_maps.shape[1] % 3 != 0:
        raise ValueError(
            f"{name}: expected {layout} curve maps (channels a multiple of 3), got shape {tuple(curve_maps.shape)}"
        )
    b, c, h, w = curve_maps.shape
    if h < 2 or w < 2:
        raise ValueError(f"{name}: need H, W ≥ 2 (forward differences), got {h}×{w}")
    a = curve_maps
    if form == "official":
        h_tv = (a[:, :, 1:, :] - a[:, :, :-1, :]).pow(2).sum()
        w_tv = (a[:, :, :, 1:] - a[:, :, :, :-1]).pow(2).sum()
        return 2.0 * (h_tv / ((h - 1) * w) + w_tv / (h * (w - 1))) / b
    grad_x = (a[:, :, :-1, 1:] - a[:, :, :-1, :-1]).abs()
    grad_y = (a[:, :, 1:, :-1] - a[:, :, :-1, :-1]).abs()
    per_pixel = (grad_x + grad_y).pow(2)  # B×3n×(H−1)×(W−1)
    per_channel = per_pixel.mean((2, 3)).view(b, c // 3, 3)
    return per_channel.sum(2).mean(1).mean()


# --------------------------------------------------------------------------------------------
# module wrappers


class _WeightedLoss(nn.Module):
    def __init__(self, loss_weight: float = 1.0, form: str = "official") -> None:
        super().__init__()
        _check_form(form, type(self).__name__)
        self.loss_weight = float(loss_weight)
        self.form = form

    def extra_repr(self) -> str:
        return f"loss_weight={self.loss_weight}, form={self.form!r}"


class SpatialConsistencyLoss(_WeightedLoss):
    """``loss_weight · spatial_consistency(enhanced, original, form)``; see :func:`spatial_consistency`.

    The four direction kernels are a non-persistent buffer (they follow ``.to(device)`` and are
    not in the state dict).

    Example:
        >>> y, x = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
        >>> SpatialConsistencyLoss()(y, x).shape
        torch.Size([])
    """

    kernel: Tensor

    def __init__(self, loss_weight: float = 1.0, form: str = "official", region_size: int = 4) -> None:
        super().__init__(loss_weight, form)
        self.region_size = int(region_size)
        self.register_buffer("kernel", spatial_direction_kernel(), persistent=False)

    def forward(self, enhanced: Tensor, original: Tensor) -> Tensor:
        return self.loss_weight * spatial_consistency(
            enhanced, original, self.form, region_size=self.region_size, kernel=self.kernel
        )


class ExposureControlLoss(_WeightedLoss):
    """``loss_weight · exposure_control(enhanced, patch_size, well_exposed, form)``; see :func:`exposure_control`.

    Example:
        >>> ExposureControlLoss(loss_weight=10.0)(torch.full((1, 3, 16, 16), 0.5))  # 10·(0.5 − 0.6)²
        tensor(0.1000)
    """

    def __init__(
        self,
        loss_weight: float = 1.0,
        form: str = "official",
        patch_size: int = 16,
        well_exposed: float = 0.6,
    ) -> None:
        super().__init__(loss_weight, form)
        self.patch_size = int(patch_size)
        self.well_exposed = float(well_exposed)

    def forward(self, enhanced: Tensor) -> Tensor:
        return self.loss_weight * exposure_control(enhanced, self.patch_size, self.well_exposed, self.form)


class ColorConstancyLoss(_WeightedLoss):
    """``loss_weight · color_constancy(enhanced, form)``; see :func:`color_constancy`.

    Example:
        >>> y = torch.zeros(1, 3, 2, 2); y[:, 0] = 1.0  # pure red
        >>> ColorConstancyLoss(loss_weight=5.0, form="paper")(y)  # 5·(1 + 1 + 0)
        tensor(10.)
    """

    def forward(self, enhanced: Tensor) -> Tensor:
        return self.loss_weight * color_constancy(enhanced, self.form)


class IlluminationSmoothnessLoss(_WeightedLoss):
    """``loss_weight · illumination_smoothness(curve_maps, form)``; see :func:`illumination_smoothness`.

    Example:
        >>> IlluminationSmoothnessLoss(200.0)(torch.zeros(1, 24, 8, 8))
        tensor(0.)
    """

    def forward(self, curve_maps: Tensor) -> Tensor:
        return self.loss_weight * illumination_smoothness(curve_maps, self.form)


class ZeroDCELoss(nn.Module):
    """The combined Zero-DCE objective ``w_spa·L_spa + w_exp·L_exp + w_col·L_col + w_tv·L_tvA``.

    Built from the four term modules (:class:`SpatialConsistencyLoss`, :class:`ExposureControlLoss`,
    :class:`ColorConstancyLoss`, :class:`IlluminationSmoothnessLoss`, kept with ``loss_weight`` 1 in
    :attr:`terms`); the weights live here, in :attr:`weights`, and nowhere else.

    Default weights, per ``variant`` (:meth:`official_weights`), and the source each follows:

    * ``"zero_dce"``: 1 / 10 / 5 / 200, the official ``Zero-DCE_code/lowlight_train.py``
      (:data:`OFFICIAL_WEIGHTS_ZERO_DCE`); the weights that trained the released model.
    * ``"zero_dce_pp"``: 1 / 10 / 5 / **1600**, the official ``Zero-DCE++/lowlight_train.py``
      (:data:`OFFICIAL_WEIGHTS_ZERO_DCE_PP`; 1600·3 curve maps = 200·24 maps of Zero-DCE).
    * The paper's Eq. 8 weights 1 / 1 / 0.5 / 20 ([CVPR] §4, [TPAMI] §5.1, :data:`PAPER_WEIGHTS`) are no
      variant: pass them as ``weights=PAPER_WEIGHTS`` with ``forms="paper"``.

    Args:
        weights: per-term weights, keys ``spa``, ``exp``, ``col``, ``tv``; a missing key or ``None`` keeps
            the variant's official value. A weight of 0 switches the term off: it is not computed and
            is absent from the returned dict.
        forms: ``"official"`` / ``"paper"`` for all terms, or a dict per term (missing → official).
        patch_size: L_exp region side (16).
        well_exposed: L_exp level E (0.6).
        variant: ``"zero_dce"`` (default) or ``"zero_dce_pp"``: whose official weights fill the gaps.

    ``forward(enhanced, original, curve_maps)`` (N×3×H×W, N×3×H×W, N×3n×H×W) returns a dict of
    the *unweighted* scalar terms that are switched on plus ``"total"`` (the weighted sum), float32.

    Example:
        >>> ZeroDCELoss(variant="zero_dce_pp", weights={"tv": None, "col": 0}).weights
        {'spa': 1.0, 'exp': 10.0, 'col': 0.0, 'tv': 1600.0}
        >>> x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> sorted(ZeroDCELoss()(x, x, torch.zeros(1, 24, 16, 16)))
        ['col', 'exp', 'spa', 'total', 'tv']
    """

    def __init__(
        self,
        weights: Mapping[str, float | None] | None = None,
        forms: Mapping[str, str] | str | None = None,
        patch_size: int = 16,
        well_exposed: float = 0.6,
        *,
        variant: str = "zero_dce",
    ) -> None:
        super().__init__()
        merged = self.resolve_weights(weights, variant)
        if forms is None or isinstance(forms, str):
            forms_d = dict.fromkeys(TERMS, forms or "official")
        else:
            forms_d = dict.fromkeys(TERMS, "official")
            for key, value in forms.items():
                if key not in TERMS:
                    raise ValueError(f"ZeroDCELoss(forms): unknown term {key!r}; expected keys from {TERMS}")
                forms_d[key] = value
        for key, value in forms_d.items():
            _check_form(value, f"ZeroDCELoss(forms[{key!r}])")
        self.variant = variant
        self.weights: dict[str, float] = merged
        self.forms: dict[str, str] = forms_d
        self.patch_size = int(patch_size)
        self.well_exposed = float(well_exposed)
        self.terms = nn.ModuleDict({
            "spa": SpatialConsistencyLoss(form=forms_d["spa"]),
            "exp": ExposureControlLoss(form=forms_d["exp"], patch_size=patch_size, well_exposed=well_exposed),
            "col": ColorConstancyLoss(form=forms_d["col"]),
            "tv": IlluminationSmoothnessLoss(form=forms_d["tv"]),
        })

    @classmethod
    def resolve_weights(
        cls, weights: Mapping[str, float | None] | None = None, variant: str = "zero_dce"
    ) -> dict[str, float]:
        """The weights a ``ZeroDCELoss(weights, variant=variant)`` uses: the variant's official ones, overridden by
        the entries of ``weights`` that are not ``None`` (validated: known terms, ≥ 0, not all 0).

        Example:
            >>> ZeroDCELoss.resolve_weights({"tv": None, "exp": 1}, variant="zero_dce_pp")
            {'spa': 1.0, 'exp': 1.0, 'col': 5.0, 'tv': 1600.0}
        """
        merged = cls.official_weights(variant)
        for key, value in (weights or {}).items():
            if key not in TERMS:
                raise ValueError(f"ZeroDCELoss(weights): unknown term {key!r}; expected keys from {TERMS}")
            if value is None:
                continue
            if float(value) < 0:
                raise ValueError(f"ZeroDCELoss(weights): weight of {key!r} must be ≥ 0, got {value}")
            merged[key] = float(value)
        if all(v == 0 for v in merged.values()):
            raise ValueError("ZeroDCELoss(weights): all weights are 0; at least one term must be on")
        return merged

    @staticmethod
    def official_weights(variant: str = "zero_dce") -> dict[str, float]:
        """A copy of the official weights of ``variant`` (``"zero_dce"``: 1/10/5/200, ``"zero_dce_pp"``:
        1/10/5/1600; sources in the class docstring).

        Example:
            >>> ZeroDCELoss.official_weights("zero_dce_pp")["tv"]
            1600.0
        """
        if variant not in _OFFICIAL_WEIGHTS:
            raise ValueError(f"ZeroDCELoss(variant): unknown variant {variant!r}; expected one of {VARIANTS}")
        return dict(_OFFICIAL_WEIGHTS[variant])

    def extra_repr(self) -> str:
        return (f"variant={self.variant!r}, weights={self.weights}, forms={self.forms}, "
                f"patch_size={self.patch_size}, well_exposed={self.well_exposed}")

    def forward(self, enhanced: Tensor, original: Tensor, curve_maps: Tensor) -> dict[str, Tensor]:
        inputs = {"spa": (enhanced, original), "exp": (enhanced,), "col": (enhanced,), "tv": (curve_maps,)}
        terms = {key: self.terms[key](*inputs[key]) for key in TERMS if self.weights[key]}
        total = sum((self.weights[k] * v for k, v in terms.items()), torch.zeros((), device=enhanced.device))
        terms["total"] = total
        return terms
