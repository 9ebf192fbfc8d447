"""Zero-DCE (CVPR 2020) and Zero-DCE++ (TPAMI 2021): curve-estimation networks and the LightningModule.

DCE-Net predicts, per pixel and per RGB channel, the parameter A of a quadratic curve that is
applied iteratively to the low-light input. Zero-DCE++ is the same network with
depthwise-separable convolutions, one curve map shared by all iterations, and an optional
downscaled input (``scale_factor``, 12 at test time).

Sources: official code Li-Chongyi/Zero-DCE ``Zero-DCE_code/model.py`` (class ``enhance_net_nopool``)
and Li-Chongyi/Zero-DCE_extension ``Zero-DCE++/model.py`` (classes ``CSDN_Tem``,
``enhance_net_nopool(scale_factor)``). Attribute names match the official state dicts, so the
released ``Epoch99.pth`` files load without renaming (:func:`load_official_weights`).

**Curve sign.** Paper [CVPR Eq. 1–3]: ``LE(x) = x + α·x·(1 − x)``. Official code:
``x ← x + A·(x² − x)``, i.e. ``α = −A``. The released weights brighten through negative A, so the
default is the code sign; ``sign="paper"`` exists for readability (equivalent when training from
scratch; with the official weights it darkens).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torchmetrics import MetricCollection

from lightning_modules.checkpoints import checkpoint_state
from lightning_modules.image_grid import finish_samples, log_grid, save_samples
from lightning_modules.inference import FastInference
from lightning_modules.memory import check_memory
from lightning_modules.per_image import PerImageRows
from lightning_modules.tiling import DEFAULT_TILE_SIZE, dce_enhance, flush_subnormal_, use_tiles
from losses.zero_dce import ZeroDCELoss
from metrics.full_reference import MAE, PSNR, SSIM, VARIANTS
from metrics.no_reference import LOE, NIQE, ColourCast, MeanBrightness

__all__ = [
    "DCENet",
    "DCENetPP",
    "DepthwiseSeparableConv",
    "apply_curves",
    "crop_to_multiple",
    "load_official_weights",
]

SIGNS: tuple[str, ...] = ("code", "paper")
INITS: tuple[str, ...] = ("official", "default")

#: Where the released weights come from (for error messages).
OFFICIAL_WEIGHT_FILES: dict[str, str] = {
    "zero_dce": "Zero-DCE_code/snapshots/Epoch99.pth of github.com/Li-Chongyi/Zero-DCE "
    "(commit e0f4adc), 320,017 bytes",
    "zero_dce_pp": "Zero-DCE++/snapshots_Zero_DCE++/Epoch99.pth of github.com/Li-Chongyi/Zero-DCE_extension "
    "(commit 09f202b), 52,395 bytes",
}


def apply_curves(x: Tensor, curve_maps: Tensor, n_iterations: int, sign: str = "code") -> Tensor:
    r"""Apply the light-enhancement curve ``n_iterations`` times.

    * ``sign="code"`` (official code, default): :math:`x \leftarrow x + A_n (x^2 − x)`.
    * ``sign="paper"`` ([CVPR] Eq. 3): :math:`x \leftarrow x + A_n x (1 − x)`.

    With A ∈ [−1, 1] both keep [0, 1] inside [0, 1]; A = 0 is the identity.

    Args:
        x: N×3×H×W image in [0, 1].
        curve_maps: N×3n×H×W (map ``A_n`` = channels ``3(n−1) … 3n−1``, in iteration order) or
            N×3×H×W (one map shared by all iterations, Zero-DCE++).
        n_iterations: number of curve applications n.
        sign: ``"code"`` or ``"paper"``.

    Returns:
        the enhanced N×3×H×W image (same dtype as ``x``).
    """
    if sign not in SIGNS:
        raise ValueError(f"apply_curves: unknown sign {sign!r}; expected one of {SIGNS}")
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"apply_curves(x): expected an RGB batch N×3×H×W, got shape {tuple(x.shape)}")
    if n_iterations < 1:
        raise ValueError(f"apply_curves: n_iterations must be ≥ 1, got {n_iterations}")
    c = curve_maps.shape[1] if curve_maps.ndim == 4 else -1
    if curve_maps.ndim != 4 or c not in (3, 3 * n_iterations):
        raise ValueError(
            f"apply_curves(curve_maps): expected N×{3 * n_iterations}×H×W (one map per iteration) or "
            f"N×3×H×W (shared map) for n_iterations={n_iterations}, got shape {tuple(curve_maps.shape)}"
        )
    if curve_maps.shape[-2:] != x.shape[-2:] or curve_maps.shape[0] not in (1, x.shape[0]):
        raise ValueError(
            f"apply_curves: curve_maps {tuple(curve_maps.shape)} do not match the image {tuple(x.shape)} "
            "(same batch size and H×W expected)"
        )
    maps = curve_maps.split(3, dim=1) if c != 3 else (curve_maps,) * n_iterations
    for a in maps:  # iterations are sequential by definition; each step is fully vectorised
        if sign == "code":
            x = x + a * (torch.pow(x, 2) - x)  # exactly the official expression
        else:
            x = x + a * x * (1 - x)
    return x


def crop_to_multiple(x: Tensor, s: int | float) -> Tensor:
    """Crop the last two dimensions to multiples of ``s``, keeping the top-left corner.

    The official Zero-DCE++ test crop (``Zero-DCE++/lowlight_test.py``):
    ``x[0:(H//s)*s, 0:(W//s)*s]``; 326×326 → 324×324 for s = 12.
    """
    if float(s) != int(s) or int(s) < 1:
        raise ValueError(f"crop_to_multiple: s must be a positive integer, got {s!r}")
    s = int(s)
    if x.ndim < 2:
        raise ValueError(f"crop_to_multiple(x): expected a tensor …×H×W, got shape {tuple(x.shape)}")
    h, w = x.shape[-2] // s * s, x.shape[-1] // s * s
    if h == 0 or w == 0:
        raise ValueError(f"crop_to_multiple: image {x.shape[-2]}×{x.shape[-1]} is smaller than s={s}")
    return x[..., :h, :w]


class DepthwiseSeparableConv(nn.Module):
    """Depthwise 3×3 (groups = in, padding 1, bias) then pointwise 1×1 (bias): official ``CSDN_Tem``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.depth_conv = nn.Conv2d(in_channels, in_channels, 3, 1, 1, groups=in_channels)
        self.point_conv = nn.Conv2d(in_channels, out_channels, 1, 1, 0)

    def forward(self, x: Tensor) -> Tensor:
        return self.point_conv(self.depth_conv(x))


class DCENet(nn.Module):
    """DCE-Net: a plain CNN with symmetric skip concatenations that outputs curve maps.

    Official 7-layer layout (``Zero-DCE_code/model.py``), all 3×3 convs, stride 1, padding 1,
    bias, ReLU except the last (tanh)::

        x1 = conv1(x); x2 = conv2(x1); x3 = conv3(x2); x4 = conv4(x3)
        x5 = conv5([x3, x4]); x6 = conv6([x2, x5]); A = tanh(conv7([x1, x6]))

    Other layer counts (ablation l-f-n of [SUPP Table 1]): how the paper arranged the skips of its
    3-layer net is **not found**. We use the symmetric generalisation for any odd ``L = 2m + 1 ≥ 3``:
    layers 1 … m+1 are sequential, layer k > m+1 takes ``cat(x_{L−k+1}, x_{k−1})``. L = 7 gives
    exactly the official net; L = 3 gives ``A = tanh(conv3([x1, x2]))``; L = 5 gives
    ``x4 = conv4([x2, x3]), A = tanh(conv5([x1, x4]))``. Even counts are rejected.

    Args:
        n_layers: number of conv layers (odd, ≥ 3; 7 official).
        n_filters: feature width (32 official).
        n_iterations: curve iterations n (8 official); the last layer outputs 3n maps (3 if shared).
        depthwise_separable: Zero-DCE++ convs (depthwise 3×3 + pointwise 1×1, names
            ``e_conv{i}.depth_conv`` / ``.point_conv``).
        shared_map: Zero-DCE++ single 3-channel map reused by every iteration ([TPAMI Eq. 9]).
        scale_factor: s ≠ 1 runs the net on the input downscaled by 1/s
            (``F.interpolate(scale_factor=1/s, mode="bilinear", align_corners=False)``) and upsamples
            the maps by s (bilinear, ``align_corners=True``, as ``nn.UpsamplingBilinear2d``); the curve
            runs at full resolution. H and W must survive the round trip (use :func:`crop_to_multiple`).
        sign: curve sign, ``"code"`` (default, official weights) or ``"paper"``.
        init: ``"official"`` = conv weights N(0, 0.02), biases PyTorch default (Zero-DCE
            ``weights_init``); ``"default"`` = PyTorch default (Zero-DCE++, whose init call is commented out).

    ``forward(x)`` takes N×3×H×W in [0, 1] and returns ``(enhanced, curve_maps)``: the image after n
    iterations and the maps at full resolution (N×3n×H×W, or N×3×H×W when shared).
    """

    def __init__(
        self,
        n_layers: int = 7,
        n_filters: int = 32,
        n_iterations: int = 8,
        depthwise_separable: bool = False,
        shared_map: bool = False,
        scale_factor: float = 1.0,
        sign: str = "code",
        init: str = "official",
    ) -> None:
        super().__init__()
        if n_layers < 3 or n_layers % 2 == 0:
            raise ValueError(f"DCENet: n_layers must be odd and ≥ 3 (7 official), got {n_layers}")
        if n_filters < 1 or n_iterations < 1:
            raise ValueError(
                f"DCENet: n_filters and n_iterations must be ≥ 1, got {n_filters}, {n_iterations}"
            )
        if not scale_factor > 0:
            raise ValueError(f"DCENet: scale_factor must be > 0, got {scale_factor}")
        if sign not in SIGNS:
            raise ValueError(f"DCENet: unknown sign {sign!r}; expected one of {SIGNS}")
        if init not in INITS:
            raise ValueError(f"DCENet: unknown init {init!r}; expected one of {INITS}")
        self.n_layers = n_layers
        self.n_filters = n_filters
        self.n_iterations = n_iterations
        self.depthwise_separable = depthwise_separable
        self.shared_map = shared_map
        self.scale_factor = float(scale_factor)
        self.sign = sign
        out_maps = 3 if shared_map else 3 * n_iterations
        m = n_layers // 2
        for i in range(1, n_layers + 1):
            c_in = 3 if i == 1 else (n_filters if i <= m + 1 else 2 * n_filters)
            c_out = out_maps if i == n_layers else n_filters
            conv = (
                DepthwiseSeparableConv(c_in, c_out)
                if depthwise_separable
                else nn.Conv2d(c_in, c_out, 3, 1, 1)
            )
            setattr(self, f"e_conv{i}", conv)
        if init == "official":
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.normal_(module.weight, 0.0, 0.02)

    def extra_repr(self) -> str:
        return (
            f"n_layers={self.n_layers}, n_filters={self.n_filters}, n_iterations={self.n_iterations}, "
            f"shared_map={self.shared_map}, scale_factor={self.scale_factor}, sign={self.sign!r}"
        )

    def curve_maps(self, x: Tensor) -> Tensor:
        """Curve maps A in [−1, 1] at the resolution of ``x`` (N×3n×H×W or N×3×H×W)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(
                f"{type(self).__name__}: expected an RGB batch N×3×H×W, got shape {tuple(x.shape)}"
            )
        s = self.scale_factor
        h = x if s == 1 else F.interpolate(x, scale_factor=1 / s, mode="bilinear", align_corners=False)
        if h.shape[-2] == 0 or h.shape[-1] == 0:
            raise ValueError(
                f"{type(self).__name__}: input {x.shape[-2]}×{x.shape[-1]} is too small for scale_factor={s}"
            )
        L, m = self.n_layers, self.n_layers // 2
        feats: list[Tensor] = []
        for i in range(1, m + 2):
            # in place on the conv output (not needed by the conv's backward): one full-resolution
            # buffer less per layer; ReLU's backward uses its output, which this keeps
            h = F.relu(getattr(self, f"e_conv{i}")(h), inplace=True)
            feats.append(h)
        for k in range(m + 2, L + 1):
            out = getattr(self, f"e_conv{k}")(torch.cat([feats[L - k], feats[k - 2]], 1))
            h = torch.tanh(out) if k == L else F.relu(out, inplace=True)
            feats.append(h)
        if s != 1:
            h = F.interpolate(h, scale_factor=s, mode="bilinear", align_corners=True)
            if h.shape[-2:] != x.shape[-2:]:
                raise ValueError(
                    f"{type(self).__name__}: input {x.shape[-2]}×{x.shape[-1]} comes back as "
                    f"{h.shape[-2]}×{h.shape[-1]} after the 1/{s:g} down / ×{s:g} up round trip; crop the "
                    f"input to multiples of the scale factor first (crop_to_multiple(x, {s:g}))"
                )
        return h

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        maps = self.curve_maps(x)
        return apply_curves(x, maps, self.n_iterations, self.sign), maps


class DCENetPP(DCENet):
    """Zero-DCE++ network: :class:`DCENet` with depthwise-separable convs, one shared 3-channel map
    and PyTorch default init (``Zero-DCE++/model.py``). 10,561 parameters.

    ``scale_factor`` is 1 for training (official ``lowlight_train.py``) and 12 at test
    (``lowlight_test.py``, with the input cropped by :func:`crop_to_multiple` first).
    """

    def __init__(
        self,
        n_layers: int = 7,
        n_filters: int = 32,
        n_iterations: int = 8,
        depthwise_separable: bool = True,
        shared_map: bool = True,
        scale_factor: float = 1.0,
        sign: str = "code",
        init: str = "default",
    ) -> None:
        super().__init__(
            n_layers, n_filters, n_iterations, depthwise_separable, shared_map, scale_factor, sign, init
        )


def load_official_weights(path: str | Path, variant: str = "zero_dce", scale_factor: float = 1.0) -> DCENet:
    """Build the official network and load the released ``Epoch99.pth`` into it (strict).

    Args:
        path: the ``.pth`` file (a state dict; tensors saved on CUDA are mapped to the CPU).
        variant: ``"zero_dce"`` (:class:`DCENet`, 79,416 parameters) or ``"zero_dce_pp"``
            (:class:`DCENetPP`, 10,561 parameters).
        scale_factor: downscale factor of the returned net (official Zero-DCE++ test: 12, with
            :func:`crop_to_multiple`; training: 1).

    Raises:
        FileNotFoundError: ``path`` does not exist (the message says which official file is expected).
        ValueError: unknown variant, or the file's keys/shapes do not fit the variant.
    """
    if variant not in OFFICIAL_WEIGHT_FILES:
        raise ValueError(
            f"load_official_weights: unknown variant {variant!r}; expected one of {sorted(OFFICIAL_WEIGHT_FILES)}"
        )
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: official {variant} weights not found (expected the file {OFFICIAL_WEIGHT_FILES[variant]})"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(
            f"{path}: expected a state dict of tensors (official {variant} Epoch99.pth), got {type(state).__name__}"
        )
    net: DCENet = (
        DCENet(scale_factor=scale_factor) if variant == "zero_dce" else DCENetPP(scale_factor=scale_factor)
    )
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    bad_shapes = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or bad_shapes:
        other = "zero_dce_pp" if variant == "zero_dce" else "zero_dce"
        raise ValueError(
            f"{path}: does not fit the official {variant} network (is it the {other} file?); "
            f"missing keys {missing[:6]}{'…' if len(missing) > 6 else ''}, "
            f"unexpected keys {unexpected[:6]}{'…' if len(unexpected) > 6 else ''}, "
            f"shape mismatches {bad_shapes[:6]}"
        )
    net.load_state_dict(state, strict=True)
    return net.eval()


# ---- LightningModule ----


@dataclass
class ZeroDCELossWeights:
    """Weights of the four zero-reference losses; 0 switches a term off (``--model.init_args.loss_weights.tv 0``).

    Defaults: the official code (``Zero-DCE_code/lowlight_train.py``: 1 / 10 / 5 / 200). ``tv=None``
    means the official value of the variant: 200 for Zero-DCE, 1600 for Zero-DCE++
    (``Zero-DCE++/lowlight_train.py``). The paper's Eq. 8 weights are 1 / 1 / 0.5 / 20
    (``experiments/zero_dce/ablations/paper_losses.yaml``).
    """

    spa: float = 1.0
    exp: float = 10.0
    col: float = 5.0
    tv: float | None = None


class ZeroDCE(FastInference, LightningModule):
    """Zero-DCE / Zero-DCE++: zero-reference low-light enhancement by iterated pixel-wise curves.

    Training uses only low-light (and over-exposed) images and the four losses of
    :class:`losses.zero_dce.ZeroDCELoss`; validation and test score the enhanced image against a
    well-exposed label (per-image PSNR / SSIM / MAE, :mod:`metrics.full_reference`).

    Args:
        variant: ``"zero_dce"`` (DCE-Net, 79,416 parameters) or ``"zero_dce_pp"`` (depthwise-separable
            convs, one shared map: 10,561 parameters).
        n_layers, n_filters, n_iterations: the l-f-n network-size ablation ([SUPP Table 1]); 7-32-8 official.
        depthwise_separable, shared_map: Zero-DCE++ components ([TPAMI Table 4]); ``None`` = the variant's.
        scale_factor: downscale factor of the curve-estimation net in training (official: 1).
        eval_scale_factor: the same at validation/test/predict (official Zero-DCE++ test: 12; ``None`` =
            ``scale_factor``). Validation, test and predict crop an image to a multiple of it from the
            top-left corner, as the official Zero-DCE++ test does (the label is cropped the same way);
            :meth:`enhance` can pad instead.
        sign: curve sign, ``"code"`` (official weights) or ``"paper"``.
        loss_weights: :class:`ZeroDCELossWeights`.
        loss_form: ``"official"`` (default) or ``"paper"`` forms of every loss term (digest §3).
        exposure_level: E of the exposure loss (0.6; [TPAMI Table 2] ablates 0.4–0.7).
        lr, weight_decay: Adam, official 1e-4 / 1e-4 (global grad-norm clipping 0.1 is a Trainer
            argument: ``gradient_clip_val`` in the configs).
        pretrained: optional weights to start from: an official ``Epoch99.pth`` (loaded with the
            official key layout) or a Darkroom ``.ckpt``.
        log_images: how many validation samples go into the before/after grid.
        metric_variants: extra test columns for conventions the field mixes (:data:`metrics.full_reference.VARIANTS`):
            ``gtmean`` / ``gtmean_llflow`` (output scaled to the label's mean brightness, LLFlow-style tables)
            and ``y`` (PSNR/SSIM on luma) add ``psnr_<variant>`` and ``ssim_<variant>``.

    Test data with labels (SICE Part2) gives PSNR / SSIM / MAE of the output and of the input
    (``input_*``); unpaired photos (no ``Label/``) give no-reference metrics of both
    (:mod:`metrics.no_reference`: ``niqe``, ``brightness``, ``colour_cast``, and ``loe`` of the output
    against the input). Per-image values go to ``per_image.csv`` (:mod:`lightning_modules.per_image`).
    """

    paper = "zero_dce"
    monitor = ("val/psnr", "max")

    def __init__(
        self,
        variant: Literal["zero_dce", "zero_dce_pp"] = "zero_dce",
        n_layers: int = 7,
        n_filters: int = 32,
        n_iterations: int = 8,
        depthwise_separable: bool | None = None,
        shared_map: bool | None = None,
        scale_factor: float = 1.0,
        eval_scale_factor: float | None = None,
        sign: Literal["code", "paper"] = "code",
        loss_weights: ZeroDCELossWeights = ZeroDCELossWeights(),  # noqa: B008 (immutable use)
        loss_form: Literal["official", "paper"] = "official",
        exposure_level: float = 0.6,
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
        pretrained: str | None = None,
        log_images: int = 4,
        metric_variants: list[Literal["gtmean", "gtmean_llflow", "y"]] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(loss_weights, dict):
            loss_weights = ZeroDCELossWeights(**loss_weights)
        self.save_hyperparameters()
        self.hparams["loss_weights"] = asdict(loss_weights)
        pp = variant == "zero_dce_pp"
        self.net = DCENet(
            n_layers=n_layers,
            n_filters=n_filters,
            n_iterations=n_iterations,
            depthwise_separable=pp if depthwise_separable is None else depthwise_separable,
            shared_map=pp if shared_map is None else shared_map,
            scale_factor=scale_factor,
            sign=sign,
            init="default" if pp else "official",
        )
        weights = asdict(loss_weights)
        if weights["tv"] is None:
            weights["tv"] = 1600.0 if pp else 200.0
        self.loss = ZeroDCELoss(weights=weights, forms=loss_form, well_exposed=exposure_level)
        self.eval_scale_factor = float(eval_scale_factor or scale_factor)
        metrics = MetricCollection({"psnr": PSNR(), "ssim": SSIM(), "mae": MAE()}, compute_groups=False)
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.test_input_metrics = metrics.clone(prefix="test/input_")
        variants = list(metric_variants or [])
        unknown = sorted(set(variants) - set(VARIANTS))
        if unknown:
            raise ValueError(f"metric_variants: unknown {unknown}; expected some of {sorted(VARIANTS)}")
        self.test_variant_metrics = MetricCollection(
            {f"{m}_{v}": cls(v) for v in variants for m, cls in (("psnr", PSNR), ("ssim", SSIM))},
            prefix="test/", compute_groups=False)
        no_ref = MetricCollection({"niqe": NIQE(), "brightness": MeanBrightness(), "colour_cast": ColourCast()},
                                  compute_groups=False)
        self.test_nr_metrics = no_ref.clone(prefix="test/")
        self.test_input_nr_metrics = no_ref.clone(prefix="test/input_")
        self.test_loe = MetricCollection({"loe": LOE()}, prefix="test/")
        self.variant = variant
        self.metric_variants = {
            "psnr": "RGB, data range 1, mean of per-image PSNR", "ssim": "torchmetrics SSIM (Gaussian 11, σ 1.5) "
            "on RGB, data range 1, mean of per-image values", "mae": "mean |output − label| over pixels and "
            "channels on 0–255 (the paper's MAE unit is not found)",
            **{f"{m}_{v}": f"{m.upper()} {VARIANTS[v]}" for v in variants for m in ("psnr", "ssim")}}
        self.per_image = PerImageRows()
        self.tags = [variant, f"{n_layers}-{n_filters}-{n_iterations}"]
        self._grid_samples: list[list[torch.Tensor]] = []
        self._grid_names: list[str] = []
        self._train_grid: list | None = None
        self.last_grid_path: Path | None = None
        if pretrained:
            self.load_pretrained(pretrained)

    # -- weights ---------------------------------------------------------------------------------
    def load_pretrained(self, path: str | Path) -> None:
        """Load an official ``Epoch99.pth`` or a Darkroom checkpoint into the network."""
        path = Path(path)
        if path.suffix == ".ckpt":
            self.net.load_state_dict(checkpoint_state(path))
        else:
            official = load_official_weights(path, self.hparams.variant, scale_factor=self.net.scale_factor)
            self.net.load_state_dict(official.state_dict())
        flush_subnormal_(self.net)

    @classmethod
    def from_official(
        cls, path: str | Path, variant: Literal["zero_dce", "zero_dce_pp"] = "zero_dce", **kwargs: Any
    ) -> ZeroDCE:
        """The released weights in a ready module (Zero-DCE++ evaluates at scale 12, as the official test)."""
        if variant == "zero_dce_pp":
            kwargs.setdefault("eval_scale_factor", 12.0)
        tile_size = kwargs.pop("tile_size", "default")
        model = cls(variant=variant, pretrained=str(path), **kwargs)
        if tile_size != "default":  # tile size of enhance(tile_size="auto"): an int, or None = whole images
            model.tile_size = tile_size
        return model

    # -- inference -------------------------------------------------------------------------------
    def enhance(
        self,
        x: torch.Tensor,
        scale_factor: float | None = None,
        tile_size: int | None | Literal["auto"] = "auto",
        fit: Literal["pad", "crop"] = "pad",
    ) -> torch.Tensor:
        """Enhance N×3×H×W in [0, 1] at full resolution (any H, W).

        Args:
            scale_factor: curve-estimation scale (``None`` = ``eval_scale_factor``). With an integer s ≠ 1 the
                image must be a multiple of s: ``fit="pad"`` pads it (replicate) and crops the output back to
                H×W (validation/test: the output matches the label); ``fit="crop"`` crops it to multiples of s
                from the top-left corner (:func:`crop_to_multiple`), as the official Zero-DCE++ test does, and
                returns the cropped size (predict; padding changes the output by up to 13 grey levels).
            tile_size: exact tiled inference (:mod:`lightning_modules.tiling`; equal to the whole-image result
                to float precision, in the memory of one tile). ``"auto"`` (default): tiles of ``self.tile_size``
                (:data:`~lightning_modules.tiling.DEFAULT_TILE_SIZE` = 512 unless set, e.g. by
                ``--run.tile_size``) when the image has more than 4 tiles of pixels; an int: tiles of that size;
                ``None``: the whole image at once.
            fit: ``"pad"`` or ``"crop"`` (above).

        Returns:
            N×3×H×W (``fit="crop"``: N×3×(H//s·s)×(W//s·s)).
        """
        s = float(scale_factor or self.eval_scale_factor)
        if fit not in ("pad", "crop"):
            raise ValueError(f"ZeroDCE.enhance: fit must be 'pad' or 'crop', got {fit!r}")
        if s != 1 and s.is_integer() and fit == "crop":
            x = crop_to_multiple(x, s)
        h, w = x.shape[-2:]
        if tile_size == "auto":
            tile = getattr(self, "tile_size", DEFAULT_TILE_SIZE)
            tile_size = tile if use_tiles(h, w, tile) else None
        if s != 1 and s.is_integer():
            ph, pw = (-h) % int(s), (-w) % int(s)
            if ph or pw:
                x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        # --run.eval_precision bf16 / channels_last / compile (lightning_modules.inference): curve maps in bf16,
        # the curves on the fp32 image; compile fuses the 8 full-resolution curve passes
        with self.inference_autocast():
            out = dce_enhance(self.net, self.layout(x), s, tile_size, curves=self.network(apply_curves, "curves"))
        return self.to_fp32(out[..., :h, :w])

    def inference_networks(self) -> list[nn.Module]:
        return [self.net]

    def forward(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """N×3×H×W in [0, 1] → enhanced N×3×H×W (at the evaluation scale factor; ``kwargs`` go to :meth:`enhance`)."""
        return self.enhance(x, **kwargs)

    # -- steps -----------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x = batch["input"]
        enhanced, maps = self.net(x)
        terms = self.loss(enhanced, x, maps)
        n = x.shape[0]
        self.log_dict({f"train/loss_{k}": v for k, v in terms.items() if k != "total"},
                      on_step=True, on_epoch=True, batch_size=n)
        self.log("train/loss", terms["total"], on_step=True, on_epoch=True, prog_bar=True, batch_size=n)
        if batch_idx == 0 and self.hparams.log_images:  # kept for a grid when there is no validation
            k = self.hparams.log_images
            self._train_grid = [x[:k].detach().cpu(), enhanced[:k].detach().float().cpu(), list(batch["name"][:k])]
        return terms["total"]

    def on_train_epoch_end(self) -> None:
        """Zero-reference training often has no paired validation set: then grid the epoch's first batch."""
        grid = getattr(self, "_train_grid", None)
        if grid is not None and not sum(self.trainer.num_val_batches or [0]):
            path = log_grid(self, "train/examples", grid[:2], ["input", "Zero-DCE"], row_names=grid[2])
            self.last_grid_path = path or self.last_grid_path
        self._train_grid = None

    def _evaluate(self, batch: dict, batch_idx: int, stage: str) -> torch.Tensor:
        x, y = batch["input"], batch.get("target")
        out = self.enhance(x, fit="crop")
        if out.shape[-2:] != x.shape[-2:]:  # Zero-DCE++ crops to a multiple of its scale factor, as the official test
            h, w = out.shape[-2:]
            x, y = x[..., :h, :w], (y[..., :h, :w] if y is not None else None)
        names, n = list(batch["name"]), x.shape[0]
        if y is not None:
            metrics = self.val_metrics if stage == "val" else self.test_metrics
            metrics.update(out, y)
            self.log_dict(metrics, on_epoch=True, batch_size=n)
            if stage == "test":
                self.test_input_metrics.update(x, y)
                self.log_dict(self.test_input_metrics, on_epoch=True, batch_size=n)
                collections = [self.test_metrics, self.test_input_metrics]
                if len(self.test_variant_metrics):
                    self.test_variant_metrics.update(out, y)
                    self.log_dict(self.test_variant_metrics, on_epoch=True, batch_size=n)
                    collections.append(self.test_variant_metrics)
                self.per_image.add_metrics(names, *collections)
                save_samples(self, names, {"input": x, "output": out, "target": y})
        elif stage == "test":
            self.test_nr_metrics.update(out)
            self.test_input_nr_metrics.update(x)
            self.test_loe.update(out, x)
            for collection in (self.test_nr_metrics, self.test_input_nr_metrics, self.test_loe):
                self.log_dict(collection, on_epoch=True, batch_size=n)
            self.per_image.add_metrics(names, self.test_nr_metrics, self.test_input_nr_metrics, self.test_loe,
                                       groups=batch.get("group"))
            save_samples(self, names, {"input": x, "output": out})
        if batch_idx < self.hparams.log_images:
            self._grid_samples.append([t[:1].detach().cpu() for t in (x, out, y) if t is not None])
            self._grid_names.append(names[0])
        return out

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def on_validation_epoch_start(self) -> None:
        self._grid_samples, self._grid_names = [], []

    def on_test_epoch_start(self) -> None:
        self.on_validation_epoch_start()
        self.per_image.reset()

    def on_test_start(self) -> None:
        # subnormal weights (24 % of the released Zero-DCE's) make CPU convolutions ~20× slower; zeroing
        # them leaves the output bit-identical (see lightning_modules.tiling.flush_subnormal_)
        flush_subnormal_(self.net)

    on_predict_start = on_test_start

    def _log_samples(self, stage: str) -> None:
        """One before/after grid of the first ``log_images`` samples (input | Zero-DCE | label), captioned."""
        samples = getattr(self, "_grid_samples", [])
        if not samples:
            return
        columns = [torch.cat([F.interpolate(s[c], size=samples[0][c].shape[-2:], mode="bilinear")
                              for s in samples]) for c in range(len(samples[0]))]
        path = log_grid(self, f"{stage}/examples", columns, ["input", "Zero-DCE", "label"][: len(columns)],
                        row_names=self._grid_names)
        if path is not None:
            self.last_grid_path = path
        self._grid_samples, self._grid_names = [], []

    def on_validation_epoch_end(self) -> None:
        self._log_samples("val")

    def on_test_epoch_end(self) -> None:
        self._log_samples("test")
        finish_samples(self)

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        """Enhance full-size photos → ``{"output": in [0, 1], "name", "notes"}``, tiled above 4 tiles of pixels
        (:meth:`enhance`). At an integer ``eval_scale_factor`` s ≠ 1 (Zero-DCE++: 12) an image that is not a
        multiple of s is cropped to one from the top-left corner, as the official Zero-DCE++ test does; its
        note says so (``cropped 326×326 → 324×324 (W×H) …``), printed when the image is written."""
        x = batch["input"]
        s = float(self.eval_scale_factor)
        tile = getattr(self, "tile_size", DEFAULT_TILE_SIZE)
        if not use_tiles(*x.shape[-2:], tile):  # whole image: refused before it runs if it cannot fit
            names = batch["name"]
            name = names if isinstance(names, str) else ", ".join(map(str, names))
            check_memory("zero_dce" if s == 1 else "zero_dce_pp", name, *x.shape[-2:], x.device,
                         "use --run.tile_size 512 (exact tiling, the same output)", images=x.shape[0])
        out = self.enhance(x, fit="crop").clamp_(0, 1)
        notes = [""] * x.shape[0]
        if out.shape[-2:] != x.shape[-2:]:
            (h, w), (ch, cw) = x.shape[-2:], out.shape[-2:]
            notes = [f"cropped {w}×{h} → {cw}×{ch} (W×H, top-left; a multiple of the scale factor {s:g}, "
                     f"as the official Zero-DCE++ test)"] * x.shape[0]
        return {"output": out, "name": batch["name"], "notes": notes}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            self.net.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
