"""How much memory whole-image inference needs, and predict for the models whose output depends on the whole image.

:data:`BYTES_PER_PIXEL` holds measured peak memory per pixel of whole-image fp32 inference on a CPU (resident
set high-water mark minus the one before, divided by H·W; input and output included; no_grad; 480×640 and
960×1280 agree within 8 %; ``benchmarks/predict_memory.py --per-pixel`` re-measures them). On a GPU the same
figures are used as an estimate of the activations.

* **Zero-DCE / Zero-DCE++**: tiled exactly (:mod:`lightning_modules.tiling`); a check only when tiling is off.
* **DPED** (instance norm over the whole image): whole image when it fits in 80 % of the available memory,
  otherwise the exact multi-pass tiled form (:func:`lightning_modules.tiling.tiled_instance_norm`: the same
  output, ~5× the time), with a message saying so; with tiling off (``--run.tile_size null``) an image that
  does not fit is refused before it runs, naming the memory it needs.
* **DeepFuse**: exact two-pass form: the convolutions (radius 13) tile by tile, then the global min–max
  normalisation, the contrast stretch and the per-pixel chroma fusion on the whole image (:func:`deepfuse_fuse`).
* **ReFusion** (channel attention over all pixels, global L2 normalisation of the queries and keys): no tiled
  form here (it would need a pass per attention layer); an image that does not fit is refused before it runs,
  naming the memory it needs and what to do (:func:`check_memory`).
"""

from __future__ import annotations

import math
import os
import resource
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from lightning_modules.tiling import (
    receptive_radius,
    tiled_apply,
    tiled_instance_norm,
    use_tiles,
)

__all__ = [
    "BYTES_PER_PIXEL",
    "NotEnoughMemoryError",
    "available_bytes",
    "check_memory",
    "deepfuse_fuse",
    "dped_generate",
    "estimate_bytes",
]

#: Peak bytes per pixel of whole-image fp32 CPU inference (measured 2026-05, torch 2.13 CPU, 2 threads; see the
#: module docstring). DeepFuse and ReFusion: a pair of RGB sources. Zero-DCE++: at scale factor 12.
BYTES_PER_PIXEL: dict[str, int] = {
    "zero_dce": 1570,
    "zero_dce_pp": 140,
    "dped": 1060,
    "deepfuse": 1350,
    "refusion": 2880,
}
NAMES = {"zero_dce": "Zero-DCE", "zero_dce_pp": "Zero-DCE++", "dped": "DPED", "deepfuse": "DeepFuse",
         "refusion": "ReFusion"}
#: Above this fraction of the available memory DPED switches to the exact tiled form.
DPED_TILE_ABOVE = 0.8


class NotEnoughMemoryError(MemoryError):
    """Whole-image inference of an image would need more memory than is available (raised before it runs)."""


def _gb(n: float) -> str:
    return f"{n / 2**30:.1f} GB"


def available_bytes(device: torch.device | str | None = None) -> int | None:
    """Memory a new allocation can still get: on a CPU the smaller of ``MemAvailable`` (``/proc/meminfo``) and
    what an address-space limit (``ulimit -v``) leaves; on CUDA the free device memory plus what PyTorch's
    allocator holds unused. ``None`` when unknown (no ``/proc``, other devices)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type != "cpu":
        return None
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    except OSError:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        try:
            with open("/proc/self/status") as f:
                size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
            # a new block is mapped fresh, so the limit leaves soft − VmSize (freed memory is often unmapped)
            headroom = max(0, soft - size)
            avail = headroom if avail is None else min(avail, headroom)
        except (OSError, StopIteration):
            pass
    return avail


def estimate_bytes(kind: str, height: int, width: int) -> int:
    """Peak memory of whole-image inference of one H×W image (:data:`BYTES_PER_PIXEL`)."""
    return BYTES_PER_PIXEL[kind] * height * width


def _limit_note(device: torch.device) -> str:
    if device.type == "cpu" and resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY:
        return f" (address-space limit {_gb(resource.getrlimit(resource.RLIMIT_AS)[0])})"
    return ""


def check_memory(kind: str, name: str, height: int, width: int, device: torch.device | str,
                 remedy: str, images: float = 1.0) -> None:
    """Refuse, before it runs, whole-image inference that needs more than the available memory.

    ``images``: how many images of :data:`BYTES_PER_PIXEL`'s kind run at once (batch size; DeepFuse: K/2).

    Raises:
        NotEnoughMemoryError: one line naming the image, its size, the memory needed (and per pixel), the
            memory available and ``remedy``.
    """
    device = torch.device(device)
    need, avail = int(estimate_bytes(kind, height, width) * images), available_bytes(device)
    if avail is None or need <= avail:
        return
    mp = height * width / 1e6
    fit = math.floor(avail / images / BYTES_PER_PIXEL[kind] / 1e5) / 10
    raise NotEnoughMemoryError(
        f"{name}: {NAMES[kind]} on the whole {width}×{height} image ({mp:.1f} MP) needs about {_gb(need)} "
        f"({BYTES_PER_PIXEL[kind]} bytes per pixel, measured), but {_gb(avail)} is available on {device}"
        f"{_limit_note(device)}; {remedy}, resize it to at most {fit:g} MP, or use a machine with at least "
        f"{math.ceil(need / 2**30 * 1.1)} GB")


def _note(message: str) -> None:
    print(f"predict: {message}", file=sys.stderr)


# ------------------------------------------------------------------------------------------------------- DPED
def dped_generate(generator: torch.nn.Module, x: Tensor, name: str, tile_size: int | None) -> Tensor:
    """The DPED generator on a full-size photo: whole when it fits (80 % of the available memory), else exact
    tiled (``tile_size``, :func:`~lightning_modules.tiling.tiled_instance_norm`), announced on stderr; with
    ``tile_size=None`` a photo that does not fit raises :class:`NotEnoughMemoryError` before it runs."""
    h, w = x.shape[-2:]
    need, avail = estimate_bytes("dped", h, w) * x.shape[0], available_bytes(x.device)
    if tile_size is not None and avail is not None and need > DPED_TILE_ABOVE * avail and (
            h > tile_size or w > tile_size):
        norms = sum(isinstance(m, torch.nn.modules.instancenorm._InstanceNorm) for m in generator.modules())
        _note(f"{name}: DPED on the whole {w}×{h} image needs about {_gb(need)} ({BYTES_PER_PIXEL['dped']} bytes "
              f"per pixel), {_gb(avail)} available: exact tiled instance norm instead ({norms + 1} passes over "
              f"{tile_size}² tiles, the same output, about {(norms + 2) / 2:.0f}× the time)")
        return tiled_instance_norm(generator, x, tile_size)
    check_memory("dped", name, h, w, x.device,
                 "use --run.tile_size 512 (exact tiled instance norm, slower)" if tile_size is None
                 else "use a smaller --run.tile_size", images=x.shape[0])
    return generator(x)


# --------------------------------------------------------------------------------------------------- DeepFuse
@contextmanager
def _raw_output(net: torch.nn.Module) -> Iterator[None]:
    previous, net.normalize_output = net.normalize_output, False
    try:
        yield
    finally:
        net.normalize_output = previous


def deepfuse_fuse(module: torch.nn.Module, sources: Tensor, tile_size: int | None) -> Tensor:
    """:meth:`DeepFuse.forward` in two passes: the luminance net tile by tile (its convolutions have receptive
    radius 13), then the global min–max normalisation, contrast stretch and chroma fusion on the whole image.
    Equal to ``module(sources)`` to float precision. ``tile_size=None``: one pass (refused before it runs when it
    would not fit in memory)."""
    from lightning_modules.deepfuse import fuse_rgb, minmax_normalize, select_extreme_exposures
    from lightning_modules.fusion_baselines import stack_sources

    sources = stack_sources(sources, channels=3)
    if module.hparams.eval_exposures == "extreme_pair" and sources.shape[1] > 2:
        sources = select_extreme_exposures(sources)
    net = module.net
    h, w = sources.shape[-2:]
    if tile_size is None:
        check_memory("deepfuse", "this stack", h, w, sources.device,
                     "use --run.tile_size 512 (exact two-pass tiling)", images=sources.shape[0] * sources.shape[1] / 2)
        return fuse_rgb(module.inference_call(net), sources, ycbcr="studio", luma=module.hparams.luma)
    radius = receptive_radius(net)

    def luminance(y: Tensor) -> Tensor:  # N×K×1×H×W → N×1×H×W, as net(y)
        with _raw_output(net):
            raw = tiled_apply(module.inference_call(net), y, radius, tile_size)
        return minmax_normalize(raw) if net.normalize_output else raw

    return fuse_rgb(luminance, sources, ycbcr="studio", luma=module.hparams.luma)


def deepfuse_tile_size(module: torch.nn.Module, sources: Tensor) -> int | None:
    """The ``"auto"`` rule for DeepFuse: the module's ``tile_size`` (512 unless set) above 4 tiles of pixels."""
    tile = module.tile_size
    return tile if use_tiles(*sources.shape[-2:], tile) else None


def refusion_check(sources: Tensor, names: list[str] | tuple[str, ...]) -> None:
    """Refuse a ReFusion pair that would not fit in memory, before it runs (ReFusion has no tiled form here)."""
    h, w = sources.shape[-2:]
    check_memory("refusion", ", ".join(map(str, names)) or "this pair", h, w, sources.device,
                 "ReFusion's channel attention needs the whole image at once (no tiled form)",
                 images=sources.shape[0])


def pid_peak_rss(pid: int | None = None) -> int | None:
    """``VmHWM`` (resident-set high-water mark, bytes) of a process, ``None`` when unknown."""
    try:
        with open(f"/proc/{pid or os.getpid()}/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return None
