"""Cut pixel-aligned patch pairs from a phone/DSLR pair already warped into a common frame.

DPED's dataset preparation (:mod:`experiments.prepare_dped`): the input is the output of
:func:`imaging.alignment.warp_to_common`. What is documented (aiff22/DPED #7; ``shared/papers/dped.md``
§5): after the rough SIFT alignment two windows slide in parallel over the pair, one of them
additionally moved by small shifts (and rotations) to maximise a similarity score, and a patch pair is
kept if the score is **> 0.9**.

Everything else is **not found** in any source and is a documented, configurable choice of ours:

* The similarity score: normalised cross-correlation (NCC) of the grey patches (ITU-R BT.601 luma),
  maximised over integer shifts of the DSLR window within ±``max_shift`` = 4 px; no rotation search
  (the homography already removes rotation; the residual is sub-pixel on our synthetic pairs).
* Patch grid stride = patch size (non-overlapping); flat patches (grey std < ``flat_std`` = 0.01,
  where NCC is undefined or pure noise) are rejected with their own reason.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from imaging.alignment import _check_rgb_uint8

__all__ = ["PatchStats", "extract_patch_pairs"]


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
        phone_aligned, dslr_crop: H×W×3 uint8 RGB of the same size (output of :func:`imaging.alignment.warp_to_common`).
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

