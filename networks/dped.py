"""DPED (Ignatov et al., ICCV 2017): phone photo → DSLR-quality photo.

Networks exactly as the official code (aiff22/DPED @ ebb0131, file ``models.py``), which produced the released
weights; see ``../shared/papers/dped.md`` §2:

* :class:`DPEDGenerator` — ``models.resnet``: conv 9×9 → 4 residual blocks (conv-IN-ReLU twice, ReLU before
  the skip-add) → two conv 3×3 + ReLU → conv 9×9 → ``tanh(x)·0.58 + 0.5`` (range (−0.08, 1.08), no clipping).
  Fully convolutional: any H×W.
* :class:`DPEDDiscriminator` — ``models.adversarial``: grayscale 100×100 patch → 5 convs (LeakyReLU(0.2) then
  instance norm) → fc 1024 → 2 logits (class 0 = DSLR, class 1 = enhanced). Returns logits; the softmax is
  in :mod:`losses.dped`.
* :func:`load_official_dped` — maps the released TF1 checkpoints (``models_orig/<phone>_orig``) onto
  :class:`DPEDGenerator`, read with the TensorFlow-free :mod:`networks.tf_checkpoint`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from networks.layers import Network
from networks.tf_checkpoint import checkpoint_files, load_tf_checkpoint
from networks.weight_files import check_weights, tf_checkpoint_prefix

__all__ = ["OFFICIAL_DPED_SOURCE", "DPEDDiscriminator", "DPEDGenerator", "load_official_dped", "rgb_to_grayscale_tf",
           "tf_same_pad"]

OFFICIAL_DPED_SOURCE = (
    "https://github.com/aiff22/DPED (commit ebb01315, folder models_orig/: "
    "{iphone,sony,blackberry}_orig.index and .data-00000-of-00001)"
)

# tf.image.rgb_to_grayscale weights (tensorflow/python/ops/image_ops_impl.py).
_TF_GRAY = (0.2989, 0.5870, 0.1140)


def _init_official(module: nn.Module) -> None:
    """Official init: weights ``tf.truncated_normal(stddev=0.01)`` (truncated at 2σ), biases 0.01."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-0.02, b=0.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0.01)
        elif isinstance(m, nn.InstanceNorm2d) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _instance_norm(channels: int, eps: float) -> nn.InstanceNorm2d:
    """``models._instance_norm``: per sample and channel over H, W, biased variance, affine, no running stats."""
    return nn.InstanceNorm2d(channels, eps=eps, affine=True, track_running_stats=False)


class _ResidualBlock(nn.Module):
    """out = ReLU(IN(conv(ReLU(IN(conv(x)))))) + x — ReLU before the add, nothing after it (official)."""

    def __init__(self, channels: int, eps: float) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm_a = _instance_norm(channels, eps)
        self.conv_b = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm_b = _instance_norm(channels, eps)

    def forward(self, x: Tensor) -> Tensor:
        a = F.relu(self.norm_a(self.conv_a(x)))
        return F.relu(self.norm_b(self.conv_b(a))) + x


class DPEDGenerator(Network):
    """DPED image-enhancement generator (official ``models.resnet``).

    Args:
        n_blocks: residual blocks (official 4 → 12 conv layers).
        channels: feature channels (official 64).
        eps: instance-norm ε (official 1e-3, biased variance).
        init: ``"official"`` (truncated normal σ 0.01, biases 0.01) or ``"pytorch"`` (PyTorch's default
            Kaiming-uniform conv init: the output depends on the input from the first step, so short CPU runs
            learn much faster; a demo deviation).

    Shapes:
        input N×3×H×W RGB in [0, 1] (any H, W); output N×3×H×W in (−0.08, 1.08), unclipped.

    With the defaults it has 401,475 parameters (= the released checkpoints). Convolutions are stride 1 with
    TF 'SAME' padding, which for odd kernels is exactly zero padding k//2.
    """

    def __init__(self, n_blocks: int = 4, channels: int = 64, eps: float = 1e-3,
                 init: Literal["official", "pytorch"] = "official") -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, channels, 9, padding=4)
        self.blocks = nn.ModuleList(_ResidualBlock(channels, eps) for _ in range(n_blocks))
        self.conv_mid1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_mid2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_out = nn.Conv2d(channels, 3, 9, padding=4)
        if init == "official":
            _init_official(self)
        elif init != "pytorch":
            raise ValueError(f"init must be 'official' or 'pytorch', got {init!r}")

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"DPEDGenerator expects N×3×H×W RGB images, got shape {tuple(x.shape)}")
        h = F.relu(self.conv_in(x))
        for block in self.blocks:
            h = block(h)
        h = F.relu(self.conv_mid1(h))
        h = F.relu(self.conv_mid2(h))
        return torch.tanh(self.conv_out(h)) * 0.58 + 0.5


def rgb_to_grayscale_tf(x: Tensor) -> Tensor:
    """TF ``rgb_to_grayscale``: N×3×H×W → N×1×H×W with weights (0.2989, 0.5870, 0.1140)."""
    w = x.new_tensor(_TF_GRAY).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def tf_same_pad(x: Tensor, kernel: int, stride: int) -> Tensor:
    """Zero-pad N×C×H×W like TF 'SAME': total ``max((⌈n/s⌉−1)·s + k − n, 0)``, the extra pixel bottom/right."""
    pads: list[int] = []
    for n in (x.shape[-1], x.shape[-2]):  # F.pad order: (left, right, top, bottom)
        total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class _DiscConv(nn.Module):
    """``models._conv_layer``: conv (TF SAME) + bias → LeakyReLU(0.2) → optional instance norm."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, norm: bool, eps: float) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride)
        self.norm = _instance_norm(c_out, eps) if norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(tf_same_pad(x, self.kernel, self.stride))
        return self.norm(F.leaky_relu(x, 0.2))


class DPEDDiscriminator(Network):
    """DPED texture discriminator (official ``models.adversarial``; not released).

    Args:
        in_size: patch side (official 100); the fc layer is sized for it.
        grayscale: official True — RGB input is converted with TF's ``rgb_to_grayscale`` weights
            (N×1 input is taken as already grey); False gives a 3-channel first conv (variant).
        eps: instance-norm ε (official 1e-3).
        width: multiplier of every layer's width (conv 48/128/192/192/128, fc 1024; official 1.0). Smaller values
            are for CPU demos and tests only.

    Shapes:
        input N×3×S×S (or N×1×S×S when ``grayscale``), S = ``in_size``, values in [0, 1];
        output N×2 **logits** (class 0 = DSLR, class 1 = enhanced); softmax in the loss.

    7,361,122 parameters with the defaults. TF 'SAME' padding is applied explicitly (for the 11×11 stride-4
    conv1 at 100 px: 3 top/left, 4 bottom/right), and the conv5 map is flattened in TF's H, W, C order.
    """

    def __init__(self, in_size: int = 100, grayscale: bool = True, eps: float = 1e-3, width: float = 1.0) -> None:
        super().__init__()
        self.in_size, self.grayscale = in_size, grayscale

        def w(n: int) -> int:
            return max(1, round(n * width))

        spec = [  # (c_in, c_out, kernel, stride, instance norm)
            (1 if grayscale else 3, w(48), 11, 4, False),
            (w(48), w(128), 5, 2, True),
            (w(128), w(192), 3, 1, True),
            (w(192), w(192), 3, 1, True),
            (w(192), w(128), 3, 2, True),
        ]
        self.convs = nn.Sequential(*(_DiscConv(*s, eps=eps) for s in spec))
        side = in_size
        for _, _, _, stride, _ in spec:
            side = math.ceil(side / stride)
        self.fc = nn.Linear(w(128) * side * side, w(1024))
        self.out = nn.Linear(w(1024), 2)
        _init_official(self)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[-2:] != (self.in_size, self.in_size):
            raise ValueError(
                f"DPEDDiscriminator expects N×C×{self.in_size}×{self.in_size} patches, got {tuple(x.shape)}"
            )
        if self.grayscale and x.shape[1] == 3:
            x = rgb_to_grayscale_tf(x)
        expected = 1 if self.grayscale else 3
        if x.shape[1] != expected:
            raise ValueError(f"DPEDDiscriminator expects {expected} channel(s), got {x.shape[1]}")
        h = self.convs(x).permute(0, 2, 3, 1).flatten(1)  # NHWC flatten, as TF
        h = F.leaky_relu(self.fc(h), 0.2)
        return self.out(h)


def _official_state_dict(tensors: dict[str, np.ndarray], n_blocks: int = 4) -> dict[str, Tensor]:
    """Map ``generator/W1..W12, b1..b12, Variable…`` onto :class:`DPEDGenerator` parameter names."""

    def conv(i: int) -> tuple[Tensor, Tensor]:
        w = torch.from_numpy(tensors[f"generator/W{i}"]).permute(3, 2, 0, 1).contiguous()  # HWIO → OIHW
        return w, torch.from_numpy(tensors[f"generator/b{i}"])

    def var(j: int) -> Tensor:
        return torch.from_numpy(tensors["generator/Variable" if j == 0 else f"generator/Variable_{j}"])

    sd: dict[str, Tensor] = {}
    sd["conv_in.weight"], sd["conv_in.bias"] = conv(1)
    # k-th normalised conv = W(k+2); its IN shift = Variable_{2k}, scale = Variable_{2k+1} (creation order)
    for k in range(2 * n_blocks):
        blk, part = divmod(k, 2)
        ab = "ab"[part]
        sd[f"blocks.{blk}.conv_{ab}.weight"], sd[f"blocks.{blk}.conv_{ab}.bias"] = conv(k + 2)
        sd[f"blocks.{blk}.norm_{ab}.bias"] = var(2 * k)
        sd[f"blocks.{blk}.norm_{ab}.weight"] = var(2 * k + 1)
    n = 2 * n_blocks + 2
    sd["conv_mid1.weight"], sd["conv_mid1.bias"] = conv(n)
    sd["conv_mid2.weight"], sd["conv_mid2.bias"] = conv(n + 1)
    sd["conv_out.weight"], sd["conv_out.bias"] = conv(n + 2)
    return sd


def load_official_dped(prefix: str | Path) -> DPEDGenerator:
    """Build a :class:`DPEDGenerator` with the released official weights (no TensorFlow needed).

    Args:
        prefix: checkpoint prefix, e.g. ``…/weights/dped/iphone_orig`` (also ``sony_orig``,
            ``blackberry_orig``), or the path of its ``.index`` or ``.data-00000-of-00001`` file.

    Returns:
        the generator in eval mode (instance norm has no running statistics, so eval = train behaviour).

    Raises:
        FileNotFoundError: ``<prefix>.index`` or ``<prefix>.data-00000-of-00001`` is missing; the message says
            where the files come from.
        WeightFileError: ``prefix`` names a file that is not a TF checkpoint (a ``.pth``, an ``.npz``, text …) or one
            that looks like other weights; checked before loading (:func:`networks.weight_files.check_weights`).
    """
    if check_weights(prefix, "dped") is not None:  # a wrong file raises; a data shard stands for its prefix
        prefix = tf_checkpoint_prefix(prefix) or prefix
    files = checkpoint_files(prefix)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"DPED checkpoint file(s) not found: {', '.join(missing)}. Put the official TF1 checkpoint there: "
            f"{OFFICIAL_DPED_SOURCE}. Weights are never downloaded at run time."
        )
    tensors = load_tf_checkpoint(prefix)
    with torch.device("meta"):  # skip the random init: every parameter is overwritten
        model = DPEDGenerator()
    model.load_state_dict(_official_state_dict(tensors), strict=True, assign=True)
    return model.eval()
