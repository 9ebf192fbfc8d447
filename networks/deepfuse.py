"""DeepFuse (Prabhakar, Srikar & Babu, ICCV 2017): unsupervised deep exposure fusion.

A CNN fuses the **luminance** (Y) of an exposure stack; chrominance is fused by a fixed per-pixel
rule; the network is trained to maximise MEF-SSIM (``losses``). This file holds the network and
the official weight reader; training and the fusion pipeline are in :mod:`lightning_modules.deepfuse`.

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

import numpy as np
import torch
from torch import Tensor, nn

from imaging.colour import minmax_normalize
from imaging.stacks import stack_sources
from networks.layers import Network, conv
from networks.weight_files import check_weights

__all__ = ["OFFICIAL_WEIGHTS_SOURCE", "Architecture", "DeepFuseNet", "load_official_deepfuse"]

Architecture = Literal["official", "paper"]
Init = Literal["glorot", "positive_output"]

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


class DeepFuseNet(Network):
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
        init: ``"glorot"`` (official: Lasagne GlorotNormal weights, zero biases) or ``"positive_output"`` (ours, an
            ablation for ``architecture="official"``): Glorot normal with the last convolution's weights made
            non-negative. Its inputs are LeakyReLU outputs, mostly ≥ 0, so the output starts positive and the final
            LeakyReLU passes the whole gradient instead of 1 % of it on the about half of the pixels that a
            zero-mean last layer makes negative.

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
        init: Init = "glorot",
    ) -> None:
        super().__init__()
        if architecture not in ("official", "paper"):
            raise ValueError(f"architecture must be 'official' or 'paper', got {architecture!r}")
        if init not in ("glorot", "positive_output"):
            raise ValueError(f"init must be 'glorot' or 'positive_output', got {init!r}")
        if batch_norm and architecture == "official":
            raise ValueError("batch_norm is only available for architecture='paper' (the released model has none)")
        self.architecture = architecture
        self.normalize_output = normalize_output
        # in place on each conv (or BatchNorm) output, which their backward does not need; PyTorch's in-place
        # LeakyReLU backward needs a slope ≥ 0
        act = nn.LeakyReLU(negative_slope, inplace=negative_slope >= 0)
        if architecture == "official":
            convs = [conv(i, o, k, bias=False) for o, i, k in _OFFICIAL_LAYERS]
            self.pre = nn.Sequential(convs[0], act, convs[1], act)
            self.post = nn.Sequential(convs[2], act, convs[3], act, convs[4], act, convs[5], act)
        else:

            def block(c_in: int, c_out: int, k: int, activation: nn.Module) -> list[nn.Module]:
                layers: list[nn.Module] = [conv(c_in, c_out, k, bias=True)]
                if batch_norm:
                    layers.append(nn.BatchNorm2d(c_out))
                return [*layers, activation]

            self.pre = nn.Sequential(*block(1, 16, 5, act), *block(16, 32, 7, nn.ReLU(inplace=True)))
            self.post = nn.Sequential(
                *block(32, 32, 7, act), *block(32, 16, 5, act), *block(16, 1, 5, nn.Tanh())
            )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_normal_(m.weight)  # Lasagne GlorotNormal (official)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if init == "positive_output":
            last = [m for m in self.post if isinstance(m, nn.Conv2d)][-1]
            with torch.no_grad():
                last.weight.abs_()

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
        WeightFileError: the file is not an ``.npz`` (a ``.pth``, text, truncated …) or looks like other weights;
            checked before loading (:func:`networks.weight_files.check_weights`).
        ValueError: the file lacks an array or an array has the wrong shape.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: DeepFuse official weights not found; expected {OFFICIAL_WEIGHTS_SOURCE}"
        )
    check_weights(path, "deepfuse")
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
