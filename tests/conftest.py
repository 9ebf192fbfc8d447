"""Shared fixtures: the research-only data in ../shared/data (skipped with a reason when absent) and the tiny
synthetic datasets, one per DataModule layout, written once per session (the tests only read them). The
command-line arguments that point a config at them are in ``helpers.py``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

import torch  # noqa: E402
from helpers import PHONES  # noqa: E402  (tests/ is on sys.path)

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


@pytest.fixture(scope="session")
def stacks_root(tmp_path_factory) -> Path:
    """Synthetic exposure stacks, ``train/`` (3 scenes) and ``test/`` (2), 64×48, exposures -3, 0, +3 EV."""
    from datamodules.synthetic.exposure_stacks import write_exposure_stacks

    return write_exposure_stacks(tmp_path_factory.mktemp("stacks"), n_train=3, n_test=2, size=(64, 48),
                                 exposures=(-3.0, 0.0, 3.0), seed=0)


@pytest.fixture(scope="session")
def small_stacks_root(tmp_path_factory) -> Path:
    """Synthetic exposure stacks with the writer's default exposures, ``train/`` (2 scenes) and ``test/`` (1),
    48×44 (DeepFuse's module tests)."""
    from datamodules.synthetic.exposure_stacks import write_exposure_stacks

    return write_exposure_stacks(tmp_path_factory.mktemp("small_stacks"), n_train=2, n_test=1, size=(48, 44),
                                 seed=0)


@pytest.fixture(scope="session")
def dped_root(tmp_path_factory) -> Path:
    """The DPED layout for the three phones: 4 training and 2 test pairs (phone = darker, noisy Canon) and one
    odd-sized (37×53) full-size photo each."""
    import numpy as np

    from datamodules.image_io import write_uint8

    root = tmp_path_factory.mktemp("dped")
    rng = np.random.default_rng(0)
    for phone in PHONES:
        for split, n in (("training_data", 4), ("test_data/patches", 2)):
            for i in range(n):
                canon = rng.integers(40, 220, (1, 1, 3)) + rng.normal(0, 25, (100, 100, 3)).cumsum(1) / 8
                noisy = canon * 0.8 + rng.normal(0, 6, canon.shape)
                write_uint8(root / phone / split / "canon" / f"{i}.jpg", np.clip(canon, 0, 255).astype(np.uint8))
                write_uint8(root / phone / split / phone / f"{i}.jpg", np.clip(noisy, 0, 255).astype(np.uint8))
        write_uint8(root / phone / "test_data" / "full_size_test_images" / "photo.jpg",
                    rng.integers(0, 255, (37, 53, 3)).astype(np.uint8))
    return root


@pytest.fixture(scope="session")
def fusion_data(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """ReFusion's four tasks: task → (root with train/ and test/, layout), 2 training and 1 test pair, 48×48
    (VIF needs ≥ 41×41), in the real layouts; MIF's PET/ + MRI/ folders are copies of the infrared/visible
    pairs."""
    import shutil

    from datamodules.synthetic.fusion_pairs import write_exposure_pairs, write_ir_visible, write_multi_focus

    base = tmp_path_factory.mktemp("fusion")
    size = (48, 48)
    iv = write_ir_visible(base / "ivif", n_train=2, n_test=1, size=size)
    mf = write_multi_focus(base / "mfif", n_train=2, n_test=1, size=size)
    me = write_exposure_pairs(base / "meif", n_train=2, n_test=1, size=size)
    mif = base / "mif"
    for split in ("train", "test"):
        shutil.copytree(iv / split / "ir", mif / split / "MRI")
        shutil.copytree(iv / split / "vi", mif / split / "PET")
    return {"ivif": (iv, "folders"), "mfif": (mf, "folders"), "meif": (me, "stacks"), "mif": (mif, "folders")}


def require_niqe_model() -> None:
    """Skip unless NIQE's model file is installed (``make setup`` fetches it from BasicSR's PyPI sdist)."""
    from metrics import no_reference

    if not no_reference.NIQE_PARAMS_PATH.is_file():
        pytest.skip(f"NIQE model not found: {no_reference.NIQE_PARAMS_PATH} "
                    "(fetch it with `python -m metrics.niqe_model fetch`; make setup does)")
