"""Shared fixtures: the research-only data in ../shared/data (skipped with a reason when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DARKROOM_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_path(rel: str) -> Path:
    """Path of a file under ../shared/data, or skip the test saying which file is missing."""
    path = SHARED / rel
    if not path.exists():
        pytest.skip(
            f"shared data not found: {path} (research-only files, not shipped with the project)"
        )
    return path


@pytest.fixture
def shared():
    """``shared("weights/zero_dce/Epoch99.pth")`` → Path, or skip with a clear reason."""
    return shared_path


@pytest.fixture(scope="session")
def sice_root(tmp_path_factory) -> Path:
    """A tiny synthetic SICE dataset (real layout): ``<root>/Dataset_Part1`` and ``<root>/Dataset_Part2``."""
    from datamodules.synthetic.sice import write_sice

    return write_sice(tmp_path_factory.mktemp("sice"), n_train=4, n_test=2, size=(64, 48), seed=0)


def require_niqe_model() -> None:
    """Skip unless NIQE's model file is installed (``make setup`` fetches it from BasicSR's PyPI sdist)."""
    from metrics import no_reference

    if not no_reference.NIQE_PARAMS_PATH.is_file():
        pytest.skip(f"NIQE model not found: {no_reference.NIQE_PARAMS_PATH} "
                    "(fetch it with `python -m metrics.niqe_model fetch`; make setup does)")
