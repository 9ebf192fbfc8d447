"""Synthetic phone/DSLR photo pairs with a known homography, for the DPED alignment pipeline.

DPED's raw material is pairs of photos of the same scene taken at the same moment by a phone and a
Canon 70D on a tripod (``shared/papers/dped.md`` §5). The phone photo differs from the DSLR photo
geometrically (different position, field of view and resolution) and photometrically (softer optics,
more noise, another colour rendition, JPEG compression). :func:`write_phone_dslr_pairs` renders such
pairs from the photographs that scikit-image ships, so that the real SIFT + RANSAC alignment
(:mod:`imaging.alignment`) runs on them and can be checked against the TRUE homography.

Rendering model (all our choices; nothing here is taken from the DPED paper):

* A *scene* is a bundled photo (random crop, horizontal flip, sometimes a 90° turn), resized so
  that it is ~1.35× larger than the DSLR frame; the DSLR image is a crop of it at 1:1.
* The phone sees the scene through a random homography ``H`` (phone pixel → DSLR pixel, OpenCV
  pixel-centre convention): rotation ±``max_rotation_deg``, field of view 88–104 % of the DSLR's,
  translation ±4 % of the frame, perspective up to ``max_perspective`` (relative change of the
  projective denominator across the frame), at ``phone_scale`` × the DSLR resolution.
* Phone optics and sensor: Gaussian lens blur (σ 0.5–1.1 phone px, plus the anti-aliasing needed for
  the lower resolution), an approximate linearisation (γ 2.2), per-channel colour cast, exposure change,
  Poisson–Gaussian noise in the heteroscedastic-normal approximation (variance ``a·x + b`` of the linear
  signal, Foi et al. 2008), re-encoding with the phone's tone curve instead of the DSLR's γ 2.2, JPEG
  quality 70–88. DSLR images are written at JPEG quality 95.
* All pairs of one call come from ONE phone (as each DPED subset does: one phone model against the Canon),
  so the rendition is systematic: one :class:`PhoneProfile` (default: a warm cast, gains 1.12/1.00/0.86,
  +0.26 EV exposure bias and a flatter tone curve γ 2.5 — a bright, washed-out rendition; or
  :func:`random_phone_profile`: gains 0.85–1.15, exposure 0.8–1.25, γ 1.8–2.6) for all pairs; each shot adds only auto-white-balance and
  auto-exposure jitter (gains ×0.95–1.05, exposure ×0.9–1.1) and its own noise level. (Drawing cast, exposure
  and tone curve afresh for every shot — as an earlier version did — makes every pair a different camera:
  there is then almost no phone→DSLR mapping to learn, which is not the DPED setting.)

Output layout::

    root/phone/<name>.jpg      phone-like photo, (W·phone_scale) × (H·phone_scale)
    root/dslr/<name>.jpg       clean "DSLR" photo, W × H
    root/homographies.json     {name: {"homography": 3×3 phone→DSLR or null, "photo": ..., "unrelated": bool,
                                       "phone_size": [w, h], "dslr_size": [w, h]}}
    root/phone_profile.json    the phone's systematic rendition (:class:`PhoneProfile`)

Unrelated pairs (``n_unrelated``) take the phone image from a different photo: they cannot be
aligned and must be rejected by the pipeline (their homography is ``null``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from datamodules.image_io import write_uint8
from datamodules.synthetic.photos import TEXTURED_PHOTOS, load_photo


def _render_scene(photo: np.ndarray, size: tuple[int, int], rng: np.random.Generator,
                  margin: float = 1.35) -> np.ndarray:
    """A random crop/flip of ``photo`` resized to ≥ ``margin`` × ``size`` (W, H): H'×W'×3 uint8."""
    w, h = size
    if rng.random() < 0.5:
        photo = photo[:, ::-1]
    if rng.random() < 0.25:
        photo = np.rot90(photo)
    ph, pw = photo.shape[:2]
    target_aspect = w / h
    # crop 80–100 % of the photo with the frame's aspect ratio
    frac = rng.uniform(0.8, 1.0)
    cw = min(pw, ph * target_aspect) * frac
    ch = cw / target_aspect
    x0 = rng.uniform(0, pw - cw)
    y0 = rng.uniform(0, ph - ch)
    crop = np.ascontiguousarray(photo[int(y0): int(y0 + ch), int(x0): int(x0 + cw)])
    out_w, out_h = int(np.ceil(w * margin)), int(np.ceil(h * margin))
    interp = cv2.INTER_AREA if out_w < crop.shape[1] else cv2.INTER_CUBIC
    return cv2.resize(crop, (out_w, out_h), interpolation=interp)


def random_homography(phone_size: tuple[int, int], dslr_size: tuple[int, int], rng: np.random.Generator, *,
                      max_rotation_deg: float = 6.0, max_perspective: float = 0.08,
                      fov_range: tuple[float, float] = (0.88, 1.04), max_translation: float = 0.04) -> np.ndarray:
    """A random phone→DSLR homography (3×3 float64, pixel-centre coordinates, ``H[2, 2] = 1``).

    Maps the phone frame centre near the DSLR frame centre, rotated by up to ``max_rotation_deg``,
    scaled so that the phone sees ``fov_range`` × the DSLR field of view, with a perspective term
    that changes the projective denominator by up to ± ``max_perspective`` across the frame.
    """
    wp, hp = phone_size
    wd, hd = dslr_size
    theta = np.deg2rad(rng.uniform(-max_rotation_deg, max_rotation_deg))
    scale = rng.uniform(*fov_range) * wd / wp
    px, py = rng.uniform(-max_perspective, max_perspective, size=2)
    tx, ty = rng.uniform(-max_translation, max_translation, size=2) * np.array([wd, hd])
    centre_p = np.array([[1, 0, -(wp - 1) / 2], [0, 1, -(hp - 1) / 2], [0, 0, 1]], dtype=np.float64)
    persp = np.array([[1, 0, 0], [0, 1, 0], [2 * px / wp, 2 * py / hp, 1]], dtype=np.float64)
    c, s = np.cos(theta), np.sin(theta)
    rot_scale = np.array([[scale * c, -scale * s, 0], [scale * s, scale * c, 0], [0, 0, 1]], dtype=np.float64)
    to_dslr = np.array([[1, 0, (wd - 1) / 2 + tx], [0, 1, (hd - 1) / 2 + ty], [0, 0, 1]], dtype=np.float64)
    hom = to_dslr @ rot_scale @ persp @ centre_p
    return hom / hom[2, 2]


def _project(hom: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a 3×3 homography to N×2 points."""
    ph = np.concatenate([pts, np.ones((len(pts), 1))], axis=1) @ hom.T
    return ph[:, :2] / ph[:, 2:3]


@dataclass(frozen=True)
class PhoneProfile:
    """The systematic photometric rendition of one phone (relative to the DSLR's γ 2.2 rendition).

    Attributes:
        gains: per-channel colour cast of the linear signal (R, G, B).
        exposure: exposure bias of the linear signal.
        gamma: the phone's tone curve (encoding ``x^(1/gamma)``; the DSLR's is 2.2).
        awb_jitter: per-shot auto-white-balance variation: each gain × U(1 − j, 1 + j).
        exposure_jitter: per-shot auto-exposure variation: exposure × U(1 − j, 1 + j).
    """

    gains: tuple[float, float, float] = (1.12, 1.0, 0.86)
    exposure: float = 1.2
    gamma: float = 2.5
    awb_jitter: float = 0.05
    exposure_jitter: float = 0.1


def random_phone_profile(rng: np.random.Generator) -> PhoneProfile:
    """A random phone rendition: gains 0.85–1.15, exposure 0.8–1.25, γ 1.8–2.6 (default jitters)."""
    gains = rng.uniform(0.85, 1.15, size=3)
    return PhoneProfile(gains=(float(gains[0]), float(gains[1]), float(gains[2])),
                        exposure=float(rng.uniform(0.8, 1.25)), gamma=float(rng.uniform(1.8, 2.6)))


def _degrade_phone(img: np.ndarray, rng: np.random.Generator, profile: PhoneProfile | None = None) -> np.ndarray:
    """Phone-like photometric rendition of an H×W×3 uint8 image (already blurred and resampled)."""
    profile = PhoneProfile() if profile is None else profile
    lin = (img.astype(np.float32) / 255.0) ** 2.2
    gains = np.asarray(profile.gains, np.float32) * rng.uniform(
        1 - profile.awb_jitter, 1 + profile.awb_jitter, size=3).astype(np.float32)
    exposure = np.float32(profile.exposure * rng.uniform(1 - profile.exposure_jitter, 1 + profile.exposure_jitter))
    lin = np.clip(lin * gains * exposure, 0.0, 1.0)
    a = np.float32(1.0 / rng.uniform(150.0, 600.0))  # shot-noise gain: 1 / full-well in "electrons"
    b = np.float32(rng.uniform(1e-5, 1e-4))  # read-noise variance
    sigma = np.sqrt(a * lin + b)
    lin = lin + sigma * rng.standard_normal(lin.shape, dtype=np.float32)
    out = np.clip(lin, 0.0, 1.0) ** np.float32(1.0 / profile.gamma)  # the phone's tone curve, not the DSLR's 2.2
    return (out * 255.0 + 0.5).astype(np.uint8)


def render_pair(photo: np.ndarray, size: tuple[int, int], rng: np.random.Generator, *,
                phone_scale: float = 0.75, other_photo: np.ndarray | None = None,
                profile: PhoneProfile | None = None, **homography_kwargs: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one (phone, DSLR, H) triple from a photo.

    Args:
        photo: H0×W0×3 uint8 source photograph.
        size: DSLR frame ``(W, H)``; the phone frame is ``round(phone_scale · (W, H))``.
        rng: random generator (the only source of randomness).
        phone_scale: phone resolution relative to the DSLR's.
        other_photo: render the phone image from this photo instead (an unrelated pair).
        profile: the phone's rendition (default :class:`PhoneProfile`).
        homography_kwargs: forwarded to :func:`random_homography`.

    Returns:
        ``phone`` (h×w×3 uint8), ``dslr`` (H×W×3 uint8) and the true phone→DSLR homography (3×3
        float64, pixel-centre coordinates).
    """
    w, h = size
    phone_size = (max(8, round(w * phone_scale)), max(8, round(h * phone_scale)))
    scene = _render_scene(photo, size, rng)
    sh, sw = scene.shape[:2]
    # DSLR crop offset: near the scene centre, so the phone's wider/rotated view stays inside the scene
    ox = (sw - w) / 2 + rng.uniform(-0.25, 0.25) * (sw - w) / 2
    oy = (sh - h) / 2 + rng.uniform(-0.25, 0.25) * (sh - h) / 2
    ox, oy = int(round(ox)), int(round(oy))
    dslr = np.ascontiguousarray(scene[oy: oy + h, ox: ox + w])
    corners = np.array([[0, 0], [phone_size[0] - 1, 0], [phone_size[0] - 1, phone_size[1] - 1],
                        [0, phone_size[1] - 1]], dtype=np.float64)
    for attempt in range(50):
        shrink = 1.0 if attempt < 25 else 0.5
        kwargs = {k: v * shrink for k, v in homography_kwargs.items()}
        hom = random_homography(phone_size, size, rng, **kwargs)
        q = _project(hom, corners) + [ox, oy]
        if q.min() >= 2 and (q[:, 0] <= sw - 3).all() and (q[:, 1] <= sh - 3).all():
            break
    else:  # pragma: no cover - the margins above make this practically unreachable
        raise RuntimeError("could not place the phone view inside the scene; increase the scene margin")
    source = scene
    if other_photo is not None:
        source = _render_scene(other_photo, size, rng)
    to_scene = np.array([[1, 0, ox], [0, 1, oy], [0, 0, 1]], dtype=np.float64) @ hom
    # anti-aliasing for the lower phone resolution + phone lens blur, as one Gaussian in scene pixels
    downscale = float(np.sqrt(abs(np.linalg.det(hom[:2, :2]))))
    sigma_phone = rng.uniform(0.5, 1.1)
    sigma_scene = downscale * float(np.hypot(sigma_phone, 0.5 if downscale > 1 else 0.0))
    blurred = cv2.GaussianBlur(source, (0, 0), sigmaX=sigma_scene) if sigma_scene > 0.1 else source
    phone = cv2.warpPerspective(blurred, to_scene, phone_size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REFLECT)
    return _degrade_phone(phone, rng, profile), dslr, hom


def write_phone_dslr_pairs(root: str | Path, n_pairs: int = 6, size: tuple[int, int] = (480, 360), seed: int = 0,
                           n_unrelated: int = 0, *, phone_scale: float = 0.75,
                           photos: tuple[str, ...] = TEXTURED_PHOTOS, phone_quality: tuple[int, int] = (70, 88),
                           dslr_quality: int = 95, profile: PhoneProfile | None = None) -> Path:
    """Write ``n_pairs`` aligned-by-homography pairs (+ ``n_unrelated`` unrelated ones) under ``root``.

    Args:
        root: output folder (created); writes ``phone/``, ``dslr/`` and ``homographies.json``.
        n_pairs: number of genuine pairs (named ``pair_000``, ``pair_001`` …).
        size: DSLR frame ``(W, H)``.
        seed: everything is deterministic given the seed.
        n_unrelated: extra pairs (``unrelated_000`` …) whose phone image shows another photo.
        phone_scale: phone resolution relative to the DSLR's.
        photos: names of bundled photos to cycle through (:data:`TEXTURED_PHOTOS`).
        phone_quality: JPEG quality range of the phone images; ``dslr_quality`` for the DSLR ones.
        profile: the phone's systematic rendition, shared by all pairs (default :class:`PhoneProfile`).

    Returns:
        ``root`` as a Path.
    """
    if n_pairs < 0 or n_unrelated < 0:
        raise ValueError(f"n_pairs and n_unrelated must be >= 0, got {n_pairs} and {n_unrelated}")
    if not photos:
        raise ValueError("photos must name at least one bundled photo")
    root = Path(root)
    rng = np.random.default_rng(seed)
    profile = PhoneProfile() if profile is None else profile
    meta: dict[str, dict] = {}
    jobs = [(f"pair_{i:03d}", photos[i % len(photos)], None) for i in range(n_pairs)]
    jobs += [(f"unrelated_{i:03d}", photos[(i + 1) % len(photos)], photos[(i + 1 + len(photos) // 2) % len(photos)])
             for i in range(n_unrelated)]
    for name, photo_name, other_name in jobs:
        other = load_photo(other_name) if other_name is not None else None
        phone, dslr, hom = render_pair(load_photo(photo_name), size, rng, phone_scale=phone_scale, other_photo=other,
                                       profile=profile)
        write_uint8(root / "phone" / f"{name}.jpg", phone, quality=int(rng.integers(*phone_quality, endpoint=True)))
        write_uint8(root / "dslr" / f"{name}.jpg", dslr, quality=dslr_quality)
        meta[name] = {
            "homography": None if other is not None else hom.tolist(),
            "photo": photo_name,
            "phone_photo": other_name or photo_name,
            "unrelated": other is not None,
            "phone_size": [phone.shape[1], phone.shape[0]],
            "dslr_size": [dslr.shape[1], dslr.shape[0]],
        }
    (root / "homographies.json").write_text(json.dumps(meta, indent=1))
    (root / "phone_profile.json").write_text(json.dumps(asdict(profile), indent=1))
    return root


def read_homographies(root: str | Path) -> dict[str, np.ndarray | None]:
    """``root/homographies.json`` as ``{name: 3×3 float64 phone→DSLR homography or None (unrelated)}``."""
    path = Path(root) / "homographies.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (expected the file written by write_phone_dslr_pairs)")
    meta = json.loads(path.read_text())
    return {k: (None if v["homography"] is None else np.asarray(v["homography"], dtype=np.float64))
            for k, v in meta.items()}
