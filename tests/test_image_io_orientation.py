"""EXIF orientation and non-finite float pixels in :mod:`datamodules.image_io` (synthetic files, < 2 s)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from datamodules.image_io import (
    ImageReadError,
    apply_orientation,
    check_image_header,
    exif_orientation,
    read_image,
)

# What each EXIF orientation means, from the EXIF spec / Pillow's ImageOps.exif_transpose table.
PIL_METHOD = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
ORIENTATIONS = list(PIL_METHOD)


def quadrants(h: int = 4, w: int = 6) -> np.ndarray:
    """H×W×3 uint8 with four distinct quadrant colours: every one of the 8 orientations gives another image."""
    a = np.zeros((h, w, 3), np.uint8)
    a[: h // 2, : w // 2] = (250, 10, 10)
    a[: h // 2, w // 2 :] = (10, 250, 10)
    a[h // 2 :, : w // 2] = (10, 10, 250)
    a[h // 2 :, w // 2 :] = (250, 250, 250)
    return a


def exif_bytes(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def upright_reference(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Pillow's own transpose of an H×W×3 uint8 array (independent of :func:`apply_orientation`)."""
    method = PIL_METHOD[orientation]
    img = Image.fromarray(arr)
    return np.asarray(img if method is None else img.transpose(method))


def save_tagged(path: Path, arr: np.ndarray, orientation: int) -> Path:
    kwargs = {"quality": 100, "subsampling": 0} if path.suffix == ".jpg" else {}
    Image.fromarray(arr).save(path, exif=exif_bytes(orientation), **kwargs)
    return path


def insert_png_chunk(path: Path, kind: bytes, data: bytes, before: bytes = b"IEND") -> None:
    """Insert a chunk into a PNG file in front of the first ``before`` chunk."""
    raw = path.read_bytes()
    pos = 8
    while True:
        length, ctype = struct.unpack(">I4s", raw[pos : pos + 8])
        if ctype == before:
            break
        pos += 12 + length
    chunk = struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    path.write_bytes(raw[:pos] + chunk + raw[pos:])


@pytest.mark.parametrize("ext", ["jpg", "png", "tif"])
@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_every_orientation_reads_upright(tmp_path, ext, orientation):
    arr = quadrants()
    path = save_tagged(tmp_path / f"o{orientation}.{ext}", arr, orientation)
    assert exif_orientation(path) == orientation

    got = read_image(path)
    with Image.open(path) as img:
        pillow = np.asarray(ImageOps.exif_transpose(img).convert("RGB")).astype(np.float32) / 255
    np.testing.assert_array_equal(got, pillow)  # exactly Pillow's exif_transpose
    expected = upright_reference(arr, orientation).astype(np.float32) / 255
    assert got.shape == expected.shape
    tol = 0.02 if ext == "jpg" else 0.0  # quality 100, no chroma subsampling: a few levels at most
    np.testing.assert_allclose(got, expected, atol=tol)
    upright = (6, 4) if orientation <= 4 else (4, 6)
    assert check_image_header(path) == upright == (got.shape[1], got.shape[0])


@pytest.mark.parametrize("orientation", [6, 7])
def test_resize_applies_to_the_upright_image(tmp_path, orientation):
    arr = quadrants(8, 12)
    tagged = save_tagged(tmp_path / "tagged.png", arr, orientation)
    plain = tmp_path / "plain.png"
    Image.fromarray(upright_reference(arr, orientation)).save(plain)  # already upright, no tag
    got = read_image(tagged, size=(4, 6))
    assert got.shape == (6, 4, 3)
    np.testing.assert_array_equal(got, read_image(plain, size=(4, 6)))


def test_png_exif_chunk_after_the_pixels_on_a_16_bit_png(tmp_path):
    rng = np.random.default_rng(0)
    rgb16 = rng.integers(0, 65536, (4, 6, 3), dtype=np.uint16)
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), rgb16[..., ::-1])
    insert_png_chunk(path, b"eXIf", exif_bytes(8))  # after IDAT: Pillow's open does not see it
    with Image.open(path) as img:
        assert "exif" not in img.info
    assert exif_orientation(path) == 8
    got = read_image(path)
    expected = np.stack([np.asarray(Image.fromarray(rgb16[..., c]).transpose(PIL_METHOD[8])) for c in range(3)], 2)
    assert got.shape == (6, 4, 3)
    np.testing.assert_array_equal(got, expected.astype(np.float32) / 65535)
    assert check_image_header(path) == (4, 6)


def test_float_tiff_with_orientation_is_read_upright(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    rng = np.random.default_rng(1)
    img = rng.random((4, 6, 3), dtype=np.float32)
    path = tmp_path / "float.tif"
    tifffile.imwrite(path, img, photometric="rgb", extratags=[(0x0112, "H", 1, 6, True)])
    got = read_image(path)
    expected = np.stack([np.asarray(Image.fromarray(img[..., c]).transpose(PIL_METHOD[6])) for c in range(3)], 2)
    np.testing.assert_array_equal(got, expected)
    assert check_image_header(path) == (4, 6)  # Pillow cannot open a float RGB TIFF: read from IFD0


@pytest.mark.parametrize("orientation", [0, 9, 1])
def test_invalid_or_absent_orientation_changes_nothing(tmp_path, orientation):
    arr = quadrants()
    tagged = save_tagged(tmp_path / "t.png", arr, orientation)
    assert exif_orientation(tagged) == 1
    np.testing.assert_array_equal(read_image(tagged), arr.astype(np.float32) / 255)
    assert check_image_header(tagged) == (6, 4)


def test_apply_orientation_matches_pillow_on_any_dtype():
    arr = np.arange(5 * 7, dtype=np.uint16).reshape(5, 7)
    for o in ORIENTATIONS:
        method = PIL_METHOD[o]
        ref = arr if method is None else np.asarray(Image.fromarray(arr).transpose(method))
        out = apply_orientation(arr, o)
        np.testing.assert_array_equal(out, ref)
        assert out.flags.c_contiguous


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_float_tiff_is_an_error_naming_the_file(tmp_path, dtype):
    tifffile = pytest.importorskip("tifffile")
    img = np.full((4, 6, 3), 0.5, dtype)
    img[0, 0, 1] = np.nan
    img[2, 3] = np.inf
    path = tmp_path / "broken.tif"
    tifffile.imwrite(path, img, photometric="rgb")
    with pytest.raises(ImageReadError, match=r"broken\.tif: 2 of 24 pixels are not finite \(1 NaN and 3 infinite"):
        read_image(path)
    img[0, 0, 1] = img[2, 3] = 0.25
    tifffile.imwrite(path, img, photometric="rgb")
    np.testing.assert_array_equal(read_image(path), img.astype(np.float32))
