"""A checkpoint is data, not code: every reader loads with ``weights_only=True`` through
:func:`lightning_modules.checkpoints.load_checkpoint_file`, so a crafted file cannot run anything, and a truncated,
corrupt or hostile file gives one :class:`~lightning_modules.checkpoints.CheckpointError` that names the file.

The hostile file is a Lightning-shaped checkpoint (``{"state_dict": …, "evil": Evil()}``) whose ``Evil.__reduce__``
calls ``os.system("touch <marker>")``: an unpickler with ``weights_only=False`` creates the marker file.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import pytest
import torch
from helpers import fast_args, zero_dce_args

from experiments.cli import cli_main
from experiments.demos import demo_configs
from lightning_modules.checkpoints import CheckpointError, checkpoint_state, load_checkpoint_file

REPO = Path(__file__).resolve().parents[2]
ZERO_DCE = REPO / "experiments" / "zero_dce"


class Evil:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _refused(path: Path) -> str:
    return re.escape(f"{path}: refused: the file contains pickled code (") + r".*posix\.system.*" + re.escape(
        "); Darkroom loads weights only")


def _corrupt(path: Path) -> str:
    return re.escape(f"{path}: not a readable Darkroom checkpoint (truncated or corrupt: ")


def _in_chain(exc: BaseException, kind: type) -> bool:
    while exc is not None:
        if isinstance(exc, kind):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@pytest.fixture
def evil(tmp_path: Path) -> tuple[Path, Path]:
    """(hostile checkpoint, marker file it would create)."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"net.e_conv1.weight": torch.zeros(32, 3, 3, 3)}, "global_step": 0,
                "evil": Evil(marker)}, path)
    with pytest.raises(pickle.UnpicklingError):  # the file really is hostile: torch's default refuses it too
        torch.load(path, weights_only=True)
    assert not marker.exists()
    return path, marker


def _data_args(root: Path, tmp: Path) -> list[str]:
    """The tiny SICE data without a validation set, one step."""
    return [*zero_dce_args(root, val=False), *fast_args(tmp, val=None, summary=False)]


def test_the_crafted_file_runs_code_when_unpickled_unsafely(tmp_path):
    """Control: the same construction does run its command under ``weights_only=False`` (the old loading)."""
    marker = tmp_path / "control"
    path = tmp_path / "control.ckpt"
    torch.save({"state_dict": {}, "evil": Evil(marker)}, path)
    torch.load(path, weights_only=False)
    assert marker.exists()


# -- the readers -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
def test_hostile_checkpoint_is_refused_by_checkpoint_state(evil, legacy, tmp_path):
    path, marker = evil
    if legacy:  # torch's pre-1.6 format: a bare pickle stream, not a zip archive
        path = tmp_path / "evil_legacy.ckpt"
        torch.save({"state_dict": {}, "evil": Evil(marker)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match=_refused(path)):
        checkpoint_state(path)
    with pytest.raises(CheckpointError, match=_refused(path)):
        load_checkpoint_file(path)
    assert not marker.exists()


def test_hostile_checkpoint_is_refused_by_every_module(evil):
    from lightning_modules.deepfuse import DeepFuse
    from lightning_modules.dped import DPED, DPEDDiscriminator, DPEDGenerator
    from lightning_modules.refusion import ReFusion
    from lightning_modules.zero_dce import ZeroDCE

    path, marker = evil
    for build in (lambda: DPED(pretrained=str(path), generator=DPEDGenerator(channels=8), discriminator=DPEDDiscriminator(width=0.125)),
                  lambda: ZeroDCE(pretrained=str(path)), lambda: DeepFuse(pretrained=str(path)),
                  lambda: ReFusion(pretrained=str(path))):
        with pytest.raises(CheckpointError, match=_refused(path)):
            build()
    assert not marker.exists()


def test_dped_reader_loads_generator_and_discriminator(tmp_path):
    from lightning_modules.dped import DPED, DPEDDiscriminator, DPEDGenerator

    torch.manual_seed(0)
    src = DPED(generator=DPEDGenerator(channels=8), discriminator=DPEDDiscriminator(width=0.125))
    path = tmp_path / "dped.ckpt"
    torch.save({"state_dict": src.state_dict(), "hyper_parameters": dict(src.hparams), "global_step": 3}, path)
    torch.manual_seed(1)
    dst = DPED(pretrained=str(path), generator=DPEDGenerator(channels=8), discriminator=DPEDDiscriminator(width=0.125))
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k


def test_hostile_official_weight_files_run_nothing(tmp_path):
    """The official-weight readers (``Epoch99.pth``, ``ReFusion_*.pth``, a torchvision VGG-19) load with
    ``weights_only=True`` too."""
    from lightning_modules.refusion import load_official_refusion
    from lightning_modules.zero_dce import load_official_weights
    from losses.vgg import VGG19Features

    marker = tmp_path / "pwned"
    path = tmp_path / "Epoch99.pth"
    torch.save({"e_conv1.weight": torch.zeros(1), "evil": Evil(marker)}, path)
    for load in (lambda: load_official_weights(path), lambda: load_official_refusion(path),
                 lambda: VGG19Features(weights=str(path))):
        with pytest.raises((CheckpointError, pickle.UnpicklingError)):
            load()
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04" + b"\0" * 40],
                         ids=["empty", "text", "zip-header-only"])
def test_corrupt_file_names_the_file(content, tmp_path):
    path = tmp_path / "broken.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=_corrupt(path)):
        checkpoint_state(path)


def test_not_a_lightning_checkpoint(tmp_path):
    path = tmp_path / "weights.ckpt"
    torch.save({"e_conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: not a Lightning checkpoint")):
        load_checkpoint_file(path)
    with pytest.raises(FileNotFoundError, match="missing.ckpt: checkpoint not found"):
        load_checkpoint_file(tmp_path / "missing.ckpt")


# -- the command -------------------------------------------------------------------------------------------------
def test_cli_pretrained_hostile_checkpoint(evil, sice_root, tmp_path):
    path, marker = evil
    with pytest.raises(ValueError, match=_refused(path)) as info:
        cli_main(["test", "-c", str(ZERO_DCE / "paper.yaml"), *_data_args(sice_root, tmp_path),
                  "--model.init_args.pretrained", str(path)])
    # jsonargparse reports a failed model __init__ inside its own ValueError; the CheckpointError is its cause
    assert _in_chain(info.value, CheckpointError)
    assert not marker.exists()


def test_cli_ckpt_path_hostile_checkpoint(evil, sice_root, tmp_path):
    path, marker = evil
    with pytest.raises(CheckpointError, match=_refused(path)):
        cli_main(["test", "-c", str(ZERO_DCE / "paper.yaml"), *_data_args(sice_root, tmp_path),
                  "--ckpt_path", str(path)])
    assert not marker.exists()


def test_real_checkpoint_loads_and_truncated_one_names_the_file(sice_root, tmp_path):
    """A checkpoint the command wrote (hyper-parameters, loops, optimiser, callback states) loads with
    ``weights_only=True`` as ``pretrained``; cut in half it gives the clear error, as ``pretrained`` and as
    ``--ckpt_path``."""
    from lightning_modules.zero_dce import ZeroDCE

    cli_main(["fit", *demo_configs("zero_dce"), *_data_args(sice_root, tmp_path), "--run.name", "real"])
    last = tmp_path / "runs" / "zero_dce" / "real" / "checkpoints" / "last.ckpt"
    ckpt = load_checkpoint_file(last)
    assert ckpt["global_step"] == 1 and ckpt["hyper_parameters"]["variant"] == "zero_dce"
    model = ZeroDCE(pretrained=str(last))
    for k, v in model.net.state_dict().items():
        assert torch.equal(v, ckpt["state_dict"][f"net.{k}"]), k

    cut = tmp_path / "cut.ckpt"
    data = last.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=_corrupt(cut)):
        ZeroDCE(pretrained=str(cut))
    with pytest.raises(CheckpointError, match=_corrupt(cut)):
        cli_main(["test", *demo_configs("zero_dce"), *_data_args(sice_root, tmp_path), "--ckpt_path", str(cut)])
