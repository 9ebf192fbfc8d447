"""Reading and writing images the way every Darkroom DataModule does.

One place decides how files on disk become arrays, so that every dataset gets the same answers
for the awkward cases:

* any extension case (``.JPG``, ``.Png``; the official Zero-DCE loader silently skipped ``.JPG``);
* greyscale files are replicated to three channels, RGBA / LA drop their alpha channel, palette
  and CMYK files are converted to RGB;
* 16-bit PNG / TIFF are scaled by 1/65535 (Pillow would silently truncate 16-bit RGB to 8 bits,
  so lossless formats are decoded with OpenCV, which keeps the bit depth);
* JPEG / BMP are decoded with Pillow, as the official Zero-DCE code does, so our inputs are
  bit-identical to the ones the reference outputs were computed from;
* a corrupt or unreadable file raises :class:`ImageReadError` naming the file and what was expected.

Arrays are float32 H×W×C in [0, 1], RGB order. :func:`to_tensor` gives the C×H×W tensor the
DataModules put in batches.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
_LOSSLESS_CV2 = frozenset({".png", ".tif", ".tiff"})
EXPECTED = "an RGB or greyscale JPEG/PNG/BMP/TIFF image (8 or 16 bit)"


class ImageReadError(ValueError):
    """A file could not be read as an image; the message names the file and what was expected."""


class DatasetLayoutError(FileNotFoundError):
    """A dataset folder is missing, empty or does not have the expected layout."""


def natural_key(path: str | Path) -> list:
    """Sort key that orders ``2.jpg`` before ``10.jpg`` (SICE and DPED name files by number)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", Path(path).name)]


def is_image(path: str | Path) -> bool:
    """Whether ``path`` has an image extension (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: str | Path, *, what: str = "images") -> list[Path]:
    """All image files directly inside ``folder``, naturally sorted.

    Raises:
        DatasetLayoutError: the folder does not exist or holds no image file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetLayoutError(f"{folder}: folder not found (expected a folder of {what})")
    files = sorted((p for p in folder.iterdir() if p.is_file() and is_image(p)), key=natural_key)
    if not files:
        exts = "/".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))
        raise DatasetLayoutError(f"{folder}: no image files found (expected {what}: {exts}, any case)")
    return files


def _to_rgb_float(arr: np.ndarray, path: Path, bgr: bool) -> np.ndarray:
    if arr.dtype == np.uint8:
        scale = 255.0
    elif arr.dtype == np.uint16:
        scale = 65535.0
    elif arr.dtype in (np.float32, np.float64):
        scale = 1.0
    else:
        raise ImageReadError(f"{path}: unsupported pixel type {arr.dtype} (expected {EXPECTED})")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ImageReadError(f"{path}: unsupported shape {arr.shape} (expected {EXPECTED})")
    channels = arr.shape[2]
    if channels in (2, 4):  # grey+alpha or colour+alpha: the alpha channel carries no image content
        arr = arr[..., : channels - 1]
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif bgr:
        arr = arr[..., ::-1]
    out = arr.astype(np.float32)
    if scale != 1.0:
        out /= scale
    return np.ascontiguousarray(out)


RESAMPLE = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "area": Image.Resampling.BOX,
}


def _resize(arr: np.ndarray, size: tuple[int, int], resample: str) -> np.ndarray:
    """Resize with Pillow (what the official loaders do: ``img.resize((s, s), Image.LANCZOS)``)."""
    if resample not in RESAMPLE:
        raise ValueError(f"unknown resample {resample!r}; expected one of {sorted(RESAMPLE)}")
    if (arr.shape[1], arr.shape[0]) == tuple(size):
        return arr
    if arr.dtype == np.uint8:
        squeeze = arr.ndim == 3 and arr.shape[2] == 1
        img = Image.fromarray(arr[..., 0] if squeeze else arr)
        out = np.asarray(img.resize(tuple(size), RESAMPLE[resample]))
        return out[..., None] if squeeze else out
    # 16-bit / float images: resize each channel as a float32 Pillow image ("F" mode).
    chans = arr[..., None] if arr.ndim == 2 else arr
    out = np.stack(
        [np.asarray(Image.fromarray(chans[..., c].astype(np.float32)).resize(tuple(size), RESAMPLE[resample]))
         for c in range(chans.shape[2])],
        axis=2,
    )
    return out.astype(arr.dtype) if arr.dtype != np.uint16 else np.clip(out, 0, 65535).astype(np.uint16)


def read_image(
    path: str | Path, size: tuple[int, int] | None = None, resample: str = "lanczos"
) -> np.ndarray:
    """Read an image file as float32 RGB, H×W×3 in [0, 1].

    Args:
        path: the file.
        size: optional ``(width, height)`` to resize to, on the decoded integer image with Pillow
            (so ``size=(256, 256)`` reproduces the official Zero-DCE loader bit for bit).
        resample: ``"lanczos"`` (official loaders), ``"bicubic"``, ``"bilinear"``, ``"area"``, ``"nearest"``.

    Raises:
        ImageReadError: the file is missing, corrupt, truncated or not an image.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: file not found (expected {EXPECTED})")
    if path.suffix.lower() in _LOSSLESS_CV2:
        arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise ImageReadError(f"{path}: cannot decode the file; it is corrupt or not an image (expected {EXPECTED})")
        if size is not None:
            arr = _resize(arr, size, resample)
        return _to_rgb_float(arr, path, bgr=True)
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1"):
                img = img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "RGB")
            arr = np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(
            f"{path}: cannot decode the file ({err}); it is corrupt or not an image (expected {EXPECTED})"
        ) from err
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype == np.int32:  # Pillow mode "I" (e.g. 16-bit grey read as int32)
        arr = np.clip(arr, 0, 65535).astype(np.uint16)
    if size is not None:
        arr = _resize(arr, size, resample)
    return _to_rgb_float(arr, path, bgr=False)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """H×W×C float array → C×H×W float32 tensor (no copy of the values' range)."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()


def load_tensor(path: str | Path, size: tuple[int, int] | None = None, resample: str = "lanczos") -> torch.Tensor:
    """:func:`read_image` as a 3×H×W float32 tensor in [0, 1]."""
    return to_tensor(read_image(path, size, resample))


def check_image_header(path: str | Path) -> tuple[int, int]:
    """Cheap validity check (header only, no full decode): returns ``(width, height)``.

    Used by DataModules at ``setup()`` so a non-image file fails before training starts,
    naming the file, instead of hours into an epoch.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            return img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"{path}: not a readable image ({err}) (expected {EXPECTED})") from err


def quantize(image: torch.Tensor) -> np.ndarray:
    """C×H×W (or H×W×C numpy) float image in [0, 1] → H×W×C uint8 with round-half-up.

    ``uint8(clamp(x·255 + 0.5, 0, 255))``: what ``torchvision.utils.save_image`` writes, and the
    rule of the reference PNGs in ``shared/data/reference``.
    """
    if isinstance(image, torch.Tensor):
        image = image.detach().float().cpu().numpy().transpose(1, 2, 0)
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


def write_image(path: str | Path, image: torch.Tensor | np.ndarray) -> Path:
    """Write a float image in [0, 1] (3×H×W tensor or H×W×3 array) as an 8-bit file (PNG by extension)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = quantize(image)
    if arr.shape[2] == 1:
        arr = arr[..., 0]
    Image.fromarray(arr).save(path)
    return path


def write_uint8(path: str | Path, image: np.ndarray, quality: int = 95) -> Path:
    """Write an H×W×3 (or H×W) uint8 RGB array; JPEG quality applies to ``.jpg``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(image)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        img.save(path, quality=quality)
    else:
        img.save(path)
    return path


def image_files(paths: Iterable[str | Path]) -> list[Path]:
    """Keep only image files from ``paths``, naturally sorted."""
    return sorted((Path(p) for p in paths if is_image(p)), key=natural_key)
