"""Writing images: float [0, 1] → uint8 with round-half-up (:func:`quantize`), and atomic 8-bit image files
(temporary file in the same folder, then ``os.replace``), so a killed run never leaves a half-written image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from datamodules.atomic_files import atomic_write


def quantize(image: torch.Tensor) -> np.ndarray:
    """C×H×W (or H×W×C numpy) float image in [0, 1] → H×W×C uint8 with round-half-up.

    ``uint8(clamp(x·255 + 0.5, 0, 255))``: what ``torchvision.utils.save_image`` writes, and the
    rule of the reference PNGs in ``shared/data/reference``.
    """
    if isinstance(image, torch.Tensor):
        image = image.detach().float().cpu().numpy().transpose(1, 2, 0)
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _save_atomic(img: Image.Image, path: Path, **params: object) -> Path:
    """Save ``img`` to ``path`` atomically: encode into a hidden temporary file in the same folder, then
    ``os.replace`` it onto ``path``, so a kill or a full disk never leaves a truncated image behind.

    The temporary name (``.<name>.<pid>.<random>.tmp``) has no image extension, so a leftover from a
    ``kill -9`` is never listed as an image.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image file extension {path.suffix!r} (expected .png, .jpg, ...)")
    return atomic_write(path, lambda f: img.save(f, format=fmt, **params))


def write_image(path: str | Path, image: torch.Tensor | np.ndarray) -> Path:
    """Write a float image in [0, 1] (C×H×W tensor or H×W×C array, C = 1 or 3) as an 8-bit file
    (format by extension, PNG for ``.png``), atomically (see :func:`_save_atomic`)."""
    arr = quantize(image)
    if arr.shape[2] == 1:
        arr = arr[..., 0]
    return _save_atomic(Image.fromarray(arr), Path(path))


def write_uint8(path: str | Path, image: np.ndarray, quality: int = 95) -> Path:
    """Write an H×W×3 (or H×W) uint8 RGB array atomically; JPEG quality applies to ``.jpg``."""
    path = Path(path)
    img = Image.fromarray(image)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        return _save_atomic(img, path, quality=quality)
    return _save_atomic(img, path)
