"""Reading Darkroom checkpoints outside the Trainer (``pretrained=...ckpt`` arguments of the modules)."""

from __future__ import annotations

from pathlib import Path

import torch


def checkpoint_state(path: str | Path, prefixes: tuple[str, ...] = ("net.",), strip: bool = True) -> dict:
    """The ``state_dict`` entries of a Lightning ``.ckpt`` whose keys start with one of ``prefixes``.

    With ``strip`` (one prefix only) the prefix is removed, so the result loads into the sub-network.

    Raises:
        FileNotFoundError: no file at ``path``.
        KeyError: the file holds no ``state_dict`` entry with those prefixes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    picked = {k: v for k, v in state.items() if k.startswith(prefixes)}
    if not picked:
        raise KeyError(f"{path}: no weights under {prefixes} (is it a checkpoint of this model?)")
    if strip and len(prefixes) == 1:
        picked = {k[len(prefixes[0]):]: v for k, v in picked.items()}
    return picked
