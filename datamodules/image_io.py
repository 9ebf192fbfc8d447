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

# The helpers live in four modules beside this one and are re-exported here, where every DataModule imports them
# from: image_files (extensions, listing, natural order, predict folders), image_orientation (the EXIF tag and its
# transpose), image_reading (decoding, tensors, the header check) and image_writing (quantize, atomic writes).
from datamodules.image_files import (  # noqa: F401  (re-exported)
    IMAGE_EXTENSIONS,
    DatasetLayoutError,
    RootNotSetError,
    image_files,
    is_image,
    list_images,
    list_images_recursive,
    natural_key,
    predict_images,
    unreadable_images,
)
from datamodules.image_orientation import (  # noqa: F401  (re-exported)
    _HEADER_ERRORS,
    _PNG_SIGNATURE,
    _TIFF_SIGNATURES,
    _XMP_TAG,
    ORIENTATION_TAG,
    _header,
    _is_tiff,
    _orientation_of,
    _png_exif_chunk,
    _tiff_ifd0,
    _valid_orientation,
    _xmp_orientation,
    apply_orientation,
    exif_orientation,
)
from datamodules.image_reading import (  # noqa: F401  (re-exported)
    _LOSSLESS_CV2,
    EXPECTED,
    RESAMPLE,
    ImageReadError,
    _check_finite,
    _read_tiff_stored_order,
    _resize,
    _to_rgb_float,
    check_image_header,
    load_tensor,
    read_image,
    to_tensor,
)
from datamodules.image_writing import _save_atomic, quantize, write_image, write_uint8  # noqa: F401  (re-exported)
