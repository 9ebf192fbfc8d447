"""ReFusion (Bai et al., IJCV 2024): fusion network F, loss proposal network P, reconstruction network R,
the official-weights loader, and the meta-learning step as pure functions (``torch.func``).

- :class:`FusionNet` is the official released fusion module (HaowenBai/ReFusion ``ReFusion.py``, class ``ReFusion``,
  commit 54b7334) with plain ``nn.Conv2d`` layers instead of the ``MetaConv2d`` wrappers: the ``*_meta`` shadow
  tensors of the official "MetaModule" pattern are replaced by :func:`torch.func.functional_call` with updated
  parameter dicts (:func:`inner_update`), so nothing is hand-copied.
- :class:`LossProposalNet` (P) and :class:`ReconstructionNet` (R) were never released; their blocks follow TDFusion's
  official ``nets/ReFusion.py`` (class ``LPN``) and the ReFusion framework figure (details: each class docstring).
- The meta-learning step (digest §4): ``inner_update`` = one differentiable SGD step of F on P's loss (graph kept:
  second order) and one first-order SGD step of R; ``meta_loss`` = reconstruction loss of R'(F'(x')) on the next batch,
  whose backward reaches P's parameters through F' (Hessian-vector products); ``normalised_gradient_update_`` = the
  official P update ``p ← p − lr·grad / max|grad|``.
- Speed / memory (issue 13; figures: benchmarks/refusion_speed.py → benchmarks/results/refusion_speed.json):
  LayerNorm is one ``F.layer_norm`` kernel on a channels-last view (same state-dict keys); every transformer block can
  be checkpointed (:func:`set_gradient_checkpointing`, the networks' ``gradient_checkpointing`` argument, the
  module's ``gradient_checkpointing``); the inner gradient's derivative w.r.t. P's maps is computed by a forward-mode
  JVP of F in the outer backward (``meta_gradient="jvp"``, :class:`_FusionGradient`) instead of a double backward
  through a stored backward graph of F. Same values (tests/test_refusion_speed_memory.py).

All networks take and return float tensors in [0, 1]. Sources are N×K×C×H×W (K = 2, C = 1: Y channels).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp
from torch.utils.checkpoint import checkpoint

from lightning_modules.checkpoints import checkpoint_state
from lightning_modules.deepfuse import minmax_normalize, rgb_to_ycbcr, ycbcr_to_rgb
from lightning_modules.fusion_baselines import PixelMax, PixelMean
from lightning_modules.image_grid import finish_samples, log_grid, save_samples, side_by_side
from lightning_modules.inference import FastInference
from lightning_modules.per_image import PerImageRows, per_image_scores
from losses._amp import autocast_off
from losses.refusion import refusion_fusion_loss, refusion_reconstruction_loss, sobel_gradient
from metrics.fusion import DEFAULT_METRICS, FusionMetrics

__all__ = [
    "OFFICIAL_REFUSION_SOURCE",
    "OFFICIAL_REFUSION_TASKS",
    "FusionNet",
    "LossProposalNet",
    "ReconstructionNet",
    "TransformerBlock",
    "set_gradient_checkpointing",
    "map_official_refusion_state_dict",
    "load_official_refusion",
    "InnerStep",
    "inner_update",
    "meta_loss",
    "normalised_gradient_update_",
]

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


# --------------------------------------------------------------------------------------------------------------
# Restormer blocks (official ReFusion.py), bias-free convolutions
# --------------------------------------------------------------------------------------------------------------
def _conv(c_in: int, c_out: int, kernel_size: int = 1, groups: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size, stride=1, padding=kernel_size // 2, groups=groups, bias=bias)


class WithBiasLayerNorm(nn.Module):
    """LayerNorm over the channels of each pixel: ``(x − μ)/sqrt(σ² + 1e-5)·weight + bias`` (biased σ²).

    Input N×C×H×W; computed with :func:`torch.nn.functional.layer_norm` over a channels-last view (the output is a
    channels-last-strided N×C×H×W view). SOURCE: official ``WithBias_LayerNorm`` (there applied on ``b (h w) c``;
    same values).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        # F.layer_norm on a channels-last view (one fused kernel; the hand-written mean/var/sqrt formula took ~24%
        # of a training step); same keys and values (max |Δ| ~7e-7 in fp32 on random inputs, tests)
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, 1e-5)
        return y.permute(0, 3, 1, 2)


class LayerNorm2d(nn.Module):
    """Holder so that parameter names are ``norm1.body.weight`` as in the official checkpoints."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = WithBiasLayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


def _transposed_attention(q: Tensor, k: Tensor, v: Tensor, temperature: Tensor, heads: int) -> Tensor:
    """softmax(norm(q)·norm(k)ᵀ·τ)·v per head over channels (MDTA); q, k, v N×C×H×W, τ heads×1×1."""
    n, c, h, w = q.shape
    q, k, v = (t.reshape(n, heads, c // heads, h * w) for t in (q, k, v))
    q = F.normalize(q, dim=-1)
    k = F.normalize(k, dim=-1)
    attn = (q @ k.transpose(-2, -1) * temperature).softmax(dim=-1)
    return (attn @ v).reshape(n, c, h, w)


class Attention(nn.Module):
    """Multi-Dconv head transposed attention (MDTA). SOURCE: official ``Attention``."""

    def __init__(self, dim: int, num_heads: int, bias: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = _conv(dim, dim * 3, 1, bias=bias)
        self.qkv_dwconv = _conv(dim * 3, dim * 3, 3, groups=dim * 3, bias=bias)
        self.project_out = _conv(dim, dim, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        return self.project_out(_transposed_attention(q, k, v, self.temperature, self.num_heads))


class FeedForward(nn.Module):
    """Gated-Dconv feed-forward network (GDFN). SOURCE: official ``FeedForward``."""

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool = False) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = _conv(dim, hidden * 2, 1, bias=bias)
        self.dwconv = _conv(hidden * 2, hidden * 2, 3, groups=hidden * 2, bias=bias)
        self.project_out = _conv(hidden, dim, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


_CHECKPOINT_SUSPENDED = False  # set by _suspended_checkpointing (torch.func transforms refuse checkpoint hooks)


def _checkpoint_now(block: nn.Module, x: Tensor) -> bool:
    """Checkpoint only where a graph is being recorded (not under no_grad / inference / forward-mode JVP)."""
    if _CHECKPOINT_SUSPENDED or not torch.is_grad_enabled():
        return False
    return x.requires_grad or any(p.requires_grad for p in block.parameters())


@contextmanager
def _suspended_checkpointing() -> Iterator[None]:
    global _CHECKPOINT_SUSPENDED
    before, _CHECKPOINT_SUSPENDED = _CHECKPOINT_SUSPENDED, True
    try:
        yield
    finally:
        _CHECKPOINT_SUSPENDED = before


def set_gradient_checkpointing(module: nn.Module, enabled: bool = True) -> nn.Module:
    """Per-block gradient checkpointing for every :class:`TransformerBlock` in ``module`` (returns ``module``).

    A checkpointed block stores only its input and recomputes its activations in backward
    (``torch.utils.checkpoint.checkpoint(use_reentrant=False)``); it supports ``autograd.grad(create_graph=True)``
    and works under ``functional_call`` (the block's current parameters are passed to the checkpoint explicitly).
    Same values and gradients; less memory, one more forward of every block per backward (measured:
    benchmarks/refusion_speed.py). Blocks are not checkpointed under ``no_grad`` / inference.
    """
    for m in module.modules():
        if isinstance(m, TransformerBlock):
            m.gradient_checkpointing = enabled
    return module


class TransformerBlock(nn.Module):
    """Restormer transformer block (RTB): ``x + MDTA(LN(x))`` then ``x + GDFN(LN(x))``.

    ``gradient_checkpointing`` (attribute, default False): see :func:`set_gradient_checkpointing`.
    """

    def __init__(
        self, dim: int, num_heads: int = 8, ffn_expansion_factor: float = 2, bias: bool = False
    ) -> None:
        super().__init__()
        self.norm1 = LayerNorm2d(dim)
        self.attn = Attention(dim, num_heads, bias)
        self.norm2 = LayerNorm2d(dim)
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias)
        #: recompute this block's activations in backward instead of storing them (see :func:`set_gradient_checkpointing`)
        self.gradient_checkpointing = False

    def forward(self, x: Tensor, _recomputing: bool = False) -> Tensor:
        if self.gradient_checkpointing and not _recomputing and _checkpoint_now(self, x):
            # the block's parameters are passed explicitly: under functional_call (F' of the meta step) they are the
            # substituted tensors, which must also be the ones the recomputation in backward uses
            names, values = zip(*self.named_parameters(), strict=True)
            return checkpoint(self._recompute, x, names, *values, use_reentrant=False)
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))

    def _recompute(self, x: Tensor, names: tuple[str, ...], *values: Tensor) -> Tensor:
        return functional_call(self, dict(zip(names, values, strict=True)), (x,), {"_recomputing": True})


def _blocks(dim: int, n: int, heads: int, ffn: float, bias: bool) -> nn.ModuleList:
    return nn.ModuleList([TransformerBlock(dim, heads, ffn, bias) for _ in range(n)])


def _run(blocks: nn.ModuleList, x: Tensor) -> Tensor:
    for block in blocks:
        x = block(x)
    return x


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
        self.qkv1 = _conv(dim, dim * 3, 1, bias=bias)
        self.qkv1_dwconv = _conv(dim * 3, dim * 3, 3, groups=dim * 3, bias=bias)
        self.qkv2 = _conv(dim, dim * 3, 1, bias=bias)
        self.qkv2_dwconv = _conv(dim * 3, dim * 3, 3, groups=dim * 3, bias=bias)
        self.project_mid1 = _conv(dim, dim, 1, bias=bias)
        self.project_mid2 = _conv(dim, dim, 1, bias=bias)
        self.project_E = _conv(dim * 2, dim * 8, 1, bias=bias)
        self.project_E_d = _conv(dim * 8, dim * 8, 3, groups=dim * 8, bias=bias)
        self.project_E1 = _conv(dim, dim * 4, 1, bias=bias)
        self.project_E1_d = _conv(dim * 4, dim * 4, 3, groups=dim * 4, bias=bias)
        self.project_E2 = _conv(dim, dim * 4, 1, bias=bias)
        self.project_E2_d = _conv(dim * 4, dim * 4, 3, groups=dim * 4, bias=bias)
        self.project_out1 = _conv(dim * 4, dim * 2, 1, bias=bias)
        self.project_out2 = _conv(dim * 4, dim * 2, 1, bias=bias)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        q1, k1, v1 = self.qkv1_dwconv(self.qkv1(x1)).chunk(3, dim=1)
        q2, k2, v2 = self.qkv2_dwconv(self.qkv2(x2)).chunk(3, dim=1)
        out1 = _transposed_attention(q2, k1, v1, self.temperature1, self.num_heads)
        out2 = _transposed_attention(q1, k2, v2, self.temperature2, self.num_heads)
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
class FusionNet(nn.Module):
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
        self.project_in_1 = _conv(1, dim, 3, bias=bias)
        self.project_in_2 = _conv(1, dim, 3, bias=bias)
        self.encoder1 = _blocks(dim, num_blocks, heads, ffn_expansion_factor, bias)
        self.encoder2 = _blocks(dim, num_blocks, heads, ffn_expansion_factor, bias)
        self.FM = AFM(dim, heads, bias)
        self.decoder = _blocks(dim * 2, num_blocks, heads, ffn_expansion_factor, bias)
        self.project_out_0 = _conv(dim * 2, dim, 3, bias=bias)
        self.act = nn.LeakyReLU()
        self.project_out_1 = _conv(dim, 1, 3, bias=bias)
        set_gradient_checkpointing(self, gradient_checkpointing)

    def forward(self, x: Tensor) -> Tensor:
        x = _as_pair(x, "FusionNet")
        x1 = _run(self.encoder1, self.project_in_1(x[:, :1]))
        x2 = _run(self.encoder2, self.project_in_2(x[:, 1:]))
        out = _run(self.decoder, self.FM(x1, x2))
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
        self.patch_embed1 = _conv(1, dim, 3, bias=bias)
        self.patch_embed2 = _conv(1, dim, 3, bias=bias)
        self.encoder1 = _blocks(dim, num_blocks, heads, ffn_expansion_factor, bias)
        self.encoder2 = _blocks(dim, num_blocks, heads, ffn_expansion_factor, bias)
        self.encoder3 = _blocks(dim * 2, num_blocks, heads, ffn_expansion_factor, bias)
        self.out1 = _conv(dim * 2, dim, 3, bias=bias)
        self.out2 = nn.PReLU()
        self.out3 = _conv(dim, 2, 3, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        x1 = _run(self.encoder1, self.patch_embed1(x[:, :1]))
        x2 = _run(self.encoder2, self.patch_embed2(x[:, 1:]))
        out = _run(self.encoder3, torch.cat((x1, x2), 1))
        return self.out3(self.out2(self.out1(out))).softmax(dim=1)


class LossProposalNet(nn.Module):
    """ReFusion's loss proposal network P: per-pixel softmax weights over the 2 sources for the loss terms.

    Two sub-networks of identical structure (TDFusion's official ``LPN``, see ``_ProposalBranch``):
    ``intensity`` on (I_a, I_b) → w; ``gradient`` on (∇I_a, ∇I_b) (Sobel magnitude, as in the ReFusion figure) → v.
    ``gradient_input='intensity'`` feeds it (I_a, I_b) instead (how the unofficial training copy calls P; which
    input the real P used is not found). Exact layers / parameter count of ReFusion's P: **not found** (not released);
    these are inferred (digest §2.2).

    ``order_equivariant=True`` (our option, off in the official recipe): P's maps are averaged with those of the
    swapped input, ``P_sym(a, b) = ½·(P(a, b) + swap(P(b, a)))``, so swapping the sources swaps the weights exactly.
    The official P only learns this from the swapped training batches; at random init it favours one input slot
    (measured: w ≈ 0.78 on the second source wherever it is, seed-1 demo run), and in a short run that bias stays.
    Costs a second forward of P.

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
        self.project_in = _conv(1, dim, 3, bias=bias)
        self.blocks = _blocks(dim, num_blocks, heads, ffn_expansion_factor, bias)
        self.project_out = _conv(dim, 1, 3, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.project_out(_run(self.blocks, self.project_in(x))))


class ReconstructionNet(nn.Module):
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
        KeyError: keys missing from / unexpected in the checkpoint after alias mapping (listed).
        ValueError: a tensor of the wrong shape, or an alias pair that disagrees.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"ReFusion checkpoint not found: {path}. Official source: {OFFICIAL_REFUSION_SOURCE}"
        )
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


# --------------------------------------------------------------------------------------------------------------
# Meta-learning step (pure functions over parameter dicts)
# --------------------------------------------------------------------------------------------------------------
class InnerStep(NamedTuple):
    """Result of :func:`inner_update`.

    fusion_params: F' = F − lr·∇_F L_f, attached to the graph of P's parameters (second order); F's own
        weights enter detached, so a backward of :func:`meta_loss` fills only P's ``.grad``.
    reconstruction_params: R' = R − lr·∇_R L_r, detached (first order, as the official training code).
    fusion_loss: L_f on the meta-train batch (attached). reconstruction_loss: L_r of R on F(x) (detached).
    """

    fusion_params: dict[str, Tensor]
    reconstruction_params: dict[str, Tensor]
    fusion_loss: Tensor
    reconstruction_loss: Tensor


def _params(module: nn.Module, given: Mapping[str, Tensor] | None) -> dict[str, Tensor]:
    return dict(given) if given is not None else dict(module.named_parameters())


def _fp32(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _check_fusion_sources(sources: Tensor, who: str) -> None:
    if sources.ndim != 5 or sources.shape[1] != 2 or sources.shape[2] != 1:
        raise ValueError(
            f"{who}: sources must be N×2×1×H×W (Y of the two sources), got {tuple(sources.shape)}"
        )


class _FusionGradient(torch.autograd.Function):
    """``∇_θ L_f(F_θ(x); w, v)`` as a differentiable function of P's maps (w, v), with θ (F's weights) constant.

    forward: one ordinary first-order backward of F (no graph kept, so block checkpointing applies).
    backward: the cotangent ``u`` of ∇_θ L_f (from the outer loss through F' = θ − lr·∇_θ L_f) gives
    ``∂⟨u, ∇_θ L_f⟩/∂(w, v) = ∂⟨J_θ u, ∂L_f/∂F⟩/∂(w, v)``: ∇_θ L_f = J_θᵀ·∂L_f/∂F, and only ∂L_f/∂F depends on
    (w, v). ``J_θ u`` is one forward-mode JVP of F (:func:`torch.func.jvp`, no stored activations); the rest is a
    double backward of the elementwise loss only. Exactly the second-order meta-gradient of a double backward
    through F's backward graph (tests), without keeping that graph.
    """

    @staticmethod
    def forward(ctx: Any, w: Tensor, v: Tensor, fusion_net: nn.Module, names: tuple[str, ...],
                values: tuple[Tensor, ...], sources: Tensor, alpha_grad: float, squared_weights: bool) -> Any:
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(True) for t in values]
            fused = functional_call(fusion_net, dict(zip(names, leaves, strict=True)), (sources,))
            loss = refusion_fusion_loss(fused, sources, w.detach(), v.detach(), alpha_grad=alpha_grad,
                                        squared_weights=squared_weights)
            grads = torch.autograd.grad(loss, leaves, allow_unused=True)
        grads = tuple(torch.zeros_like(t) if g is None else g for g, t in zip(grads, values, strict=True))
        fused = fused.detach()
        ctx.save_for_backward(w.detach(), v.detach(), fused, sources)
        ctx.fusion_net, ctx.names, ctx.values = fusion_net, names, tuple(t.detach() for t in values)
        ctx.alpha_grad, ctx.squared_weights = alpha_grad, squared_weights
        ctx.mark_non_differentiable(fused)
        return (fused, *grads)

    @staticmethod
    def backward(ctx: Any, _fused_cotangent: Tensor, *u: Tensor) -> Any:
        w, v, fused, sources = ctx.saved_tensors
        net, names = ctx.fusion_net, ctx.names

        def f_of_params(*values: Tensor) -> Tensor:
            return functional_call(net, dict(zip(names, values, strict=True)), (sources,))

        with torch.no_grad():
            _, tangent = jvp(f_of_params, ctx.values, tuple(u))
        with torch.enable_grad():
            w_, v_, f_ = (t.detach().requires_grad_(True) for t in (w, v, fused))
            loss = refusion_fusion_loss(f_, sources, w_, v_, alpha_grad=ctx.alpha_grad,
                                        squared_weights=ctx.squared_weights)
            (d_fused,) = torch.autograd.grad(loss, f_, create_graph=True)
            gw, gv = torch.autograd.grad((d_fused * tangent).sum(), (w_, v_), allow_unused=True)
        gw = torch.zeros_like(w) if gw is None else gw
        gv = torch.zeros_like(v) if gv is None else gv
        return gw, gv, None, None, None, None, None, None


def inner_update(
    fusion_net: nn.Module,
    reconstruction_net: nn.Module,
    loss_proposal_net: nn.Module,
    sources: Tensor,
    lr: float,
    *,
    reconstruction_targets: Tensor | None = None,
    alpha_grad: float = 1.0,
    squared_weights: bool = True,
    loss_params: Mapping[str, Tensor] | None = None,
    fusion_params: Mapping[str, Tensor] | None = None,
    reconstruction_params: Mapping[str, Tensor] | None = None,
    meta_gradient: Literal["jvp", "double_backward"] = "jvp",
) -> InnerStep:
    """One virtual SGD step of F (differentiable, second order) and of R (first order) on a meta-train batch.

    ``F' = F − lr·∇_F L_f(F(x); P(x))`` with P's maps **not detached**, so F' is a function of P's parameters;
    ``R' = R − lr·∇_R L_r(R(F(x).detach()), targets)``, detached. The modules themselves are not modified
    (:func:`torch.func.functional_call`). Runs in fp32 with autocast off.

    Args:
        fusion_net, reconstruction_net, loss_proposal_net: F, R, P (plain modules, e.g. ``DDP.module``).
        sources: N×2×1×H×W meta-train batch (Y channels in [0, 1]).
        lr: the inner step size (official: F's current Adam learning rate).
        reconstruction_targets: N×2×1×H×W targets of R (default: ``sources``; with source swapping the un-swapped
            sources, so that R always outputs (A, B)).
        alpha_grad, squared_weights: passed to :func:`~losses.refusion.refusion_fusion_loss`.
        loss_params, fusion_params, reconstruction_params: parameter dicts to use instead of the modules' own
            (default ``dict(module.named_parameters())``), e.g. for a gradient check w.r.t. P. F's and R's
            weights are used detached in any case (only P's parameters stay in the graph).
        meta_gradient: how the outer backward differentiates ∇_F L_f w.r.t. P's maps (same values, tests):
            ``"jvp"`` (default): :class:`_FusionGradient`, the inner gradient is a first-order backward and its
            derivative one forward-mode JVP of F in the outer backward: F's backward graph is not kept, and block
            gradient checkpointing (:func:`set_gradient_checkpointing`) applies to F, P and R.
            ``"double_backward"``: the reference route, :func:`torch.func.grad` keeps F's backward graph for a
            double backward (~2× the memory; block checkpointing is suspended here: torch.func refuses its hooks).

    Returns:
        :class:`InnerStep`.
    """
    if meta_gradient not in ("jvp", "double_backward"):
        raise ValueError(f"meta_gradient must be 'jvp' or 'double_backward', got {meta_gradient!r}")
    _check_fusion_sources(sources, "inner_update")
    targets = sources if reconstruction_targets is None else reconstruction_targets
    if targets.shape != sources.shape:
        raise ValueError(
            f"reconstruction_targets {tuple(targets.shape)} must match sources {tuple(sources.shape)}"
        )
    device_type = sources.device.type
    with autocast_off(device_type):
        sources, targets = _fp32(sources), _fp32(targets)
        p_params = _params(loss_proposal_net, loss_params)
        # F's own weights enter as constants: the outer backward then reaches P only (not F's .grad);
        # P's meta-gradient is the same, since P acts on F' only through the inner gradient.
        f_params = {k: v.detach() for k, v in _params(fusion_net, fusion_params).items()}
        r_params = _params(reconstruction_net, reconstruction_params)

        if meta_gradient == "jvp":
            w, v = functional_call(loss_proposal_net, p_params, (sources,))
            names = tuple(f_params)
            fused, *g = _FusionGradient.apply(w, v, fusion_net, names, tuple(f_params[k] for k in names), sources,
                                              alpha_grad, squared_weights)
            f_grads = dict(zip(names, g, strict=True))
            l_f = refusion_fusion_loss(fused, sources, w, v, alpha_grad=alpha_grad, squared_weights=squared_weights)
        else:
            def fusion_objective(fp: dict[str, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
                fused = functional_call(fusion_net, fp, (sources,))
                w, v = functional_call(loss_proposal_net, p_params, (sources,))
                loss = refusion_fusion_loss(
                    fused, sources, w, v, alpha_grad=alpha_grad, squared_weights=squared_weights
                )
                return loss, (loss, fused)

            with _suspended_checkpointing():
                f_grads, (l_f, fused) = grad(fusion_objective, has_aux=True)(f_params)
        new_f = {k: f_params[k] - lr * f_grads[k] for k in f_params}

        fused_in = fused.detach()
        r_leaves = {k: v.detach().requires_grad_(True) for k, v in r_params.items()}
        with torch.enable_grad():
            l_r = refusion_reconstruction_loss(functional_call(reconstruction_net, r_leaves, (fused_in,)), targets)
            r_grads = torch.autograd.grad(l_r, list(r_leaves.values()), allow_unused=True)
        new_r = {k: (r_leaves[k].detach() - lr * (0 if g is None else g)).detach()
                 for k, g in zip(r_leaves, r_grads, strict=True)}
    return InnerStep(new_f, new_r, l_f, l_r.detach())


def meta_loss(
    fusion_net: nn.Module,
    reconstruction_net: nn.Module,
    sources: Tensor,
    inner: InnerStep,
    *,
    reconstruction_targets: Tensor | None = None,
    source_reduction: Literal["max", "mean"] = "max",
) -> Tensor:
    """Outer objective: ``L_r(R'(F'(x')), x')`` on a meta-test batch, with F', R' from :func:`inner_update`.

    Differentiable w.r.t. P's parameters through F' (second order: its backward computes Hessian-vector products);
    the P update is then e.g. :func:`normalised_gradient_update_`. Runs in fp32 with autocast off.

    Args:
        fusion_net, reconstruction_net: the modules whose structure F', R' share.
        sources: N×2×1×H×W meta-test batch (the next batch in the official code).
        inner: the :class:`InnerStep` of the preceding meta-train batch.
        reconstruction_targets: default ``sources`` (see :func:`inner_update`).
        source_reduction: 'max' (code) or 'mean', see :func:`~losses.refusion.refusion_reconstruction_loss`.

    Returns:
        Scalar loss ≥ 0.
    """
    _check_fusion_sources(sources, "meta_loss")
    targets = sources if reconstruction_targets is None else reconstruction_targets
    if targets.shape != sources.shape:
        raise ValueError(
            f"reconstruction_targets {tuple(targets.shape)} must match sources {tuple(sources.shape)}"
        )
    with autocast_off(sources.device.type):
        sources, targets = _fp32(sources), _fp32(targets)
        fused = functional_call(fusion_net, inner.fusion_params, (sources,))
        recon = functional_call(reconstruction_net, inner.reconstruction_params, (fused,))
        return refusion_reconstruction_loss(recon, targets, source_reduction=source_reduction)


@torch.no_grad()
def normalised_gradient_update_(parameters: Iterable[nn.Parameter], lr: float) -> Tensor:
    """Official P update: ``p ← p − lr·grad / g_max``, g_max = max |grad| over all parameters (in place).

    Parameters without a gradient are skipped; returns g_max (0 → no update). SOURCE: training copy / TDFusion
    ``utils.py`` ``outer_update``.
    """
    parameters = list(parameters)
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return torch.zeros((), device=parameters[0].device if parameters else None)
    g_max = torch.stack([p.grad.detach().abs().max() for p in params]).max()
    # no `if g_max > 0`: a host sync per step on a GPU; g_max = 0 means every gradient is 0 (no update either way)
    denominator = torch.where(g_max > 0, g_max, torch.ones_like(g_max))
    with torch.no_grad():
        for p in params:
            p.sub_(lr * p.grad / denominator)
    return g_max


# ---- LightningModule ----
# (The LightningModule's imports are kept here so the networks above stay importable without Lightning.)



__all__ += ["ReFusion", "fuse_chroma_official", "is_grey"]


def is_grey(rgb: Tensor) -> Tensor:
    """Whether each image is grey: all three channels exactly equal (official ``test.py`` rule).

    Shapes: …×3×H×W → … (bool).
    """
    return ((rgb[..., 0, :, :] == rgb[..., 1, :, :]) & (rgb[..., 1, :, :] == rgb[..., 2, :, :])).flatten(-2).all(-1)


def fuse_chroma_official(c1: Tensor, c2: Tensor, tau: float = 0.5) -> Tensor:
    """Official chroma fusion of two colour sources, on values in [0, 1] that stand for 0–255 codes.

    ``C = (C1·|C1 − τ| + C2·|C2 − τ|)/(|C1 − τ| + |C2 − τ| + 1e-4)`` evaluated on 0–255 values (official
    ``utils.py``), with τ in 0–255 units: the official code's τ = 0.5 (on 0–255 values a magnitude weighting);
    τ = 128 is the intended distance-from-neutral weighting. Shapes: any, equal; returns the same shape in [0, 1].
    """
    a, b = c1 * 255.0, c2 * 255.0
    wa, wb = (a - tau).abs(), (b - tau).abs()
    return (a * wa + b * wb) / (wa + wb + 1e-4) / 255.0


class ReFusion(FastInference, LightningModule):
    """ReFusion (Bai et al., IJCV 2024): image fusion learned from source reconstruction with a meta-learned loss.

    Networks: F = :class:`FusionNet` (the official released module; ``from_official`` loads its weights),
    P = :class:`LossProposalNet`, R = :class:`ReconstructionNet` (not released; inferred, see their docstrings).

    Training (manual optimisation, digest §4). Lightning epochs alternate between the two phases of one official
    epoch, so ``max_epochs`` = 2 × the official epoch count (50 in the training copy → 100):

    * even epochs, **meta phase** (``meta=True``): up to ``2·meta_steps`` batches; an even batch makes the inner step
      (:func:`inner_update`: F' = F − lr·∇L_f with P's maps attached, second order; R' first order; lr = F's current
      learning rate), the next batch the outer step (:func:`meta_loss` of R'(F'(x')) divided by
      ``meta_accumulation``, backward into P); every ``meta_accumulation`` outer steps P is updated
      (``p_update="normalised"``: p ← p − lr·grad/max|grad|, official; ``"adam"``: Adam with ε = 1e-10). The rest of
      the epoch is skipped (the official loop breaks). With ``meta=False`` the meta epochs are skipped entirely.
    * odd epochs, **fusion phase**, a full pass: Adam step of F on L_f with P's maps detached (``meta=False``: fixed
      equal weights w = v = ½, the ablation baseline) and of R on L_r(R(F(x).detach())), in one optimiser step so
      ``trainer.global_step`` counts fusion iterations (meta iterations do not advance it).
    * α1 (gradient-term coefficient) = ``alpha_grad``·(e + 1)/``alpha_ramp_epochs`` at official epoch e (capped at
      ``alpha_grad``; ``None`` = constant); StepLR(``lr_step_epochs``, ``lr_gamma``) per official epoch.
    * ``swap_sources``: each batch is doubled with the sources swapped (F and P see both orders; R's targets stay
      in the given order), as the official code.

    DDP: the DDP reducer is switched off (``require_backward_grad_sync = False``) and the gradients that are applied
    (F and R in the fusion phase, P after the outer backward) are averaged over ranks explicitly, because the
    phases use disjoint parameter sets; the inner gradients stay per rank, as in the official code. Mixed precision:
    the meta step runs in fp32 with autocast off (:func:`inner_update`, :func:`meta_loss`); its backward is not
    loss-scaled.

    Inference (``forward``): sources N×K×C×H×W in [0, 1] (K = 2 in the official order per task, C ∈ {1, 3}) →
    fused N×C×H×W. Colour sources are fused on Y (OpenCV/kornia full-range YCbCr, Y rounded to 8-bit codes as
    OpenCV's uint8 conversion) and recombined with chroma as the official ``test.py``: both grey → grey, one colour →
    its chroma, both colour → :func:`fuse_chroma_official`. The fused Y is min–max normalised per image
    (``normalize_output``, official).

    Validation/test: :class:`~metrics.fusion.FusionMetrics` on the grey Y of the fused image vs the sources' Y, and
    the same for the pixel-mean and pixel-max baselines on the same batch (``test/mean_*``, ``test/max_*``).
    Keys are lower-case metric names (``val/qabf``).

    Args:
        task: ``"ivif"``, ``"mfif"``, ``"meif"`` or ``"mif"`` (tags, and which official checkpoint fits).
        meta: learnable loss via meta-learning (True) or the fixed equal-weight loss (False, ablation baseline).
        meta_steps: meta iterations per (official) epoch; training copy 600, TDFusion 200; paper: not found.
        first_meta_steps: meta iterations in the first official epoch (``None``: ``meta_steps``). Our option for
            short runs: P then learns its focus weights before F's first fusion pass, as it does in the official
            recipe, whose first meta phase has hundreds of P updates. Like ``meta_steps``, capped by the batches
            in one epoch (2 per meta iteration).
        meta_accumulation: outer steps per P update (training copy: 2; TDFusion: 1).
        p_update: ``"normalised"`` (official) or ``"adam"``.
        p_lr: step size of P's update (``None`` = ``lr``, official: P's normalised step uses F's current learning
            rate); with ``"normalised"`` it follows F's StepLR decay (scaled by F's current/initial lr).
        lr: Adam learning rate of F and R, and the inner / P step size (official 1e-4).
        lr_step_epochs, lr_gamma: StepLR per official epoch (10, 0.1).
        alpha_grad: coefficient of the gradient term; alpha_ramp_epochs: its linear ramp (50; ``None`` = off).
        squared_weights: P's weights enter the loss squared (code) or linearly (paper figure).
        swap_sources: double each batch with swapped sources (official).
        gradient_input: what P's gradient branch sees, see :class:`LossProposalNet`.
        order_equivariant: P's weights swap exactly with the sources (our option; official: False), see
            :class:`LossProposalNet`.
        zero_init_output: start F's last conv (``project_out_1``) at zero, so F starts at a constant 0.5 and the
            sign of its output path is learnt from the loss (our option; official: PyTorch's default init). With the
            default init some seeds start F anti-correlated with its sources (correlation −0.85 with the pixel mean
            at seed 3408), and such an F needs many more steps: on the demo data, trained with oracle gradient
            weights (v = 1 on the sharp source) and w = ½, Qabf after 200 steps was 0.57 (default init) vs 0.71
            (zero init) at seed 3408, 0.73 vs 0.72 at seed 0. Ignored by weights loaded afterwards
            (``pretrained``, checkpoints).
        normalize_output: min–max normalise the fused Y at inference (official ``test.py``).
        chroma_tau: τ of :func:`fuse_chroma_official` in 0–255 units (official 0.5; intended 128).
        pretrained: an official ``ReFusion_*.pth`` (into F) or a Darkroom ``.ckpt``.
        metrics: fusion metric names (default: all of :data:`metrics.fusion.DEFAULT_METRICS`).
        log_images: whether to log the source 1 | source 2 | fused | mean grid of the first val/test batch.
        gradient_checkpointing: per-transformer-block gradient checkpointing of F, P and R in training
            (:func:`set_gradient_checkpointing`; same values and gradients): ``"meta"`` (default) in the meta phase
            only, ``"all"`` also in the fusion phase, ``"off"``. Measured (benchmarks/refusion_speed.py, 2 CPU
            threads, glibc allocator, machine shared with other jobs at load 6–8), 256² crops, batch 2 + swap: the
            meta iteration peaks at 4.3 GiB RSS with checkpointing and exceeds a 15 GiB cap without (so the meta
            phase needs it); the fusion step peaks at 3.5 GiB with vs 7.7 GiB without, and is ~35% slower with
            (68.6 vs 51.2 s under that load), so the fusion phase runs without by default.
        meta_gradient: ``"jvp"`` (default) or ``"double_backward"``, see :func:`inner_update` (same values; the
            JVP route keeps no backward graph of F and lets checkpointing apply to the meta step).
    """

    paper = "refusion"
    monitor = ("val/qabf", "max")

    def __init__(
        self,
        task: Literal["ivif", "mfif", "meif", "mif"] = "ivif",
        meta: bool = True,
        meta_steps: int = 600,
        first_meta_steps: int | None = None,
        meta_accumulation: int = 2,
        p_update: Literal["normalised", "adam"] = "normalised",
        lr: float = 1e-4,
        p_lr: float | None = None,
        lr_step_epochs: int = 10,
        lr_gamma: float = 0.1,
        alpha_grad: float = 1.0,
        alpha_ramp_epochs: int | None = 50,
        squared_weights: bool = True,
        swap_sources: bool = True,
        gradient_input: Literal["gradient", "intensity"] = "gradient",
        order_equivariant: bool = False,
        zero_init_output: bool = False,
        normalize_output: bool = True,
        chroma_tau: float = 0.5,
        pretrained: str | None = None,
        metrics: list[str] | None = None,
        log_images: bool = True,
        gradient_checkpointing: Literal["off", "meta", "all"] = "meta",
        meta_gradient: Literal["jvp", "double_backward"] = "jvp",
    ) -> None:
        super().__init__()
        if task not in ("ivif", "mfif", "meif", "mif"):
            raise ValueError(f"task must be 'ivif', 'mfif', 'meif' or 'mif', got {task!r}")
        if meta_steps < 1 or meta_accumulation < 1 or (first_meta_steps is not None and first_meta_steps < 1):
            raise ValueError(f"meta_steps, first_meta_steps and meta_accumulation must be ≥ 1, got {meta_steps}, "
                             f"{first_meta_steps}, {meta_accumulation}")
        if p_update not in ("normalised", "adam"):
            raise ValueError(f"p_update must be 'normalised' or 'adam', got {p_update!r}")
        if p_lr is not None and p_lr <= 0:
            raise ValueError(f"p_lr must be > 0, got {p_lr}")
        if gradient_checkpointing not in ("off", "meta", "all"):
            raise ValueError(f"gradient_checkpointing must be 'off', 'meta' or 'all', got {gradient_checkpointing!r}")
        if meta_gradient not in ("jvp", "double_backward"):
            raise ValueError(f"meta_gradient must be 'jvp' or 'double_backward', got {meta_gradient!r}")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.fusion = FusionNet()
        if zero_init_output:
            nn.init.zeros_(self.fusion.project_out_1.weight)
        self.loss_proposal = LossProposalNet(gradient_input=gradient_input, order_equivariant=order_equivariant)
        self.reconstruction = ReconstructionNet()
        self.pixel_mean, self.pixel_max = PixelMean(), PixelMax()
        names = tuple(metrics) if metrics else DEFAULT_METRICS
        self.val_metrics = FusionMetrics(names)
        self.test_metrics = FusionMetrics(names)
        self.test_mean_metrics = FusionMetrics(names)
        self.test_max_metrics = FusionMetrics(names)
        self.tags = [task, "meta" if meta else "fixed-loss", f"meta_steps={meta_steps}"]
        self._inner: InnerStep | None = None
        self._outer_count = 0
        self.last_grid_path: Path | None = None
        self.variant = task
        self.per_image = PerImageRows()
        if pretrained:
            self.load_pretrained(pretrained)

    # -- weights ---------------------------------------------------------------------------------
    def load_pretrained(self, path: str | Path) -> None:
        """Load an official ``ReFusion_*.pth`` into F, or F/P/R from a Darkroom ``.ckpt``."""
        path = Path(path)
        if path.suffix == ".ckpt":
            nets = ("fusion.", "loss_proposal.", "reconstruction.")
            self.load_state_dict(checkpoint_state(path, nets, strip=False), strict=False)
            return
        self.fusion.load_state_dict(load_official_refusion(path).state_dict())

    @classmethod
    def from_official(
        cls, path: str | Path, task: Literal["ivif", "mfif", "meif", "mif"] = "ivif", **kwargs: Any
    ) -> ReFusion:
        """The released fusion module ``ReFusion_<TASK>.pth`` in a ready module (eval mode)."""
        return cls(task=task, pretrained=str(path), **kwargs).eval()

    # -- colour ----------------------------------------------------------------------------------
    @staticmethod
    def luma(sources: Tensor) -> Tensor:
        """Y of N×K×C×H×W sources (C = 1: as is; C = 3: full-range BT.601 Y rounded to 8-bit codes) → N×K×1×H×W."""
        if sources.shape[-3] == 1:
            return sources
        y = rgb_to_ycbcr(sources, "full")[..., :1, :, :]
        return torch.round(y.clamp(0, 1) * 255.0) / 255.0

    def fuse_y(self, y: Tensor, normalize: bool | None = None) -> Tensor:
        """F on Y sources N×2×1×H×W → N×1×H×W, min–max normalised per image when ``normalize`` (default hparam)."""
        fused = self.inference_call(self.fusion, "fusion")(y)  # --run.eval_precision bf16 etc. (.inference)
        return minmax_normalize(fused) if (self.hparams.normalize_output if normalize is None else normalize) else fused

    def inference_networks(self) -> list[nn.Module]:
        return [self.fusion]

    def recombine(self, fused_y: Tensor, sources: Tensor) -> Tensor:
        """Fused Y N×1×H×W + RGB sources N×2×3×H×W → fused RGB N×3×H×W with the official chroma rule."""
        ycc = rgb_to_ycbcr(sources, "full")
        c1, c2 = ycc[:, 0, 1:], ycc[:, 1, 1:]
        grey = is_grey(sources)  # N×2
        g1, g2 = grey[:, 0, None, None, None], grey[:, 1, None, None, None]
        both = fuse_chroma_official(c1, c2, self.hparams.chroma_tau)
        chroma = torch.where(g1 & g2, torch.full_like(c1, 0.5),
                             torch.where(g1, c2, torch.where(g2, c1, both)))
        return ycbcr_to_rgb(torch.cat([fused_y, chroma], dim=1), "full").clamp(0, 1)

    def forward(self, sources: Tensor) -> Tensor:
        """Sources N×2×C×H×W in [0, 1] (C ∈ {1, 3}) → fused N×C×H×W in [0, 1] (Y fused, chroma recombined)."""
        if sources.ndim != 5 or sources.shape[1] != 2 or sources.shape[2] not in (1, 3):
            raise ValueError(f"ReFusion expects sources N×2×C×H×W with C ∈ {{1, 3}}, got {tuple(sources.shape)}")
        fused_y = self.fuse_y(self.luma(sources))
        return fused_y if sources.shape[2] == 1 else self.recombine(fused_y, sources)

    # -- training --------------------------------------------------------------------------------
    @property
    def official_epoch(self) -> int:
        """Index of the official epoch (two Lightning epochs: meta phase, fusion phase)."""
        return self.current_epoch // 2

    @property
    def phase(self) -> str:
        return "meta" if self.current_epoch % 2 == 0 else "fusion"

    def alpha(self) -> float:
        """α1 of the current official epoch (linear ramp of the training copy)."""
        hp = self.hparams
        if hp.alpha_ramp_epochs is None:
            return float(hp.alpha_grad)
        return float(hp.alpha_grad) * min(1.0, (self.official_epoch + 1) / hp.alpha_ramp_epochs)

    def meta_steps_now(self) -> int:
        """Meta iterations of the current official epoch (``first_meta_steps`` in the first one)."""
        hp = self.hparams
        return hp.first_meta_steps if self.official_epoch == 0 and hp.first_meta_steps is not None else hp.meta_steps

    def _train_pair(self, batch: dict) -> tuple[Tensor, Tensor]:
        """(inputs of F and P, targets of R), both N'×2×1×h×w; swapped copies appended when ``swap_sources``."""
        y = self.luma(batch["sources"])
        if not self.hparams.swap_sources:
            return y, y
        return torch.cat([y, y.flip(1)]), torch.cat([y, y])

    def _sync_grads(self, params: Iterable[nn.Parameter]) -> None:
        """Average ``.grad`` over DDP ranks (one flat all-reduce); no-op on one process."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
        model = self.trainer.strategy.model
        if isinstance(model, nn.parallel.DistributedDataParallel):
            # gradients are averaged in _sync_grads; Lightning's DDPStrategy re-enables the reducer after every
            # manual-optimisation step (post_training_step), so switch it off before each DDP forward
            model.require_backward_grad_sync = False
        if self.phase == "meta" and (not self.hparams.meta or batch_idx >= 2 * self.meta_steps_now()):
            return -1  # end of the meta phase: skip the rest of this epoch
        return None

    def _set_checkpointing(self) -> None:
        """Block checkpointing of F, P, R for the current phase (``gradient_checkpointing``)."""
        mode = self.hparams.gradient_checkpointing
        on = mode == "all" or (mode == "meta" and self.phase == "meta")
        for net in (self.fusion, self.loss_proposal, self.reconstruction):
            set_gradient_checkpointing(net, on)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        x, targets = self._train_pair(batch)
        self._set_checkpointing()
        if self.phase == "meta":
            # fp32 by design (second order): also its backward, which a bf16-mixed step would otherwise run under
            # autocast (with compiled networks: "Input type (BFloat16) and weight type (Float) should be the same")
            with autocast_off(x.device.type):
                return self._meta_step(x, targets, batch_idx)
        return self._fusion_step(x, targets)

    def _meta_step(self, x: Tensor, targets: Tensor, batch_idx: int) -> Tensor:
        opt_fr, opt_p = self.optimizers()
        lr = opt_fr.param_groups[0]["lr"]
        if batch_idx % 2 == 0:  # inner step on the meta-train batch
            self._inner = inner_update(self.fusion, self.reconstruction, self.loss_proposal, x, lr,
                                       reconstruction_targets=targets, alpha_grad=self.alpha(),
                                       squared_weights=self.hparams.squared_weights,
                                       meta_gradient=self.hparams.meta_gradient)
            loss = self._inner.fusion_loss.detach()
            self.log("train/meta_inner_fusion_loss", loss, on_step=True, on_epoch=True, batch_size=x.shape[0])
            return loss
        if self._inner is None:  # an odd batch without its inner step (e.g. resumed mid-epoch)
            return torch.zeros((), device=x.device)
        loss = meta_loss(self.fusion, self.reconstruction, x, self._inner, reconstruction_targets=targets)
        (loss / self.hparams.meta_accumulation).backward()  # fp32, not loss-scaled: fills P's .grad only
        self._inner = None
        self._outer_count += 1
        if self._outer_count % self.hparams.meta_accumulation == 0:
            params = list(self.loss_proposal.parameters())
            self._sync_grads(params)
            if self.hparams.p_update == "normalised":
                p_lr = lr if self.hparams.p_lr is None else self.hparams.p_lr * lr / self.hparams.lr
                normalised_gradient_update_(params, p_lr)
            else:
                opt_p.optimizer.step()  # the raw optimiser: meta steps do not advance global_step
            opt_p.zero_grad(set_to_none=True)
        self.log("train/meta_loss", loss.detach(), on_step=True, on_epoch=True, prog_bar=True,
                 batch_size=x.shape[0])
        return loss.detach()

    def _fusion_step(self, x: Tensor, targets: Tensor) -> Tensor:
        opt_fr, _ = self.optimizers()
        if self.hparams.meta:
            self.loss_proposal.eval()
            with torch.no_grad():
                w, v = self.loss_proposal(x)
        else:
            w = v = torch.full_like(x, 0.5)
        fused = self.fusion(x)
        l_f = refusion_fusion_loss(fused, x, w.detach(), v.detach(), alpha_grad=self.alpha(),
                                   squared_weights=self.hparams.squared_weights)
        l_r = refusion_reconstruction_loss(self.reconstruction(fused.detach()), targets)
        opt_fr.zero_grad(set_to_none=True)
        self.manual_backward(l_f + l_r)  # disjoint parameters: F gets ∇L_f, R gets ∇L_r
        self._sync_grads([*self.fusion.parameters(), *self.reconstruction.parameters()])
        opt_fr.step()
        n = x.shape[0]
        self.log_dict({"train/fusion_loss": l_f.detach(), "train/reconstruction_loss": l_r.detach(),
                       "train/alpha_grad": torch.tensor(self.alpha())}, on_step=True, on_epoch=True, batch_size=n)
        self.log("train/loss", l_f.detach(), on_step=True, on_epoch=True, prog_bar=True, batch_size=n)
        return l_f.detach()

    def on_train_epoch_end(self) -> None:
        if self.phase == "fusion":
            sched_fr, sched_p = self.lr_schedulers()
            sched_fr.step()
            if self.hparams.p_update == "adam":  # the normalised update uses F's learning rate
                sched_p.step()

    # -- evaluation ------------------------------------------------------------------------------
    def _evaluate(self, batch: dict, batch_idx: int, stage: str) -> Tensor:
        sources = batch["sources"]
        y = self.luma(sources)
        fused_y = self.fuse_y(y)
        if stage == "val":
            self.val_metrics.update(fused_y, y)
        else:
            self.test_metrics.update(fused_y, y)
            self.test_mean_metrics.update(self.pixel_mean(y), y)
            self.test_max_metrics.update(self.pixel_max(y), y)
        log_grid_now = batch_idx == 0 and self.hparams.log_images
        if stage == "test" or log_grid_now:
            fused = self.recombine(fused_y, sources) if sources.shape[2] == 3 else fused_y
        if stage == "test":
            names = list(batch["name"])
            self.per_image.add(names, {**per_image_scores(self.test_metrics), **per_image_scores(self.test_mean_metrics,
                               "mean_"), **per_image_scores(self.test_max_metrics, "max_")})
            save_samples(self, names, {"input": side_by_side(sources), "output": fused})
        if log_grid_now:
            path = log_grid(self, f"{stage}/examples", [sources[:, 0], sources[:, 1], fused,
                                                        self.pixel_mean(sources)],
                            ["source 1", "source 2", "ReFusion", "pixel mean"], row_names=list(batch["name"]))
            if path is not None:
                self.last_grid_path = path
        return fused_y

    @staticmethod
    def _log_metrics(module: LightningModule, metric: FusionMetrics, prefix: str) -> None:
        values = metric.compute()
        module.log_dict({f"{prefix}{k.lower()}": v.float() for k, v in values.items()}, sync_dist=False)
        metric.reset()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def on_validation_epoch_end(self) -> None:
        if self.val_metrics.update_count:
            self._log_metrics(self, self.val_metrics, "val/")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def on_test_epoch_start(self) -> None:
        self.per_image.reset()

    def on_test_epoch_end(self) -> None:
        for metric, prefix in ((self.test_metrics, "test/"), (self.test_mean_metrics, "test/mean_"),
                               (self.test_max_metrics, "test/max_")):
            if metric.update_count:
                self._log_metrics(self, metric, prefix)
        finish_samples(self)

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        """A pair that would not fit in memory is refused before it runs, naming the memory it needs
        (:func:`lightning_modules.memory.refusion_check`; channel attention needs the whole image)."""
        from lightning_modules.memory import refusion_check

        names = batch["name"]
        refusion_check(batch["sources"], [names] if isinstance(names, str) else list(names))
        return {"output": self(batch["sources"]), "name": names}

    def configure_optimizers(self) -> tuple[list, list]:
        hp = self.hparams
        opt_fr = torch.optim.Adam([*self.fusion.parameters(), *self.reconstruction.parameters()], lr=hp.lr)
        opt_p = torch.optim.Adam(self.loss_proposal.parameters(), lr=hp.lr if hp.p_lr is None else hp.p_lr, eps=1e-10)
        scheds = [torch.optim.lr_scheduler.StepLR(o, step_size=hp.lr_step_epochs, gamma=hp.lr_gamma)
                  for o in (opt_fr, opt_p)]
        return [opt_fr, opt_p], scheds
