"""Fusion sources as one tensor: the input check every fusion network, baseline and metric shares."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["luminance_order", "stack_sources"]

_LUMA = (0.299, 0.587, 0.114)  # BT.601


def stack_sources(
    sources: Tensor | Sequence[Tensor], *, min_sources: int = 2, channels: int | None = None
) -> Tensor:
    """Validate (and stack) fusion sources into one tensor N×K×C×H×W.

    Args:
        sources: a tensor N×K×C×H×W, or a sequence of K tensors each N×C×H×W (or C×H×W, then N = 1).
        min_sources: smallest allowed K (2 for every exposure-fusion method here).
        channels: if given, the required C.

    Returns:
        N×K×C×H×W tensor (the input itself when it already was one).

    Raises:
        ValueError: wrong number of dimensions, K < ``min_sources``, mismatched source sizes,
            or C ≠ ``channels``.
    """
    if not isinstance(sources, Tensor):
        items = list(sources)
        if len(items) < min_sources:
            raise ValueError(f"need at least {min_sources} sources to fuse, got {len(items)}")
        items = [s.unsqueeze(0) if s.dim() == 3 else s for s in items]
        shapes = [tuple(s.shape) for s in items]
        if any(len(s) != 4 for s in shapes):
            raise ValueError(f"each source must be N×C×H×W or C×H×W, got shapes {shapes}")
        if len(set(shapes)) != 1:
            raise ValueError(
                f"all sources must have the same shape (align and resize them first), got {shapes}"
            )
        sources = torch.stack(items, dim=1)
    if sources.dim() != 5:
        raise ValueError(
            f"sources must be a tensor N×K×C×H×W (K exposures), got shape {tuple(sources.shape)}"
        )
    if sources.shape[1] < min_sources:
        raise ValueError(
            f"need at least {min_sources} sources to fuse (dim 1 of N×K×C×H×W), got K = {sources.shape[1]}"
        )
    if channels is not None and sources.shape[2] != channels:
        raise ValueError(f"expected C = {channels} channels per source, got shape {tuple(sources.shape)}")
    return sources


def luminance_order(images: Tensor) -> Tensor:
    """Indices that sort a stack dark → bright by mean BT.601 luma (stable: ties keep the given order).

    Shapes: K×3×H×W in [0, 1] → K (long).
    """
    w = torch.tensor(_LUMA, dtype=images.dtype, device=images.device)
    means = torch.einsum("kchw,c->k", images, w) / images[0, 0].numel()
    return torch.sort(means, stable=True).indices
