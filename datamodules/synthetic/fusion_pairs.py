"""Small synthetic fusion datasets in the layouts :class:`datamodules.fusion_pairs.FusionPairDataModule` reads.

* :func:`write_multi_focus`: ``root/{train,test}/{near,far,reference}/<scene>.png``. A crop of a bundled photograph
  with texture across the frame (:data:`datamodules.synthetic.photos.TEXTURED_PHOTOS`: defocus is invisible on the
  black sky of ``hubble_deep_field`` or a flat ``colorwheel``, so such scenes carry no multi-focus signal),
  auto-levelled to the full 8-bit luma range (:func:`full_range`), is the
  all-in-focus ``reference``. (Without the auto-levels many crops span a third of the range or less — a dark rocket,
  a patch of sky — unlike the well-exposed photographs of real multi-focus sets such as Lytro; ReFusion's official
  min–max normalisation of the fused image then stretches their contrast 1.5–4×: on such crops it lowers even the
  reference's Qabf from 0.80 to 0.50, below the pixel mean's 0.66.) a smooth random depth-like mask M ∈ [0, 1]
  (Gaussian-filtered noise through a steep logistic, so focus changes over a few pixels along smooth boundaries, as
  at depth discontinuities) splits it into a near region (M → 1) and a far region (M → 0). ``near`` =
  M·I + (1 − M)·blur(I), ``far`` = (1 − M)·I + M·blur(I), blur = Gaussian defocus with σ = ``blur_sigma``. (Real
  multi-focus training sets in this literature are synthesised the same way, digest §5.)
* :func:`write_ir_visible`: ``root/{train,test}/{ir,vi}/<scene>.png`` (MSRS layout). ``vi`` = the photograph with
  its illumination lowered ("dusk"); ``ir`` = a grey "thermal" rendering that shows different structures: the
  scene's coarse shape (low-pass, inverted luminance at low contrast) plus warm objects (Gaussian blobs) that are
  **absent** from the visible image, so a good fusion keeps both. A stand-in, not a physical thermal model.
* :func:`write_exposure_pairs`: MEIF pairs as exposure stacks of two exposures
  (:func:`datamodules.synthetic.exposure_stacks.write_exposure_stacks`: camera response, noise, clipping), read
  with ``layout="stacks"``.

Every generator is deterministic given its seed; images are 8-bit PNG (lossless).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from datamodules.image_io import write_uint8
from datamodules.synthetic.output_root import prepare_output_root
from datamodules.synthetic.photos import TEXTURED_PHOTOS, bundled_photos
from datamodules.synthetic.sice import TRAIN_FRACTION, _crop_scene

__all__ = ["depth_mask", "full_range", "write_exposure_pairs", "write_ir_visible", "write_multi_focus"]

_MARKER = "Synthetic fusion pairs written by darkroom (datamodules.synthetic.fusion_pairs)."


def _check(n_train: int, n_test: int, size: tuple[int, int]) -> tuple[int, int]:
    if n_train < 1 or n_test < 1:
        raise ValueError(f"n_train and n_test must be ≥ 1, got {n_train}, {n_test}")
    if len(size) != 2 or min(size) < 16:
        raise ValueError(f"size must be (width, height) with both ≥ 16, got {size!r}")
    return int(size[0]), int(size[1])


def _scenes(n: int, test: bool, size: tuple[int, int], rng: np.random.Generator,
            names: tuple[str, ...] | None = None) -> list[tuple[str, np.ndarray]]:
    """``n`` random crops (W×H = size) of the bundled photos (``names``, default all): train from the left 70 %,
    test from the rest."""
    photos = bundled_photos(names=names)
    order = rng.permutation(len(photos))
    out = []
    for i in range(n):
        name, photo = photos[int(order[i % len(photos)])]
        cut = int(round(TRAIN_FRACTION * photo.shape[1]))
        crop = _crop_scene(photo, (cut, photo.shape[1]) if test else (0, cut), size, rng)
        out.append((f"{i + 1:03d}_{name}", crop))
    return out


def depth_mask(size: tuple[int, int], rng: np.random.Generator, smoothness: float = 0.15,
               sharpness: float = 12.0) -> np.ndarray:
    """Smooth random near/far mask, H×W float64 in [0, 1] with both regions present.

    Gaussian-filtered white noise (σ = ``smoothness``·min(W, H)), standardised, through
    ``1/(1 + exp(−sharpness·z))``: broad regions with soft boundaries a few pixels wide.
    """
    w, h = size
    noise = rng.standard_normal((h, w))
    sigma = max(1.0, smoothness * min(w, h))
    field = cv2.GaussianBlur(noise, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
    z = (field - np.median(field)) / max(field.std(), 1e-12)
    return 1.0 / (1.0 + np.exp(-sharpness * z))


def full_range(img: np.ndarray, clip_percent: float = 0.5) -> np.ndarray:
    """Auto-levels: one linear map of all channels so that the BT.601 luma spans the full 8-bit range.

    The ``clip_percent`` darkest and brightest luma percentiles are clipped (as a photograph's shadows and highlights
    are); RGB is clipped to [0, 255]. H×W×3 in (any range) → H×W×3 float64 in [0, 255]. A flat image is returned
    unchanged.
    """
    x = img.astype(np.float64)
    y = x @ np.array([0.299, 0.587, 0.114])
    lo, hi = np.percentile(y, [clip_percent, 100.0 - clip_percent])
    if hi - lo < 1.0:
        return x
    return np.clip((x - lo) * (255.0 / (hi - lo)), 0.0, 255.0)


def write_multi_focus(root: str | Path, n_train: int = 16, n_test: int = 4, size: tuple[int, int] = (96, 96),
                      seed: int = 0, blur_sigma: float = 2.5) -> Path:
    """Write near/far-focus pairs with their all-in-focus ``reference`` (module docstring); return ``root``."""
    root, size = Path(root), _check(n_train, n_test, size)
    if blur_sigma <= 0:
        raise ValueError(f"blur_sigma must be > 0, got {blur_sigma}")
    prepare_output_root(root, ["train", "test"], _MARKER, "write_multi_focus")
    rng = np.random.default_rng(seed)
    for split, n, test in (("train", n_train, False), ("test", n_test, True)):
        for name, img in _scenes(n, test, size, rng, TEXTURED_PHOTOS):
            sharp = full_range(img)  # a well-exposed photograph (see the module docstring)
            blurred = cv2.GaussianBlur(sharp, (0, 0), sigmaX=blur_sigma, borderType=cv2.BORDER_REFLECT)
            m = depth_mask(size, rng)[..., None]
            near = m * sharp + (1 - m) * blurred
            far = (1 - m) * sharp + m * blurred
            for folder, arr in (("near", near), ("far", far), ("reference", sharp)):
                write_uint8(root / split / folder / f"{name}.png", np.clip(arr + 0.5, 0, 255).astype(np.uint8))
    (root / "README.txt").write_text(
        f"{_MARKER}\n\nMulti-focus pairs: near/ and far/ focus (Gaussian defocus σ = {blur_sigma} px outside the "
        f"focused region), reference/ = all-in-focus original. size {size}, seed {seed}.\n", encoding="utf-8")
    return root


def write_ir_visible(root: str | Path, n_train: int = 16, n_test: int = 4, size: tuple[int, int] = (96, 96),
                     seed: int = 0, n_objects: int = 3, darkening: float = 0.5) -> Path:
    """Write IR–visible stand-in pairs ``ir/`` (1-channel) and ``vi/`` (RGB) (module docstring); return ``root``."""
    root, size = Path(root), _check(n_train, n_test, size)
    prepare_output_root(root, ["train", "test"], _MARKER, "write_ir_visible")
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    for split, n, test in (("train", n_train, False), ("test", n_test, True)):
        for name, img in _scenes(n, test, size, rng):
            rgb = img.astype(np.float64) / 255.0
            grey = rgb @ np.array([0.299, 0.587, 0.114])
            coarse = cv2.GaussianBlur(grey, (0, 0), sigmaX=max(1.0, 0.03 * min(w, h)))
            thermal = 0.25 + 0.3 * (1.0 - coarse)
            for _ in range(n_objects):
                cx, cy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h
                rx, ry = rng.uniform(0.04, 0.12) * w, rng.uniform(0.06, 0.18) * h
                blob = np.exp(-(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2))
                thermal = np.maximum(thermal, rng.uniform(0.7, 0.95) * (blob > 0.5) * (0.8 + 0.2 * blob))
            visible = rgb * darkening
            write_uint8(root / split / "ir" / f"{name}.png", np.clip(thermal * 255 + 0.5, 0, 255).astype(np.uint8))
            write_uint8(root / split / "vi" / f"{name}.png", np.clip(visible * 255 + 0.5, 0, 255).astype(np.uint8))
    (root / "README.txt").write_text(
        f"{_MARKER}\n\nIR–visible stand-in pairs (MSRS layout): ir/ grey 'thermal' rendering with {n_objects} warm "
        f"objects absent from vi/ (visible photo × {darkening}). size {size}, seed {seed}.\n", encoding="utf-8")
    return root


def write_exposure_pairs(root: str | Path, n_train: int = 16, n_test: int = 4, size: tuple[int, int] = (96, 96),
                         seed: int = 0, exposures: tuple[float, float] = (-2.0, 2.0)) -> Path:
    """Write under/over exposure pairs as two-exposure stacks ``root/{train,test}/<scene>/{1,2}.png``.

    Read them with ``FusionPairDataModule(task="meif", layout="stacks")``. Reuses
    :func:`datamodules.synthetic.exposure_stacks.write_exposure_stacks` (camera response, sensor noise).
    """
    from datamodules.synthetic.exposure_stacks import write_exposure_stacks

    _check(n_train, n_test, size)
    return write_exposure_stacks(root, n_train=n_train, n_test=n_test, size=size, exposures=exposures, seed=seed)
