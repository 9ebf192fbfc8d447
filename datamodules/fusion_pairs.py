"""Paired fusion sources for ReFusion's four tasks: IR–visible (IVIF), multi-focus (MFIF), multi-exposure (MEIF)
and medical (MIF) image fusion.

On-disk layouts read (``<ext>`` = jpg/jpeg/png/bmp/tif/tiff in any case); partners are matched by **file stem**
(extensions may differ), and the pair order is the input order of ReFusion's official ``test.py``
(``lightning_modules.refusion.OFFICIAL_REFUSION_TASKS``; F is not symmetric in its inputs):

* ``layout="folders"`` (default): two sibling folders under a root, one per source. The first candidate pair of
  folder names that exists is used (or give ``folders`` explicitly):

  ========  =====================================================================================================
  task      folder pairs tried (first source, second source)
  ========  =====================================================================================================
  ivif      ``ir/``+``vi/`` (MSRS ``{train,test}/{ir,vi}``, RoadScene, TNO as in CDDFuse/Tang),
            ``infrared/``+``visible/`` (ReFusion ``test_cases/IVIF``), ``IR/``+``VI/`` (VIFB ``input/``)
  mfif      ``near/``+``far/`` (ReFusion ``test_cases/MFIF``), ``source_1/``+``source_2/`` (MFI-WHU style)
  meif      ``under/``+``over/`` (ReFusion ``test_cases/MEIF``)
  mif       ``CT/``, ``PET/`` or ``SPECT/`` + ``MRI/`` (CDDFuse ``test_img/MRI_<X>/``, Harvard atlas),
            ``CT_PET_SPECT/``+``MRI/`` (ReFusion ``test_cases/MIF``)
  ========  =====================================================================================================

* ``layout="suffix"``: one flat folder with ``<name><suffix_a>.<ext>`` and ``<name><suffix_b>.<ext>``;
  pairs of every convention present: ivif ``_ir``/``_vi``; mfif ``_near``/``_far`` and ``_1``/``_2`` (Lytro
  ``sourceimages/color/c_01_1.tif``); meif ``_under``/``_over``; mif ``_ct``|``_pet``|``_spect`` / ``_mri``
  (case-insensitive; one modality per folder). Every image file that forms no pair is named in an
  :class:`UnpairedFilesWarning`. This is also the layout
  of the research team's ``shared/data/fusion/{ir_vis,multi_focus,medical}``.
* ``layout="stacks"`` (MEIF): one folder per scene holding K ≥ 2 exposures (MEFB ``input/`` scenes, the layout of
  :mod:`datamodules.stack_folders`, whose :func:`~datamodules.stack_folders.find_stacks` validates it); the
  darkest and the brightest exposure by mean luma are the (under, over) pair.

Splits: ``train_root`` / ``val_root`` / ``test_root`` / ``predict_root`` each point at such a root; ``root`` is a
shortcut that fills the unset ones with ``<root>/train`` and ``<root>/test`` (MSRS's ``{train,test}`` folders).

Batches: ``{"sources": N×2×3×H×W float32 RGB in [0, 1], "name": list[str]}`` (grey files replicated to three
equal channels, which the module detects as grey; colour → Y conversion and chroma recombination happen in the
module, as the official ``test.py`` does them). Training: random crops of ``crop_size``² at the same position in
both sources (TDFusion's official recipe, random 256×256 crops; ReFusion's own patch size: not found; no flips
unless ``flip=True``, an ablation), batch
``batch_size`` (official: 2, doubled by source swapping inside the module). Validation/test/predict: whole images,
batch 1. Every file header is checked at :meth:`FusionPairDataModule.setup`: a missing partner or a pair of
different sizes raises :class:`~datamodules.image_io.DatasetLayoutError` naming the files.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.base import DarkroomDataModule, Split
from datamodules.dataset_identity import describe_dataset
from datamodules.image_io import (
    DatasetLayoutError,
    RootNotSetError,
    check_image_header,
    is_image,
    load_tensor,
    natural_key,
)
from datamodules.paired_transforms import paired_augmentation
from datamodules.stack_folders import find_stacks
from imaging.stacks import luminance_order

__all__ = [
    "FOLDER_PAIRS",
    "SUFFIX_PAIRS",
    "FusionPair",
    "FusionPairDataModule",
    "FusionPairDataset",
    "find_pairs",
]

Task = Literal["ivif", "mfif", "meif", "mif"]

#: task → known datasets a test root of that task can be (recognised by count, see dataset_identity).
DATASET_CANDIDATES: dict[str, tuple[str, ...]] = {
    "ivif": ("msrs", "tno", "roadscene"),
    "mfif": ("lytro", "mfi_whu"),
    "meif": ("mefb",),
    "mif": ("harvard_mri_ct", "harvard_mri_pet", "harvard_mri_spect"),
}
Layout = Literal["folders", "suffix", "stacks"]

#: task → candidate (first source, second source) folder names, tried in order.
FOLDER_PAIRS: dict[str, tuple[tuple[str, str], ...]] = {
    "ivif": (("ir", "vi"), ("infrared", "visible"), ("IR", "VI")),
    "mfif": (("near", "far"), ("source_1", "source_2")),
    "meif": (("under", "over"),),
    "mif": (("CT", "MRI"), ("PET", "MRI"), ("SPECT", "MRI"), ("CT_PET_SPECT", "MRI")),
}
#: task → candidate (first, second) file-name suffixes of the flat layout, tried in order (case-insensitive).
SUFFIX_PAIRS: dict[str, tuple[tuple[str, str], ...]] = {
    "ivif": (("_ir", "_vi"),),
    "mfif": (("_near", "_far"), ("_1", "_2")),
    "meif": (("_under", "_over"),),
    "mif": (("_ct", "_mri"), ("_pet", "_mri"), ("_spect", "_mri")),
}


@dataclass(frozen=True)
class FusionPair:
    """Two aligned source files of one scene, in the official input order, and their common ``(width, height)``.

    ``stack`` (stacks layout): all exposures of the scene; the darkest and the brightest by mean luma are chosen
    when the images are read (``first``/``second`` are then only the first and last file names).
    """

    name: str
    first: Path
    second: Path
    size: tuple[int, int]
    stack: tuple[Path, ...] = ()


class UnpairedFilesWarning(UserWarning):
    """Image files in a fusion folder that form no pair (and are therefore not evaluated)."""


def _images(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and is_image(p)), key=natural_key)


def _by_stem(files: Sequence[Path], folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in files:
        if p.stem in out:
            raise DatasetLayoutError(f"{p}: ambiguous source, {out[p.stem]} has the same name in {folder}")
        out[p.stem] = p
    return out


def _check_pair(name: str, a: Path, b: Path) -> tuple[int, int]:
    sa, sb = check_image_header(a), check_image_header(b)
    if sa != sb:
        raise DatasetLayoutError(
            f"{a} ({sa[0]}x{sa[1]}) and its partner {b} ({sb[0]}x{sb[1]}) differ in size; "
            f"the two sources of pair {name!r} must be aligned images of one size"
        )
    return sa


def _missing_message(root: Path, only_a: list[str], only_b: list[str], where_a: str, where_b: str) -> str:
    parts = []
    if only_a:
        parts.append(f"{where_a} without a partner in {where_b}: {only_a[:5]}{' …' if len(only_a) > 5 else ''}")
    if only_b:
        parts.append(f"{where_b} without a partner in {where_a}: {only_b[:5]}{' …' if len(only_b) > 5 else ''}")
    return f"{root}: unmatched fusion sources (partners are matched by file stem): " + "; ".join(parts)


def _folder_pairs(root: Path, task: str, folders: tuple[str, str] | None) -> list[FusionPair]:
    candidates = (tuple(folders),) if folders else FOLDER_PAIRS[task]
    found = [c for c in candidates if (root / c[0]).is_dir() and (root / c[1]).is_dir()]
    if not found:
        expected = " or ".join(f"{a}/ + {b}/" for a, b in candidates)
        raise DatasetLayoutError(f"{root}: no source folders for task {task!r} (expected {expected})")
    if task == "mif" and folders is None and len(found) > 1:
        raise DatasetLayoutError(
            f"{root}: several medical modalities next to MRI/ ({', '.join(a for a, _ in found)}); "
            "choose one with folders=[<modality>, MRI]"
        )
    fa, fb = found[0]
    a_files, b_files = _by_stem(_images(root / fa), root / fa), _by_stem(_images(root / fb), root / fb)
    only_a = sorted(set(a_files) - set(b_files), key=natural_key)
    only_b = sorted(set(b_files) - set(a_files), key=natural_key)
    if only_a or only_b:
        raise DatasetLayoutError(
            _missing_message(root, [a_files[s].name for s in only_a], [b_files[s].name for s in only_b],
                             f"{root / fa}", f"{root / fb}")
        )
    if not a_files:
        raise DatasetLayoutError(f"{root}: {fa}/ and {fb}/ hold no image files")
    stems = sorted(a_files, key=natural_key)
    return [FusionPair(s, a_files[s], b_files[s], _check_pair(s, a_files[s], b_files[s])) for s in stems]


def _with_suffix(files: Sequence[Path], suffix: str) -> dict[str, Path]:
    return {p.stem[: -len(suffix)]: p for p in files if p.stem.lower().endswith(suffix.lower())}


def _suffix_pairs(root: Path, task: str, suffixes: tuple[str, str] | None) -> list[FusionPair]:
    files = _images(root)
    candidates = (tuple(suffixes),) if suffixes else SUFFIX_PAIRS[task]
    if task == "mif" and suffixes is None:
        present = [c for c in candidates if _with_suffix(files, c[0])]
        if len(present) > 1:
            raise DatasetLayoutError(
                f"{root}: several medical modalities next to *_mri files ({', '.join(a for a, _ in present)}); "
                "choose one with suffixes=[<_modality>, _mri]"
            )
    pairs: dict[str, FusionPair] = {}
    for sa, sb in candidates:
        a, b = _with_suffix(files, sa), _with_suffix(files, sb)
        if not a and not b:
            continue
        if task == "mif":  # an MRI file may be the partner of another modality in the same folder
            others = {s for c in SUFFIX_PAIRS["mif"] if c[0].lower() != sa.lower() for s in _with_suffix(files, c[0])}
            b = {s: p for s, p in b.items() if s in a or s not in others}
        only_a = sorted(set(a) - set(b), key=natural_key)
        only_b = sorted(set(b) - set(a), key=natural_key)
        if only_a or only_b:
            raise DatasetLayoutError(
                _missing_message(root, [a[s].name for s in only_a], [b[s].name for s in only_b],
                                 f"*{sa}.<ext>", f"*{sb}.<ext>")
            )
        for s in a:
            if s in pairs:
                raise DatasetLayoutError(f"{a[s]}: pair {s!r} is also formed by {pairs[s].first.name} + "
                                         f"{pairs[s].second.name}; rename one of the two pairs")
            pairs[s] = FusionPair(s, a[s], b[s], _check_pair(s, a[s], b[s]))
        if task == "mif":  # one modality per dataset (checked above)
            break
    if not pairs:
        expected = " or ".join(f"<name>{a}.<ext> + <name>{b}.<ext>" for a, b in candidates)
        raise DatasetLayoutError(f"{root}: no source pairs for task {task!r} (expected {expected})")
    used = {p for pair in pairs.values() for p in (pair.first, pair.second)}
    left = [p.name for p in files if p not in used]
    if left:
        warnings.warn(f"{root}: {len(left)} image file(s) not paired for task {task!r} and not evaluated: "
                      f"{', '.join(left)} (pairs are <name><suffix>.<ext> with suffixes "
                      f"{', '.join('/'.join(c) for c in candidates)})", UnpairedFilesWarning, stacklevel=2)
    return [pairs[s] for s in sorted(pairs, key=natural_key)]


def _stack_pairs(root: Path) -> list[FusionPair]:
    return [FusionPair(s.name, s.files[0], s.files[-1], s.size, stack=s.files) for s in find_stacks(root, "root")]


def find_pairs(
    root: str | Path,
    task: Task,
    layout: Layout = "folders",
    folders: Sequence[str] | None = None,
    suffixes: Sequence[str] | None = None,
) -> list[FusionPair]:
    """The source pairs under ``root`` in natural name order, each validated from its file headers.

    Raises:
        DatasetLayoutError: the root or its source folders are missing, a file has no partner (the message names
            the unmatched files), two partners differ in size (names both), or nothing is found.
        ImageReadError: a file is not a readable image.
        ValueError: an unknown task or layout.
    """
    if task not in FOLDER_PAIRS:
        raise ValueError(f"task must be one of {sorted(FOLDER_PAIRS)}, got {task!r}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: folder of {task} source pairs not found")
    if layout == "folders":
        return _folder_pairs(root, task, tuple(folders) if folders else None)
    if layout == "suffix":
        return _suffix_pairs(root, task, tuple(suffixes) if suffixes else None)
    if layout == "stacks":
        return _stack_pairs(root)
    raise ValueError(f"layout must be 'folders', 'suffix' or 'stacks', got {layout!r}")


class FusionPairDataset(Dataset):
    """``{"sources": 2×3×h×w float32 in [0, 1], "name": str}``; random aligned crops when ``crop_size`` is set.

    Args:
        pairs: from :func:`find_pairs`.
        crop_size: side of the random square crop taken at the same position in both sources (``None``: whole).
        flip: random horizontal and vertical flips (each with probability ½) of both sources together (not in
            the official code; off).

    Crop and flips are one :func:`~datamodules.paired_transforms.paired_augmentation` (albumentations), seeded
    per sample from torch's global RNG, which the DataLoader seeds per worker from ``(seed, epoch)``
    (:mod:`datamodules.samplers`); with neither, albumentations is not called.
    """

    def __init__(self, pairs: Sequence[FusionPair], crop_size: int | None = None, flip: bool = False) -> None:
        self.pairs, self.crop_size, self.flip = list(pairs), crop_size, flip
        self.transform = paired_augmentation(crop_size, flip=flip)

    @property
    def names(self) -> list[str]:
        """Pair names in dataset order (the ids of per-image results)."""
        return [p.name for p in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Tensor | str]:
        pair = self.pairs[i]
        if pair.stack:
            stack = torch.stack([load_tensor(p) for p in pair.stack])
            order = luminance_order(stack)
            sources = stack[order[[0, -1]]]
        else:
            sources = torch.stack([load_tensor(pair.first), load_tensor(pair.second)])
        if self.transform is not None:
            sources = self.transform.tensors(sources)
        return {"sources": sources, "name": pair.name}


class FusionPairDataModule(DarkroomDataModule):
    """Paired sources of one fusion task (IVIF / MFIF / MEIF / MIF) for ReFusion training and evaluation.

    Args:
        task: ``"ivif"``, ``"mfif"``, ``"meif"`` or ``"mif"``; selects the folder/suffix names (module docstring).
        root: shortcut: unset ``train_root`` / ``test_root`` become ``<root>/train`` / ``<root>/test``.
        train_root, val_root, test_root, predict_root: roots of each split in ``layout``.
        layout: ``"folders"``, ``"suffix"`` or ``"stacks"`` (module docstring).
        folders: explicit (first, second) folder names for ``layout="folders"``, e.g. ``[PET, MRI]``.
        suffixes: explicit (first, second) stem suffixes for ``layout="suffix"``.
        crop_size: training crop side (TDFusion official: 256; ReFusion's: not found). Every training image must
            be at least this large (checked at ``setup``).
        batch_size: training batch size (official: 2; the module doubles it by swapping the sources).
        num_workers: DataLoader workers.
        val_max_pairs: validation uses at most this many pairs (the first ones in name order); ``None`` = all.
        dataset_name: the test set's name in results and tables (``msrs``, ``tno``, ``roadscene``, ``lytro``,
            ``mfi_whu``, ``mefb``, ``harvard_mri_ct``, ...); ``None`` = recognised from the pair count where the
            paper's count is known (MSRS test 361, Lytro 20, MEFB 100, Harvard MRI-CT/PET/SPECT 21/42/73), else
            ``custom`` (:mod:`datamodules.dataset_identity`).
        flip: random horizontal/vertical flips of both training sources (not in the official recipes, which crop
            only: off; the ablation ``experiments/refusion/ablations/flip.yaml``).
    """

    def __init__(
        self,
        task: Task = "ivif",
        root: str | None = None,
        train_root: str | None = None,
        val_root: str | None = None,
        test_root: str | None = None,
        predict_root: str | None = None,
        layout: Layout = "folders",
        folders: list[str] | None = None,
        suffixes: list[str] | None = None,
        crop_size: int = 256,
        batch_size: int = 2,
        num_workers: int = min(4, os.cpu_count() or 1),
        val_max_pairs: int | None = 8,
        dataset_name: str | None = None,
        flip: bool = False,
    ) -> None:
        super().__init__(batch_size, 1, num_workers)
        if task not in FOLDER_PAIRS:
            raise ValueError(f"task must be one of {sorted(FOLDER_PAIRS)}, got {task!r}")
        if layout not in ("folders", "suffix", "stacks"):
            raise ValueError(f"layout must be 'folders', 'suffix' or 'stacks', got {layout!r}")
        for arg, value in (("folders", folders), ("suffixes", suffixes)):
            if value is not None and len(value) != 2:
                raise ValueError(f"{arg} must name exactly 2 entries (first, second source), got {value!r}")
        if crop_size < 1:
            raise ValueError(f"crop_size must be ≥ 1, got {crop_size}")
        if val_max_pairs is not None and val_max_pairs < 1:
            raise ValueError(f"val_max_pairs must be ≥ 1 or None, got {val_max_pairs}")
        self.save_hyperparameters()
        if root is not None:
            train_root = train_root or str(Path(root) / "train")
            test_root = test_root or str(Path(root) / "test")
            self.hparams.train_root, self.hparams.test_root = train_root, test_root
        self.task, self.layout = task, layout
        self.train_root, self.val_root, self.test_root, self.predict_root = train_root, val_root, test_root, predict_root
        self.folders, self.suffixes = folders, suffixes
        self.crop_size, self.val_max_pairs, self.dataset_name, self.flip = crop_size, val_max_pairs, dataset_name, flip

    def _pairs(self, root: str | None, argument: str) -> list[FusionPair]:
        if root is None:
            raise RootNotSetError(f"root (a dataset root with train/ and test/) or --data.init_args.{argument}",
                                  f"{self.task} pairs in layout {self.layout!r}: see datamodules/fusion_pairs.py")
        return find_pairs(root, self.task, self.layout, self.folders, self.suffixes)

    def build_dataset(self, split: Split) -> FusionPairDataset:
        pairs = self._pairs(self.split_root(split), f"{split}_root")
        if split == "train":
            small = [p for p in pairs if min(p.size) < self.crop_size]
            if small:
                p = small[0]
                raise DatasetLayoutError(
                    f"{p.first}: {p.size[0]}x{p.size[1]} is smaller than crop_size {self.crop_size} "
                    f"({len(small)} training pair(s) are); lower crop_size"
                )
            return FusionPairDataset(pairs, self.crop_size, self.flip)
        if split == "val" and self.val_max_pairs:
            pairs = pairs[: self.val_max_pairs]
        return FusionPairDataset(pairs)

    def describe_split(self, split: Split, dataset: FusionPairDataset) -> dict:
        pairs = dataset.pairs
        files = [f for p in pairs for f in (p.stack or (p.first, p.second))]
        candidates = DATASET_CANDIDATES[self.task]
        if self.task == "mif":  # the modality narrows the candidates
            modality = pairs[0].first.parent.name if self.layout == "folders" else pairs[0].first.stem.rsplit("_", 1)[-1]
            candidates = tuple(c for c in candidates if c.endswith(modality.lower()))
        protocol = {"task": self.task, "pairs": self.layout, "order": "official test.py input order",
                    "resize": None, "colour": "Y (BT.601 full range) fused, chroma recombined", "range": "[0, 255]"}
        return describe_dataset(files, self.split_root(split), len(pairs), "pairs", protocol, candidates=candidates,
                                configured=self.dataset_name, layout=self.layout)
