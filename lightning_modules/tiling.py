"""Exact tiled inference: whole-image results in the memory of one tile.

A *local operator* is a net whose output pixel depends only on the input pixels within ``radius`` of it (its
receptive field is ``(2·radius + 1)²``): a stack of stride-1 convolutions with pointwise activations. Such a
net can run tile by tile: each tile of the output is computed from the input tile grown by a *halo* of
``radius`` pixels on every side that is not an image border, and only the tile's core is kept. Image-border
tiles keep the true border, so the zero padding the convolutions see is the same as on the whole image, and
the result equals the whole-image result to float precision (the summation order of a convolution may differ
with the input size: measured max abs difference ≤ 1e-6 in fp32, ``tests/test_tiling.py``).

:func:`tiled_apply` does this for any local ``fn``; :func:`receptive_radius` bounds the radius of a module
made of stride-1 convolutions (the sum of the convolutions' radii: exact for a chain, an upper bound — still
exact tiling — for nets with skip connections).

Nets with a *global* step need more than one pass:

* **Zero-DCE** (DCE-Net: 7 sequential 3×3 convolutions, radius 7 = a 15-pixel receptive field; the curves are
  per pixel): one pass, :func:`dce_enhance`.
* **Zero-DCE++** at ``scale_factor`` s (12 at test): the curve maps are estimated on the 1/s-downscaled image
  and upsampled (bilinear, ``align_corners=True``) to full resolution. Two passes: the small maps once on the
  whole downscaled image (itself tiled when large), then, tile by tile, the upsampling of exactly that tile's
  rows and columns (source coordinates computed as PyTorch's ``align_corners=True`` kernel does:
  :func:`upsample_bilinear_region`) and the curves.
* **DeepFuse**: the convolutions are local (radius 13), the output min–max normalisation is global: tiles for
  the net, then the normalisation on the whole 1-channel result (:func:`lightning_modules.memory.deepfuse_tiled`).
* **Instance norm** (the DPED generator): each norm needs its input's per-channel mean and variance over the
  whole image. :func:`tiled_instance_norm` runs ``1 + number of norms`` passes: pass k accumulates the
  statistics of norm k's input over the tile cores (the norms before it use the statistics found in earlier
  passes), the last pass writes the output. Exact, at about ``(passes + 1) / 2`` times the compute.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DEFAULT_TILE_SIZE",
    "TILE_ABOVE_TILES",
    "dce_enhance",
    "flush_subnormal_",
    "receptive_radius",
    "tile_grid",
    "tiled_apply",
    "tiled_instance_norm",
    "upsample_bilinear_region",
    "use_tiles",
]

#: Core size of a tile (pixels per side). 512² tiles of DCE-Net need ~0.35 GB of activations.
DEFAULT_TILE_SIZE = 512
#: With ``tile_size="auto"`` an image is tiled when it has more pixels than this many tiles.
TILE_ABOVE_TILES = 4


def use_tiles(height: int, width: int, tile_size: int | None) -> bool:
    """The "auto" rule: tile when ``tile_size`` is set and the image has more than ``TILE_ABOVE_TILES`` tiles
    of pixels (512² tiles: above 1,048,576 pixels, so a 1200×900 SICE test image is tiled, a 1024×1024 one is not)."""
    return tile_size is not None and height * width > TILE_ABOVE_TILES * tile_size * tile_size


def tile_grid(height: int, width: int, tile_size: int) -> Iterator[tuple[slice, slice]]:
    """Row-major core regions ``(rows, cols)`` of ``tile_size``² tiles covering ``height × width`` (the last
    row / column of tiles is smaller when ``tile_size`` does not divide the image)."""
    if tile_size < 1:
        raise ValueError(f"tile_size must be ≥ 1, got {tile_size}")
    for y0 in range(0, height, tile_size):
        for x0 in range(0, width, tile_size):
            yield slice(y0, min(y0 + tile_size, height)), slice(x0, min(x0 + tile_size, width))


def _grown(core: slice, radius: int, size: int) -> slice:
    return slice(max(0, core.start - radius), min(size, core.stop + radius))


def tiled_apply(
    fn: Callable[..., Tensor],
    inputs: Tensor | Sequence[Tensor],
    radius: int,
    tile_size: int | None,
) -> Tensor:
    """``fn(*inputs)`` computed tile by tile, for a local ``fn`` of receptive radius ≤ ``radius``.

    Args:
        fn: maps tensors ``…×h×w`` (all cropped alike) to one tensor ``…'×h×w`` of the same spatial size.
        inputs: one tensor or several with the same last two dimensions H×W.
        radius: halo width; must be ≥ the receptive radius of ``fn`` for the result to be exact.
        tile_size: core size of the tiles; ``None`` (or a tile covering the image) = one call on the whole input.

    Returns:
        ``…'×H×W``, equal to ``fn(*inputs)`` to float precision; only one tile's intermediate tensors are alive
        at a time (plus the output).
    """
    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    h, w = inputs[0].shape[-2:]
    if any(t.shape[-2:] != (h, w) for t in inputs):
        raise ValueError(f"tiled_apply: inputs of different sizes {[tuple(t.shape) for t in inputs]}")
    if radius < 0:
        raise ValueError(f"tiled_apply: radius must be ≥ 0, got {radius}")
    if tile_size is None or (h <= tile_size and w <= tile_size):
        return fn(*inputs)
    out: Tensor | None = None
    for rows, cols in tile_grid(h, w, tile_size):
        gr, gc = _grown(rows, radius, h), _grown(cols, radius, w)
        part = fn(*(t[..., gr, gc] for t in inputs))
        if part.shape[-2:] != (gr.stop - gr.start, gc.stop - gc.start):
            raise ValueError(f"tiled_apply: fn changed the tile size {gr.stop - gr.start}×{gc.stop - gc.start} "
                             f"to {tuple(part.shape[-2:])}; it must keep the spatial size")
        if out is None:
            out = part.new_empty((*part.shape[:-2], h, w))
        out[..., rows, cols] = part[..., rows.start - gr.start: rows.stop - gr.start,
                                    cols.start - gc.start: cols.stop - gc.start]
    assert out is not None
    return out


def receptive_radius(module: nn.Module) -> int:
    """Sum over the module's convolutions of ``dilation·(kernel − 1)/2``: the receptive radius of a chain of
    stride-1 'same' convolutions, an upper bound for nets with skip connections (e.g. DCE-Net: 7; DeepFuse: 13).

    Raises:
        ValueError: a convolution with stride ≠ 1, an even kernel or padding other than ``kernel // 2``·dilation
            (not a size-preserving local operator), or a pooling / upsampling layer.
    """
    total = 0
    for name, m in module.named_modules():
        if isinstance(m, nn.Conv2d):
            if m.stride != (1, 1) or any(k % 2 == 0 for k in m.kernel_size) or m.padding != tuple(
                    d * (k // 2) for k, d in zip(m.kernel_size, m.dilation, strict=True)):
                raise ValueError(f"receptive_radius: {name} ({m}) is not a stride-1 'same' convolution")
            total += max(d * (k // 2) for k, d in zip(m.kernel_size, m.dilation, strict=True))
        elif isinstance(m, (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd, nn.Upsample,
                            nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)):
            raise ValueError(f"receptive_radius: {name} ({type(m).__name__}) is not a local size-preserving layer")
    return total


@torch.no_grad()
def flush_subnormal_(module: nn.Module) -> int:
    """Set the module's subnormal floating-point parameters (0 < |w| < 1.2e-38 in fp32) to 0; returns how many.

    The released Zero-DCE ``Epoch99.pth`` has 19,266 of its 79,416 weights subnormal (Zero-DCE++: 685 of 10,561);
    CPU convolutions with subnormal weights run ~20× slower (480×640: 26.7 s → 1.3 s, 2 threads), and the output
    is bit-identical (a subnormal weight changes a sum of normal numbers by less than its last bit; measured on
    LIME/6: max |difference| 0).
    """
    n = 0
    for p in module.parameters():
        if p.is_floating_point():
            tiny = (p != 0) & (p.abs() < torch.finfo(p.dtype).tiny)
            k = int(tiny.sum())
            if k:
                p.masked_fill_(tiny, 0)
                n += k
    return n


# ------------------------------------------------------------------------------------------ Zero-DCE(++)
def _linear_source(out_len: int, in_len: int, start: int, stop: int, device: torch.device,
                   dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Indices and weights of bilinear ``align_corners=True`` resampling ``in_len → out_len`` for output
    positions ``start … stop−1``, computed as PyTorch's kernel does (``upsample_bilinear2d``:
    ``src = (in − 1)/(out − 1) · i`` in the tensor's float type, ``i0 = min(⌊src⌋, in − 1)``,
    ``i1 = i0 + 1`` clipped, ``λ1 = clamp(src − i0, 0, 1)``, ``λ0 = 1 − λ1``)."""
    scale = (in_len - 1) / (out_len - 1) if out_len > 1 else 0.0
    src = torch.arange(start, stop, device=device, dtype=dtype) * torch.tensor(scale, device=device, dtype=dtype)
    i0 = src.to(torch.int64).clamp_(max=in_len - 1)
    i1 = (i0 + 1).clamp_(max=in_len - 1)
    lam1 = (src - i0.to(dtype)).clamp_(0, 1)
    return i0, i1, 1 - lam1, lam1


def upsample_bilinear_region(small: Tensor, size: tuple[int, int], rows: slice, cols: slice) -> Tensor:
    """``F.interpolate(small, size=size, mode="bilinear", align_corners=True)[..., rows, cols]`` without
    computing the rest of the upsampled image.

    Args:
        small: N×C×h×w.
        size: the full upsampled size (H, W).
        rows, cols: the region of the H×W result to compute (step 1).
    """
    (h, w), (big_h, big_w) = small.shape[-2:], size
    dtype = small.dtype if small.is_floating_point() else torch.float32
    y0, y1, wy0, wy1 = _linear_source(big_h, h, rows.start, rows.stop, small.device, dtype)
    x0, x1, wx0, wx1 = _linear_source(big_w, w, cols.start, cols.stop, small.device, dtype)
    top, bottom = small.index_select(-2, y0), small.index_select(-2, y1)  # N×C×r×w
    wx0, wx1 = wx0.view(1, 1, 1, -1), wx1.view(1, 1, 1, -1)
    top = top.index_select(-1, x0) * wx0 + top.index_select(-1, x1) * wx1
    bottom = bottom.index_select(-1, x0) * wx0 + bottom.index_select(-1, x1) * wx1
    return top * wy0.view(1, 1, -1, 1) + bottom * wy1.view(1, 1, -1, 1)


@contextmanager
def _scale_factor(net: nn.Module, s: float) -> Iterator[None]:
    previous, net.scale_factor = net.scale_factor, s
    try:
        yield
    finally:
        net.scale_factor = previous


def dce_enhance(net: nn.Module, x: Tensor, scale_factor: float, tile_size: int | None,
                curves: Callable[..., Tensor] | None = None, maps: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """Zero-DCE / Zero-DCE++ enhancement of N×3×H×W, tile by tile, equal to ``net(x)[0]`` at ``scale_factor``.

    ``scale_factor`` 1: DCE-Net is local (radius :func:`receptive_radius` = 7 for 7 layers), the curves are per
    pixel: one tiled pass. ``scale_factor`` s ≠ 1: the maps are estimated once on
    ``F.interpolate(x, scale_factor=1/s, mode="bilinear", align_corners=False)`` (tiled when that image is
    itself large), then each output tile upsamples its own region of the maps
    (:func:`upsample_bilinear_region`) and applies the curves. H and W must come back from the 1/s → ×s round
    trip (crop or pad to multiples of s first, as :meth:`ZeroDCE.enhance` does).

    Args:
        net: a :class:`lightning_modules.zero_dce.DCENet` (its own ``scale_factor`` is ignored and kept).
        tile_size: core tile size; ``None`` = the whole image in one call.
        curves: the curve application, ``apply_curves(x, maps, n_iterations, sign)`` (default
            :func:`networks.zero_dce.apply_curves`; e.g. its compiled form).
        maps: the curve-map estimation ``t → net.curve_maps(t)`` (default that; e.g. its compiled form).
    """
    from networks.zero_dce import apply_curves

    own = curves in (None, apply_curves) and maps is None
    curves = curves or apply_curves
    maps_of = maps or net.curve_maps
    s = float(scale_factor)
    radius = receptive_radius(net)

    def enhance(t: Tensor) -> Tensor:  # net(t)[0]; through the module call (and its hooks) unless curves is given
        if own:
            return net(t)[0]
        return curves(t, maps_of(t), net.n_iterations, net.sign)

    if s == 1:
        with _scale_factor(net, 1.0):
            return tiled_apply(enhance, x, radius, tile_size)
    if tile_size is None:
        with _scale_factor(net, s):
            return enhance(x)
    h, w = x.shape[-2:]
    small = F.interpolate(x, scale_factor=1 / s, mode="bilinear", align_corners=False)
    if small.shape[-2] == 0 or small.shape[-1] == 0:
        raise ValueError(f"{type(net).__name__}: input {h}×{w} is too small for scale_factor={s:g}")
    big = (math.floor(small.shape[-2] * s), math.floor(small.shape[-1] * s))  # what F.interpolate(scale_factor=s) gives
    if big != (h, w):
        raise ValueError(
            f"{type(net).__name__}: input {h}×{w} comes back as {big[0]}×{big[1]} after the 1/{s:g} down / ×{s:g} "
            f"up round trip; crop the input to multiples of the scale factor first (crop_to_multiple(x, {s:g}))")
    with _scale_factor(net, 1.0):
        small_maps = tiled_apply(maps_of, small, radius,
                                 tile_size if use_tiles(*small.shape[-2:], tile_size) else None)
    out = x.new_empty(x.shape)
    for rows, cols in tile_grid(h, w, tile_size):
        a = upsample_bilinear_region(small_maps, (h, w), rows, cols)
        out[..., rows, cols] = curves(x[..., rows, cols], a, net.n_iterations, net.sign)
    return out


# ------------------------------------------------------------------------------------------ instance norm
class _Stop(Exception):
    """Ends a statistics pass at the norm whose input statistics it collects."""


def tiled_instance_norm(net: nn.Module, x: Tensor, tile_size: int, radius: int | None = None) -> Tensor:
    """``net(x)`` tile by tile for a net of stride-1 convolutions, pointwise layers and ``nn.InstanceNorm2d``
    (without running statistics), exactly: ``1 + number of norms`` passes over the tiles.

    Pass k recomputes the net up to norm k on every tile (with halo ``radius``, default
    :func:`receptive_radius` of the whole net), norms < k normalising with the whole-image statistics of the
    earlier passes, and sums norm k's input over the tile cores (float64) into its per-sample, per-channel mean
    and biased variance. The last pass runs every norm with its whole-image statistics and writes the output.
    """
    norms = [m for m in net.modules() if isinstance(m, nn.modules.instancenorm._InstanceNorm)]
    if any(m.track_running_stats for m in norms):
        raise ValueError("tiled_instance_norm: instance norms with running statistics are not supported")
    radius = receptive_radius(net) if radius is None else radius
    stats: dict[int, tuple[Tensor, Tensor]] = {}  # norm index → (mean, invstd), N×C×1×1
    h, w = x.shape[-2:]
    core: list[tuple[slice, slice]] = [(slice(0, h), slice(0, w))]  # core of the current tile, in tile coordinates

    def frozen(i: int, m: nn.Module) -> Callable[[Tensor], Tensor]:
        def forward(t: Tensor) -> Tensor:
            mean, invstd = stats[i]
            y = (t - mean.to(t.dtype)) * invstd.to(t.dtype)
            if m.affine:
                y = y * m.weight.view(1, -1, 1, 1) + m.bias.view(1, -1, 1, 1)
            return y
        return forward

    def collecting(sums: list[Tensor]) -> Callable[[Tensor], Tensor]:
        def forward(t: Tensor) -> Tensor:
            rows, cols = core[0]
            c = t[..., rows, cols].double()
            sums[0] += c.sum(dim=(-2, -1))
            sums[1] += (c * c).sum(dim=(-2, -1))
            raise _Stop
        return forward

    previous = {id(m): m.__dict__.get("forward") for m in norms}
    try:
        for k in range(len(norms) + 1):
            for i in range(k):
                norms[i].forward = frozen(i, norms[i])
            if k < len(norms):
                sums = [x.new_zeros((x.shape[0], norms[k].num_features), dtype=torch.float64) for _ in range(2)]
                norms[k].forward = collecting(sums)
            out = x.new_empty(0)
            for rows, cols in tile_grid(h, w, tile_size):
                gr, gc = _grown(rows, radius, h), _grown(cols, radius, w)
                core[0] = (slice(rows.start - gr.start, rows.stop - gr.start),
                           slice(cols.start - gc.start, cols.stop - gc.start))
                try:
                    part = net(x[..., gr, gc])
                except _Stop:
                    continue
                if out.numel() == 0:
                    out = part.new_empty((*part.shape[:-2], h, w))
                out[..., rows, cols] = part[..., core[0][0], core[0][1]]
            if k < len(norms):
                n = h * w
                mean = sums[0] / n
                var = (sums[1] / n - mean * mean).clamp_min(0)
                invstd = (var + norms[k].eps).rsqrt()
                stats[k] = (mean[..., None, None].float(), invstd[..., None, None].float())
        return out
    finally:
        for m in norms:
            if previous[id(m)] is None:
                m.__dict__.pop("forward", None)
            else:
                m.forward = previous[id(m)]
