"""Real photographs that ship with scikit-image and load offline: the raw material of the synthetic data."""

from __future__ import annotations

from functools import cache

import numpy as np

#: Colour photographs of natural scenes (RGB uint8) among scikit-image's bundled samples.
COLOUR_PHOTOS: tuple[str, ...] = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
                                  "immunohistochemistry", "retina", "colorwheel")
#: Greyscale photographs (replicated to RGB and tinted when colour is needed).
GREY_PHOTOS: tuple[str, ...] = ("camera", "brick", "grass", "gravel", "moon", "coins", "clock", "cell", "page")
#: Photos with texture across the frame (colour first, then grey), for data whose signal is local detail: SIFT
#: alignment (DPED pairs) and defocus (multi-focus pairs). Flat or synthetic ones (``hubble_deep_field``: mostly
#: black, where defocus is invisible and SIFT finds few points; ``colorwheel``, ``page``, ``moon``) are left out.
TEXTURED_PHOTOS: tuple[str, ...] = ("astronaut", "coffee", "chelsea", "immunohistochemistry", "camera",
                                    "gravel", "coins", "brick", "grass")


@cache
def load_photo(name: str) -> np.ndarray:
    """One bundled photograph as H×W×3 uint8 RGB (greyscale samples replicated to three channels)."""
    import skimage.data

    arr = np.asarray(getattr(skimage.data, name)())
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8) if arr.dtype.kind == "f" else arr.astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return np.ascontiguousarray(arr[..., :3])


def bundled_photos(colour_only: bool = False, names: tuple[str, ...] | None = None) -> list[tuple[str, np.ndarray]]:
    """Bundled photographs as ``(name, H×W×3 uint8)``: ``names`` if given, else all usable ones, colour first."""
    if names is None:
        names = COLOUR_PHOTOS if colour_only else COLOUR_PHOTOS + GREY_PHOTOS
    return [(n, load_photo(n)) for n in names]
