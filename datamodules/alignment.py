"""Build the DPED patch dataset from raw phone/DSLR photo pairs: SIFT + RANSAC alignment, patch pairs.

The authors never released their alignment code (aiff22/DPED #7; ``shared/papers/dped.md`` §5).
What is documented: (1) SIFT keypoints and a RANSAC homography to find the part of the scene both
cameras see (project page: "non-linear transformations based on SIFT features to extract the
intersection part"); (2) the author in #7: after the rough SIFT alignment two windows slide in
parallel over the pair, one of them additionally moved by small shifts (and rotations) to maximise a
similarity score, and a patch pair is kept if the score is **> 0.9**.

Everything else is **not found** in any source and is a documented, configurable choice of ours:

* Lowe ratio ``0.75``; RANSAC threshold ``3`` px (in the DSLR image *as matched*); at least ``30``
  inliers and an inlier ratio ≥ ``0.2``; matching on images downscaled to a longer side ≤ ``1600`` px.
* Sanity checks that reject a degenerate homography (see :func:`check_homography`).
* The common frame: the DSLR frame, resampled to the phone's pixel density (``output_scale="phone"``)
  so that training patches have the phone's native scale, i.e. the scale the network sees when it
  enhances full-resolution phone photos (the authors' DSLR downscaling factor is not found).
* The similarity score: normalised cross-correlation (NCC) of the grey patches (ITU-R BT.601 luma),
  maximised over integer shifts of the DSLR window within ±``max_shift`` = 4 px; no rotation search
  (the homography already removes rotation; the residual is sub-pixel on our synthetic pairs).
* Patch grid stride = patch size (non-overlapping); flat patches (grey std < ``flat_std`` = 0.01,
  where NCC is undefined or pure noise) are rejected with their own reason.

:func:`prepare_dped` runs the whole pipeline on two folders and writes the REAL DPED layout read by the
official code (``load_dataset.py``, ``test_model.py``) and by :mod:`datamodules.dped`::

    out/<phone>/training_data/<phone>/<i>.jpg      i = 0..N-1, contiguous
    out/<phone>/training_data/canon/<i>.jpg        same i = aligned pair
    out/<phone>/test_data/patches/<phone>/<i>.jpg
    out/<phone>/test_data/patches/canon/<i>.jpg
    out/<phone>/test_data/full_size_test_images/<stem>.jpg   held-out whole phone photos
    out/<phone>/alignment_report.csv / .json       one row per raw pair

Pairs are split at the photo level (a scene never gives both training and test patches).
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from datamodules.image_io import (
    DatasetLayoutError,
    ImageReadError,
    check_image_header,
    list_images,
    natural_key,
    read_image,
    write_uint8,
)

__all__ = [
    "Alignment",
    "PatchStats",
    "PrepareReport",
    "align_pair",
    "check_homography",
    "extract_patch_pairs",
    "largest_valid_rectangle",
    "pair_files",
    "prepare_dped",
    "warp_to_common",
]

_NAN_H = np.full((3, 3), np.nan)


# --------------------------------------------------------------------------------------------- alignment
@dataclass(frozen=True)
class Alignment:
    """Result of :func:`align_pair`.

    Attributes:
        homography: 3×3 float64, phone pixel → DSLR pixel in full-resolution coordinates (OpenCV
            pixel-centre convention: pixel (0, 0) is centred at (0, 0)), ``H[2, 2] = 1``; all-NaN when
            no homography could be estimated.
        n_matches: putative matches that passed the Lowe ratio test.
        n_inliers: RANSAC inliers.
        reprojection_error: RMS distance (full-resolution DSLR px) between the inliers' DSLR keypoints
            and their phone keypoints mapped by ``homography``; NaN if not estimated.
        ok: whether the pair can be used.
        reason: why not (human readable), else ``None``.
        phone_size / dslr_size: ``(W, H)`` of the two images.
    """

    homography: np.ndarray
    n_matches: int
    n_inliers: int
    reprojection_error: float
    ok: bool
    reason: str | None
    phone_size: tuple[int, int]
    dslr_size: tuple[int, int]

    def to_dict(self) -> dict:
        """JSON-friendly dict (homography as nested lists, NaN as None)."""
        hom = None if not np.isfinite(self.homography).all() else self.homography.tolist()
        err = None if not math.isfinite(self.reprojection_error) else self.reprojection_error
        return {"homography": hom, "n_matches": self.n_matches, "n_inliers": self.n_inliers,
                "reprojection_error": err, "ok": self.ok, "reason": self.reason,
                "phone_size": list(self.phone_size), "dslr_size": list(self.dslr_size)}


def _check_rgb_uint8(img: np.ndarray, name: str) -> None:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        desc = f"{img.dtype} array of shape {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
        raise ValueError(f"{name}: expected an H×W×3 uint8 RGB array, got {desc}")
    if min(img.shape[:2]) < 16:
        raise ValueError(f"{name}: image of {img.shape[1]}×{img.shape[0]} px is too small to align (min 16 px)")


def _project(hom: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a 3×3 homography to N×2 points → N×2 (no check of the denominator's sign)."""
    ph = pts @ hom[:2, :2].T + hom[:2, 2]
    w = pts @ hom[2, :2] + hom[2, 2]
    return ph / w[:, None]


def _corners(size: tuple[int, int]) -> np.ndarray:
    w, h = size
    return np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float64)


def _scale_matrix(f: float) -> np.ndarray:
    """Pixel-centre coordinates of an image → the same image resized by factor ``f``."""
    return np.array([[f, 0, 0.5 * f - 0.5], [0, f, 0.5 * f - 0.5], [0, 0, 1]], dtype=np.float64)


def _jacobian(hom: np.ndarray, pt: np.ndarray) -> np.ndarray:
    """2×2 Jacobian of the projective map at point ``pt`` (2,)."""
    w = hom[2, :2] @ pt + hom[2, 2]
    mapped = (hom[:2, :2] @ pt + hom[:2, 2]) / w
    return (hom[:2, :2] - np.outer(mapped, hom[2, :2])) / w


def linear_scale(hom: np.ndarray, phone_size: tuple[int, int]) -> float:
    """Linear scale factor phone → DSLR at the phone frame centre (√|det J|)."""
    centre = (np.asarray(phone_size, dtype=np.float64) - 1) / 2
    return float(np.sqrt(abs(np.linalg.det(_jacobian(hom, centre)))))


def check_homography(hom: np.ndarray, phone_size: tuple[int, int], dslr_size: tuple[int, int], *,
                     max_perspective: float = 1.5, scale_range: tuple[float, float] = (0.1, 10.0),
                     max_anisotropy: float = 2.0, min_overlap: float = 0.25) -> str | None:
    """Reason why a phone→DSLR homography is degenerate, or ``None`` if it is plausible.

    Two cameras side by side on a tripod see nearly the same view, so a plausible homography is close
    to a similarity. Checks (thresholds are ours, not the authors'):

    * finite, with the four phone corners in front of the camera (projective denominator ``w > 0``);
    * perspective: ``max(w) / min(w)`` over the corners ≤ ``max_perspective``;
    * no mirror image, and the warped phone frame is a convex quadrilateral;
    * linear scale √(area ratio) in ``scale_range``; singular-value ratio of the Jacobian at the centre
      (shear / anisotropic scale / near-singular) ≤ ``max_anisotropy``;
    * the warped phone frame covers at least ``min_overlap`` of the DSLR frame.
    """
    if hom is None or not np.isfinite(hom).all() or abs(hom[2, 2]) < 1e-12:
        return "homography is not finite"
    hom = hom / hom[2, 2]
    corners = _corners(phone_size)
    w = corners @ hom[2, :2] + hom[2, 2]
    if (w <= 1e-9).any():
        return "degenerate homography: a phone corner maps to infinity (w <= 0)"
    if w.max() / w.min() > max_perspective:
        return f"strong perspective: corner depth ratio {w.max() / w.min():.2f} > {max_perspective}"
    quad = _project(hom, corners)
    edges = np.roll(quad, -1, axis=0) - quad
    cross = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    if (cross < 0).all():
        return "mirrored homography (flip)"
    if not (cross > 0).all():
        return "warped phone frame is not a convex quadrilateral (self-intersecting or folded)"
    area = 0.5 * float(np.sum(quad[:, 0] * np.roll(quad[:, 1], -1) - np.roll(quad[:, 0], -1) * quad[:, 1]))
    scale = math.sqrt(abs(area) / (phone_size[0] * phone_size[1]))
    if not scale_range[0] <= scale <= scale_range[1]:
        return f"absurd scale: phone→DSLR linear scale {scale:.3g} outside {tuple(scale_range)}"
    sv = np.linalg.svd(_jacobian(hom, (np.asarray(phone_size, dtype=np.float64) - 1) / 2), compute_uv=False)
    if sv[1] <= 1e-9 * max(sv[0], 1e-12) or sv[0] / sv[1] > max_anisotropy:
        return f"near-singular or sheared homography: singular-value ratio {sv[0] / max(sv[1], 1e-300):.3g} > {max_anisotropy}"
    wd, hd = dslr_size
    frame = np.array([[0, 0], [wd - 1, 0], [wd - 1, hd - 1], [0, hd - 1]], dtype=np.float32)
    inter, _ = cv2.intersectConvexConvex(quad.astype(np.float32), frame)
    overlap = float(inter) / float((wd - 1) * (hd - 1))
    if overlap < min_overlap:
        return f"warped phone frame covers only {overlap:.1%} of the DSLR frame (< {min_overlap:.0%})"
    return None


def _sift_features(grey: np.ndarray, sift: cv2.SIFT, scale: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Keypoints (N×2 float64, full-resolution coordinates) and descriptors (N×128 float32) of a grey image."""
    small = grey
    if scale != 1.0:
        size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
        small = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    kps, des = sift.detectAndCompute(small, None)
    pts = np.array([kp.pt for kp in kps], dtype=np.float64).reshape(-1, 2)
    if scale != 1.0 and len(pts):  # back to full-resolution pixel-centre coordinates
        fx, fy = small.shape[1] / grey.shape[1], small.shape[0] / grey.shape[0]
        pts = (pts + 0.5) / [fx, fy] - 0.5
    return pts, des


def align_pair(phone: np.ndarray, dslr: np.ndarray, *, ratio: float = 0.75, ransac_threshold: float = 3.0,
               min_inliers: int = 30, min_inlier_ratio: float = 0.2, max_features: int = 8000,
               match_scale: float | None = None, match_max_side: int = 1600,
               max_perspective: float = 1.5, scale_range: tuple[float, float] = (0.1, 10.0),
               max_anisotropy: float = 2.0, min_overlap: float = 0.25, matcher: str = "auto") -> Alignment:
    """Estimate the phone→DSLR homography of a photo pair with SIFT + Lowe ratio test + RANSAC.

    Args:
        phone: h×w×3 uint8 RGB phone photo.
        dslr: H×W×3 uint8 RGB DSLR photo (any size).
        ratio: Lowe ratio test threshold (best / second-best descriptor distance, ``knnMatch`` k=2).
        ransac_threshold: RANSAC reprojection threshold in pixels of the DSLR image *as matched*
            (after the matching downscale), so that it does not depend on the camera resolution.
        min_inliers: fewer RANSAC inliers (or ratio-test matches) → rejected.
        min_inlier_ratio: inliers / matches below this → rejected.
        max_features: SIFT ``nfeatures`` (the strongest keypoints per image; 0 = all).
        match_scale: resize factor applied to both images before matching; ``None`` = each image is
            downscaled independently so that its longer side is ≤ ``match_max_side``.
        max_perspective, scale_range, max_anisotropy, min_overlap: see :func:`check_homography`.
        matcher: ``"bf"`` (exact brute force), ``"flann"`` (KD-trees, 4 trees, 64 checks: approximate,
            ~3–10× faster on thousands of keypoints) or ``"auto"`` (FLANN above 4·10⁶ descriptor pairs).

    Returns:
        :class:`Alignment`; ``ok=False`` with a ``reason`` for a pair that cannot be aligned (too few
        matches or inliers, degenerate homography) — such a pair must not be used.

    Raises:
        ValueError: an input is not an H×W×3 uint8 array.
    """
    _check_rgb_uint8(phone, "phone")
    _check_rgb_uint8(dslr, "dslr")
    phone_size = (phone.shape[1], phone.shape[0])
    dslr_size = (dslr.shape[1], dslr.shape[0])

    def fail(reason: str, n_matches: int = 0, n_inliers: int = 0, hom: np.ndarray = _NAN_H,
             err: float = math.nan) -> Alignment:
        return Alignment(hom, n_matches, n_inliers, err, False, reason, phone_size, dslr_size)

    def auto_scale(size: tuple[int, int]) -> float:
        if match_scale is not None:
            return float(match_scale)
        return min(1.0, match_max_side / max(size))

    s_phone, s_dslr = auto_scale(phone_size), auto_scale(dslr_size)
    sift = cv2.SIFT_create(nfeatures=max_features)
    pts_p, des_p = _sift_features(cv2.cvtColor(phone, cv2.COLOR_RGB2GRAY), sift, s_phone)
    pts_d, des_d = _sift_features(cv2.cvtColor(dslr, cv2.COLOR_RGB2GRAY), sift, s_dslr)
    if des_p is None or des_d is None or len(pts_p) < 2 or len(pts_d) < 2:
        return fail(f"too few SIFT keypoints (phone {len(pts_p)}, DSLR {len(pts_d)})")
    if matcher not in ("auto", "bf", "flann"):
        raise ValueError(f"matcher must be 'auto', 'bf' or 'flann', got {matcher!r}")
    if matcher == "flann" or (matcher == "auto" and len(pts_p) * len(pts_d) > 4_000_000):
        knn = cv2.FlannBasedMatcher({"algorithm": 1, "trees": 4}, {"checks": 64}).knnMatch(des_p, des_d, k=2)
    else:
        knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(des_p, des_d, k=2)
    pairs = np.array([(m[0].queryIdx, m[0].trainIdx, m[0].distance, m[1].distance) for m in knn if len(m) == 2],
                     dtype=np.float64).reshape(-1, 4)
    good = pairs[pairs[:, 2] < ratio * pairs[:, 3]]
    n_matches = len(good)
    if n_matches < max(4, min_inliers):
        return fail(f"too few matches after the ratio test: {n_matches} < {max(4, min_inliers)}", n_matches)
    src = pts_p[good[:, 0].astype(int)]
    dst = pts_d[good[:, 1].astype(int)]
    # RANSAC in the matching resolution of the DSLR image (threshold independent of the camera)
    s_d = _scale_matrix(s_dslr)
    dst_small = dst * s_dslr + (0.5 * s_dslr - 0.5)
    hom_small, mask = cv2.findHomography(src, dst_small, cv2.RANSAC, ransac_threshold, maxIters=5000,
                                         confidence=0.999)
    if hom_small is None or mask is None:
        return fail("RANSAC found no homography", n_matches)
    inl = mask.ravel().astype(bool)
    n_inliers = int(inl.sum())
    hom = np.linalg.inv(s_d) @ hom_small
    hom = hom / hom[2, 2] if abs(hom[2, 2]) > 1e-12 else hom
    err = float(np.sqrt(np.mean(np.sum((_project(hom, src[inl]) - dst[inl]) ** 2, axis=1)))) if n_inliers else math.nan
    if n_inliers < min_inliers:
        return fail(f"too few RANSAC inliers: {n_inliers} < {min_inliers}", n_matches, n_inliers, hom, err)
    if n_inliers < min_inlier_ratio * n_matches:
        return fail(f"inlier ratio {n_inliers / n_matches:.2f} < {min_inlier_ratio}", n_matches, n_inliers, hom, err)
    reason = check_homography(hom, phone_size, dslr_size, max_perspective=max_perspective, scale_range=scale_range,
                              max_anisotropy=max_anisotropy, min_overlap=min_overlap)
    if reason is not None:
        return fail(reason, n_matches, n_inliers, hom, err)
    return Alignment(hom, n_matches, n_inliers, err, True, None, phone_size, dslr_size)


# --------------------------------------------------------------------------------------------- common frame
def largest_valid_rectangle(mask: np.ndarray, max_rows: int = 1024) -> tuple[int, int, int, int]:
    """Largest axis-aligned rectangle of True pixels in a convex boolean mask.

    For a convex region each row's valid pixels form one interval ``[left[y], right[y])``, ``left`` is
    convex and ``right`` concave in ``y``, so the widest rectangle spanning rows ``y0..y1`` is limited
    by its two end rows. All (y0, y1) pairs of (at most ``max_rows`` sub-sampled) rows are scored at
    once (vectorised), then the columns are tightened over the chosen rows (exact for pixel masks).

    Args:
        mask: H×W bool.

    Returns:
        ``(x0, y0, x1, y1)`` with exclusive ends: ``mask[y0:y1, x0:x1]`` is all True.

    Raises:
        ValueError: the mask has no True pixel, or is not convex enough for a valid rectangle.
    """
    rows_any = mask.any(axis=1)
    if not rows_any.any():
        raise ValueError("the valid-area mask is empty: the images do not overlap")
    h, w = mask.shape
    left = np.where(rows_any, mask.argmax(axis=1), w)
    right = np.where(rows_any, w - mask[:, ::-1].argmax(axis=1), 0)
    rows = np.flatnonzero(rows_any)
    if len(rows) > max_rows:
        rows = np.unique(np.concatenate([rows[:: math.ceil(len(rows) / max_rows)], rows[-1:]]))
    lr, rr = left[rows], right[rows]
    width = np.minimum(rr[:, None], rr[None, :]) - np.maximum(lr[:, None], lr[None, :])
    height = rows[None, :] - rows[:, None] + 1
    area = np.where((width > 0) & (height > 0), width * height, 0)
    i, j = np.unravel_index(int(np.argmax(area)), area.shape)
    y0, y1 = int(rows[i]), int(rows[j]) + 1
    x0, x1 = int(left[y0:y1].max()), int(right[y0:y1].min())
    if x1 <= x0 or not mask[y0:y1, x0:x1].all():
        raise ValueError("could not find a rectangle inside the valid area (mask not convex)")
    return x0, y0, x1, y1


def warp_to_common(phone: np.ndarray, dslr: np.ndarray, alignment: Alignment, *,
                   output_scale: str | float = "phone", border: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Warp the phone photo into the DSLR frame and crop both to the largest common rectangle.

    Args:
        phone: h×w×3 uint8 RGB (the image ``alignment`` was computed on).
        dslr: H×W×3 uint8 RGB.
        alignment: an ``ok`` :class:`Alignment` of this pair.
        output_scale: resolution of the common frame relative to the DSLR's: ``"phone"`` (default, ours)
            = the phone's pixel density (DSLR downscaled with area averaging, never upscaled),
            ``"dslr"`` = 1.0, or a float factor.
        border: phone pixels at the image edge not used (bicubic interpolation needs neighbours).

    Returns:
        ``(phone_aligned, dslr_crop)``: two h'×w'×3 uint8 RGB arrays of the same size, pixel-aligned
        up to the homography's accuracy.

    Raises:
        ValueError: the alignment is not ``ok`` (a rejected pair is never used) or does not fit the images.
    """
    if not alignment.ok:
        raise ValueError(f"cannot warp a pair that failed alignment: {alignment.reason}")
    _check_rgb_uint8(phone, "phone")
    _check_rgb_uint8(dslr, "dslr")
    if (phone.shape[1], phone.shape[0]) != alignment.phone_size or (dslr.shape[1], dslr.shape[0]) != alignment.dslr_size:
        raise ValueError(f"image sizes {phone.shape[1::-1]} / {dslr.shape[1::-1]} differ from those of the alignment "
                         f"{alignment.phone_size} / {alignment.dslr_size}")
    if output_scale == "phone":
        scale = min(1.0, 1.0 / linear_scale(alignment.homography, alignment.phone_size))
    elif output_scale == "dslr":
        scale = 1.0
    elif isinstance(output_scale, (int, float)) and output_scale > 0:
        scale = float(output_scale)
    else:
        raise ValueError(f"output_scale must be 'phone', 'dslr' or a positive number, got {output_scale!r}")
    wd, hd = alignment.dslr_size
    out_w, out_h = max(1, round(wd * scale)), max(1, round(hd * scale))
    if (out_w, out_h) != (wd, hd):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        dslr = cv2.resize(dslr, (out_w, out_h), interpolation=interp)
    fx, fy = out_w / wd, out_h / hd
    to_out = np.array([[fx, 0, 0.5 * fx - 0.5], [0, fy, 0.5 * fy - 0.5], [0, 0, 1]], dtype=np.float64)
    hom = to_out @ alignment.homography
    warped = cv2.warpPerspective(phone, hom, (out_w, out_h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT)
    # valid area: output pixels whose pre-image lies inside the phone frame (minus the border), vectorised
    inv = np.linalg.inv(hom)
    xs = np.arange(out_w, dtype=np.float64)
    ys = np.arange(out_h, dtype=np.float64)[:, None]
    wq = inv[2, 0] * xs + inv[2, 1] * ys + inv[2, 2]
    u = (inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]) / wq
    v = (inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]) / wq
    hp, wp = phone.shape[:2]
    mask = (wq > 0) & (u >= border) & (u <= wp - 1 - border) & (v >= border) & (v <= hp - 1 - border)
    x0, y0, x1, y1 = largest_valid_rectangle(mask)
    return np.ascontiguousarray(warped[y0:y1, x0:x1]), np.ascontiguousarray(dslr[y0:y1, x0:x1])


# --------------------------------------------------------------------------------------------- patches
@dataclass
class PatchStats:
    """Counts of :func:`extract_patch_pairs` (kept + flat + low_similarity = candidates)."""

    n_candidates: int = 0
    n_kept: int = 0
    n_flat: int = 0
    n_low_similarity: int = 0
    mean_similarity: float = math.nan  # mean best NCC of the kept patches
    mean_abs_shift: float = math.nan  # mean |dx| + |dy| of the kept patches (px)
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)  # per candidate
    shifts: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64), repr=False)  # (dy, dx)
    keep: np.ndarray = field(default_factory=lambda: np.zeros(0, bool), repr=False)

    def counts(self) -> dict[str, float]:
        """The scalar fields (for reports)."""
        return {k: v for k, v in asdict(self).items() if k not in ("scores", "shifts", "keep")}


_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def extract_patch_pairs(phone_aligned: np.ndarray, dslr_crop: np.ndarray, size: int = 100, stride: int | None = None,
                        max_shift: int = 4, min_similarity: float = 0.9,
                        flat_std: float = 0.01) -> tuple[np.ndarray, np.ndarray, PatchStats]:
    """Cut aligned patch pairs on a grid, refining each by a small shift that maximises NCC.

    The phone patches lie on a regular grid (top-left corners ``max_shift + k·stride``); for each one
    the DSLR window is moved by every integer shift ``(dy, dx) ∈ [-max_shift, max_shift]²`` and the
    normalised cross-correlation of the grey (BT.601 luma) patches is computed — all patches and all
    shifts at once, as one grouped convolution of the zero-mean unit-norm phone patches with the DSLR
    windows, divided by the DSLR windows' local norms (box filters). Ties go to the smallest shift.

    Args:
        phone_aligned, dslr_crop: H×W×3 uint8 RGB of the same size (output of :func:`warp_to_common`).
        size: patch side (DPED: 100).
        stride: grid step; default ``size`` (non-overlapping; ours — the authors' is not found).
        max_shift: search range in px (ours; the authors' is not found).
        min_similarity: keep a pair if its best NCC ≥ this (the author's "> 0.9", #7).
        flat_std: a patch whose grey standard deviation (in [0, 1] units) is below this, in the phone
            patch or the DSLR window, is rejected as ``flat`` (NCC undefined or noise only).

    Returns:
        ``phone_patches`` and ``dslr_patches``: K×size×size×3 uint8 (kept pairs, grid order, row-major),
        and :class:`PatchStats`.
    """
    _check_rgb_uint8(phone_aligned, "phone_aligned")
    _check_rgb_uint8(dslr_crop, "dslr_crop")
    if phone_aligned.shape != dslr_crop.shape:
        raise ValueError(f"phone_aligned {phone_aligned.shape} and dslr_crop {dslr_crop.shape} must have the same shape")
    if size < 2 or max_shift < 0:
        raise ValueError(f"size must be >= 2 and max_shift >= 0, got size={size}, max_shift={max_shift}")
    stride = size if stride is None else int(stride)
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    h, w = phone_aligned.shape[:2]
    m, win = max_shift, size + 2 * max_shift
    empty = np.zeros((0, size, size, 3), np.uint8)
    if h < win or w < win:
        return empty, empty.copy(), PatchStats()
    ny, nx = (h - win) // stride + 1, (w - win) // stride + 1
    n = ny * nx
    grey_p = torch.from_numpy(phone_aligned.astype(np.float32) @ (_LUMA / 255.0))
    grey_d = torch.from_numpy(dslr_crop.astype(np.float32) @ (_LUMA / 255.0))
    # phone patches (n, size, size) and DSLR windows (n, win, win) on the same grid
    pp = grey_p[m: h - m, m: w - m].unfold(0, size, stride).unfold(1, size, stride)[:ny, :nx].reshape(n, size, size)
    dw = grey_d.unfold(0, win, stride).unfold(1, win, stride)[:ny, :nx].reshape(n, win, win)
    pc = pp - pp.mean(dim=(1, 2), keepdim=True)
    p_norm = pc.flatten(1).norm(dim=1)
    p_std = p_norm / size
    p_hat = pc / p_norm.clamp_min(1e-12)[:, None, None]
    dc = dw - dw.mean(dim=(1, 2), keepdim=True)  # centring the window does not change NCC, helps precision
    corr = F.conv2d(dc[None], p_hat[:, None], groups=n)[0]  # (n, 2m+1, 2m+1): Σ p̂·d at each shift
    mean_d = F.avg_pool2d(dc[:, None], size, stride=1)[:, 0]
    mean_d2 = F.avg_pool2d(dc[:, None] ** 2, size, stride=1)[:, 0]
    d_std = (mean_d2 - mean_d**2).clamp_min(0).sqrt()  # (n, 2m+1, 2m+1)
    ncc = corr / (d_std * size).clamp_min(1e-12)
    offs = torch.arange(-m, m + 1)
    penalty = 1e-6 * (offs[:, None] ** 2 + offs[None, :] ** 2).float()  # tie-break towards zero shift
    best = (ncc - penalty).flatten(1).argmax(dim=1)
    score = ncc.flatten(1).gather(1, best[:, None])[:, 0]
    dy, dx = best // (2 * m + 1) - m, best % (2 * m + 1) - m
    flat = (p_std < flat_std) | (d_std[:, m, m] < flat_std)
    keep = ~flat & (score >= min_similarity)
    score_np = score.numpy().astype(np.float32)
    shifts = torch.stack([dy, dx], dim=1).numpy()
    keep_np = keep.numpy()
    # gather the colour patches of the kept pairs with one fancy index each
    iy, ix = np.divmod(np.flatnonzero(keep_np), nx)
    y0, x0 = m + iy * stride, m + ix * stride
    ar = np.arange(size)
    phone_patches = phone_aligned[(y0[:, None] + ar)[:, :, None], (x0[:, None] + ar)[:, None, :]]
    yd, xd = y0 + shifts[keep_np, 0], x0 + shifts[keep_np, 1]
    dslr_patches = dslr_crop[(yd[:, None] + ar)[:, :, None], (xd[:, None] + ar)[:, None, :]]
    n_kept = int(keep_np.sum())
    stats = PatchStats(
        n_candidates=n, n_kept=n_kept, n_flat=int(flat.sum()), n_low_similarity=int((~flat & ~keep).sum()),
        mean_similarity=float(score_np[keep_np].mean()) if n_kept else math.nan,
        mean_abs_shift=float(np.abs(shifts[keep_np]).sum(1).mean()) if n_kept else math.nan,
        scores=score_np, shifts=shifts, keep=keep_np,
    )
    return phone_patches.reshape(-1, size, size, 3), dslr_patches.reshape(-1, size, size, 3), stats


# --------------------------------------------------------------------------------------------- dataset
REPORT_FIELDS: tuple[str, ...] = (
    "stem", "phone_file", "dslr_file", "split", "ok", "reason", "n_matches", "n_inliers", "reprojection_error",
    "phone_width", "phone_height", "dslr_width", "dslr_height", "common_width", "common_height",
    "n_candidates", "n_kept", "n_flat", "n_low_similarity", "mean_similarity", "mean_abs_shift",
    "first_index", "seconds",
)


@dataclass
class PrepareReport:
    """What :func:`prepare_dped` did: one row per raw pair (keys :data:`REPORT_FIELDS`) and totals.

    ``split`` is ``"train"``, ``"test"`` (patches in ``test_data/patches``) or ``"full_test"`` (whole
    phone photo in ``test_data/full_size_test_images``; not aligned, no patches). A pair's patches are
    ``first_index .. first_index + n_kept - 1`` of its split's folders.
    """

    out_dir: Path
    phone: str
    rows: list[dict]
    settings: dict
    n_train_patches: int = 0
    n_test_patches: int = 0
    n_full_test_images: int = 0
    seconds: float = 0.0

    @property
    def n_pairs(self) -> int:
        return len(self.rows)

    @property
    def rejected(self) -> list[dict]:
        """Rows of the pairs that were aligned and rejected (with their ``reason``)."""
        return [r for r in self.rows if r["split"] != "full_test" and not r["ok"]]

    def totals(self) -> dict:
        return {"n_pairs": self.n_pairs, "n_rejected_pairs": len(self.rejected),
                "n_train_patches": self.n_train_patches, "n_test_patches": self.n_test_patches,
                "n_full_test_images": self.n_full_test_images, "seconds": round(self.seconds, 3)}

    def summary(self) -> str:
        """A few human-readable lines (what the CLI prints)."""
        t = self.totals()
        lines = [f"DPED layout written to {self.out_dir}: {t['n_train_patches']} training and {t['n_test_patches']} "
                 f"test patch pairs, {t['n_full_test_images']} full-size test images, from {t['n_pairs']} pairs "
                 f"in {t['seconds']:.1f} s",
                 f"{t['n_rejected_pairs']} pair(s) rejected (see {self.out_dir / 'alignment_report.csv'})"]
        lines += [f"  {r['stem']}: {r['reason']}" for r in self.rejected[:10]]
        if len(self.rejected) > 10:
            lines.append(f"  ... and {len(self.rejected) - 10} more")
        return "\n".join(lines)

    def write(self) -> tuple[Path, Path]:
        """Write ``alignment_report.csv`` and ``alignment_report.json`` into :attr:`out_dir`."""
        csv_path, json_path = self.out_dir / "alignment_report.csv", self.out_dir / "alignment_report.json"
        with open(csv_path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(REPORT_FIELDS))
            writer.writeheader()
            writer.writerows([{k: ("" if r.get(k) is None else r.get(k)) for k in REPORT_FIELDS} for r in self.rows])

        def clean(v: object) -> object:
            return None if isinstance(v, float) and not math.isfinite(v) else v

        doc = {"phone": self.phone, "settings": self.settings, "totals": self.totals(),
               "pairs": [{k: clean(r.get(k)) for k in REPORT_FIELDS} for r in self.rows]}
        json_path.write_text(json.dumps(doc, indent=1))
        return csv_path, json_path


@dataclass(frozen=True)
class _PairJob:
    stem: str
    phone_path: str
    dslr_path: str
    split: str
    stage_dir: str
    align: dict
    warp: dict
    patches: dict
    quality: int


def _read_uint8(path: str | Path) -> np.ndarray:
    """An image file as H×W×3 uint8 RGB via :func:`read_image` (exact for 8-bit files)."""
    return (read_image(path) * 255.0 + 0.5).astype(np.uint8)


def _empty_row(stem: str, phone_path: str, dslr_path: str, split: str) -> dict:
    row: dict = dict.fromkeys(REPORT_FIELDS)
    row.update(stem=stem, phone_file=str(phone_path), dslr_file=str(dslr_path), split=split, ok=False,
               n_matches=0, n_inliers=0, n_candidates=0, n_kept=0, n_flat=0, n_low_similarity=0)
    return row


def _process_pair(job: _PairJob) -> dict:
    """Worker: read, align, warp, cut and stage the patches of one pair; returns its report row."""
    start = time.perf_counter()
    row = _empty_row(job.stem, job.phone_path, job.dslr_path, job.split)
    try:
        phone, dslr = _read_uint8(job.phone_path), _read_uint8(job.dslr_path)
    except ImageReadError as err:
        row["reason"] = f"unreadable image: {err}"
        row["seconds"] = round(time.perf_counter() - start, 3)
        return row
    row.update(phone_width=phone.shape[1], phone_height=phone.shape[0], dslr_width=dslr.shape[1],
               dslr_height=dslr.shape[0])
    al = align_pair(phone, dslr, **job.align)
    row.update(n_matches=al.n_matches, n_inliers=al.n_inliers, reason=al.reason,
               reprojection_error=None if not math.isfinite(al.reprojection_error) else round(al.reprojection_error, 4))
    if al.ok:
        try:
            phone_al, dslr_crop = warp_to_common(phone, dslr, al, **job.warp)
        except ValueError as err:
            row["reason"] = f"no common area: {err}"
        else:
            pp, dp, stats = extract_patch_pairs(phone_al, dslr_crop, **job.patches)
            stage = Path(job.stage_dir)
            for k in range(len(pp)):  # one file per patch: a loop over files, not over pixels
                write_uint8(stage / "phone" / f"{k}.jpg", pp[k], quality=job.quality)
                write_uint8(stage / "canon" / f"{k}.jpg", dp[k], quality=job.quality)
            counts = stats.counts()
            row.update(ok=True, common_width=phone_al.shape[1], common_height=phone_al.shape[0],
                       **{k: (round(v, 4) if isinstance(v, float) and math.isfinite(v) else
                              (None if isinstance(v, float) else v)) for k, v in counts.items()})
            if stats.n_kept == 0:
                row.update(ok=False, reason=f"no patch kept ({stats.n_candidates} candidates: {stats.n_flat} flat, "
                                            f"{stats.n_low_similarity} below similarity {job.patches['min_similarity']})")
    row["seconds"] = round(time.perf_counter() - start, 3)
    return row


def _worker_init() -> None:
    """One thread per worker process: the parallelism is over pairs."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def pair_files(phone_dir: str | Path, dslr_dir: str | Path) -> list[tuple[str, Path, Path]]:
    """``(stem, phone_file, dslr_file)`` for files with the same stem in both folders, naturally sorted.

    Raises:
        DatasetLayoutError: a folder is missing or empty, a stem appears twice in one folder, or some
            files have no partner (all of them are listed).
    """
    def by_stem(folder: str | Path, what: str) -> dict[str, Path]:
        files = list_images(folder, what=what)
        out: dict[str, Path] = {}
        for f in files:
            if f.stem in out:
                raise DatasetLayoutError(f"{folder}: two files with the stem {f.stem!r} ({out[f.stem].name}, {f.name}); "
                                         "expected one image per stem")
            out[f.stem] = f
        return out

    phones = by_stem(phone_dir, "phone photos")
    dslrs = by_stem(dslr_dir, "DSLR photos with the same file stems as the phone photos")
    lonely = [str(phones[s]) for s in sorted(phones.keys() - dslrs.keys(), key=natural_key)]
    lonely += [str(dslrs[s]) for s in sorted(dslrs.keys() - phones.keys(), key=natural_key)]
    if lonely:
        shown = "\n  ".join(lonely[:50]) + (f"\n  ... and {len(lonely) - 50} more" if len(lonely) > 50 else "")
        raise DatasetLayoutError(f"{len(lonely)} file(s) without a partner of the same stem in {phone_dir} / "
                                 f"{dslr_dir} (expected pairs phone/<stem>.* + dslr/<stem>.*):\n  {shown}")
    return [(s, phones[s], dslrs[s]) for s in sorted(phones, key=natural_key)]


def prepare_dped(
    phone_dir: str | Path,
    dslr_dir: str | Path,
    out_dir: str | Path,
    phone: str = "iphone",
    *,
    test_fraction: float = 0.05,
    n_full_test: int = 5,
    workers: int | None = None,
    seed: int = 0,
    patch_size: int = 100,
    stride: int | None = None,
    max_shift: int = 4,
    min_similarity: float = 0.9,
    flat_std: float = 0.01,
    ratio: float = 0.75,
    ransac_threshold: float = 3.0,
    min_inliers: int = 30,
    match_max_side: int = 1600,
    output_scale: str | float = "phone",
    quality: int = 95,
    overwrite: bool = False,
    progress: bool = True,
) -> PrepareReport:
    """Align raw phone/DSLR pairs and write the DPED patch layout under ``out_dir/<phone>/``.

    Pairs are the files of ``phone_dir`` and ``dslr_dir`` with the same stem. They are split at the
    photo level with ``seed``: ``n_full_test`` pairs give whole phone photos for
    ``test_data/full_size_test_images`` (their pairs give no patch at all), ``round(test_fraction ·
    rest)`` pairs (≥ 1 when ``test_fraction > 0``) give ``test_data/patches``, the others
    ``training_data``. Each pair is aligned (:func:`align_pair`), warped (:func:`warp_to_common`) and cut
    (:func:`extract_patch_pairs`) in a process pool; patch indices are contiguous from 0 in stem order,
    independent of the number of workers. Rejected pairs are reported, never used.

    Args:
        phone_dir, dslr_dir: folders of raw photos (any image format :mod:`datamodules.image_io` reads).
        out_dir: output root; the layout goes to ``out_dir/<phone>/``.
        phone: phone name used in the layout (DPED: ``iphone``, ``sony``, ``blackberry``).
        test_fraction, n_full_test, seed: the split (see above).
        workers: processes (``None`` = all cores; ≤ 1 = in this process).
        patch_size, stride, max_shift, min_similarity, flat_std: :func:`extract_patch_pairs`.
        ratio, ransac_threshold, min_inliers, match_max_side: :func:`align_pair`.
        output_scale: :func:`warp_to_common`.
        quality: JPEG quality of the patches and of re-encoded full-size images.
        overwrite: replace an existing layout (otherwise an existing one is an error).
        progress: show a tqdm progress bar.

    Returns:
        :class:`PrepareReport` (also written as ``alignment_report.csv`` / ``.json``).

    Raises:
        DatasetLayoutError: missing/empty folders or unpaired files (listed).
        ValueError: a split that leaves no training pair, or invalid settings.
        FileExistsError: the layout exists and ``overwrite`` is False.
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    if not phone or any(c in phone for c in "/\\") or phone in (".", ".."):
        raise ValueError(f"phone must be a plain folder name such as 'iphone', got {phone!r}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if n_full_test < 0:
        raise ValueError(f"n_full_test must be >= 0, got {n_full_test}")
    pairs = pair_files(phone_dir, dslr_dir)
    n = len(pairs)
    rest = n - n_full_test
    n_test = round(test_fraction * rest) if rest > 0 else 0
    if test_fraction > 0 and n_test == 0 and rest >= 2:
        n_test = 1
    if rest - n_test < 1:
        raise ValueError(f"{n} pair(s) in {phone_dir}: with n_full_test={n_full_test} and test_fraction={test_fraction} "
                         "no pair is left for training; add pairs or lower n_full_test / test_fraction")
    order = np.random.default_rng(seed).permutation(n)
    split = np.array(["train"] * n, dtype=object)
    split[order[:n_full_test]] = "full_test"
    split[order[n_full_test: n_full_test + n_test]] = "test"

    root = Path(out_dir) / phone
    targets = [root / "training_data", root / "test_data", root / ".staging"]
    existing = [t for t in targets if t.exists() and any(t.iterdir())]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]}: a DPED layout already exists here; pass overwrite=True "
                              "(--overwrite) to replace it, or choose another output folder")
    for t in targets:
        if t.exists():
            shutil.rmtree(t)
    train_dir, test_dir = root / "training_data", root / "test_data" / "patches"
    full_dir = root / "test_data" / "full_size_test_images"
    for d in (train_dir / phone, train_dir / "canon", test_dir / phone, test_dir / "canon", full_dir):
        d.mkdir(parents=True, exist_ok=True)

    settings = {"phone_dir": str(phone_dir), "dslr_dir": str(dslr_dir), "test_fraction": test_fraction,
                "n_full_test": n_full_test, "seed": seed, "output_scale": output_scale, "quality": quality}
    align_kw = {"ratio": ratio, "ransac_threshold": ransac_threshold, "min_inliers": min_inliers,
                "match_max_side": match_max_side}
    patch_kw = {"size": patch_size, "stride": stride, "max_shift": max_shift, "min_similarity": min_similarity,
                "flat_std": flat_std}
    settings.update(align_kw, **{f"patch_{k}": v for k, v in patch_kw.items()})
    rows: dict[str, dict] = {}
    jobs: list[_PairJob] = []
    for i, (stem, p_file, d_file) in enumerate(pairs):
        if split[i] == "full_test":
            row = _empty_row(stem, str(p_file), str(d_file), "full_test")
            try:
                check_image_header(p_file)
                if p_file.suffix.lower() in (".jpg", ".jpeg"):
                    shutil.copyfile(p_file, full_dir / f"{stem}.jpg")
                else:
                    write_uint8(full_dir / f"{stem}.jpg", _read_uint8(p_file), quality=quality)
                row["ok"] = True
            except ImageReadError as err:
                row["reason"] = f"unreadable image: {err}"
            rows[stem] = row
        else:
            jobs.append(_PairJob(stem, str(p_file), str(d_file), str(split[i]), str(root / ".staging" / str(i)),
                                 align_kw, {"output_scale": output_scale}, patch_kw, quality))

    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    bar = tqdm(total=len(jobs), desc=f"aligning {phone} pairs", unit="pair", disable=not progress)
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            rows[job.stem] = _process_pair(job)
            bar.update()
    else:
        import multiprocessing as mp

        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=mp.get_context("spawn"),
                                 initializer=_worker_init) as pool:
            futures = {pool.submit(_process_pair, job): job for job in jobs}
            for fut in as_completed(futures):
                rows[futures[fut].stem] = fut.result()
                bar.update()
    bar.close()

    # contiguous indices in stem order, whatever the completion order
    counters = {"train": 0, "test": 0}
    dests = {"train": train_dir, "test": test_dir}
    job_by_stem = {j.stem: j for j in jobs}
    ordered = [rows[stem] for stem, _, _ in pairs]
    for row in ordered:
        if row["split"] == "full_test" or not row["ok"]:
            continue
        stage, dest = Path(job_by_stem[row["stem"]].stage_dir), dests[row["split"]]
        row["first_index"] = counters[row["split"]]
        for k in range(row["n_kept"]):
            idx = counters[row["split"]] + k
            os.replace(stage / "phone" / f"{k}.jpg", dest / phone / f"{idx}.jpg")
            os.replace(stage / "canon" / f"{k}.jpg", dest / "canon" / f"{idx}.jpg")
        counters[row["split"]] += row["n_kept"]
    shutil.rmtree(root / ".staging", ignore_errors=True)
    report = PrepareReport(root, phone, ordered, settings, n_train_patches=counters["train"],
                           n_test_patches=counters["test"],
                           n_full_test_images=sum(1 for r in ordered if r["split"] == "full_test" and r["ok"]),
                           seconds=time.perf_counter() - start)
    report.write()
    return report
