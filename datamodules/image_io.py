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
* the EXIF Orientation tag (values 2–8, what phones write instead of rotating the pixels) is applied on
  read, for every format, exactly as ``PIL.ImageOps.exif_transpose`` does (its numpy equivalent is
  :func:`apply_orientation`): JPEG / BMP from the tag Pillow parses, PNG from its ``eXIf`` chunk (before or
  after the pixel data), TIFF from IFD0. The transpose comes *before* the optional resize, so ``size`` is the
  ``(width, height)`` of the upright image, and :func:`check_image_header` returns the upright size
  (width and height swapped for orientations 5–8). Files without the tag (or with orientation 1) are
  decoded exactly as before. OpenCV's TIFF decoder handles the tag itself, inconsistently across versions
  (OpenCV 5 flips 2–4 and cannot decode 5–8), so a TIFF with orientation 2–8 is decoded with ``tifffile``
  (a dependency of scikit-image) in stored order and transposed here;
* float TIFFs (float32 / float64, taken as already in [0, 1]) with NaN or infinite pixels raise
  :class:`ImageReadError` saying how many pixels are affected;
* a corrupt or unreadable file raises :class:`ImageReadError` naming the file and what was expected.

Arrays are float32 H×W×C in [0, 1], RGB order. :func:`to_tensor` gives the C×H×W tensor the
DataModules put in batches. :func:`write_image` / :func:`write_uint8` write atomically (temporary file in
the same folder, then ``os.replace``): a killed run never leaves a half-written image.
"""

from __future__ import annotations

import os
import re
import struct
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from datamodules.atomic_files import atomic_write

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
_LOSSLESS_CV2 = frozenset({".png", ".tif", ".tiff"})
EXPECTED = "an RGB or greyscale JPEG/PNG/BMP/TIFF image (8 or 16 bit)"
ORIENTATION_TAG = 0x0112
_XMP_TAG = 700  # TIFF tag holding an XMP packet
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF, both byte orders
_HEADER_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error, EOFError,
                  KeyError, IndexError, TypeError)


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


def list_images_recursive(root: str | Path, *, what: str = "images") -> list[tuple[Path, str]]:
    """Every image file below ``root`` at any depth, with its name relative to ``root`` without extension.

    ``<root>/DICM/01.jpg`` → ``(path, "DICM/01")``; ``<root>/a.png`` → ``(path, "a")`` (a flat folder gives the
    names :func:`list_images` + ``unique_names`` gave). Order: natural order of the relative path, folder by
    folder (``DICM/2`` before ``DICM/10`` before ``LIME/1``), the same on every file system. Hidden files and
    folders (``.name``) are skipped; symbolic links to folders are followed once (a link cycle is not).

    Names are unique, compared case-insensitively (as on macOS / Windows file systems): files of one folder that
    share a stem (``a.jpg``, ``a.PNG``) get their extension appended (``a_jpg``, ``a_PNG``); any remaining clash
    (``DICM/a`` and ``dicm/a``) gets a running index (``dicm/a_1``). Separators are always ``/``.

    Raises:
        DatasetLayoutError: ``root`` is not a folder, or holds no image file at any depth.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: folder not found (expected a folder of {what}, sub-folders allowed)")
    found: list[tuple[Path, tuple[str, ...]]] = []
    seen_dirs: set[str] = set()
    for folder, dirs, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen_dirs:  # a symlink cycle, or a second link to a folder already listed
            dirs[:] = []
            continue
        seen_dirs.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel = Path(folder).relative_to(root).parts
        for name in names:
            path = Path(folder) / name
            if not name.startswith(".") and is_image(path) and path.is_file():
                found.append((path, (*rel, name)))
    if not found:
        exts = "/".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))
        raise DatasetLayoutError(f"{root}: no image files found at any depth (expected {what}: {exts}, any case)")
    found.sort(key=lambda item: ([natural_key(part) for part in item[1]], item[1]))
    stems = ["/".join((*parts[:-1], Path(parts[-1]).stem)) for _, parts in found]
    shared = Counter(s.casefold() for s in stems)
    names_ = [f"{s}_{p.suffix.lstrip('.')}" if shared[s.casefold()] > 1 else s
              for s, (p, _) in zip(stems, found, strict=True)]
    taken: set[str] = set()
    out: list[tuple[Path, str]] = []
    for (path, _), name in zip(found, names_, strict=True):
        unique, k = name, 0
        while unique.casefold() in taken:
            k += 1
            unique = f"{name}_{k}"
        taken.add(unique.casefold())
        out.append((path, unique))
    return out


def unreadable_images(files: Iterable[str | Path]) -> list[tuple[Path, str]]:
    """Decode every file in full (:func:`read_image`) and return ``(file, reason)`` for those that fail.

    A header check (:func:`check_image_header`) passes truncated files; this finds them, at the price of a full
    decode (measured: 0.15 s for the 17 photos of ``shared/data/lowlight/test``, 5.5 MB, 2 CPU cores; headers
    alone: 1.5 ms). Each reason is one line and names the file.
    """
    bad = []
    for f in files:
        try:
            read_image(f)
        except ImageReadError as err:
            bad.append((Path(f), " ".join(str(err).split())))
    return bad


def predict_images(root: str | Path, *, what: str = "photos to enhance", skip_bad: bool = False
                   ) -> tuple[list[Path], list[str], list[tuple[Path, str]]]:
    """The files of a predict folder (:func:`list_images_recursive`), each decoded once to check it.

    Returns:
        ``(files, names, skipped)``: the readable files, their relative names (``DICM/01``) and ``(file, reason)``
        of the unreadable ones (empty unless ``skip_bad``).

    Raises:
        DatasetLayoutError: no image file below ``root``.
        ImageReadError: a file cannot be decoded and ``skip_bad`` is false: one line naming the first such file
            (and counting the others), raised before anything is predicted or written.
    """
    listed = list_images_recursive(root, what=what)
    bad = unreadable_images(p for p, _ in listed)
    if bad and not skip_bad:
        more = (f" (and {len(bad) - 1} more unreadable: {', '.join(str(p) for p, _ in bad[1:4])}"
                f"{', …' if len(bad) > 4 else ''})") if len(bad) > 1 else ""
        raise ImageReadError(f"{bad[0][1]}{more}; predict stopped before writing anything "
                             "(pass --run.skip_bad true to skip unreadable files)")
    dropped = {p for p, _ in bad}
    kept = [(p, n) for p, n in listed if p not in dropped]
    return [p for p, _ in kept], [n for _, n in kept], bad


# ------------------------------------------------------------------------------------------- orientation
def _valid_orientation(value: object) -> int:
    """An Orientation tag value as 1–8; anything else (absent, 0, 9, a tuple) counts as 1 like Pillow."""
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _xmp_orientation(xmp: object) -> object:
    """``tiff:Orientation`` from an XMP packet (str or bytes), the fallback ``Image.getexif`` uses."""
    if isinstance(xmp, str):
        match = re.search(r'tiff:Orientation(="|>)([0-9])', xmp)
    elif isinstance(xmp, (bytes, bytearray)):
        match = re.search(rb'tiff:Orientation(="|>)([0-9])', bytes(xmp))
    else:
        return None
    return int(match[2]) if match else None


def _png_exif_chunk(path: Path) -> bytes | None:
    """The payload of a PNG's ``eXIf`` chunk wherever it is, reading chunk headers only (no decode).

    Pillow parses chunks only up to the first ``IDAT`` when opening, and its ``getexif()`` decodes the
    whole image to look further; seeking over the chunks costs a few reads.
    """
    with open(path, "rb") as f:
        if f.read(8) != _PNG_SIGNATURE:
            return None
        while True:
            head = f.read(8)
            if len(head) < 8:
                return None
            length, kind = struct.unpack(">I4s", head)
            if kind == b"eXIf":
                return f.read(length)
            if kind == b"IEND":
                return None
            f.seek(length + 4, 1)  # data and CRC


def _is_tiff(path: Path) -> bool:
    """Whether the file starts with a TIFF / BigTIFF signature."""
    with open(path, "rb") as f:
        return f.read(4) in _TIFF_SIGNATURES


def _tiff_ifd0(path: Path) -> tuple[int, int, int] | None:
    """``(width, height, orientation)`` from a TIFF's first IFD, or ``None`` if it is not a TIFF.

    Works for pixel types Pillow cannot decode (float32 RGB, ...), which OpenCV reads.
    """
    with open(path, "rb") as f:
        if f.read(4) not in _TIFF_SIGNATURES:
            return None
        f.seek(0)
        ifd = Image.Exif()
        ifd.load_from_fp(f)
        width, height = ifd.get(256), ifd.get(257)
        if not (isinstance(width, int) and isinstance(height, int)):
            return None
        value = ifd.get(ORIENTATION_TAG)
        if value is None:
            value = _xmp_orientation(ifd.get(_XMP_TAG))
        return width, height, _valid_orientation(value)


def _orientation_of(img: Image.Image, path: Path) -> int:
    """EXIF orientation (1–8) of an opened, not necessarily loaded, Pillow image; headers only.

    Metadata is advisory: an unparsable EXIF block counts as orientation 1 rather than failing the read.
    """
    try:
        if img.format == "PNG":
            if "exif" not in img.info:
                data = _png_exif_chunk(path)
                if data:
                    img.info["exif"] = data
            # The generic getexif reads img.info only; PngImageFile.getexif would decode the pixels first.
            exif = Image.Image.getexif(img)
        else:
            exif = img.getexif()
        return _valid_orientation(exif.get(ORIENTATION_TAG))
    except _HEADER_ERRORS:
        return 1


def _header(path: Path) -> tuple[int, int, int]:
    """``(width, height, orientation)`` of the stored pixels, from headers only.

    TIFFs are read from their first IFD: Pillow cannot open some of them (float32 RGB), and recent Pillow
    reports a TIFF's size already transposed for orientations 5–8 while older versions do not.
    """
    tiff = _tiff_ifd0(path)
    if tiff is not None:
        return tiff
    with Image.open(path) as img:
        return img.size[0], img.size[1], _orientation_of(img, path)


def exif_orientation(path: str | Path) -> int:
    """The EXIF Orientation of an image file, 1–8 (1 when absent, invalid or unreadable); headers only.

    Reads what ``PIL.ImageOps.exif_transpose`` reads: the EXIF block (JPEG APP1, PNG ``eXIf`` or
    ``Raw profile type exif`` text, TIFF IFD0), else an XMP ``tiff:Orientation``.
    """
    try:
        return _header(Path(path))[2]
    except _HEADER_ERRORS:
        return 1


def apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an H×W or H×W×C array (any dtype, any channel order) upright for an EXIF orientation.

    The same pixels as ``PIL.ImageOps.exif_transpose`` (2: mirror, 3: rotate 180°, 4: flip, 5: transpose,
    6: rotate 90° clockwise, 7: transverse, 8: rotate 90° counter-clockwise); 1 / unknown values return
    ``arr`` itself. Orientations 5–8 swap height and width.
    """
    if orientation == 2:
        out = arr[:, ::-1]
    elif orientation == 3:
        out = arr[::-1, ::-1]
    elif orientation == 4:
        out = arr[::-1]
    elif orientation == 5:
        out = arr.swapaxes(0, 1)
    elif orientation == 6:
        out = np.rot90(arr, -1)
    elif orientation == 7:
        out = arr.swapaxes(0, 1)[::-1, ::-1]
    elif orientation == 8:
        out = np.rot90(arr, 1)
    else:
        return arr
    return np.ascontiguousarray(out)


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


def image_files(paths: Iterable[str | Path]) -> list[Path]:
    """Keep only image files from ``paths``, naturally sorted."""
    return sorted((Path(p) for p in paths if is_image(p)), key=natural_key)
