"""The EXIF Orientation tag, read from headers only (JPEG / BMP via Pillow, PNG ``eXIf`` wherever it is, TIFF
IFD0, XMP ``tiff:Orientation`` as a fallback), and its transpose on numpy arrays (the pixels of
``PIL.ImageOps.exif_transpose``); :mod:`datamodules.image_io`'s docstring says how reading uses them."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

ORIENTATION_TAG = 0x0112
_XMP_TAG = 700  # TIFF tag holding an XMP packet
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF, both byte orders
_HEADER_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error, EOFError,
                  KeyError, IndexError, TypeError)


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
