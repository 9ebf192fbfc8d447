"""Restormer blocks as ReFusion's official ``ReFusion.py`` uses them (bias-free convolutions): the layer norm, the
transposed (channel) attention, the gated feed-forward and the transformer block, with per-block gradient
checkpointing (:func:`set_gradient_checkpointing`). Shared by ReFusion's three networks (:mod:`networks.refusion`).

SOURCE: HaowenBai/ReFusion ``ReFusion.py`` (commit 54b7334), itself after Restormer (Zamir et al., CVPR 2022).
Speed (issue 13): LayerNorm is one ``F.layer_norm`` kernel on a channels-last view, with the same state-dict keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call
from torch.utils.checkpoint import checkpoint

from networks.layers import conv

__all__ = ["Attention", "FeedForward", "LayerNorm2d", "TransformerBlock", "WithBiasLayerNorm", "run_blocks",
           "set_gradient_checkpointing", "suspended_checkpointing", "transformer_blocks", "transposed_attention"]


# --------------------------------------------------------------------------------------------------------------
# Restormer blocks (official ReFusion.py), bias-free convolutions
# --------------------------------------------------------------------------------------------------------------
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


def transposed_attention(q: Tensor, k: Tensor, v: Tensor, temperature: Tensor, heads: int) -> Tensor:
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
        self.qkv = conv(dim, dim * 3, 1, bias=bias)
        self.qkv_dwconv = conv(dim * 3, dim * 3, 3, groups=dim * 3, bias=bias)
        self.project_out = conv(dim, dim, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        return self.project_out(transposed_attention(q, k, v, self.temperature, self.num_heads))


class FeedForward(nn.Module):
    """Gated-Dconv feed-forward network (GDFN). SOURCE: official ``FeedForward``."""

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool = False) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = conv(dim, hidden * 2, 1, bias=bias)
        self.dwconv = conv(hidden * 2, hidden * 2, 3, groups=hidden * 2, bias=bias)
        self.project_out = conv(hidden, dim, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


_CHECKPOINT_SUSPENDED = False  # set by suspended_checkpointing (torch.func transforms refuse checkpoint hooks)


def _checkpoint_now(block: nn.Module, x: Tensor) -> bool:
    """Checkpoint only where a graph is being recorded (not under no_grad / inference / forward-mode JVP)."""
    if _CHECKPOINT_SUSPENDED or not torch.is_grad_enabled():
        return False
    return x.requires_grad or any(p.requires_grad for p in block.parameters())


@contextmanager
def suspended_checkpointing() -> Iterator[None]:
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


def transformer_blocks(dim: int, n: int, heads: int, ffn: float, bias: bool) -> nn.ModuleList:
    return nn.ModuleList([TransformerBlock(dim, heads, ffn, bias) for _ in range(n)])


def run_blocks(blocks: nn.ModuleList, x: Tensor) -> Tensor:
    for block in blocks:
        x = block(x)
    return x
