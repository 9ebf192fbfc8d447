"""ReFusion (Bai et al., IJCV 2024): fusion network F, loss proposal network P, reconstruction network R, and the
official-weights reader.

- :class:`FusionNet` is the official released fusion module (HaowenBai/ReFusion ``ReFusion.py``, class ``ReFusion``,
  commit 54b7334) with plain ``nn.Conv2d`` layers instead of the ``MetaConv2d`` wrappers: the ``*_meta`` shadow
  tensors of the official "MetaModule" pattern are replaced by :func:`torch.func.functional_call` with updated
  parameter dicts (:mod:`lightning_modules.refusion_meta`), so nothing is hand-copied.
- :class:`LossProposalNet` (P) and :class:`ReconstructionNet` (R) were never released; their blocks follow TDFusion's
  official ``nets/ReFusion.py`` (class ``LPN``) and the ReFusion framework figure (details: each class docstring).
- Their Restormer blocks are in :mod:`networks.restormer`.

All networks take and return float tensors in [0, 1]. Sources are N×K×C×H×W (K = 2, C = 1: Y channels).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imaging.filters import sobel_gradient
from networks.layers import Network, conv
from networks.restormer import (
    run_blocks,
    set_gradient_checkpointing,
    transformer_blocks,
    transposed_attention,
)
from networks.weight_files import check_weights

OFFICIAL_REFUSION_SOURCE = (
    "https://github.com/HaowenBai/ReFusion (commit 54b733420e67042aa6ddd146ec3edef902122930), "
    "models/ReFusion_{IVIF,MEIF,MFIF,MIF}.pth"
)
#: task → (first source, second source), the input order of the official ``test.py`` (F is not symmetric).
OFFICIAL_REFUSION_TASKS: dict[str, tuple[str, str]] = {
    "IVIF": ("infrared", "visible"),
    "MIF": ("CT/PET/SPECT", "MRI"),
    "MFIF": ("near focus", "far focus"),
    "MEIF": ("under-exposed", "over-exposed"),
}


class AFM(nn.Module):
    """Adaptive fusion module: cross transposed attention between the two branches, then gated mixing.

    In: two N×dim×H×W maps; out: N×2·dim×H×W. SOURCE: official ``AFM`` (attn_1 uses q_2 with k_1, v_1 and
    attn_2 uses q_1 with k_2, v_2; gates from ``project_E`` on the concatenation).
    """

    def __init__(self, dim: int = 16, num_heads: int = 8, bias: bool = False) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.temperature1 = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.temperature2 = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv1 = conv(dim, dim * 3, 1, bias=bias)
        self.qkv1_dwconv = conv(dim * 3, dim * 3, 3, groups=dim * 3, bias=bias)
        self.qkv2 = conv(dim, dim * 3, 1, bias=bias)
        self.qkv2_dwconv = conv(dim * 3, dim * 3, 3, groups=dim * 3, bias=bias)
        self.project_mid1 = conv(dim, dim, 1, bias=bias)
        self.project_mid2 = conv(dim, dim, 1, bias=bias)
        self.project_E = conv(dim * 2, dim * 8, 1, bias=bias)
        self.project_E_d = conv(dim * 8, dim * 8, 3, groups=dim * 8, bias=bias)
        self.project_E1 = conv(dim, dim * 4, 1, bias=bias)
        self.project_E1_d = conv(dim * 4, dim * 4, 3, groups=dim * 4, bias=bias)
        self.project_E2 = conv(dim, dim * 4, 1, bias=bias)
        self.project_E2_d = conv(dim * 4, dim * 4, 3, groups=dim * 4, bias=bias)
        self.project_out1 = conv(dim * 4, dim * 2, 1, bias=bias)
        self.project_out2 = conv(dim * 4, dim * 2, 1, bias=bias)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        q1, k1, v1 = self.qkv1_dwconv(self.qkv1(x1)).chunk(3, dim=1)
        q2, k2, v2 = self.qkv2_dwconv(self.qkv2(x2)).chunk(3, dim=1)
        out1 = transposed_attention(q2, k1, v1, self.temperature1, self.num_heads)
        out2 = transposed_attention(q1, k2, v2, self.temperature2, self.num_heads)
        x1 = x1 + self.project_mid1(out1)
        x2 = x2 + self.project_mid2(out2)
        out = torch.cat([x1, x2], 1)
        g1, g2 = self.project_E_d(self.project_E(out)).chunk(2, dim=1)
        x1 = F.gelu(g1) * self.project_E1_d(self.project_E1(x1))
        x2 = F.gelu(g2) * self.project_E2_d(self.project_E2(x2))
        return out + self.project_out1(x1) + self.project_out2(x2)


def _as_pair(x: Tensor, who: str) -> Tensor:
    """Accept N×2×H×W or the sources layout N×2×1×H×W; return N×2×H×W."""
    if x.ndim == 5 and x.shape[1] == 2 and x.shape[2] == 1:
        x = x[:, :, 0]
    if x.ndim != 4 or x.shape[1] != 2:
        raise ValueError(
            f"{who} expects the Y channels of K=2 sources concatenated, N×2×H×W (or N×2×1×H×W); "
            f"got shape {tuple(x.shape)}"
        )
    return x


# --------------------------------------------------------------------------------------------------------------
# F: the official fusion module
# --------------------------------------------------------------------------------------------------------------
class FusionNet(Network):
    """ReFusion's fusion module F, exactly the official released network (59,856 parameters with the defaults).

    ``I_a → Conv3×3(1→dim) → num_blocks·RTB(dim)``, same for ``I_b`` with its own weights; AFM → 2·dim channels;
    ``num_blocks·RTB(2·dim) → Conv3×3(2·dim→dim) → LeakyReLU(0.01) → Conv3×3(dim→1) → Sigmoid``. No biases.

    Input: N×2×H×W (Y of source a, Y of source b, in [0, 1], the official order per task is
    :data:`OFFICIAL_REFUSION_TASKS`) or N×2×1×H×W. Output: N×1×H×W in (0, 1). Any H×W ≥ 1: every layer has stride 1
    and "same" padding and attention is over channels (no down/up-sampling, no padding needed; the official
    ``test.py`` feeds full images as they are).

    ``gradient_checkpointing``: checkpoint every transformer block (:func:`set_gradient_checkpointing`; not a
    parameter, so the official state dict is unchanged).

    SOURCE: HaowenBai/ReFusion ``ReFusion.py`` class ``ReFusion`` (dim 16, 2 blocks, 8 heads, FFN factor 2, bias False).
    """

    def __init__(
        self,
        dim: int = 16,
        num_blocks: int = 2,
        heads: int = 8,
        ffn_expansion_factor: float = 2,
        bias: bool = False,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.project_in_1 = conv(1, dim, 3, bias=bias)
        self.project_in_2 = conv(1, dim, 3, bias=bias)
        self.encoder1 = transformer_blocks(dim, num_blocks, heads, ffn_expansion_factor, bias)
        self.encoder2 = transformer_blocks(dim, num_blocks, heads, ffn_expansion_factor, bias)
        self.FM = AFM(dim, heads, bias)
        self.decoder = transformer_blocks(dim * 2, num_blocks, heads, ffn_expansion_factor, bias)
        self.project_out_0 = conv(dim * 2, dim, 3, bias=bias)
        self.act = nn.LeakyReLU()
        self.project_out_1 = conv(dim, 1, 3, bias=bias)
        set_gradient_checkpointing(self, gradient_checkpointing)

    def forward(self, x: Tensor) -> Tensor:
        x = _as_pair(x, "FusionNet")
        x1 = run_blocks(self.encoder1, self.project_in_1(x[:, :1]))
        x2 = run_blocks(self.encoder2, self.project_in_2(x[:, 1:]))
        out = run_blocks(self.decoder, self.FM(x1, x2))
        out = self.project_out_1(self.act(self.project_out_0(out)))
        return torch.sigmoid(out)


# --------------------------------------------------------------------------------------------------------------
# P and R: not released; TDFusion blocks + the ReFusion figure
# --------------------------------------------------------------------------------------------------------------
class _ProposalBranch(nn.Module):
    """TDFusion's official ``LPN`` (nets/ReFusion.py), same parameter names: per source Conv3×3(1→dim) →
    num_blocks·RTB(dim); concat → num_blocks·RTB(2·dim) → Conv3×3(2·dim→dim) → PReLU → Conv3×3(dim→2) → Softmax."""

    def __init__(
        self, dim: int, num_blocks: int, heads: int, ffn_expansion_factor: float, bias: bool
    ) -> None:
        super().__init__()
        self.patch_embed1 = conv(1, dim, 3, bias=bias)
        self.patch_embed2 = conv(1, dim, 3, bias=bias)
        self.encoder1 = transformer_blocks(dim, num_blocks, heads, ffn_expansion_factor, bias)
        self.encoder2 = transformer_blocks(dim, num_blocks, heads, ffn_expansion_factor, bias)
        self.encoder3 = transformer_blocks(dim * 2, num_blocks, heads, ffn_expansion_factor, bias)
        self.out1 = conv(dim * 2, dim, 3, bias=bias)
        self.out2 = nn.PReLU()
        self.out3 = conv(dim, 2, 3, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        x1 = run_blocks(self.encoder1, self.patch_embed1(x[:, :1]))
        x2 = run_blocks(self.encoder2, self.patch_embed2(x[:, 1:]))
        out = run_blocks(self.encoder3, torch.cat((x1, x2), 1))
        return self.out3(self.out2(self.out1(out))).softmax(dim=1)


class LossProposalNet(Network):
    """ReFusion's loss proposal network P: per-pixel softmax weights over the 2 sources for the loss terms.

    Two sub-networks of identical structure (TDFusion's official ``LPN``, see ``_ProposalBranch``):
    ``intensity`` on (I_a, I_b) → w; ``gradient`` on (∇I_a, ∇I_b) (Sobel magnitude, as in the ReFusion figure) → v.
    ``gradient_input='intensity'`` feeds it (I_a, I_b) instead (how the unofficial training copy calls P; which
    input the real P used is not found). Exact layers / parameter count of ReFusion's P: **not found** (not released);
    these are inferred (digest §2.2).

    ``order_equivariant=True`` (our option, off in the official recipe): P's maps are averaged with those of the
    swapped input, ``P_sym(a, b) = ½·(P(a, b) + swap(P(b, a)))``, so swapping the sources swaps the weights exactly.
    The official P only learns this from the swapped training batches; at random init it can favour one input slot,
    and in a short run that bias stays (``experiments/refusion/NOTES.md``). Costs a second forward of P.

    Input: N×2×H×W or N×2×1×H×W in [0, 1]. Output: ``(w, v)``, each N×2×1×H×W (sources layout), ≥ 0, summing to 1
    over dim 1.
    """

    def __init__(
        self,
        dim: int = 16,
        num_blocks: int = 2,
        heads: int = 8,
        ffn_expansion_factor: float = 2,
        bias: bool = False,
        gradient_input: Literal["gradient", "intensity"] = "gradient",
        order_equivariant: bool = False,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if gradient_input not in ("gradient", "intensity"):
            raise ValueError(f"gradient_input must be 'gradient' or 'intensity', got {gradient_input!r}")
        self.gradient_input = gradient_input
        self.order_equivariant = order_equivariant
        self.intensity = _ProposalBranch(dim, num_blocks, heads, ffn_expansion_factor, bias)
        self.gradient = _ProposalBranch(dim, num_blocks, heads, ffn_expansion_factor, bias)
        set_gradient_checkpointing(self, gradient_checkpointing)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = _as_pair(x, "LossProposalNet")
        n = x.shape[0]
        if self.order_equivariant:
            x = torch.cat([x, x.flip(1)])
        g_in = sobel_gradient(x) if self.gradient_input == "gradient" else x
        w, v = self.intensity(x).unsqueeze(2), self.gradient(g_in).unsqueeze(2)
        if self.order_equivariant:
            w, v = (0.5 * (m[:n] + m[n:].flip(1)) for m in (w, v))
        return w, v


class _ReconstructionBranch(nn.Module):
    def __init__(
        self, dim: int, num_blocks: int, heads: int, ffn_expansion_factor: float, bias: bool
    ) -> None:
        super().__init__()
        self.project_in = conv(1, dim, 3, bias=bias)
        self.blocks = transformer_blocks(dim, num_blocks, heads, ffn_expansion_factor, bias)
        self.project_out = conv(dim, 1, 3, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.project_out(run_blocks(self.blocks, self.project_in(x))))


class ReconstructionNet(Network):
    """ReFusion's reconstruction network R: recovers every source from the fused image.

    One branch per source, from the ReFusion figure: ``I_f → Conv3×3(1→dim) → num_blocks·RTB(dim) → Conv3×3(dim→1)
    → Sigmoid → Î_k``. Widths (dim 16, 8 heads, FFN factor 2, no bias) are **our choice** (same as F); R was never
    released and its layers / parameter count are not found (digest §2.3).

    Input: N×1×H×W fused image in [0, 1]. Output: N×K×1×H×W reconstructions in (0, 1) (K = ``num_sources``, order
    of the sources given to F).
    """

    def __init__(
        self,
        num_sources: int = 2,
        dim: int = 16,
        num_blocks: int = 2,
        heads: int = 8,
        ffn_expansion_factor: float = 2,
        bias: bool = False,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [
                _ReconstructionBranch(dim, num_blocks, heads, ffn_expansion_factor, bias)
                for _ in range(num_sources)
            ]
        )
        set_gradient_checkpointing(self, gradient_checkpointing)

    def forward(self, fused: Tensor) -> Tensor:
        if fused.ndim != 4 or fused.shape[1] != 1:
            raise ValueError(
                f"ReconstructionNet expects a fused N×1×H×W image, got shape {tuple(fused.shape)}"
            )
        return torch.stack([branch(fused) for branch in self.branches], dim=1)


# --------------------------------------------------------------------------------------------------------------
# Official weights
# --------------------------------------------------------------------------------------------------------------
def map_official_refusion_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Map an official ReFusion state_dict (140 keys) onto :class:`FusionNet`'s names (86 keys).

    The official ``MetaConv2d`` registers one Parameter twice (``<m>.weight`` and ``<m>.conv.weight``), so the
    checkpoints hold 54 aliases; each ``<m>.conv.weight`` is checked to equal ``<m>.weight`` and dropped (or renamed
    when ``<m>.weight`` is absent). A ``module.`` prefix (DataParallel) is stripped. Raises ValueError when an alias
    disagrees with its twin.
    """
    state = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.endswith(".conv.weight") or key.endswith(".conv.bias"):
            base = key.rsplit(".conv.", 1)[0] + "." + key.rsplit(".", 1)[1]
            twin = state.get(base)
            if twin is not None:
                if twin.shape != value.shape or not torch.equal(twin, value):
                    raise ValueError(f"official ReFusion checkpoint: alias {key!r} differs from {base!r}")
                continue
            out[base] = value
        else:
            out[key] = value
    return out


def load_official_refusion(path: str | Path, map_location: str | torch.device = "cpu") -> FusionNet:
    """Build a :class:`FusionNet` and load an official checkpoint strictly; returns it in eval mode.

    Args:
        path: one of ``ReFusion_{IVIF,MEIF,MFIF,MIF}.pth`` (official repo ``models/``).
        map_location: the official tensors were saved on CUDA; default loads them on the CPU.

    Raises:
        FileNotFoundError: the file is absent (the message names it and its official source).
        WeightFileError: the file is not a torch file (an ``.npz``, text, truncated …) or looks like other weights;
            checked before loading (:func:`networks.weight_files.check_weights`).
        KeyError: keys missing from / unexpected in the checkpoint after alias mapping (listed).
        ValueError: a tensor of the wrong shape, or an alias pair that disagrees.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"ReFusion checkpoint not found: {path}. Official source: {OFFICIAL_REFUSION_SOURCE}"
        )
    check_weights(path, "refusion")
    state = torch.load(path, map_location=map_location, weights_only=True)
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    mapped = map_official_refusion_state_dict(state)
    net = FusionNet()
    expected = net.state_dict()
    missing = sorted(set(expected) - set(mapped))
    unexpected = sorted(set(mapped) - set(expected))
    if missing or unexpected:
        raise KeyError(
            f"{path.name} is not an official ReFusion fusion-module checkpoint: "
            f"missing keys {missing[:10]}{' …' if len(missing) > 10 else ''} ({len(missing)}), "
            f"unexpected keys {unexpected[:10]}{' …' if len(unexpected) > 10 else ''} ({len(unexpected)})"
        )
    bad = [
        f"{k}: {tuple(v.shape)} vs {tuple(expected[k].shape)}"
        for k, v in mapped.items()
        if v.shape != expected[k].shape
    ]
    if bad:
        raise ValueError(f"{path.name}: tensors of the wrong shape: {bad[:10]}")
    net.load_state_dict(mapped, strict=True)
    return net.eval()
