"""The exposure-stack folder layout, read by DeepFuse's and ReFusion's (``layout="stacks"``) DataModules.

``<root>/<scene>/<exposure>.<ext>``: one folder per scene holding K ≥ 2 aligned exposures of one size. Scenes are
validated from file headers only (no decoding), so a malformed stack fails at ``setup``, naming the folder or file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from datamodules.image_io import (
    IMAGE_EXTENSIONS,
    DatasetLayoutError,
    RootNotSetError,
    check_image_header,
    is_image,
    natural_key,
)

__all__ = ["LAYOUT", "ExposureStack", "find_stacks"]

_EXTS = "/".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))
LAYOUT = f"<root>/<scene>/<exposure>.<{_EXTS}>: one folder per scene holding K ≥ 2 aligned exposures of equal size"


@dataclass(frozen=True)
class ExposureStack:
    """One scene: its folder, its exposure files (natural name order) and their common ``(width, height)``."""

    folder: Path
    files: tuple[Path, ...]
    size: tuple[int, int]

    @property
    def name(self) -> str:
        return self.folder.name


def _check_scene(folder: Path) -> ExposureStack:
    """Validate one scene folder from file headers; raises naming the folder or file."""
    entries = sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=natural_key)
    bad = [p for p in entries if not p.is_file() or not is_image(p)]
    if bad:
        raise DatasetLayoutError(
            f"{bad[0]}: not an image file in exposure stack {folder} (expected only the scene's exposures: {LAYOUT})"
        )
    if len(entries) < 2:
        raise DatasetLayoutError(
            f"{folder}: exposure stack has {len(entries)} image(s); fusion needs at least 2 exposures ({LAYOUT})"
        )
    sizes = [check_image_header(p) for p in entries]
    if len(set(sizes)) != 1:
        listing = ", ".join(f"{p.name} {w}x{h}" for p, (w, h) in zip(entries, sizes, strict=True))
        raise DatasetLayoutError(
            f"{folder}: exposures differ in size ({listing}); a stack must be aligned images of one size"
        )
    return ExposureStack(folder, tuple(entries), sizes[0])


def find_stacks(root: str | Path | None, argument: str = "root") -> list[ExposureStack]:
    """All scene folders under ``root`` (naturally sorted), each validated by :func:`_check_scene`.

    Raises:
        ValueError: ``root`` is None.
        DatasetLayoutError: the root is missing, holds no scene folder (e.g. it *is* a scene folder), or a
            scene is malformed (fewer than 2 images, mismatched sizes, a non-image file).
        ImageReadError: an exposure file is not a readable image.
    """
    if root is None:
        raise RootNotSetError(argument, LAYOUT)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: {argument} folder not found (expected {LAYOUT})")
    scenes = sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")), key=natural_key)
    if not scenes:
        hint = ""
        if any(p.is_file() and is_image(p) for p in root.iterdir()):
            hint = f"; {root} holds images directly — put them in a scene folder, e.g. {root}/scene/"
        raise DatasetLayoutError(f"{root}: no scene folders found (expected {LAYOUT}){hint}")
    return [_check_scene(d) for d in scenes]
