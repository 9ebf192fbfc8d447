"""Reading Darkroom checkpoints outside the Trainer (``pretrained=...ckpt`` arguments of the modules, ``--ckpt_path``).

Every reader goes through :func:`load_checkpoint_file` (for official ``.pth`` files: :func:`load_torch_file`),
which unpickles with ``weights_only=True``: tensors, containers and plain values only. A file that asks the
unpickler for anything else (``os.system``, an arbitrary class) is refused before any of it runs, and a truncated
or corrupt file gives one :class:`CheckpointError` that names it (the same class as
:class:`networks.weight_files.WeightFileError`, which the official-weight readers raise).
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from networks.weight_files import WeightFileError, refuses_code, torch_error_reason

#: One error for every wrong weights file, checkpoints included (the name the command and the sweep catch).
CheckpointError = WeightFileError


def _corrupt(path: Path, exc: BaseException) -> CheckpointError:
    reason = torch_error_reason(exc)
    if not reason and path.stat().st_size == 0:
        reason = "the file is empty"
    detail = f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
    return CheckpointError(f"{path}: not a readable Darkroom checkpoint (truncated or corrupt: {detail})")


def load_torch_file(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """What ``torch.save`` wrote to ``path`` (a ``.ckpt``, an official ``.pth``), loaded with ``weights_only=True``.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is refused because it contains pickled code (objects other than tensors,
            containers and plain values), or it is truncated or corrupt; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # a legacy or foreign pickle
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch refuses a global (a function or class to call) by name; an unknown opcode means garbage bytes
        if refuses_code(exc):
            raise CheckpointError(f"{path}: refused: the file contains pickled code ({torch_error_reason(exc)}); "
                                  "Darkroom loads weights only") from None
        raise _corrupt(path, exc) from exc
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - zip/pickle readers raise EOFError, RuntimeError, OSError, KeyError …
        raise _corrupt(path, exc) from exc


def load_checkpoint_file(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """The contents of a Lightning ``.ckpt`` (a dict with a ``state_dict``), loaded with ``weights_only=True``.

    The one reader of Darkroom checkpoints: the modules' ``pretrained=...ckpt`` and the CLI's ``--ckpt_path``.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: hostile, truncated or corrupt file (see :func:`load_torch_file`), or a file without a
            ``state_dict`` (not a Lightning checkpoint); the message names the file.
    """
    ckpt = load_torch_file(path, map_location)
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("state_dict"), Mapping):
        what = f"a dict with keys {sorted(map(str, ckpt))[:8]}" if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise CheckpointError(f"{path}: not a Lightning checkpoint (it holds {what}, no 'state_dict'); "
                              "official weight files are read by the modules' from_official")
    return dict(ckpt)


def checkpoint_state(path: str | Path, prefixes: tuple[str, ...] = ("net.",), strip: bool = True) -> dict:
    """The ``state_dict`` entries of a Lightning ``.ckpt`` whose keys start with one of ``prefixes``.

    With ``strip`` (one prefix only) the prefix is removed, so the result loads into the sub-network.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is hostile, truncated or corrupt (see :func:`load_checkpoint_file`).
        KeyError: the file holds no ``state_dict`` entry with those prefixes.
    """
    path = Path(path)
    state = load_checkpoint_file(path)["state_dict"]
    picked = {k: v for k, v in state.items() if k.startswith(prefixes)}
    if not picked:
        raise KeyError(f"{path}: no weights under {prefixes} (is it a checkpoint of this model?)")
    if strip and len(prefixes) == 1:
        picked = {k[len(prefixes[0]):]: v for k, v in picked.items()}
    return picked
