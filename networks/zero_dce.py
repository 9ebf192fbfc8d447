"""Zero-DCE (CVPR 2020) and Zero-DCE++ (TPAMI 2021): the curve-estimation networks.

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

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from networks.layers import Network
from networks.weight_files import check_weights

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


class DCENet(Network):
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
        WeightFileError: the file is not a torch file (an ``.npz``, text, truncated …) or looks like other weights
            (the other variant's, another paper's, a Darkroom ``.ckpt``); checked before loading
            (:func:`networks.weight_files.check_weights`).
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
    check_weights(path, variant)
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
        raise ValueError(
            f"{path}: does not fit the official {variant} network; "
            f"missing keys {missing[:6]}{'…' if len(missing) > 6 else ''}, "
            f"unexpected keys {unexpected[:6]}{'…' if len(unexpected) > 6 else ''}, "
            f"shape mismatches {bad_shapes[:6]}"
        )
    net.load_state_dict(state, strict=True)
    return net.eval()
