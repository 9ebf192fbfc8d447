"""Where synthetic writers put their files: never over data they did not write themselves."""

from __future__ import annotations

import shutil
from pathlib import Path


def prepare_output_root(root: Path, parts: list[str], marker: str, writer: str) -> None:
    """Make ``root/<part>`` free for a writer, deleting only what that writer wrote before.

    A previous run is recognised by ``root/README.txt`` starting with ``marker``; any other content
    under ``root/<part>`` raises :class:`FileExistsError` naming the folder (real data is never removed).
    """
    paths = [root / p for p in parts]
    if not any(p.exists() for p in paths):
        return
    readme = root / "README.txt"
    if not (readme.is_file() and readme.read_text(encoding="utf-8").startswith(marker)):
        raise FileExistsError(
            f"{root}: already holds {'/'.join(parts)} not written by {writer} (no README.txt from it); "
            "refusing to overwrite — choose an empty folder"
        )
    for p in paths:
        if p.exists():
            shutil.rmtree(p)
