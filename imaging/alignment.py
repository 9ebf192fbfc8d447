"""Align a phone/DSLR photo pair: SIFT + RANSAC homography, its sanity checks, and the common frame.

* :func:`align_pair`: the phone→DSLR homography (:class:`Alignment`; a rejected pair gets a reason);
* :func:`warp_to_common`: the phone photo warped into the common frame, both photos cropped to the
  largest common rectangle (:func:`largest_valid_rectangle`).

DPED's dataset preparation (:mod:`experiments.prepare_dped`) is built on these; the patch pairs are
cut by :mod:`imaging.patches`.

The authors never released their alignment code (aiff22/DPED #7; ``shared/papers/dped.md`` §5).
What is documented: SIFT keypoints and a RANSAC homography to find the part of the scene both cameras
see (project page: "non-linear transformations based on SIFT features to extract the intersection
part").

Everything else is **not found** in any source and is a documented, configurable choice of ours:

* Lowe ratio ``0.75``; RANSAC threshold ``3`` px (in the DSLR image *as matched*); at least ``30``
  inliers and an inlier ratio ≥ ``0.2``; matching on images downscaled to a longer side ≤ ``1600`` px.
* Sanity checks that reject a degenerate homography (see :func:`check_homography`).
* The common frame: the DSLR frame, resampled to the phone's pixel density (``output_scale="phone"``)
  so that training patches have the phone's native scale, i.e. the scale the network sees when it
  enhances full-resolution phone photos (the authors' DSLR downscaling factor is not found).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "Alignment",
    "align_pair",
    "check_homography",
    "largest_valid_rectangle",
    "linear_scale",
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

