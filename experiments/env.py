"""Process-wide settings every Darkroom entry point applies before importing the heavy stack."""

from __future__ import annotations

import netrc
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def wandb_configured() -> bool:
    """Whether the user has W&B credentials (API key in the environment or a netrc entry)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(os.environ.get("WANDB_BASE_URL", "api.wandb.ai").split("//")[-1]) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def configure_environment() -> None:
    """Offline-safe defaults; explicit user settings always win.

    * ``NO_ALBUMENTATIONS_UPDATE=1``: albumentations otherwise checks for updates over the network on import.
    * ``WANDB_MODE=offline`` unless the user configured W&B (``wandb login`` / ``WANDB_API_KEY``) or set a mode;
      offline runs are uploaded later with ``wandb sync``.
    """
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    if "WANDB_MODE" not in os.environ and not wandb_configured():
        os.environ["WANDB_MODE"] = "offline"
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_CONSOLE", "off")


@contextmanager
def environment_set(**values: str | None) -> Iterator[None]:
    """Set (``None``: unset) environment variables for the ``with`` block, then restore them: an in-process caller
    (the demo, a test) keeps its own environment."""
    old = {k: os.environ.get(k) for k in values}

    def apply(items: dict[str, str | None]) -> None:
        for k, v in items.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    apply(values)
    try:
        yield
    finally:
        apply(old)


def git_commit(path: Path = REPO_ROOT) -> str:
    """The checked-out commit (with ``-dirty`` when the tree has changes), or ``"unknown"``."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=path,
                               capture_output=True, text=True, timeout=10)
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
