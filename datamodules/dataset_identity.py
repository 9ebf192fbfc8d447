"""What a DataModule evaluated: a dataset name, its root, count, file-list hash and protocol.

Every result (``results.json``, under ``dataset``) carries this block, and ``darkroom table`` fills a paper
row only from a run whose dataset is the paper's. A layout alone does not make a folder the paper's
dataset: a known dataset is recognised by the count the paper used (or, where one is known, by the hash
of its file list); anything else is ``custom`` unless the config names it (``dataset_name``). A named
dataset whose count differs from the paper's keeps the name and records ``count_matches_paper: false``.

Counts come from the paper digests (``shared/papers/*.md``) with their sources below; a count marked
``None`` is not found and never used for recognition.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class KnownDataset:
    """A dataset as a paper (or its benchmark) used it.

    Attributes:
        count: number of evaluation items in the paper's protocol (``None``: not found).
        unit: what one item is (``pairs``, ``images``, ``stacks``, ``patches``).
        source: where the count comes from.
        sha256: SHA-256 of the sorted relative file list (:func:`file_list_sha256`), where known.
    """

    count: int | None
    unit: str
    source: str
    sha256: str | None = None


KNOWN_DATASETS: dict[str, KnownDataset] = {
    "sice_part2": KnownDataset(767, "pairs", "Zero-DCE CVPR 2020 §4.2 (3 of 7 / 4 of 9 images per Part2 sequence)"),
    "msrs": KnownDataset(361, "pairs", "MSRS test split, repo Linfeng-Tang/MSRS (digest refusion.md)"),
    "tno": KnownDataset(None, "pairs", "TNO: the test list ReFusion used is not found"),
    "roadscene": KnownDataset(None, "pairs", "RoadScene: the test list ReFusion used is not found"),
    "lytro": KnownDataset(20, "pairs", "Lytro multi-focus set, repo yuliu316316/MFIF (digest refusion.md)"),
    "mfi_whu": KnownDataset(None, "pairs", "MFI-WHU: the test count ReFusion used is not found"),
    "mefb": KnownDataset(100, "pairs", "MEFB under/over pairs, repo xingchenzhang/MEFB (digest deepfuse.md)"),
    "harvard_mri_ct": KnownDataset(21, "pairs", "Harvard atlas MRI-CT test pairs of repo Zhaozixiang1228/MMIF-CDDFuse"),
    "harvard_mri_pet": KnownDataset(42, "pairs", "Harvard atlas MRI-PET test pairs of repo Zhaozixiang1228/MMIF-CDDFuse"),
    "harvard_mri_spect": KnownDataset(73, "pairs",
                                      "Harvard atlas MRI-SPECT test pairs of repo Zhaozixiang1228/MMIF-CDDFuse"),
    "dped_iphone_patches": KnownDataset(None, "patches", "DPED iPhone test patches: the paper's count is not found"),
    "dped_sony_patches": KnownDataset(None, "patches", "DPED Sony test patches: the paper's count is not found"),
    "dped_blackberry_patches": KnownDataset(None, "patches",
                                            "DPED BlackBerry test patches: the paper's count is not found"),
}

CUSTOM = "custom"


def file_list_sha256(files: Iterable[str | Path], root: str | Path) -> str:
    """SHA-256 of the sorted list of ``files`` relative to ``root`` (POSIX paths, one per line, UTF-8).

    The hash identifies *which* files were evaluated, not their bytes: the same folder copied elsewhere
    hashes the same; one file more or less, or a renamed file, changes it. Paths are made absolute without
    following symbolic links, so a root whose scene folders are links to elsewhere hashes by the names under it.
    """
    root = Path(os.path.abspath(Path(root).expanduser()))
    rel = sorted({Path(os.path.abspath(Path(f).expanduser())).relative_to(root).as_posix() for f in files})
    return hashlib.sha256("\n".join(rel).encode()).hexdigest()


def identify(count: int, sha256: str, candidates: Sequence[str], configured: str | None = None) -> dict[str, Any]:
    """The dataset's name and how it was decided.

    Args:
        count: evaluated items.
        sha256: :func:`file_list_sha256` of the evaluated files.
        candidates: known datasets this DataModule and layout can hold (e.g. ``["sice_part2"]``).
        configured: the config's ``dataset_name`` (wins; any name is allowed, known or not).

    Returns:
        ``{"name", "named_by": "config" | "hash" | "count" | None, "paper_count", "count_matches_paper"}``.
    """
    if configured:
        known = KNOWN_DATASETS.get(configured)
        paper = known.count if known else None
        return {"name": configured, "named_by": "config", "paper_count": paper,
                "count_matches_paper": None if paper is None else count == paper}
    for name in candidates:
        known = KNOWN_DATASETS[name]
        if known.sha256 is not None and known.sha256 == sha256:
            return {"name": name, "named_by": "hash", "paper_count": known.count, "count_matches_paper": True}
    by_count = [n for n in candidates if KNOWN_DATASETS[n].count is not None and KNOWN_DATASETS[n].count == count]
    if len(by_count) == 1:
        return {"name": by_count[0], "named_by": "count", "paper_count": count, "count_matches_paper": True}
    return {"name": CUSTOM, "named_by": None, "paper_count": None, "count_matches_paper": None}


def describe_dataset(files: Sequence[str | Path], root: str | Path, count: int, unit: str,
                     protocol: dict[str, Any], candidates: Sequence[str] = (),
                     configured: str | None = None, layout: str | None = None) -> dict[str, Any]:
    """The ``dataset`` block of ``results.json``.

    Args:
        files: every file read for the evaluation (inputs and labels).
        root: the split's root folder.
        count: evaluated items (pairs, images, stacks, patches).
        unit: what an item is.
        protocol: how the items were read and scored (resize, crop, colour space, pair rule, ...).
        candidates, configured: see :func:`identify`.
        layout: the on-disk layout that was read (e.g. ``"sice_part2"``, ``"unpaired"``).
    """
    digest = file_list_sha256(files, root)
    return {**identify(count, digest, candidates, configured), "count": count, "unit": unit,
            "root": str(Path(root).expanduser().resolve()), "files": len(set(map(str, files))),
            "sha256": digest, "layout": layout, "protocol": protocol}
