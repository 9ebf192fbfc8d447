"""DPED losses (Ignatov et al., ICCV 2017), exactly as the official code computes them.

SOURCE: aiff22/DPED @ ebb0131, ``train_model.py`` (loss graph), ``utils.py`` (``gauss_kernel``, ``blur``,
``_tensor_size``), ``vgg.py``; digest ``../shared/papers/dped.md`` §3. Notation: E enhanced, D DSLR target,
both N×3×H×W RGB in [0, 1]; b = N. All terms are computed in float32, also under autocast
(:func:`losses._common.fp32`).

Official generator objective: ``L_G = 10·L_content + 0.5·L_colour + 1·L_texture + 2000·L_TV``.
:class:`DPEDGeneratorLoss` is built from the term modules (:class:`ContentLoss`, :class:`ColorLoss`,
:class:`TextureLoss`, :class:`TVLoss`) and owns the weight presets (:meth:`DPEDGeneratorLoss.preset_weights`).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losses._common import check_tensor, fp32
from losses.vgg import VGG19Features

__all__ = [
    "ALTERNATIVE_WEIGHTS",
    "OFFICIAL_WEIGHTS",
    "PRESETS",
    "ColorLoss",
    "ContentLoss",
    "DPEDGeneratorLoss",
    "DiscriminatorLoss",
    "TVLoss",
    "TextureLoss",
    "color_loss",
    "content_loss",
    "discriminator_loss",
    "gauss_kernel_official",
    "gauss_kernel_official_1d",
    "texture_loss",
    "tv_loss",
]

OFFICIAL_WEIGHTS: dict[str, float] = {"content": 10.0, "color": 0.5, "texture": 1.0, "tv": 2000.0}
"""Official repo defaults (``utils.process_command_args``); they trained the released models (DPED #17)."""

ALTERNATIVE_WEIGHTS: dict[str, float] = {"content": 1.0, "color": 0.1, "texture": 0.4, "tv": 400.0}
"""Alternative set used in DPED #17 and repo i44p/DPED-pytorch; possibly the paper's — unverified."""

PRESETS: dict[str, dict[str, float]] = {"official": OFFICIAL_WEIGHTS, "alternative": ALTERNATIVE_WEIGHTS}
"""Weight preset name → weights (:class:`DPEDGeneratorLoss`'s ``preset``)."""

_PROB_CLIP = 1e-10


def _check_images(who: str, enhanced: Tensor, target: Tensor | None = None) -> None:
    check_tensor(enhanced, f"{who}(enhanced)", "N×C×H×W", ndim=4, what="images")
    if target is not None:
        check_tensor(target, f"{who}(target)", "N×C×H×W", ndim=4, what="images", same_as=("enhanced", enhanced))


def _check_logits(who: str, logits: Tensor) -> None:
    check_tensor(logits, f"{who}(logits)", "N×2", ndim=2, sizes={1: 2}, what="discriminator logits")


def _official_cdf_weights(kernlen: int, nsig: float) -> Tensor:
    """``utils.gauss_kernel``'s 1-D weights k1 (float64): differences of the standard normal CDF at ``kernlen + 1``
    edges from ``−nsig − interval/2`` to ``nsig + interval/2``, ``interval = (2·nsig + 1)/kernlen``."""
    interval = (2 * nsig + 1.0) / kernlen
    edges = torch.linspace(-nsig - interval / 2.0, nsig + interval / 2.0, kernlen + 1, dtype=torch.float64)
    cdf = 0.5 * (1.0 + torch.erf(edges / math.sqrt(2.0)))
    return cdf[1:] - cdf[:-1]


def gauss_kernel_official_1d(kernlen: int = 21, nsig: float = 3.0) -> Tensor:
    """The 1-D factor ``g`` of :func:`gauss_kernel_official`: ``gauss_kernel_official() == outer(g, g)`` (float32).

    ``sqrt(outer(k1, k1)) = outer(sqrt(k1), sqrt(k1))`` and its sum is ``(Σ sqrt(k1))²``, so the official 2-D
    kernel is exactly separable with ``g = sqrt(k1) / Σ sqrt(k1)`` (k1 = the 1-D CDF differences). Two 1-D passes
    (2·kernlen multiplies per pixel instead of kernlen²) give the same blur.

    Example:
        >>> g = gauss_kernel_official_1d()
        >>> g.shape, round(float(g.sum()), 6), bool(torch.allclose(torch.outer(g, g), gauss_kernel_official()))
        (torch.Size([21]), 1.0, True)
    """
    g = torch.sqrt(_official_cdf_weights(kernlen, nsig))
    return (g / g.sum()).float()


def gauss_kernel_official(kernlen: int = 21, nsig: float = 3.0) -> Tensor:
    """The official ``utils.gauss_kernel(21, 3)`` blur kernel, reproduced literally (float32, kernlen×kernlen).

    ``interval = (2·nsig + 1)/kernlen``; edges = ``kernlen + 1`` points from ``−nsig − interval/2`` to
    ``nsig + interval/2``; 1-D weights = differences of the standard normal CDF at the edges; 2-D kernel =
    **sqrt** of their outer product, normalised to sum 1. The sqrt makes it a Gaussian of effective σ ≈ 4.34 px
    (not 3): kornia/torchvision ``gaussian_blur(21, σ=3)`` is a different kernel. It is separable
    (:func:`gauss_kernel_official_1d`); the losses blur with the 1-D factor.

    Example:
        >>> k = gauss_kernel_official()
        >>> k.shape, round(float(k.sum()), 6), bool(k[10, 10] == k.max())
        (torch.Size([21, 21]), 1.0, True)
    """
    k1 = _official_cdf_weights(kernlen, nsig)
    k2 = torch.sqrt(torch.outer(k1, k1))
    return (k2 / k2.sum()).float()


def _blur(x: Tensor, kernel: Tensor) -> Tensor:
    """``utils.blur``: depthwise conv with the same kernel per channel, TF 'SAME' zero padding.

    ``kernel``: a k×k kernel (one 2-D pass), or a length-k vector ``g`` for the separable kernel ``outer(g, g)``
    (a horizontal then a vertical pass, each zero-padded: with zero padding this equals the 2-D pass exactly).
    """
    c = x.shape[1]
    k = kernel.to(x)
    if k.ndim == 1:
        r = k.numel() // 2
        x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, k.numel()), padding=(0, r), groups=c)
        return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, k.numel(), 1), padding=(r, 0), groups=c)
    k = k.expand(c, 1, *k.shape[-2:])
    return F.conv2d(x, k, padding=(kernel.shape[-2] // 2, kernel.shape[-1] // 2), groups=c)


@fp32()
def color_loss(enhanced: Tensor, target: Tensor, kernel: Tensor | None = None) -> Tensor:
    """Colour loss: ``Σ_{n,c,h,w} (blur(D) − blur(E))² / (2·b)`` — a per-image **half sum**, not a mean.

    Args:
        enhanced, target: N×C×H×W in [0, 1].
        kernel: k×k blur kernel, or a length-k vector ``g`` for the separable kernel ``outer(g, g)`` (default
            :func:`gauss_kernel_official_1d` (21, 3), i.e. the official 2-D kernel applied in two 1-D passes).

    Returns:
        scalar ≥ 0 (float32).

    The blur is linear, so ``blur(D) − blur(E)`` is computed as ``blur(D − E)`` (one blur instead of two).

    SOURCE: ``train_model.py``: ``loss_color = reduce_sum(pow(dslr_blur − enhanced_blur, 2)) / (2·batch_size)``.

    Example:
        >>> x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
        >>> color_loss(x, x)
        tensor(0.)
    """
    _check_images("color_loss", enhanced, target)
    kernel = gauss_kernel_official_1d() if kernel is None else kernel
    diff = _blur(target - enhanced, kernel.float())
    return diff.pow(2).sum() / (2 * enhanced.shape[0])


@fp32()
def texture_loss(logits: Tensor) -> Tensor:
    """Generator texture (adversarial) loss: ``Σ_batch log(clip(softmax(logits)[:, 1], 1e−10, 1))``.

    The discriminator sees only enhanced patches (target [0, 1]: class 1 = enhanced), and ``L_tex = −L_D``, so
    G minimises the log-probability that D calls its output "enhanced" (saturating minimax form). **Summed over
    the batch**; negative by construction (≈ b·ln 0.5 when D is at chance — DPED #8).

    Args:
        logits: N×2 discriminator logits on the enhanced (grayscale) patches.

    Returns:
        scalar ≤ 0 (float32).

    SOURCE: ``train_model.py``: ``loss_texture = −loss_discrim`` with adv = 0.

    Example:
        >>> texture_loss(torch.zeros(2, 2))  # D at chance: 2·ln 0.5
        tensor(-1.3863)
    """
    _check_logits("texture_loss", logits)
    p = torch.softmax(logits, dim=1)
    return torch.log(p[:, 1].clamp(_PROB_CLIP, 1.0)).sum()


@fp32()
def discriminator_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Discriminator loss: ``−Σ_batch Σ_classes t · log(clip(softmax(logits), 1e−10, 1))``, summed over the batch.

    Args:
        logits: N×2 discriminator logits.
        targets: N×2 target distributions ``[adv, 1 − adv]``, or N values ``adv`` (1 = DSLR, 0 = enhanced).

    Returns:
        scalar ≥ 0 (float32).

    SOURCE: ``train_model.py``: ``loss_discrim = −reduce_sum(discrim_target · log(clip_by_value(pred, 1e−10, 1)))``.

    Example:
        >>> discriminator_loss(torch.zeros(2, 2), torch.tensor([1.0, 0.0]))  # D at chance: −2·ln 0.5
        tensor(1.3863)
    """
    _check_logits("discriminator_loss", logits)
    t = targets
    if t.ndim == 1:
        t = torch.stack([t, 1.0 - t], dim=1)
    if t.shape != logits.shape:
        raise ValueError(
            f"discriminator_loss(targets): must be N or N×2 matching logits {tuple(logits.shape)}, "
            f"got {tuple(targets.shape)}"
        )
    p = torch.softmax(logits, dim=1)
    return -(t * torch.log(p.clamp(_PROB_CLIP, 1.0))).sum()


@fp32()
def content_loss(enhanced: Tensor, target: Tensor, vgg: nn.Module) -> Tensor:
    """Content loss: mean over batch and feature elements of ``(φ(E) − φ(D))²``, φ = VGG-19 relu5_4.

    ``vgg`` takes [0, 1] RGB and applies its own input normalisation: for the official MatConvNet weights
    (:class:`losses.vgg.VGG19Features`, ``"caffe"``) that is ``255·x − (123.68, 116.779, 103.939)``, no std.

    Args:
        enhanced, target: N×3×H×W in [0, 1].
        vgg: frozen feature extractor (N×3×H×W → N×C×h×w).

    Returns:
        scalar ≥ 0 (float32).

    SOURCE: ``train_model.py``: ``2·l2_loss(φ(E) − φ(D)) / (_tensor_size(φ(D))·batch_size)``.

    Example:
        >>> x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
        >>> content_loss(x, torch.zeros_like(x), nn.Identity()) == x.square().mean()  # φ = identity: pixel MSE
        tensor(True)
    """
    _check_images("content_loss", enhanced, target)
    fe = vgg(enhanced)
    with torch.no_grad():
        fd = vgg(target)
    return (fe.float() - fd.float()).pow(2).mean()


@fp32()
def tv_loss(enhanced: Tensor) -> Tensor:
    """Total variation (squared form): ``mean((E[..., :, 1:] − E[..., :, :−1])²) + mean((E[..., 1:, :] − E[..., :−1, :])²)``.

    Args:
        enhanced: N×C×H×W (any range).

    Returns:
        scalar ≥ 0 (float32), 0 for a constant image.

    SOURCE: ``train_model.py``: ``2·(x_tv/tv_x_size + y_tv/tv_y_size)/batch_size`` with TF ``l2_loss = ½Σ``.

    Example:
        >>> tv_loss(torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]]))  # dx² = 1 everywhere, dy = 0
        tensor(1.)
    """
    _check_images("tv_loss", enhanced)
    dx = enhanced[..., :, 1:] - enhanced[..., :, :-1]
    dy = enhanced[..., 1:, :] - enhanced[..., :-1, :]
    return dx.pow(2).mean() + dy.pow(2).mean()


class _Weighted(nn.Module):
    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = loss_weight


class ColorLoss(_Weighted):
    """``loss_weight · color_loss(E, D)``; the official 21×21 kernel, as its separable 1-D factor
    (:func:`gauss_kernel_official_1d`), is a (non-persistent) buffer.

    Example:
        >>> x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
        >>> ColorLoss(loss_weight=0.5)(x, x)
        tensor(0.)
    """

    def __init__(self, loss_weight: float = 1.0, kernlen: int = 21, nsig: float = 3.0) -> None:
        super().__init__(loss_weight)
        self.register_buffer("kernel", gauss_kernel_official_1d(kernlen, nsig), persistent=False)

    def forward(self, enhanced: Tensor, target: Tensor) -> Tensor:
        return self.loss_weight * color_loss(enhanced, target, self.kernel)


class TextureLoss(_Weighted):
    """``loss_weight · texture_loss(logits)`` (logits of D on enhanced patches).

    Example:
        >>> TextureLoss()(torch.zeros(1, 2))  # ln 0.5
        tensor(-0.6931)
    """

    def forward(self, logits: Tensor) -> Tensor:
        return self.loss_weight * texture_loss(logits)


class DiscriminatorLoss(_Weighted):
    """``loss_weight · discriminator_loss(logits, targets)``.

    Example:
        >>> DiscriminatorLoss()(torch.zeros(1, 2), torch.ones(1))  # −ln 0.5
        tensor(0.6931)
    """

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return self.loss_weight * discriminator_loss(logits, targets)


class TVLoss(_Weighted):
    """``loss_weight · tv_loss(E)``.

    Example:
        >>> TVLoss(loss_weight=2000.0)(torch.full((1, 3, 4, 4), 0.5))
        tensor(0.)
    """

    def forward(self, enhanced: Tensor) -> Tensor:
        return self.loss_weight * tv_loss(enhanced)


class ContentLoss(_Weighted):
    """``loss_weight · content_loss(E, D, vgg)``; builds :class:`VGG19Features` (relu5_4) when none is given.

    Example:
        >>> x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
        >>> ContentLoss(vgg=nn.Identity())(x, x)
        tensor(0.)
    """

    def __init__(
        self, loss_weight: float = 1.0, vgg: nn.Module | None = None, vgg_weights: str | None = None
    ) -> None:
        super().__init__(loss_weight)
        self.vgg = vgg if vgg is not None else VGG19Features("relu5_4", weights=vgg_weights)

    def forward(self, enhanced: Tensor, target: Tensor) -> Tensor:
        return self.loss_weight * content_loss(enhanced, target, self.vgg)


class DPEDGeneratorLoss(nn.Module):
    """Weighted DPED generator objective, built from the term modules; returns every term and the total.

    The terms are :class:`ContentLoss`, :class:`ColorLoss`, :class:`TextureLoss` and :class:`TVLoss`, each with
    ``loss_weight`` 1 (the returned terms are unweighted); the weights live here, in :attr:`weights`.

    Weight presets (:meth:`preset_weights`, :data:`PRESETS`) and their sources:

    * ``"official"``: content 10, color 0.5, texture 1, tv 2000 (:data:`OFFICIAL_WEIGHTS`): the defaults of the
      official repo (aiff22/DPED ``utils.process_command_args``), which trained the released models (DPED #17).
    * ``"alternative"``: 1 / 0.1 / 0.4 / 400 (:data:`ALTERNATIVE_WEIGHTS`): the set of DPED #17 and repo
      i44p/DPED-pytorch, possibly the paper's — unverified.

    Args:
        weights: per-term overrides of the preset (keys ``content``, ``color``, ``texture``, ``tv``); a missing key
            or ``None`` keeps the preset's value. A weight of 0 skips the term entirely (content 0 needs no VGG;
            texture 0 needs no logits).
        preset: ``"official"`` or ``"alternative"``.
        vgg: content feature extractor; default :class:`VGG19Features` (relu5_4, local weights, see
            :mod:`losses.vgg`), built only if the content weight is non-zero. It is this module's child ``vgg``
            (state-dict keys ``vgg.*``), shared with the content term.
        vgg_weights: weight file for that default extractor.

    Forward:
        ``(enhanced N×3×H×W, target N×3×H×W, disc_logits N×2 | None)`` → dict with the unweighted terms
        ``content``, ``color``, ``texture``, ``tv`` (those with weight ≠ 0) and ``total`` = Σ weight·term
        (float32 scalars).

    Example:
        >>> loss = DPEDGeneratorLoss(preset="alternative", weights={"content": 0, "tv": None})
        >>> loss.weights
        {'content': 0, 'color': 0.1, 'texture': 0.4, 'tv': 400.0}
        >>> x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
        >>> sorted(loss(x, x, torch.zeros(1, 2)))
        ['color', 'texture', 'total', 'tv']
    """

    TERMS = ("content", "color", "texture", "tv")

    def __init__(
        self,
        weights: Mapping[str, float | None] | None = None,
        preset: Literal["official", "alternative"] = "official",
        vgg: nn.Module | None = None,
        vgg_weights: str | None = None,
    ) -> None:
        super().__init__()
        self.weights: dict[str, float] = self.resolve_weights(weights, preset)
        self.preset = preset
        if self.weights["content"] != 0 and vgg is None:
            vgg = VGG19Features("relu5_4", weights=vgg_weights)
        self.vgg = vgg if self.weights["content"] != 0 else None
        self.terms = nn.ModuleDict({"color": ColorLoss(), "texture": TextureLoss(), "tv": TVLoss()})
        # The content term uses ``self.vgg``, which must stay registered once, as ``vgg`` (the prefix checkpoints
        # and the DPED LightningModule rely on); so the ContentLoss is kept outside the module tree. It holds no
        # tensor of its own: moving this module moves the shared extractor in place.
        object.__setattr__(self, "_content", ContentLoss(vgg=self.vgg) if self.vgg is not None else None)

    @property
    def kernel(self) -> Tensor:
        """The colour term's separable blur factor (21 taps; a buffer of :attr:`terms` ``["color"]``)."""
        return self.terms["color"].kernel

    @classmethod
    def resolve_weights(
        cls, weights: Mapping[str, float | None] | None = None, preset: str = "official"
    ) -> dict[str, float]:
        """The weights a ``DPEDGeneratorLoss(weights, preset)`` uses, without building it (nor its VGG): the preset's,
        overridden by the entries of ``weights`` that are not ``None``.

        Example:
            >>> DPEDGeneratorLoss.resolve_weights({"content": 0.0, "tv": None})
            {'content': 0.0, 'color': 0.5, 'texture': 1.0, 'tv': 2000.0}
        """
        unknown = set(weights or {}) - set(cls.TERMS)
        if unknown:
            raise ValueError(f"unknown DPED loss term(s) {sorted(unknown)}; expected {cls.TERMS}")
        overrides = {k: v for k, v in (weights or {}).items() if v is not None}
        return {**cls.preset_weights(preset), **overrides}

    @staticmethod
    def preset_weights(preset: str = "official") -> dict[str, float]:
        """A copy of the weights of ``preset`` (``"official"`` | ``"alternative"``; sources in the class docstring).

        Example:
            >>> DPEDGeneratorLoss.preset_weights("official")
            {'content': 10.0, 'color': 0.5, 'texture': 1.0, 'tv': 2000.0}
        """
        if preset not in PRESETS:
            raise ValueError(f"preset must be 'official' or 'alternative', got {preset!r}")
        return dict(PRESETS[preset])

    def extra_repr(self) -> str:
        return f"preset={self.preset!r}, weights={self.weights}"

    def forward(
        self, enhanced: Tensor, target: Tensor, disc_logits: Tensor | None = None, skip: Collection[str] = ()
    ) -> dict[str, Tensor]:
        """``skip``: terms left out of this call (e.g. ``("texture",)`` during a texture warm-up: no logits needed)."""
        w = {k: (0.0 if k in skip else v) for k, v in self.weights.items()}
        if w["texture"] != 0 and disc_logits is None:
            raise ValueError("texture weight ≠ 0: pass the discriminator logits on the enhanced patches")
        modules: dict[str, nn.Module | None] = {"content": self._content, **self.terms}
        inputs = {"content": (enhanced, target), "color": (enhanced, target), "texture": (disc_logits,),
                  "tv": (enhanced,)}
        terms: dict[str, Tensor] = {}
        for name in self.TERMS:
            if w[name] != 0:
                module = modules[name]
                assert module is not None  # content ≠ 0 ⇒ a VGG was built
                terms[name] = module(*inputs[name])
        total = enhanced.new_zeros((), dtype=torch.float32)
        for name, value in terms.items():
            total = total + w[name] * value
        terms["total"] = total
        return terms
