"""NIQE (Mittal, Soundararajan & Bovik, IEEE SPL 2013) as BasicSR 1.4.2 computes it: :func:`niqe`, :class:`NIQE`.

:func:`niqe` (``B×3×H×W`` RGB tensor in [0, 1] → ``Tensor[B]``, float64) reproduces BasicSR 1.4.2
``calculate_niqe(img, crop_border=0, input_order='HWC', convert_to='y')`` step by step (vectorised over blocks);
lower is better. :class:`NIQE` is its per-image mean (a :class:`~metrics.full_reference.PerImageMean`:
DDP-safe, :attr:`last_scores` after each ``update``). Both are re-exported by :mod:`metrics.no_reference` with the
other no-reference metrics.

NIQE's model is BasicSR's ``niqe_pris_params.npz`` (Apache-2.0; ``data/NOTICE.md``), fetched from its PyPI
sdist at set-up time by :mod:`metrics.niqe_model`, not shipped; :data:`NIQE_PARAMS_PATH` is where it is read
(``$DARKROOM_NIQE_PARAMS`` overrides it).
"""

from __future__ import annotations

import functools
import hashlib
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import gamma as _gamma
from torch import Tensor

from metrics.full_reference import PerImageMean
from metrics.niqe_model import PARAMS_SHA256, params_path

__all__ = ["NIQE", "NIQE_BLOCK", "NIQE_PARAMS_PATH", "NIQE_PARAMS_SHA256", "niqe", "niqe_params"]

NIQE_PARAMS_PATH = params_path()
NIQE_PARAMS_SHA256 = PARAMS_SHA256
NIQE_BLOCK = 96  # BasicSR / official NIQE block size (no overlap)


def _check_rgb(x: Tensor, name: str) -> None:
    """Raise ``ValueError`` unless ``x`` is a float RGB batch B×3×H×W (the input of every no-reference metric)."""
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name}: expected a float RGB tensor B×3×H×W in [0, 1], got {shape}")


def niqe_params(path: Path | str | None = None) -> dict[str, np.ndarray]:
    """BasicSR's NIQE model: ``mu_pris_param`` (1×36), ``cov_pris_param`` (36×36), ``gaussian_window`` (7×7).

    Reads ``path`` (default :data:`NIQE_PARAMS_PATH`: :func:`metrics.niqe_model.params_path`, fetched by
    ``make setup``) after checking its SHA-256 against :data:`NIQE_PARAMS_SHA256`.

    Raises:
        FileNotFoundError: the file is missing (the message names the path and the expected file).
        ValueError: its SHA-256 differs (the message names the path and both digests).
    """
    path = Path(NIQE_PARAMS_PATH if path is None else path)
    if not path.is_file():
        raise FileNotFoundError(
            f"NIQE model parameters not found: {path}. Expected BasicSR 1.4.2's niqe_pris_params.npz "
            f"(sdist path basicsr-1.4.2/basicsr/metrics/niqe_pris_params.npz, SHA-256 {NIQE_PARAMS_SHA256}); "
            "fetch it with `python -m metrics.niqe_model fetch` (make setup does), or set $DARKROOM_NIQE_PARAMS"
        )
    stat = path.stat()
    return {k: v.copy() for k, v in _load_params(str(path), stat.st_size, stat.st_mtime_ns).items()}


@functools.lru_cache(maxsize=4)
def _load_params(path: str, size: int, mtime_ns: int) -> dict[str, np.ndarray]:
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != NIQE_PARAMS_SHA256:
        raise ValueError(
            f"NIQE model parameters at {path} have SHA-256 {digest}, expected {NIQE_PARAMS_SHA256} "
            "(BasicSR 1.4.2's niqe_pris_params.npz; see metrics/data/NOTICE.md)"
        )
    with np.load(path) as npz:
        return {k: npz[k].copy() for k in ("mu_pris_param", "cov_pris_param", "gaussian_window")}


@functools.cache
def _aggd_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """BasicSR ``estimate_aggd_param``'s lookup: γ grid (9801), r(γ), and per-γ factors for β and the mean.

    Same NumPy/SciPy expressions as BasicSR, so table entries are bit-identical:
    ``r(γ) = Γ(2/γ)² / (Γ(1/γ)Γ(3/γ))``, ``√(Γ(1/γ)/Γ(3/γ))`` (β = σ·that), ``Γ(2/γ)/Γ(1/γ)`` (Eq. 8).
    r(γ) is strictly increasing on the grid (checked in the tests), which :func:`_gamma_index` relies on.
    """
    gam = np.arange(0.2, 10.001, 0.001)
    rec = np.reciprocal(gam)
    r_gam = np.square(_gamma(rec * 2)) / (_gamma(rec) * _gamma(rec * 3))
    beta = np.sqrt(_gamma(1 / gam) / _gamma(3 / gam))
    mean = _gamma(2 / gam) / _gamma(1 / gam)
    return gam, r_gam, beta, mean


def _r32(x: Tensor) -> Tensor:
    """Round float64 values to float32 precision, kept as float64.

    For operands that are float32 values, ``_r32(a op b)`` in float64 equals the IEEE float32 result of
    ``a op b`` for +, −, ×, ÷ and √ (float64 has more than 2·24 + 2 bits, so the double rounding is
    harmless). Used to reproduce NumPy's float32 arithmetic without relying on torch's float32 kernels
    (its CPU ``sqrt`` is not always correctly rounded).
    """
    return x.float().double()


def _gamma_index(rhatnorm: Tensor, r_gam: Tensor) -> Tensor:
    """``np.argmin((r_gam − rhatnorm)²)`` for each entry, via a binary search (r_gam is increasing).

    The minimiser of (r − t)² over an increasing grid is one of the two grid points around t; ties go
    to the lower index, as with argmin. Non-finite targets give index 0 (``np.argmin`` of an all-NaN or
    all-inf array).
    """
    bad = ~torch.isfinite(rhatnorm)
    t = torch.where(bad, torch.zeros_like(rhatnorm), rhatnorm).contiguous()
    hi = torch.searchsorted(r_gam, t).clamp(max=r_gam.numel() - 1)
    lo = (hi - 1).clamp(min=0)
    take_lo = (r_gam[lo] - t) ** 2 <= (r_gam[hi] - t) ** 2
    return torch.where(bad, torch.zeros_like(hi), torch.where(take_lo, lo, hi))


_PW_BLOCK = 128  # NumPy's PW_BLOCKSIZE (numpy/_core/src/umath/loops_utils.h.src, pairwise_sum)


def _pairwise_plan(lengths: np.ndarray, row_len: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """NumPy's pairwise-sum split structure for rows ``r`` starting at ``r·row_len`` with ``lengths[r]``
    entries (bookkeeping only, in NumPy: few, small arrays).

    Every segment longer than 128 is split at n2 = n/2 − (n/2 mod 8) until none is. Returns the leaves'
    ``start`` and ``length`` and, deepest level first, for each level an array (n_parents × 2) of child
    indices into that level's sums (−1: no second child).
    """
    start = np.arange(len(lengths), dtype=np.int64) * row_len
    length = lengths.astype(np.int64)
    links = []
    while (length > _PW_BLOCK).any():
        big = length > _PW_BLOCK
        half = length // 2 - (length // 2) % 8
        width = 1 + big
        first = np.cumsum(width) - width
        nxt_start, nxt_len = np.empty((2, int(width.sum())), dtype=np.int64)
        nxt_start[first], nxt_len[first] = start, np.where(big, half, length)
        nxt_start[first[big] + 1], nxt_len[first[big] + 1] = start[big] + half[big], length[big] - half[big]
        links.append(np.stack([first, np.where(big, first + 1, -1)], 1))
        start, length = nxt_start, nxt_len
    return start, length, links[::-1]


def _pairwise_leaves(groups: Tensor, start: np.ndarray, length: np.ndarray) -> Tensor:
    """NumPy's pairwise-sum leaf (n ≤ 128) for each segment (``start`` a multiple of 8, ``length``).

    ``groups`` is the data as rows of 8 (float32). Eight accumulators run over the segment's whole
    groups of 8, are combined as ((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7)), then the n mod 8 remaining entries
    are added in order (for n < 8: all of them, in order, onto 0) — NumPy's order exactly. Segments are
    sorted by their number of whole groups so that step g only touches those that have a group g; the
    padding zeros added to short tails change nothing (all entries are ≥ 0).
    """
    dev = groups.device
    full = length // 8
    order = np.argsort(-full, kind="stable")
    first = torch.from_numpy((start // 8)[order]).to(dev)
    active = np.searchsorted(-full[order], -np.arange(1, _PW_BLOCK // 8 + 1), side="right")  # #segments with > g
    r = groups.new_zeros(len(start), 8)
    for g in range(int(full.max()) if full.size else 0):
        k = int(active[g])
        r[:k].add_(groups.index_select(0, first[:k] + g))
    res = torch.empty_like(r[:, 0])
    res[torch.from_numpy(order).to(dev)] = ((r[:, 0] + r[:, 1]) + (r[:, 2] + r[:, 3])) + (
        (r[:, 4] + r[:, 5]) + (r[:, 6] + r[:, 7]))
    keep = torch.from_numpy(np.arange(8) < (length % 8)[:, None]).to(dev)
    tail = torch.where(keep, groups.index_select(0, torch.from_numpy(start // 8 + full).to(dev)), 0)
    for j in range(7):
        res = res + tail[:, j]
    return res


def _np_sum_f32(flat: Tensor, row_len: int, lengths: np.ndarray) -> Tensor:
    """``np.sum`` of the first ``lengths[r]`` entries of each row ``flat[r·row_len : …]`` (float32,
    entries ≥ 0, ``row_len`` a multiple of 8), bit-identical to NumPy's float32 pairwise summation
    (recursive halving at multiples of 8 down to leaves of ≤ 128; checked against NumPy in the tests).

    All rows at once: the split structure (:func:`_pairwise_plan`), the leaf sums
    (:func:`_pairwise_leaves`), then each level's halves added back up (a missing half adds +0).
    """
    if row_len % 8:
        raise ValueError("_np_sum_f32: the row length must be a multiple of 8")
    start, length, links = _pairwise_plan(lengths, row_len)
    sums = _pairwise_leaves(flat.view(-1, 8), start, length)
    for link in links:
        ext = torch.cat([sums, sums.new_zeros(1)])
        idx = torch.from_numpy(np.where(link < 0, len(sums), link)).to(flat.device)
        sums = ext[idx[:, 0]] + ext[idx[:, 1]]
    return sums


def _np_means_f32(fields: list[Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Row-wise NumPy float32 ``mean(x[x<0]**2)``, ``mean(x[x>0]**2)``, ``mean(|x|)``, ``mean(x**2)`` of
    every row of every field (each M×n float32, n a multiple of 8) → four float64 tensors F×M holding
    float32 values; empty subsets → NaN.

    NumPy's float32 mean is the pairwise sum (:func:`_np_sum_f32`) divided by the count (a float64
    division rounded to float32). Squares and absolute values are exact float32 operations. The subsets
    ``x[x<0]`` and ``x[x>0]`` are compacted to the front of their rows in order (scatter by rank). The
    rows of all fields go into one buffer and one summation (few large operations); the compaction
    temporaries are made field by field (smaller allocations).
    """
    m, n = fields[0].shape
    row_len = n + 8  # + a spare group: row starts stay multiples of 8
    flat = fields[0].new_empty(len(fields) * 4 * m * row_len)  # entries past a row's count are never read
    rows = flat.view(len(fields), 4, m, row_len)
    rows[:, :2].zero_()
    counts = []
    for k, x in enumerate(fields):
        sq = x * x
        signs = torch.stack([x < 0, x > 0])
        running = signs.cumsum(2)
        # entry i of a subset goes to its rank (the exclusive count); the others add +0 somewhere (exact)
        rows[k, :2].scatter_add_(2, running - signs.long(), sq * signs)
        torch.abs(x, out=rows[k, 2, :, :n])
        rows[k, 3, :, :n] = sq
        counts.append(torch.cat([running[:, :, -1].reshape(-1), x.new_full((2 * m,), n, dtype=torch.long)]))
    counts = torch.cat(counts)
    means = _r32(_np_sum_f32(flat, row_len, counts.cpu().numpy()).double() / counts)
    return tuple(means.view(len(fields), 4, m).unbind(1))


def _aggd_fit(fields: list[Tensor], tables: tuple[Tensor, ...]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """AGGD fit of each row of each field (M×n float32 each): α, β_l, β_r (float64, F×M), index of α.

    BasicSR ``estimate_aggd_param`` for all rows at once, with its float32 arithmetic reproduced exactly:
    σ_l = √mean(x² | x < 0), σ_r = √mean(x² | x > 0), γ̂ = σ_l/σ_r, r̂ = mean|x|²/mean(x²),
    r̂_n = r̂(γ̂³+1)(γ̂+1)/(γ̂²+1)² (float32), α = argmin_γ (r(γ) − r̂_n)² (float64),
    β = σ·√(Γ(1/α)/Γ(3/α)) (float64). A row without negatives (positives) has σ_l (σ_r) = NaN, the mean
    of an empty NumPy array; an all-zero row then gets α = 0.2 (argmin of all-NaN = 0) and NaN betas.
    """
    gam, r_gam, beta_factor, _ = tables
    neg_sq, pos_sq, mean_abs, mean_sq = _np_means_f32(fields)
    left, right = _r32(torch.sqrt(neg_sq)), _r32(torch.sqrt(pos_sq))
    g = _r32(left / right)
    rhat = _r32(_r32(mean_abs * mean_abs) / mean_sq)
    num = _r32(_r32(rhat * _r32(_r32(g * g * g) + 1)) * _r32(g + 1))
    den = _r32(_r32(g * g) + 1)
    rhatnorm = _r32(num / _r32(den * den))
    idx = _gamma_index(rhatnorm, r_gam)
    return gam[idx], left * beta_factor[idx], right * beta_factor[idx], idx


_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))  # BasicSR compute_feature: np.roll(block, shift, axis=(0, 1))


def _block_features(blocks: Tensor, tables: tuple[Tensor, ...]) -> Tensor:
    """BasicSR ``compute_feature`` for every block: nb×h×w float32 MSCN blocks → nb×18 (float64).

    Features: [α, (β_l+β_r)/2] of the block, then for the products with its four rolled copies (within
    the block, as ``np.roll``; float32 products as in BasicSR) [α, (β_r−β_l)·Γ(2/α)/Γ(1/α), β_l, β_r].
    """
    nb = blocks.shape[0]
    fields = [blocks] + [blocks * torch.roll(blocks, s, dims=(-2, -1)) for s in _SHIFTS]
    alpha, bl, br, idx = _aggd_fit([f.reshape(nb, -1) for f in fields], tables)
    mean = (br - bl) * tables[3][idx]
    first = torch.stack([alpha[0], (bl[0] + br[0]) / 2], 1)
    rest = torch.stack([alpha[1:], mean[1:], bl[1:], br[1:]], 2).permute(1, 0, 2).reshape(nb, 16)
    return torch.cat([first, rest], 1)


def _to_blocks(img: Tensor, bh: int, bw: int) -> Tensor:
    """H×W → (nw·nh)×bh×bw, column-major block order (BasicSR loops ``idx_w`` outside ``idx_h``)."""
    nh, nw = img.shape[0] // bh, img.shape[1] // bw
    return img.reshape(nh, bh, nw, bw).permute(2, 0, 1, 3).reshape(nw * nh, bh, bw)


def _separable_window(window: np.ndarray) -> np.ndarray:
    """1-D factor g of the (rank-1, symmetric) 7×7 Gaussian window, g = row sums (the window sums to 1).

    max|g gᵀ − window| ≈ 1e-17 for BasicSR's window, far below the float32 rounding applied to each
    filtered value, so separable filtering reproduces ``scipy.ndimage.convolve`` with the 2-D window.
    """
    g = window.sum(1)
    if np.abs(np.outer(g, g) - window).max() > 1e-15:
        raise ValueError("NIQE gaussian_window is not separable (unexpected parameter file)")
    return g


def _filter_nearest(x: Tensor, g: Tensor) -> Tensor:
    """``scipy.ndimage.convolve(x, outer(g, g), mode='nearest')`` in float64 for N×H×W (g symmetric)."""
    r = g.numel() // 2
    h, w = x.shape[-2:]
    xp = F.pad(x[:, None], (r, r, r, r), mode="replicate")[:, 0]
    taps = [float(v) for v in g]
    rows = xp[:, :h, :] * taps[0]
    for k in range(1, len(taps)):
        rows.add_(xp[:, k : k + h, :], alpha=taps[k])
    out = rows[:, :, :w] * taps[0]
    for k in range(1, len(taps)):
        out.add_(rows[:, :, k : k + w], alpha=taps[k])
    return out


def _mscn(img: Tensor, g: Tensor) -> Tensor:
    """BasicSR's normalisation (Eq. 1), reproducing its float32 steps: H×W float32 → H×W float32.

    ``mu = convolve(img)`` and ``convolve(img²)`` are computed in float64 and stored in float32 (SciPy's
    output takes the float32 input's dtype); the rest, ``sigma = √|E[x²] − mu²|`` and
    ``(img − mu)/(sigma + 1)``, is float32 arithmetic as in NumPy (emulated exactly via :func:`_r32`).
    Note that E[x²] − mu² cancels catastrophically in float32 on flat areas (BasicSR's own precision).
    """
    x = img.double()
    both = _r32(_filter_nearest(torch.stack([x, _r32(x * x)]), g))
    mu, sq = both[0], both[1]
    sigma = _r32(torch.sqrt(torch.abs(_r32(sq - _r32(mu * mu)))))
    return _r32(_r32(x - mu) / _r32(sigma + 1)).float()


def _cubic(x: Tensor) -> Tensor:
    """BasicSR ``matlab_functions.cubic`` (Keys, a = −0.5), same float32 expression."""
    absx = torch.abs(x)
    absx2 = absx**2
    absx3 = absx**3
    return (1.5 * absx3 - 2.5 * absx2 + 1) * ((absx <= 1).type_as(absx)) + (
        -0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2
    ) * (((absx > 1) * (absx <= 2)).type_as(absx))


@functools.lru_cache(maxsize=32)
def _half_taps(in_len: int) -> tuple[Tensor, Tensor]:
    """MATLAB ``imresize`` bicubic antialiased taps for scale 0.5 along one axis, as BasicSR's
    ``calculate_weights_indices(in_len, ceil(in_len/2), 0.5, 'cubic', 4, True)`` computes them (same
    float32 expressions, same dropping of all-zero first/last columns).

    Returns ``weights`` (p, float32: at scale 0.5 every output uses the same taps) and ``src`` (out×p,
    0-based input indices with MATLAB's symmetric padding folded in: −1 → 0, −2 → 1, n → n−1, …).
    """
    scale, out_len = 0.5, math.ceil(in_len * 0.5)
    kernel_width = 4 / scale
    x = torch.linspace(1, out_len, out_len, dtype=torch.float32)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - kernel_width / 2)
    p = math.ceil(kernel_width) + 2
    indices = left.view(out_len, 1) + torch.linspace(0, p - 1, p, dtype=torch.float32).view(1, p)
    weights = scale * _cubic((u.view(out_len, 1) - indices) * scale)
    weights = weights / torch.sum(weights, 1).view(out_len, 1)
    zeros = torch.sum(weights == 0, 0)
    if zeros[0] != 0:
        indices, weights = indices.narrow(1, 1, p - 2), weights.narrow(1, 1, p - 2)
    if zeros[-1] != 0:
        indices, weights = indices.narrow(1, 0, p - 2), weights.narrow(1, 0, p - 2)
    if not torch.equal(weights, weights[:1].expand_as(weights)):
        raise AssertionError("imresize taps differ between outputs (unexpected at scale 0.5)")
    src = indices.long() - 1
    src = torch.where(src < 0, -src - 1, src)
    src = torch.where(src >= in_len, 2 * in_len - 1 - src, src)
    return weights[0].contiguous(), src


def _imresize_half(img: Tensor, blas_float32: bool = False) -> Tensor:
    """BasicSR ``imresize(img, 0.5, antialiasing=True)`` of an H×W float32 map → ⌈H/2⌉×⌈W/2⌉ float32.

    BasicSR computes each output line as a float32 ``torch.mv`` of the p input lines it needs (rows
    first, then columns), each pass stored in float32. All outputs share the taps at scale 0.5, so each
    pass here is one matrix–vector product over all output lines at once:

    * default: in float64, then rounded to float32 — the correctly rounded value of each weighted sum,
      independent of BLAS, thread count and device;
    * ``blas_float32=True``: float32 ``torch.mv`` on matrices with the same memory layout as BasicSR's
      (column-major for the row pass, row-major for the column pass), which reproduces BasicSR's result
      bit for bit on the same machine and thread count — including its dependence on them (MKL's
      float32 ``sgemv`` rounds differently with 1 or 2 threads, or with ``MKL_CBWR`` set).
    """
    dtype = torch.float32 if blas_float32 else torch.float64
    wh, sh = (t.to(img.device) for t in _half_taps(img.shape[0]))
    ww, sw = (t.to(img.device) for t in _half_taps(img.shape[1]))
    gathered = img.to(dtype)[sh]  # out_h × p × W
    p, width = gathered.shape[1], gathered.shape[2]
    rows = gathered.permute(1, 0, 2).reshape(p, -1).T.mv(wh.to(dtype)).view(-1, width).float()
    cols = rows.to(dtype)[:, sw]  # out_h × out_w × p
    return cols.reshape(-1, cols.shape[-1]).mv(ww.to(dtype)).view(rows.shape[0], -1).float()


def _y_channel(x: Tensor) -> Tensor:
    """B×3×H×W RGB in [0, 1] → B×H×W float32 Y on [16, 235], rounded, as BasicSR computes it.

    Quantise to 8 bit (round(255·x), clamped to [0, 255]); then BasicSR ``to_y_channel`` → ``bgr2ycbcr``
    (``y_only=True``): v/255 in float32, Y = 24.966·B + 128.553·G + 65.481·R + 16 in float64, stored as
    float32 (Y/255), × 255 in float32; then ``img.round()`` (half to even, as NumPy).
    """
    q = _r32((x.detach().double() * 255).round().clamp(0, 255) / 255)
    r, g, b = q.unbind(1)
    y = b * 24.966 + g * 128.553 + r * 65.481 + 16.0
    return _r32(_r32(y / 255) * 255).round().float()


def _niqe_image(y: Tensor, params: dict[str, Tensor], tables: tuple[Tensor, ...], blas_float32: bool) -> Tensor:
    """NIQE of one cropped H×W Y map (float32, multiples of 96) → 0-d float64 tensor."""
    feats, img = [], y
    for scale in (1, 2):
        blocks = _to_blocks(_mscn(img, params["g"]), NIQE_BLOCK // scale, NIQE_BLOCK // scale)
        feats.append(_block_features(blocks, tables))
        if scale == 1:
            half = _imresize_half(_r32(img.double() / 255).float(), blas_float32)
            img = _r32(half.double() * 255).float()
    feat = torch.cat(feats, 1)
    return _mvg_distance(feat, params["mu"], params["cov"])


def _mvg_distance(feat: Tensor, mu_pris: Tensor, cov_pris: Tensor) -> Tensor:
    """Eq. 10: √((μ_p − μ_d) ((Σ_p + Σ_d)/2)⁺ (μ_p − μ_d)ᵀ) from nblocks×36 features (float64).

    As BasicSR: μ_d = ``np.nanmean`` over blocks; Σ_d = ``np.cov`` (ddof 1) of the blocks without any NaN
    (none left → Σ_d = 0, one → NaN); ``np.linalg.pinv`` (cut-off 1e-15·σ_max).
    """
    mu = torch.nanmean(feat, 0)
    valid = ~torch.isnan(feat).any(1)
    kept = feat[valid]
    centred = kept - kept.mean(0)
    cov = centred.T @ centred / (kept.shape[0] - 1)
    mat = (cov_pris + cov) / 2
    if not torch.isfinite(mat).all():
        return torch.tensor(float("nan"), dtype=torch.float64, device=feat.device)
    d = (mu_pris - mu).view(1, -1)
    return torch.sqrt(d @ torch.linalg.pinv(mat, rtol=1e-15) @ d.T).squeeze()


def _niqe_device_params(device: torch.device) -> tuple[dict[str, Tensor], tuple[Tensor, ...]]:
    raw = niqe_params()
    params = {
        "mu": torch.from_numpy(raw["mu_pris_param"]).reshape(-1).to(device),
        "cov": torch.from_numpy(raw["cov_pris_param"]).to(device),
        "g": torch.from_numpy(_separable_window(raw["gaussian_window"])).to(device),
    }
    tables = tuple(torch.from_numpy(t).to(device) for t in _aggd_tables())
    return params, tables


@torch.no_grad()
def niqe(x: Tensor, blas_float32: bool = False) -> Tensor:
    """NIQE (Mittal, Soundararajan & Bovik, "Making a 'Completely Blind' Image Quality Analyzer", IEEE SPL
    2013) of each image, as BasicSR 1.4.2 ``basicsr/metrics/niqe.py``
    ``calculate_niqe(img, crop_border=0, input_order='HWC', convert_to='y')`` on the 8-bit BGR image.

    Args:
        x: B×3×H×W RGB in [0, 1] (from 8-bit data; values are quantised to round(255·x), clamped), any
            float dtype and device; H, W ≥ 96.
        blas_float32: compute ``imresize``'s weighted sums as BasicSR does (float32 ``torch.mv``, BLAS
            dependent) instead of the default float64-then-rounded sums; see *Exactness*.

    Returns:
        Tensor[B], float64, on ``x``'s device: NIQE ≥ 0, lower is better (the shared low-light test
        photos score 2.9–16; a 96×96-block score far from the pristine model is large); NaN where
        BasicSR gives NaN or fails (e.g. an all-black image: every β feature NaN).

    Steps (BasicSR's, with its float32/float64 precision at each step): 8-bit quantisation; Y of BT.601
    studio-range YCbCr (:func:`_y_channel`), rounded; crop to multiples of 96 (top-left kept); at scales
    1 and 2: MSCN normalisation with BasicSR's 7×7 Gaussian window and replicate ('nearest') borders
    (:func:`_mscn`), then 96×96 (48×48 at scale 2) non-overlapping blocks, 18 AGGD features per block
    (:func:`_block_features`); between the scales, MATLAB bicubic antialiased ``imresize`` by 0.5 of
    Y/255 (×255 after; :func:`_imresize_half`); the MVG distance to the pristine model
    (:func:`_mvg_distance`). Vectorised over blocks (images one by one).

    Exactness: BasicSR's float32 arithmetic is reproduced bit for bit — its Y conversion, SciPy's
    float64 filtering stored in float32, NumPy's float32 pairwise summation in the block means
    (:func:`_np_sum_f32`), the float32 AGGD ratio and the γ lookup — except, by default, the two
    weighted sums of ``imresize``. BasicSR does them as float32 ``torch.mv`` calls whose rounding depends
    on the BLAS kernel (MKL picks it by CPU; ``MKL_CBWR=COMPATIBLE`` moves BasicSR's NIQE of the shared
    photo real/450_2_.png by 1.3e-4), so BasicSR itself is not reproducible across machines at the 1e-4
    level. Here they are computed in float64 and rounded once (independent of BLAS, threads and device);
    a one-ulp difference can move an AGGD α by one grid step (0.001), so scores differ from BasicSR's by
    up to ~1e-3 (max 7.2e-4 over 23 test images on this project's CPU). With ``blas_float32=True`` the
    resize uses float32 ``torch.mv`` on BasicSR's memory layout, and the score equals BasicSR's run on the
    same machine to float64 ``cov``/``pinv`` rounding (≤ 2e-11 on the same 23 images).

    Raises:
        ValueError: ``x`` is not B×3×H×W float, or H or W < 96 (one block).
        FileNotFoundError / ValueError: the model file is missing / has the wrong SHA-256 (:func:`niqe_params`).
    """
    _check_rgb(x, "niqe")
    h, w = x.shape[-2:]
    nh, nw = h // NIQE_BLOCK, w // NIQE_BLOCK
    if nh == 0 or nw == 0:
        raise ValueError(
            f"niqe: image of {h}×{w} pixels is smaller than the {NIQE_BLOCK}×{NIQE_BLOCK} minimum "
            f"(NIQE crops to whole {NIQE_BLOCK}×{NIQE_BLOCK} blocks: {nh * NIQE_BLOCK}×{nw * NIQE_BLOCK} left)"
        )
    params, tables = _niqe_device_params(x.device)
    y = _y_channel(x)[:, : nh * NIQE_BLOCK, : nw * NIQE_BLOCK]
    return torch.stack([_niqe_image(img, params, tables, blas_float32) for img in y])


class NIQE(PerImageMean):
    """Per-image NIQE (:func:`niqe`, BasicSR 1.4.2), averaged over images. Lower is better.

    ``blas_float32`` is passed to :func:`niqe` (default False: BLAS-independent resize).
    """

    higher_is_better = False

    def __init__(self, blas_float32: bool = False, **kwargs) -> None:
        super().__init__(functools.partial(niqe, blas_float32=blas_float32), **kwargs)
        self.blas_float32 = blas_float32

    def update(self, preds: Tensor) -> None:  # type: ignore[override]
        """``preds``: B×3×H×W RGB in [0, 1] (clamped), H, W ≥ 96."""
        super().update(preds)
