"""A small synthetic SICE dataset, written in the real SICE on-disk layout.

SICE (Cai, Gu & Zhang, TIP 2018) ships multi-exposure sequences with one well-exposed label each::

    root/Dataset_Part1/<n>/<k>.JPG        k = 1..K, dark → bright (Zero-DCE trains on Part1)
    root/Dataset_Part1/Label/<n>.JPG      the well-exposed reference of sequence n
    root/Dataset_Part2/<n>/<k>.JPG        Zero-DCE's full-reference test set
    root/Dataset_Part2/Label/<n>.JPG

:func:`write_sice` writes that layout from the photographs bundled with scikit-image. Each scene is a
random crop (random scale and position, random horizontal flip) of one photograph; greyscale
photographs get a random colour cast. Part1 (train) crops come from the left 70 % of each photograph
and Part2 (test) crops from the right 30 %, so no train and test scene share a pixel. The label is the
clean crop; exposure ``k`` is ``render_exposure(inverse_crf(label), 2**EV_k)`` (Poisson–Gaussian noise,
clipping, camera response, 8-bit quantisation; :mod:`datamodules.synthetic.camera`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from datamodules.image_io import write_uint8
from datamodules.synthetic.camera import (
    DEFAULT_READ_NOISE,
    DEFAULT_SHOT_NOISE,
    check_exposures,
    crf,
    inverse_crf,
    render_exposure,
)
from datamodules.synthetic.output_root import prepare_output_root
from datamodules.synthetic.photos import GREY_PHOTOS, bundled_photos

#: Exposure values of a default sequence, dark → bright: 7 images like most SICE sequences, so the
#: Zero-DCE pair protocol (first floor(K/2) images) takes the three darkest (−4, −3, −2 EV).
DEFAULT_EXPOSURES: tuple[float, ...] = (-4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0)
#: Fraction of each photograph's width (from the left) that train crops come from; test crops use the rest.
TRAIN_FRACTION = 0.7
_MARKER = "Synthetic SICE dataset written by darkroom (datamodules.synthetic.sice.write_sice)."
JPEG_QUALITY = 95


def _crop_scene(photo: np.ndarray, region: tuple[int, int], size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random crop of ``photo[:, region[0]:region[1]]`` with the aspect ratio of ``size`` = (W, H), resized to it."""
    x0, x1 = region
    h = photo.shape[0]
    aspect = size[0] / size[1]
    max_w = min(x1 - x0, h * aspect)
    cw = max(8.0, rng.uniform(0.6, 1.0) * max_w)
    ch = cw / aspect
    cw_i, ch_i = min(int(round(cw)), x1 - x0), min(int(round(ch)), h)
    left = x0 + int(rng.integers(0, x1 - x0 - cw_i + 1))
    top = int(rng.integers(0, h - ch_i + 1))
    crop = photo[top : top + ch_i, left : left + cw_i]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    interp = cv2.INTER_AREA if cw_i >= size[0] else cv2.INTER_CUBIC
    return cv2.resize(np.ascontiguousarray(crop), size, interpolation=interp)


def write_sice(
    root: str | Path,
    n_train: int = 40,
    n_test: int = 8,
    size: tuple[int, int] = (192, 144),
    exposures: Sequence[float] = DEFAULT_EXPOSURES,
    seed: int = 0,
    shot_noise: float = DEFAULT_SHOT_NOISE,
    read_noise: float = DEFAULT_READ_NOISE,
) -> Path:
    """Write a synthetic SICE dataset (Part1 = train, Part2 = test) under ``root``; return ``root``.

    Args:
        root: output folder (created). A previous dataset written by this function there is replaced;
            any other existing ``Dataset_Part1``/``Dataset_Part2`` raises ``FileExistsError``.
        n_train: sequences in ``Dataset_Part1`` (≥ 1).
        n_test: sequences in ``Dataset_Part2`` (≥ 1).
        size: ``(width, height)`` of every image.
        exposures: exposure values (EV, stops relative to the label), strictly increasing: image ``k``
            of a sequence is exposed at ``2**exposures[k-1]``.
        seed: the only source of randomness: same arguments and seed → byte-identical files.
        shot_noise, read_noise: sensor noise, see :func:`~datamodules.synthetic.camera.render_exposure`.

    Returns:
        ``Path(root)``.
    """
    root = Path(root)
    evs = check_exposures(exposures)
    if n_train < 1 or n_test < 1:
        raise ValueError(f"n_train and n_test must be ≥ 1, got n_train={n_train}, n_test={n_test}")
    if len(size) != 2 or min(size) < 8:
        raise ValueError(f"size must be (width, height) with both ≥ 8, got {size!r}")
    size = (int(size[0]), int(size[1]))
    prepare_output_root(root, ["Dataset_Part1", "Dataset_Part2"], _MARKER, "write_sice")

    rng = np.random.default_rng(seed)
    photos = bundled_photos()
    for part, n_scenes, test in (("Dataset_Part1", n_train, False), ("Dataset_Part2", n_test, True)):
        order = rng.permutation(len(photos))
        part_dir = root / part
        for i in range(n_scenes):
            name, photo = photos[int(order[i % len(photos)])]
            split = int(round(TRAIN_FRACTION * photo.shape[1]))
            region = (split, photo.shape[1]) if test else (0, split)
            crop = _crop_scene(photo, region, size, rng)
            linear = inverse_crf(crop)
            if name in GREY_PHOTOS:  # a random colour cast (white balance) so the scene is not grey
                gains = rng.uniform(0.6, 1.0, size=3)
                linear = linear * (gains / gains.max())
            label = np.floor(crf(linear) * 255 + 0.5).astype(np.uint8)
            write_uint8(part_dir / "Label" / f"{i + 1}.JPG", label, quality=JPEG_QUALITY)
            scene = inverse_crf(label)
            for k, ev in enumerate(evs, start=1):
                shot = render_exposure(scene, 2.0**ev, rng, shot_noise=shot_noise, read_noise=read_noise)
                write_uint8(part_dir / str(i + 1) / f"{k}.JPG", shot, quality=JPEG_QUALITY)

    (root / "README.txt").write_text(
        f"{_MARKER}\n\n"
        "Layout (as the real SICE dataset, Cai, Gu & Zhang, TIP 2018):\n"
        "  Dataset_Part1/<n>/<k>.JPG   exposure sequence n, k = 1..K dark -> bright (training)\n"
        "  Dataset_Part1/Label/<n>.JPG well-exposed label of sequence n\n"
        "  Dataset_Part2/...           same layout (full-reference test set)\n\n"
        f"Scenes: random crops (random scale, position, horizontal flip) of scikit-image's bundled photos,\n"
        f"resized to {size[0]}x{size[1]}; Part1 crops from the left {TRAIN_FRACTION:.0%} of each photo, Part2 from\n"
        "the rest, so train and test never share pixels. Greyscale photos get a random colour cast.\n"
        "Label = the clean crop. Exposure k = render_exposure(inverse_crf(label), 2**EV_k): Poisson-Gaussian\n"
        f"sensor noise (shot_noise={shot_noise}, read_noise={read_noise}), clipping, camera response curve,\n"
        f"8-bit quantisation, JPEG quality {JPEG_QUALITY}.\n"
        f"EV per k: {evs}\n"
        f"n_train={n_train} n_test={n_test} seed={seed}\n",
        encoding="utf-8",
    )
    return root
