"""A small, physically plausible camera model shared by every synthetic-data generator.

The model follows the usual imaging pipeline (e.g. Healey & Kondepudy 1994; Foi et al. 2008,
"Practical Poissonian-Gaussian noise modeling"; Grossberg & Nayar 2004 for response curves):

1. **irradiance × exposure** — scene-referred linear values, 1.0 = sensor saturation at exposure 1;
   an exposure of ``2**EV`` shifts the image by EV stops;
2. **Poisson–Gaussian sensor noise in the linear domain** — photon shot noise with variance
   ``shot_noise · signal`` (``shot_noise`` = 1 / full-well capacity in electrons) plus Gaussian read
   noise with standard deviation ``read_noise``;
3. **clipping** to the sensor range [0, 1];
4. **camera response function (CRF)** :func:`crf` — an sRGB-like gamma with a linear toe, followed by
   a rational highlight shoulder; smooth, strictly increasing, ``crf(0) = 0``, ``crf(1) = 1``, with an
   exact closed-form inverse :func:`inverse_crf`;
5. **quantisation** to ``bits`` bits (round half up).

Everything is numpy and vectorised over all pixels; nothing here needs torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: sRGB opto-electronic transfer function constants (IEC 61966-2-1): linear toe below ``_BREAK``.
_BREAK = 0.0031308
_TOE_SLOPE = 12.92
_GAMMA = 2.4
_A = 0.055
#: Highlight shoulder strength ``a`` of ``s(v) = (1 + a) v / (v + a)``: smaller = stronger roll-off,
#: ``math.inf`` = plain sRGB curve. 4.0 lifts mid-grey (v = 0.5) by about 11 %, like a camera's tone curve.
DEFAULT_SHOULDER = 4.0
#: Default noise: about 2000 electrons full well (shot noise variance 5e-4 · signal) and
#: a read noise of 0.2 % of full scale (about 4 e−) — a small-sensor camera at base ISO.
DEFAULT_SHOT_NOISE = 5e-4
DEFAULT_READ_NOISE = 2e-3


def _check_shoulder(shoulder: float) -> None:
    if not shoulder > 0:
        raise ValueError(f"shoulder must be > 0 (or math.inf for no shoulder), got {shoulder!r}")


def crf(linear: np.ndarray, shoulder: float = DEFAULT_SHOULDER) -> np.ndarray:
    """Camera response: linear sensor values in [0, 1] → encoded (display) values in [0, 1].

    ``crf(x) = s(g(x))`` with the sRGB curve ``g(x) = 12.92 x`` for ``x ≤ 0.0031308`` and
    ``1.055 x^(1/2.4) − 0.055`` above (linear toe, gamma body), and the highlight shoulder
    ``s(v) = (1 + a) v / (v + a)``, ``a = shoulder``. Both pieces are continuous and strictly
    increasing, so the composition is too, with ``crf(0) = 0`` and ``crf(1) = 1``.

    Args:
        linear: any shape, values are clipped to [0, 1] first (a sensor cannot record more).
        shoulder: the shoulder strength ``a > 0``; ``math.inf`` disables it.

    Returns:
        float64 array of the same shape in [0, 1].
    """
    _check_shoulder(shoulder)
    x = np.clip(np.asarray(linear, dtype=np.float64), 0.0, 1.0)
    v = np.where(x <= _BREAK, _TOE_SLOPE * x, (1 + _A) * np.power(np.maximum(x, _BREAK), 1 / _GAMMA) - _A)
    if math.isinf(shoulder):
        return v
    return (1 + shoulder) * v / (v + shoulder)


def inverse_crf(encoded: np.ndarray, shoulder: float = DEFAULT_SHOULDER) -> np.ndarray:
    """Exact inverse of :func:`crf`: encoded values in [0, 1] → linear values in [0, 1].

    ``s⁻¹(e) = a e / (1 + a − e)``, then the sRGB inverse ``v / 12.92`` for
    ``v ≤ 0.04045`` and ``((v + 0.055) / 1.055)^2.4`` above.

    Args:
        encoded: any shape; uint8 input is read as ``value / 255``, uint16 as ``value / 65535``,
            float input is clipped to [0, 1].
        shoulder: the same ``a`` as given to :func:`crf`.

    Returns:
        float64 array of the same shape in [0, 1].
    """
    _check_shoulder(shoulder)
    e = np.asarray(encoded)
    if e.dtype == np.uint8:
        e = e / 255.0
    elif e.dtype == np.uint16:
        e = e / 65535.0
    e = np.clip(e.astype(np.float64), 0.0, 1.0)
    v = e if math.isinf(shoulder) else shoulder * e / (1 + shoulder - e)
    v_break = _TOE_SLOPE * _BREAK
    return np.where(v <= v_break, v / _TOE_SLOPE, np.power((np.maximum(v, v_break) + _A) / (1 + _A), _GAMMA))


def render_exposure(
    linear: np.ndarray,
    exposure: float,
    rng: np.random.Generator,
    shot_noise: float = DEFAULT_SHOT_NOISE,
    read_noise: float = DEFAULT_READ_NOISE,
    bits: int = 8,
    shoulder: float = DEFAULT_SHOULDER,
) -> np.ndarray:
    """Photograph a linear scene at one exposure: noise, clipping, CRF and quantisation.

    ``y = Q_bits(crf(clip(shot_noise · Poisson(exposure · linear / shot_noise) + N(0, read_noise²), 0, 1)))``

    Args:
        linear: H×W×C (any shape) scene irradiance, float, ≥ 0; 1.0 saturates the sensor at exposure 1
            (e.g. ``inverse_crf(photo)`` of a well-exposed photo).
        exposure: multiplier of the irradiance, > 0 (``2**EV`` for an exposure value EV).
        rng: a ``numpy.random.Generator`` (the only source of randomness, so results are reproducible).
        shot_noise: photon-noise variance per unit signal (1 / full well in electrons); 0 = no shot noise.
        read_noise: standard deviation of the Gaussian read noise, in units of full scale; 0 = none.
        bits: output bit depth, 1…16; uint8 for ``bits ≤ 8``, uint16 above (values use the full
            ``2**bits − 1`` range of that depth).
        shoulder: CRF shoulder strength, see :func:`crf`.

    Returns:
        the encoded image, same shape as ``linear``, uint8 (bits ≤ 8) or uint16.

    Raises:
        ValueError: a negative/NaN input, a non-positive exposure, negative noise or bits out of range.
        TypeError: ``rng`` is not a ``numpy.random.Generator``.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    if not (isinstance(bits, (int, np.integer)) and 1 <= bits <= 16):
        raise ValueError(f"bits must be an integer in 1..16, got {bits!r}")
    if not (np.isfinite(exposure) and exposure > 0):
        raise ValueError(f"exposure must be a finite number > 0 (2**EV), got {exposure!r}")
    if shot_noise < 0 or read_noise < 0:
        raise ValueError(f"noise levels must be ≥ 0, got shot_noise={shot_noise!r}, read_noise={read_noise!r}")
    x = np.asarray(linear, dtype=np.float64)
    if not np.all(np.isfinite(x)) or (x.size and x.min() < 0):
        raise ValueError("linear must hold finite irradiance values ≥ 0")
    signal = x * exposure
    if shot_noise > 0:
        # Photon counts are Poisson; clip the mean so saturated pixels do not overflow the sampler.
        electrons = np.minimum(signal, 4.0) / shot_noise
        signal = rng.poisson(electrons).astype(np.float64) * shot_noise
    if read_noise > 0:
        signal = signal + rng.normal(0.0, read_noise, size=signal.shape)
    encoded = crf(np.clip(signal, 0.0, 1.0), shoulder=shoulder)
    levels = 2**bits - 1
    dtype = np.uint8 if bits <= 8 else np.uint16
    return np.floor(encoded * levels + 0.5).astype(dtype)


def check_exposures(exposures: Sequence[float]) -> list[float]:
    """Exposure values of a synthetic sequence as floats: at least 2, strictly increasing (dark → bright)."""
    evs = [float(e) for e in exposures]
    if len(evs) < 2 or any(b <= a for a, b in zip(evs[:-1], evs[1:], strict=True)):
        raise ValueError(f"exposures must hold at least 2 strictly increasing EV values (dark → bright), got {evs}")
    return evs
