"""Small synthetic multi-exposure stacks, written in the layout of ``shared/data/exposure_stacks``::

    root/train/<scene>/<k>.png       k = 1..K, dark → bright (any names work: the loader sorts by luminance)
    root/test/<scene>/<k>.png
    root/README.txt

Each scene is a random crop (random scale, position, horizontal flip) of one of scikit-image's bundled
photographs (:mod:`datamodules.synthetic.photos`); train crops come from the left 70 % of a photograph and
test crops from the rest, so no train and test scene share a pixel (as :mod:`datamodules.synthetic.sice`).
The photograph is linearised (:func:`~datamodules.synthetic.camera.inverse_crf`) and lit by a smooth random
illumination ramp spanning ``scene_range_ev`` stops (a photograph alone has the dynamic range of one
8-bit exposure; the ramp makes a scene that no single exposure captures, ours), then photographed at each
exposure ``2**EV_k`` (:func:`~datamodules.synthetic.camera.render_exposure`: Poisson–Gaussian noise,
clipping, camera response, 8-bit). The default exposures −3, 0, +3 EV include the extreme under/over pair
DeepFuse targets (the official example pair ``forth4`` is ``Img_EV-3`` / ``Img_EV3``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from datamodules.image_io import write_uint8
from datamodules.synthetic.camera import (
    DEFAULT_READ_NOISE,
    DEFAULT_SHOT_NOISE,
    check_exposures,
    inverse_crf,
    render_exposure,
)
from datamodules.synthetic.output_root import prepare_output_root
from datamodules.synthetic.photos import GREY_PHOTOS, bundled_photos
from datamodules.synthetic.sice import TRAIN_FRACTION, _crop_scene

__all__ = ["DEFAULT_EXPOSURES", "write_exposure_stacks"]

#: Exposure values of a stack, dark → bright (EV relative to the photograph's own exposure).
DEFAULT_EXPOSURES: tuple[float, ...] = (-3.0, 0.0, 3.0)
_MARKER = "Synthetic exposure stacks written by darkroom (datamodules.synthetic.exposure_stacks)."


def _illumination(size: tuple[int, int], range_ev: float, rng: np.random.Generator) -> np.ndarray:
    """A planar ramp in log2 exposure over a random direction: H×W×1 gain, 2**[−range/2, +range/2]."""
    w, h = size
    angle = rng.uniform(0.0, 2.0 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    t = np.cos(angle) * xx / max(w - 1, 1) + np.sin(angle) * yy / max(h - 1, 1)
    t = (t - t.min()) / max(t.max() - t.min(), 1e-12)  # 0 … 1 along the ramp
    return np.exp2(range_ev * (t - 0.5))[..., None]


def write_exposure_stacks(
    root: str | Path,
    n_train: int = 24,
    n_test: int = 4,
    size: tuple[int, int] = (128, 96),
    exposures: Sequence[float] = DEFAULT_EXPOSURES,
    seed: int = 0,
    scene_range_ev: float = 3.0,
    shot_noise: float = DEFAULT_SHOT_NOISE,
    read_noise: float = DEFAULT_READ_NOISE,
) -> Path:
    """Write synthetic exposure stacks (``train/`` and ``test/``) under ``root``; return ``root``.

    Args:
        root: output folder (created). A previous dataset written here by this function is replaced; any
            other existing ``train/`` or ``test/`` raises ``FileExistsError``.
        n_train, n_test: number of scenes per split (≥ 1).
        size: ``(width, height)`` of every image.
        exposures: strictly increasing EVs; exposure ``k`` (file ``<k>.png``) is taken at ``2**exposures[k-1]``.
        seed: the only source of randomness (same arguments → byte-identical files).
        scene_range_ev: stops spanned by the illumination ramp across a scene (0 = the photograph as is).
        shot_noise, read_noise: sensor noise, see :func:`~datamodules.synthetic.camera.render_exposure`.

    Returns:
        ``Path(root)``.
    """
    root = Path(root)
    evs = check_exposures(exposures)
    if n_train < 1 or n_test < 1:
        raise ValueError(f"n_train and n_test must be ≥ 1, got n_train={n_train}, n_test={n_test}")
    if len(size) != 2 or min(size) < 11:
        raise ValueError(f"size must be (width, height) with both ≥ 11 (MEF-SSIM windows), got {size!r}")
    if scene_range_ev < 0:
        raise ValueError(f"scene_range_ev must be ≥ 0, got {scene_range_ev}")
    size = (int(size[0]), int(size[1]))
    prepare_output_root(root, ["train", "test"], _MARKER, "write_exposure_stacks")

    rng = np.random.default_rng(seed)
    photos = bundled_photos()
    for split, n_scenes, test in (("train", n_train, False), ("test", n_test, True)):
        order = rng.permutation(len(photos))
        for i in range(n_scenes):
            name, photo = photos[int(order[i % len(photos)])]
            cut = int(round(TRAIN_FRACTION * photo.shape[1]))
            crop = _crop_scene(photo, (cut, photo.shape[1]) if test else (0, cut), size, rng)
            linear = inverse_crf(crop)
            if name in GREY_PHOTOS:  # a random colour cast so the scene is not grey
                gains = rng.uniform(0.6, 1.0, size=3)
                linear = linear * (gains / gains.max())
            linear = linear * _illumination(size, scene_range_ev, rng)
            for k, ev in enumerate(evs, start=1):
                shot = render_exposure(linear, 2.0**ev, rng, shot_noise=shot_noise, read_noise=read_noise)
                write_uint8(root / split / f"{i + 1:03d}_{name}" / f"{k}.png", shot)

    (root / "README.txt").write_text(
        f"{_MARKER}\n\n"
        "Layout (as shared/data/exposure_stacks: one folder per scene, exposures only):\n"
        "  train/<scene>/<k>.png   exposure k = 1..K, dark -> bright (training stacks)\n"
        "  test/<scene>/<k>.png    same layout (evaluation stacks)\n\n"
        f"Scenes: random crops of scikit-image's bundled photos resized to {size[0]}x{size[1]}; train crops from\n"
        f"the left {TRAIN_FRACTION:.0%} of each photo, test crops from the rest. Linearised with inverse_crf, lit by\n"
        f"a random planar illumination ramp spanning {scene_range_ev} EV, then render_exposure at 2**EV_k:\n"
        f"Poisson-Gaussian noise (shot_noise={shot_noise}, read_noise={read_noise}), clipping, camera response\n"
        "curve, 8-bit PNG.\n"
        f"EV per k: {evs}\n"
        f"n_train={n_train} n_test={n_test} seed={seed}\n",
        encoding="utf-8",
    )
    return root
