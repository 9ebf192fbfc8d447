"""BasicSR 1.4.2's own NIQE, loaded from its PyPI sdist without installing ``basicsr``.

``pip install basicsr`` pulls torchvision (unusable here), so this helper reads the sdist
``basicsr-1.4.2.tar.gz`` (path from ``$DARKROOM_BASICSR_SDIST``, default
``~/.cache/darkroom/basicsr-1.4.2.tar.gz``), checks its SHA-256, extracts the five files NIQE needs into a
temporary directory, and executes BasicSR's real ``metrics/niqe.py``, ``metrics/metric_util.py``,
``utils/color_util.py`` and ``utils/matlab_functions.py`` with a few shim modules in ``sys.modules``
(packages ``basicsr``, ``basicsr.utils`` exposing ``bgr2ycbcr``, ``basicsr.metrics``, and a trivial
``basicsr.utils.registry``; plus ``scipy.ndimage.filters`` where SciPy no longer has it). The shims are
removed from ``sys.modules`` again afterwards; the loaded functions keep their bound names.

    python -m tests.basicsr_reference fetch      # download the sdist from PyPI into the default path
    python -m tests.basicsr_reference niqe IMG…  # BasicSR NIQE of image files (read as BGR, uint8)
"""

from __future__ import annotations

import argparse
import atexit
import functools
import importlib.util
import shutil
import sys
import tarfile
import tempfile
import types
import warnings
from pathlib import Path

import numpy as np

from metrics.niqe_model import (
    CACHE,
    SDIST_NAME,
    SDIST_SHA256,
    SDIST_URL,
    fetch_sdist,
    sdist_path,
    sha256_file,
)

ENV_VAR = "DARKROOM_BASICSR_SDIST"

_PREFIX = "basicsr-1.4.2/"
_MEMBERS = (
    "basicsr/metrics/niqe.py",
    "basicsr/metrics/metric_util.py",
    "basicsr/metrics/niqe_pris_params.npz",
    "basicsr/utils/color_util.py",
    "basicsr/utils/matlab_functions.py",
)


class SdistUnavailable(RuntimeError):
    """The sdist is missing or is not the expected file (tests skip with this message)."""


def check_sdist(path: Path | None = None) -> Path:
    """The verified sdist path, or :class:`SdistUnavailable` saying what is missing / wrong."""
    path = sdist_path() if path is None else Path(path)
    if not path.is_file():
        raise SdistUnavailable(
            f"BasicSR sdist not found: {path} (set ${ENV_VAR} or run `python -m tests.basicsr_reference fetch`)"
        )
    digest = sha256_file(path)
    if digest != SDIST_SHA256:
        raise SdistUnavailable(f"BasicSR sdist {path} has SHA-256 {digest}, expected {SDIST_SHA256}")
    return path


def _extract(sdist: Path) -> Path:
    """Extract only :data:`_MEMBERS` (by name, as bytes: no paths or links from the archive are trusted)."""
    root = Path(tempfile.mkdtemp(prefix="basicsr_ref_"))
    atexit.register(shutil.rmtree, root, True)
    with tarfile.open(sdist, "r:gz") as tar:
        for rel in _MEMBERS:
            src = tar.extractfile(_PREFIX + rel)
            if src is None:
                raise SdistUnavailable(f"{sdist}: {_PREFIX + rel} is not a regular file")
            dst = root / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read())
    return root


def _exec_module(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _package(name: str, path: Path) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = [str(path)]
    sys.modules[name] = module
    return module


class _Registry:
    """Stand-in for ``basicsr.utils.registry.Registry``: ``register()`` returns the object unchanged."""

    def register(self, obj=None):
        return obj if obj is not None else (lambda fn: fn)


@functools.cache
def load_niqe_module(sdist: str | None = None) -> types.ModuleType:
    """BasicSR's ``basicsr.metrics.niqe`` module, executed from the (verified) sdist."""
    root = _extract(check_sdist(None if sdist is None else Path(sdist)))
    before = set(sys.modules)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import scipy.ndimage

            try:
                import scipy.ndimage.filters  # noqa: F401  (removed in SciPy 2)
            except ImportError:
                filters = types.ModuleType("scipy.ndimage.filters")
                filters.convolve = scipy.ndimage.convolve
                sys.modules["scipy.ndimage.filters"] = filters
            _package("basicsr", root / "basicsr")
            utils = _package("basicsr.utils", root / "basicsr" / "utils")
            _package("basicsr.metrics", root / "basicsr" / "metrics")
            registry = types.ModuleType("basicsr.utils.registry")
            registry.METRIC_REGISTRY = _Registry()
            sys.modules["basicsr.utils.registry"] = registry
            color_util = _exec_module("basicsr.utils.color_util", root / "basicsr/utils/color_util.py")
            utils.bgr2ycbcr = color_util.bgr2ycbcr
            _exec_module("basicsr.utils.matlab_functions", root / "basicsr/utils/matlab_functions.py")
            _exec_module("basicsr.metrics.metric_util", root / "basicsr/metrics/metric_util.py")
            return _exec_module("basicsr.metrics.niqe", root / "basicsr/metrics/niqe.py")
    finally:
        for name in set(sys.modules) - before:
            if name == "basicsr" or name.startswith(("basicsr.", "scipy.ndimage.filters")):
                del sys.modules[name]


def calculate_niqe(img_bgr: np.ndarray, sdist: str | None = None) -> float:
    """BasicSR ``calculate_niqe(img, crop_border=0, input_order='HWC', convert_to='y')``.

    ``img_bgr``: H×W×3 BGR, uint8 or float in [0, 255]. NumPy's warnings on empty / all-NaN slices (the
    NaN path of all-zero blocks) are silenced.
    """
    module = load_niqe_module(sdist)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return module.calculate_niqe(img_bgr, crop_border=0, input_order="HWC", convert_to="y")


def fetch(dest: Path | None = None, url: str = SDIST_URL) -> Path:
    """Download the sdist to ``dest`` (default: :func:`sdist_path`), SHA-256 checked (:mod:`metrics.niqe_model`)."""
    dest = fetch_sdist(dest, url)
    print(f"fetched {dest} (SHA-256 {SDIST_SHA256})")
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.basicsr_reference", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help=f"download {SDIST_NAME} from PyPI (SHA-256 checked)")
    f.add_argument("--dest", type=Path, default=None, help=f"default: ${ENV_VAR} or {CACHE / SDIST_NAME}")
    n = sub.add_parser("niqe", help="BasicSR NIQE of image files")
    n.add_argument("images", nargs="+", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "fetch":
        try:
            fetch(args.dest)
        except (OSError, SdistUnavailable) as e:  # URLError is an OSError
            print(f"could not fetch {SDIST_URL}: {e}", file=sys.stderr)
            return 1
        return 0
    import cv2

    for path in args.images:
        print(f"{path}\t{calculate_niqe(cv2.imread(str(path), cv2.IMREAD_COLOR)):.10f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
