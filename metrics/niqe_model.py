"""NIQE's pristine model (BasicSR 1.4.2 ``niqe_pris_params.npz``), fetched at set-up time, never shipped.

The file is read from BasicSR's source distribution on the package index, checked by SHA-256 (the sdist's and
the file's), and stored in the user's cache: ``$DARKROOM_NIQE_PARAMS``, else
``~/.cache/darkroom/niqe_pris_params.npz``. ``make setup`` runs ``python -m metrics.niqe_model fetch``; after
that NIQE works offline. BasicSR is Apache-2.0 (``metrics/data/LICENSE-BasicSR.txt``, ``metrics/data/NOTICE.md``).

    python -m metrics.niqe_model fetch    # download the sdist (172 kB) and extract the model
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path

from datamodules.atomic_files import atomic_write

SDIST_NAME = "basicsr-1.4.2.tar.gz"
SDIST_URL = ("https://files.pythonhosted.org/packages/86/41/00a6b000f222f0fa4c6d9e1d6dcc9811a374cabb8abb9d408b77de"
             "39648c/" + SDIST_NAME)
SDIST_SHA256 = "b89b595a87ef964cda9913b4d99380ddb6554c965577c0c10cb7b78e31301e87"
SDIST_MEMBER = "basicsr-1.4.2/basicsr/metrics/niqe_pris_params.npz"
PARAMS_SHA256 = "2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296"
CACHE = Path.home() / ".cache" / "darkroom"


class ModelUnavailable(RuntimeError):
    """The sdist could not be downloaded, or a file is not the expected one."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sdist_path() -> Path:
    """``$DARKROOM_BASICSR_SDIST`` or ``~/.cache/darkroom/basicsr-1.4.2.tar.gz``."""
    return Path(os.environ.get("DARKROOM_BASICSR_SDIST") or CACHE / SDIST_NAME).expanduser()


def params_path() -> Path:
    """``$DARKROOM_NIQE_PARAMS`` or ``~/.cache/darkroom/niqe_pris_params.npz``."""
    return Path(os.environ.get("DARKROOM_NIQE_PARAMS") or CACHE / "niqe_pris_params.npz").expanduser()


def fetch_sdist(dest: Path | None = None, url: str = SDIST_URL) -> Path:
    """Download the sdist to ``dest`` (default :func:`sdist_path`) unless it is there; SHA-256 checked."""
    dest = sdist_path() if dest is None else Path(dest)
    if dest.is_file() and sha256_file(dest) == SDIST_SHA256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as f:
        shutil.copyfileobj(response, f)
    digest = sha256_file(tmp)
    if digest != SDIST_SHA256:
        tmp.unlink(missing_ok=True)
        raise ModelUnavailable(f"downloaded {url}: SHA-256 {digest}, expected {SDIST_SHA256}")
    tmp.replace(dest)
    return dest


def install(dest: Path | None = None) -> Path:
    """Extract ``niqe_pris_params.npz`` from the (fetched) sdist to ``dest`` (default :func:`params_path`)."""
    dest = params_path() if dest is None else Path(dest)
    if dest.is_file() and sha256_file(dest) == PARAMS_SHA256:
        return dest
    with tarfile.open(fetch_sdist()) as tar:
        data = tar.extractfile(SDIST_MEMBER).read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != PARAMS_SHA256:
        raise ModelUnavailable(f"{SDIST_MEMBER} in {sdist_path()}: SHA-256 {digest}, expected {PARAMS_SHA256}")
    atomic_write(dest, lambda f: f.write(data))
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metrics.niqe_model", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["fetch"])
    parser.parse_args(argv)
    try:
        print(f"NIQE model: {install()} (SHA-256 {PARAMS_SHA256}, from {SDIST_NAME})")
    except (OSError, ModelUnavailable) as e:  # URLError is an OSError
        print(f"could not fetch the NIQE model from {SDIST_URL}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
