"""Decoding an image file into the float32 RGB H×W×3 array in [0, 1] every DataModule uses (bit depth kept,
alpha dropped, EXIF orientation applied, optional Pillow resize), its C×H×W tensor, and the cheap header check;
the rules are in :mod:`datamodules.image_io`'s docstring."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from datamodules.image_orientation import (
    _HEADER_ERRORS,
    _header,
    _is_tiff,
    _orientation_of,
    apply_orientation,
    exif_orientation,
)

_LOSSLESS_CV2 = frozenset({".png", ".tif", ".tiff"})
EXPECTED = "an RGB or greyscale JPEG/PNG/BMP/TIFF image (8 or 16 bit)"


class ImageReadError(ValueError):
    """A file could not be read as an image; the message names the file and what was expected."""


def _read_tiff_stored_order(path: Path, orientation: int) -> np.ndarray:
    """First page of a TIFF as stored (no orientation applied), H×W or H×W×S, RGB order, via tifffile."""
    try:
        import tifffile
    except ImportError as err:  # pragma: no cover - tifffile comes with scikit-image
        raise ImageReadError(
            f"{path}: TIFF with EXIF orientation {orientation} needs the tifffile package to be read upright "
            f"(pip install tifffile)"
        ) from err
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            photometric = int(page.photometric)
            if photometric not in (1, 2):  # MINISBLACK, RGB
                raise ImageReadError(
                    f"{path}: TIFF with EXIF orientation {orientation} and photometric interpretation "
                    f"{page.photometric.name} is not supported (expected {EXPECTED}, RGB or greyscale)"
                )
            arr = page.asarray()
            separate = int(page.planarconfig) == 2
    except ImageReadError:
        raise
    except Exception as err:  # tifffile raises many types (ValueError, TiffFileError, missing codecs, ...)
        raise ImageReadError(
            f"{path}: cannot decode the TIFF ({err}); it is corrupt or not an image (expected {EXPECTED})"
        ) from err
    if separate and arr.ndim == 3:
        arr = np.moveaxis(arr, 0, -1)
    return arr


def _check_finite(arr: np.ndarray, path: Path) -> None:
    """Float images must hold numbers: NaN / ±inf pixels raise :class:`ImageReadError` with their count."""
    if arr.dtype not in (np.float32, np.float64) or np.isfinite(arr).all():
        return
    colour = arr[..., : arr.shape[2] - 1] if arr.ndim == 3 and arr.shape[2] in (2, 4) else arr
    bad = ~np.isfinite(colour)
    if not bad.any():  # only the alpha channel, which is dropped, is not finite
        return
    per_pixel = bad.any(axis=2) if bad.ndim == 3 else bad
    n_nan, n_inf = int(np.isnan(colour).sum()), int(np.isinf(colour).sum())
    raise ImageReadError(
        f"{path}: {int(per_pixel.sum())} of {per_pixel.size} pixels are not finite ({n_nan} NaN and {n_inf} "
        f"infinite values) in this {arr.dtype} image (expected finite values in [0, 1])"
    )


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
    """Read an image file as float32 RGB, H×W×3 in [0, 1], upright (EXIF orientation applied).

    Args:
        path: the file.
        size: optional ``(width, height)`` of the upright image to resize to, on the decoded integer image
            with Pillow (so ``size=(256, 256)`` reproduces the official Zero-DCE loader bit for bit).
        resample: ``"lanczos"`` (official loaders), ``"bicubic"``, ``"bilinear"``, ``"area"``, ``"nearest"``.

    Raises:
        ImageReadError: the file is missing, corrupt, truncated or not an image, or a float image holds
            NaN / infinite pixels.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: file not found (expected {EXPECTED})")
    if path.suffix.lower() in _LOSSLESS_CV2:
        orientation = exif_orientation(path)
        if orientation != 1 and _is_tiff(path):
            arr, bgr = _read_tiff_stored_order(path, orientation), False
        else:  # IMREAD_UNCHANGED keeps the bit depth and never applies the PNG orientation itself
            arr, bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED), True
        if arr is None:
            raise ImageReadError(f"{path}: cannot decode the file; it is corrupt or not an image (expected {EXPECTED})")
    else:
        bgr = False
        try:
            with Image.open(path) as img:
                img.load()
                orientation = _orientation_of(img, path)
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
    _check_finite(arr, path)
    arr = apply_orientation(arr, orientation)  # upright first: ``size`` is the upright (width, height)
    if size is not None:
        arr = _resize(arr, size, resample)
    return _to_rgb_float(arr, path, bgr=bgr)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """H×W×C float array → C×H×W float32 tensor (no copy of the values' range)."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()


def load_tensor(path: str | Path, size: tuple[int, int] | None = None, resample: str = "lanczos") -> torch.Tensor:
    """:func:`read_image` as a 3×H×W float32 tensor in [0, 1]."""
    return to_tensor(read_image(path, size, resample))


def check_image_header(path: str | Path) -> tuple[int, int]:
    """Cheap validity check (header only, no full decode): returns the upright ``(width, height)``.

    Upright: width and height of the stored pixels swapped for EXIF orientations 5–8, i.e. the size
    :func:`read_image` returns. Used by DataModules at ``setup()`` so a non-image file fails before training
    starts, naming the file, instead of hours into an epoch. TIFFs are checked from their first IFD, so
    the float32 RGB TIFFs :func:`read_image` decodes with OpenCV pass too.
    """
    path = Path(path)
    try:
        width, height, orientation = _header(path)
    except _HEADER_ERRORS as err:
        raise ImageReadError(f"{path}: not a readable image ({err}) (expected {EXPECTED})") from err
    return (height, width) if orientation >= 5 else (width, height)
