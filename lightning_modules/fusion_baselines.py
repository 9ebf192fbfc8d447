"""Training-free exposure-fusion baselines with the fusion-network call signature.

Every module here maps a stack of K aligned sources to one fused image::

    fused = Baseline()(sources)      # sources: N×K×C×H×W in [0, 1]  ->  fused: N×C×H×W in [0, 1]

so they drop in wherever a DeepFuse / ReFusion network is evaluated (``darkroom table`` rows,
"beats a trivial baseline" checks on synthetic data).

* :class:`PixelMean` — per-pixel mean of the exposures ("fMean" in the MEF-SSIM reference file).
* :class:`PixelMax` — per-pixel maximum.
* :class:`Mertens` — Mertens, Kautz & Van Reeth exposure fusion (Pacific Graphics 2007) through OpenCV's
  ``cv2.createMergeMertens``; a CPU/NumPy round trip, **not differentiable**.

:func:`stack_sources` (:mod:`imaging.stacks`, re-exported here) is the shared input check: it accepts a tensor N×K×C×H×W or a sequence of K
tensors N×C×H×W and raises a ``ValueError`` naming the problem (fewer than ``min_sources`` sources,
mismatched sizes, wrong number of dimensions).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from imaging.stacks import stack_sources

__all__ = ["Mertens", "PixelMax", "PixelMean", "stack_sources"]


class PixelMean(nn.Module):
    """Per-pixel mean of the K sources: N×K×C×H×W → N×C×H×W (range preserved)."""

    def forward(self, sources: Tensor | Sequence[Tensor]) -> Tensor:
        return stack_sources(sources).mean(dim=1)


class PixelMax(nn.Module):
    """Per-pixel maximum of the K sources: N×K×C×H×W → N×C×H×W (range preserved)."""

    def forward(self, sources: Tensor | Sequence[Tensor]) -> Tensor:
        return stack_sources(sources).amax(dim=1)


class Mertens(nn.Module):
    """Mertens exposure fusion via OpenCV ``cv2.createMergeMertens(contrast, saturation, exposure)``.

    Each sample's K sources are quantised to uint8 (``floor(255·x + 0.5)``, the rule of
    ``datamodules.image_io.quantize``), converted to BGR, fused by OpenCV on the CPU, clipped to
    [0, 1] and returned as float32 RGB on the input's device and dtype. Greyscale sources (C = 1) are
    replicated to three channels and the first channel of the result is returned.

    This is a NumPy round trip: **not differentiable** (no gradient flows to ``sources``).

    Defaults are the original paper's weights (1, 1, 1), σ = 0.2 inside OpenCV. OpenCV's own
    defaults are (1, 1, 0) (well-exposedness off): ``Mertens(exposure=0.0)``. The reference PNGs
    ``reference/mef_ssim/fused/*_mertens_cv_{w111,default}.png`` were made with
    opencv-python-headless 5.0.0 and rounded with ``np.round(np.clip(r, 0, 1)·255)``.

    Args:
        contrast: exponent of the contrast (Laplacian) weight.
        saturation: exponent of the saturation (channel std) weight.
        exposure: exponent of the well-exposedness weight.

    Shapes:
        sources N×K×C×H×W (C ∈ {1, 3}, K ≥ 2) in [0, 1] → N×C×H×W in [0, 1].
    """

    def __init__(self, contrast: float = 1.0, saturation: float = 1.0, exposure: float = 1.0) -> None:
        super().__init__()
        self.contrast = float(contrast)
        self.saturation = float(saturation)
        self.exposure = float(exposure)

    def extra_repr(self) -> str:
        return f"contrast={self.contrast}, saturation={self.saturation}, exposure={self.exposure}"

    @torch.no_grad()
    def forward(self, sources: Tensor | Sequence[Tensor]) -> Tensor:
        sources = stack_sources(sources)
        c = sources.shape[2]
        if c not in (1, 3):
            raise ValueError(f"Mertens fuses grey (C = 1) or RGB (C = 3) sources, got C = {c}")
        x = sources.detach().float()
        if c == 1:
            x = x.expand(-1, -1, 3, -1, -1)
        # N×K×3×H×W RGB [0,1] -> N×K×H×W×3 BGR uint8 (round half up, as image_io.quantize)
        u8 = torch.clamp(x * 255.0 + 0.5, 0, 255).to(torch.uint8).flip(2).permute(0, 1, 3, 4, 2)
        u8 = u8.cpu().numpy()
        merge = cv2.createMergeMertens(self.contrast, self.saturation, self.exposure)
        fused = [merge.process([np.ascontiguousarray(img) for img in sample]) for sample in u8]
        out = torch.from_numpy(np.clip(np.stack(fused), 0.0, 1.0).astype(np.float32))
        out = out.permute(0, 3, 1, 2).flip(1)  # N×3×H×W RGB
        if c == 1:
            out = out[:, :1]
        return out.contiguous().to(device=sources.device, dtype=sources.dtype)
