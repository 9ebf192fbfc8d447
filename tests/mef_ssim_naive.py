"""Naive NumPy transcription of Kede Ma's ``mef_ssim.m`` / ``mef_ms_ssim.m`` (test oracle only).

Loops over patch positions exactly like the MATLAB reference (copies in repo xingchenzhang/MEFB
``metrics/``), float64, inputs on the 0–255 scale. Slow (O(H·W) Python iterations): use it on small
stacks only. No autograd. Indices are 0-based here; MATLAB's ``i-bd:i+bd`` becomes ``i:i+w``.
"""

from __future__ import annotations

import numpy as np

MATLAB_EPS = np.finfo(np.float64).eps


def fspecial_gaussian(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """MATLAB ``fspecial('gaussian', size, sigma)``."""
    half = (size - 1) / 2.0
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    h = np.exp(-(xx * xx + yy * yy) / (2.0 * sigma * sigma))
    h[h < MATLAB_EPS * h.max()] = 0
    return h / h.sum()


def mef_ssim_naive(img_seq: np.ndarray, fused: np.ndarray, k_const: float = 0.03,
                   window: np.ndarray | None = None) -> float:
    """``Q = mef_ssim(imgSeq, fI)``: img_seq H×W×K, fused H×W, both float on [0, 255]."""
    if window is None:
        window = fspecial_gaussian(11, 1.5)
    img_seq = np.asarray(img_seq, dtype=np.float64)
    f_img = np.asarray(fused, dtype=np.float64)
    s1, s2, s3 = img_seq.shape
    w_size = window.shape[0]
    bd = w_size // 2
    h_out, w_out = s1 - 2 * bd, s2 - 2 * bd

    # mu / ed: filter2(sWindow, img, 'valid') with the square window, per position
    mu = np.zeros((h_out, w_out, s3))
    ed = np.zeros((h_out, w_out, s3))
    for i in range(h_out):
        for j in range(w_out):
            for k in range(s3):
                block = img_seq[i : i + w_size, j : j + w_size, k]
                m = block.mean()
                sigma_sq = (block * block).mean() - m * m
                mu[i, j, k] = m
                ed[i, j, k] = np.sqrt(max(w_size**2 * sigma_sq, 0.0)) + 0.001

    # structural consistency R
    r_map = np.zeros((h_out, w_out))
    for i in range(h_out):
        for j in range(w_out):
            vecs = img_seq[i : i + w_size, j : j + w_size, :].reshape(w_size * w_size, s3, order="F")
            denominator = 0.0
            for k in range(s3):
                denominator += np.linalg.norm(vecs[:, k] - mu[i, j, k])
            summed = vecs.sum(axis=1)
            numerator = np.linalg.norm(summed - summed.mean())
            r_map[i, j] = (numerator + MATLAB_EPS) / (denominator + MATLAB_EPS)
    r_map[r_map > 1] = 1 - MATLAB_EPS
    r_map[r_map < 0] = 0 + MATLAB_EPS

    p = np.tan(np.pi / 2 * r_map)
    p[p > 10] = 10
    p = np.repeat(p[:, :, None], s3, axis=2)
    w_map = (ed / w_size) ** p + MATLAB_EPS
    w_map = w_map / w_map.sum(axis=2, keepdims=True)
    max_ed = ed.max(axis=2)

    c_const = (k_const * 255) ** 2
    win = window.ravel(order="F")
    q_map = np.zeros((h_out, w_out))
    for i in range(h_out):
        for j in range(w_out):
            blocks = img_seq[i : i + w_size, j : j + w_size, :]
            r_block = np.zeros((w_size, w_size))
            for k in range(s3):
                r_block = r_block + w_map[i, j, k] * (blocks[:, :, k] - mu[i, j, k]) / ed[i, j, k]
            nrm = np.linalg.norm(r_block.ravel())
            if nrm > 0:
                r_block = r_block / nrm * max_ed[i, j]
            f_block = f_img[i : i + w_size, j : j + w_size]
            r_vec = r_block.ravel(order="F")
            f_vec = f_block.ravel(order="F")
            mu1 = np.sum(win * r_vec)
            mu2 = np.sum(win * f_vec)
            sigma1_sq = np.sum(win * (r_vec - mu1) ** 2)
            sigma2_sq = np.sum(win * (f_vec - mu2) ** 2)
            sigma12 = np.sum(win * (r_vec - mu1) * (f_vec - mu2))
            q_map[i, j] = (2 * sigma12 + c_const) / (sigma1_sq + sigma2_sq + c_const)
    return float(q_map.mean())


def _downsample(img: np.ndarray) -> np.ndarray:
    """``imfilter(img, ones(2)/4, 'symmetric', 'same')`` then ``img(1:2:end, 1:2:end)``."""
    padded = np.pad(img, ((0, 1), (0, 1)), mode="symmetric")
    filtered = np.zeros_like(img)
    for di in (0, 1):
        for dj in (0, 1):
            filtered = filtered + padded[di : di + img.shape[0], dj : dj + img.shape[1]] / 4.0
    return filtered[::2, ::2]


def mef_ms_ssim_naive(img_seq: np.ndarray, fused: np.ndarray, level: int = 3,
                      weight: tuple[float, ...] = (0.0448, 0.2856, 0.3001)) -> tuple[float, list[float]]:
    """``[oQ, Q] = mef_ms_ssim(imgSeq, fI)`` with the reference defaults; returns (oQ, [Q_1..Q_L])."""
    w = np.asarray(weight, dtype=np.float64)
    w = w / w.sum()
    img_seq = np.asarray(img_seq, dtype=np.float64)
    f_img = np.asarray(fused, dtype=np.float64)
    s1, s2, s3 = img_seq.shape
    if min(s1, s2) / 2 ** (level - 1) < 11:
        return -np.inf, [-np.inf] * level
    q = []
    for lv in range(level):
        if lv > 0:
            img_seq = np.stack([_downsample(img_seq[:, :, k]) for k in range(s3)], axis=2)
            f_img = _downsample(f_img)
        q.append(mef_ssim_naive(img_seq, f_img))
    return float(np.prod(np.asarray(q) ** w)), q
