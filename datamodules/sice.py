"""SICE and folder-of-low-light-images data for Zero-DCE / Zero-DCE++.

On-disk layouts read (``<ext>`` = jpg/jpeg/png/bmp/tif/tiff in any case):

* **train** (``train_root``), either
    - a SICE Part1 root ``<root>/<n>/<k>.<ext>``: every image of every sequence folder is a training
      image (the label folder ``Label``/``label`` is excluded), or
    - a flat folder of low-light images ``<root>/<name>.<ext>``, e.g. the official 2,002-image
      Zero-DCE++ ``data/train_data`` set.
  Images are resized to ``image_size``² with Pillow LANCZOS and scaled to [0, 1], exactly the official
  loader (``img.resize((s, s), Image.ANTIALIAS) / 255``), without augmentation (the official code has none).
* **val / test** (``val_root``, ``test_root``): a SICE Part2 root: ``<root>/<n>/<k>.<ext>`` with images
  ordered dark → bright by natural sort of their names, and ``<root>/Label/<n>.<ext>`` (or ``label/``).
  Pair protocol ``low_per_sequence="half"``: the first ``floor(K/2)`` images of each K-image sequence are
  paired with the sequence's label. That gives the paper's 3-of-7 and 4-of-9 (767 pairs on Part2, Zero-DCE
  CVPR 2020 §4.2); the paper's rule for 5-, 6- and 8-image sequences is **not found**, so ``floor(K/2)``
  there is our choice and the pair count equals the paper's 767 only if every sequence has 7 or 9 images.
  Pairs are resized to ``eval_size`` = (1200, 900) as in the paper; the paper's resize filter is **not
  found**, the default ``"bicubic"`` follows an independent re-evaluation (Zero-DCE issue #9).
* **unpaired test** (``test_root`` without ``Label/``): real low-light photos without labels, e.g. the official
  ``test_data/{DICM,LIME,...}`` folders. Every image below the root (any depth) is one test image at native
  size, batch size 1; its folder relative to the root is its group (``DICM``), reported per group and overall
  with no-reference metrics (:mod:`metrics.no_reference`).
* **predict** (``predict_root``): a folder of the user's photos (sub-folders allowed and mirrored in the output,
  names ``DICM/01``), any size, read at native resolution, every file decoded once at setup,
  batch size 1.

Batches are dicts: train ``{"input": N×3×s×s, "name": list[str]}``; val/test ``{"input", "target", "name"}``;
unpaired test ``{"input": 1×3×H×W, "name", "group"}``; predict ``{"input": 1×3×H×W, "name"}``. Names are file stems made unique (``<n>_<k>`` for sequence images).
Every file's header is checked at :meth:`SICEDataModule.setup`, so a broken file fails before training.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from datamodules.base import DarkroomDataModule, Split
from datamodules.dataset_identity import describe_dataset
from datamodules.image_datasets import ImageFileDataset, PairDataset  # noqa: F401  (re-exported)
from datamodules.image_io import (
    IMAGE_EXTENSIONS,
    DatasetLayoutError,
    RootNotSetError,
    check_image_header,
    is_image,
    list_images,
    list_images_recursive,
    natural_key,
    predict_images,
)

LABEL_DIRS: tuple[str, ...] = ("Label", "label")
_EXTS = "/".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))
PART2_LAYOUT = f"<root>/<n>/<k>.<{_EXTS}> with one label <root>/Label/<n>.<ext> per sequence"
TRAIN_LAYOUT = f"a flat folder of images <root>/<name>.<{_EXTS}>, or a SICE Part1 root <root>/<n>/<k>.<ext>"


def unique_names(paths: Sequence[Path], prefixes: Sequence[str] | None = None) -> list[str]:
    """File stems (``prefix_stem`` when a prefix is given), made unique.

    A stem shared by several files (``a.jpg`` and ``a.PNG``) gets the extension appended
    (``a_jpg``, ``a_PNG``); any remaining clash gets a running index.
    """
    prefixes = list(prefixes) if prefixes is not None else [""] * len(paths)
    base = [f"{pre}_{p.stem}" if pre else p.stem for pre, p in zip(prefixes, paths, strict=True)]
    counts = Counter(b.lower() for b in base)
    names = [f"{b}_{p.suffix.lstrip('.')}" if counts[b.lower()] > 1 else b for b, p in zip(base, paths, strict=True)]
    seen: Counter[str] = Counter()
    out = []
    for n in names:
        key = n.lower()
        out.append(n if seen[key] == 0 else f"{n}_{seen[key]}")
        seen[key] += 1
    return out


def _sequence_dirs(root: Path) -> list[Path]:
    """Sub-folders of ``root`` that hold images directly, excluding the label folder, naturally sorted."""
    dirs = [d for d in root.iterdir() if d.is_dir() and d.name not in LABEL_DIRS]
    return sorted((d for d in dirs if any(p.is_file() and is_image(p) for p in d.iterdir())), key=natural_key)


def _check_root(root: str | Path | None, argument: str, expected: str) -> Path:
    if root is None:
        raise RootNotSetError(argument, expected)
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetLayoutError(f"{path}: {argument} folder not found (expected {expected})")
    return path


def find_train_images(root: str | Path) -> list[Path]:
    """Training images under ``root``: a flat folder of images, or every sequence image of a SICE Part1 root.

    Raises:
        DatasetLayoutError: the folder is missing or holds neither images nor sequence folders.
    """
    root = _check_root(root, "train_root", TRAIN_LAYOUT)
    flat = sorted((p for p in root.iterdir() if p.is_file() and is_image(p)), key=natural_key)
    if flat:
        return flat
    seqs = _sequence_dirs(root)
    if not seqs:
        hint = ""
        if (root / "Dataset_Part1").is_dir():
            hint = f"; did you mean {root / 'Dataset_Part1'}?"
        raise DatasetLayoutError(f"{root}: no image files and no sequence folders found (expected {TRAIN_LAYOUT}){hint}")
    return [p for d in seqs for p in list_images(d, what="SICE sequence images")]


def _label_index(root: Path) -> dict[str, Path]:
    label_dirs = [root / n for n in LABEL_DIRS if (root / n).is_dir()]
    if not label_dirs:
        raise DatasetLayoutError(f"{root}: no Label/ folder (expected SICE Part2 layout {PART2_LAYOUT})")
    index: dict[str, Path] = {}
    for d in label_dirs:
        for p in d.iterdir():
            if not (p.is_file() and is_image(p)):
                continue
            if p.stem in index and index[p.stem] != p:
                raise DatasetLayoutError(
                    f"{p}: ambiguous label, {index[p.stem]} has the same name (expected one label per sequence)"
                )
            index[p.stem] = p
    return index


def pairs_per_sequence(k: int, low_per_sequence: str = "half") -> int:
    """How many of the darkest images of a ``k``-image sequence are test inputs.

    ``"half"``: ``floor(k/2)`` — 3 of 7 and 4 of 9 as in Zero-DCE (CVPR 2020 §4.2, 767 Part2 pairs); the
    paper's rule for other ``k`` is not found, ``floor(k/2)`` there is our choice. ``"all"``: ``k``.
    ``"m"`` (a positive integer as a string): ``min(m, k)``.
    """
    rule = str(low_per_sequence).strip().lower()
    if rule == "half":
        return k // 2
    if rule == "all":
        return k
    if rule.isdigit() and int(rule) > 0:
        return min(int(rule), k)
    raise ValueError(f"low_per_sequence must be 'half', 'all' or a positive integer, got {low_per_sequence!r}")


def find_pairs(root: str | Path, low_per_sequence: str = "half", argument: str = "test_root") -> list[tuple[Path, Path]]:
    """``(low-light image, label)`` pairs of a SICE Part2 root, in natural order of sequence then image.

    Args:
        root: the Part2 root.
        low_per_sequence: ``"half"`` = the first ``floor(K/2)`` images of a K-image sequence (our rule; the
            paper's 3-of-7 / 4-of-9), ``"all"`` = every image, or a positive integer ``"m"`` = the first
            ``min(m, K)`` images.
        argument: the DataModule argument name, for error messages.

    Raises:
        DatasetLayoutError: missing root, no sequence folder, no Label folder, a sequence without a label,
            or no pair at all.
        ValueError: an unknown ``low_per_sequence``.
    """
    pairs_per_sequence(2, low_per_sequence)
    root = _check_root(root, argument, f"a SICE Part2 root {PART2_LAYOUT}")
    seqs = _sequence_dirs(root)
    if not seqs:
        raise DatasetLayoutError(f"{root}: no sequence folders with images found (expected {PART2_LAYOUT})")
    labels = _label_index(root)
    pairs: list[tuple[Path, Path]] = []
    for d in seqs:
        if d.name not in labels:
            raise DatasetLayoutError(
                f"{d}: Part2 image with no label: sequence folder {d.name!r} has no {root}/Label/{d.name}.<{_EXTS}> "
                f"(expected {PART2_LAYOUT})"
            )
        images = list_images(d, what="SICE sequence images")
        pairs.extend((p, labels[d.name]) for p in images[: pairs_per_sequence(len(images), low_per_sequence)])
    if not pairs:
        raise DatasetLayoutError(
            f"{root}: the pair rule low_per_sequence={low_per_sequence!r} selects no image "
            f"(every sequence has fewer than 2 images; expected {PART2_LAYOUT})"
        )
    return pairs


def has_labels(root: str | Path) -> bool:
    """Whether ``root`` has a SICE Part2 label folder (``Label/`` or ``label/``)."""
    return any((Path(root).expanduser() / n).is_dir() for n in LABEL_DIRS)


def _check_headers(files: Sequence[Path]) -> list[tuple[int, int]]:
    return [check_image_header(p) for p in files]


class SICEDataModule(DarkroomDataModule):
    """SICE Part1/Part2 (or any folder of low-light images) for Zero-DCE training and evaluation.

    Args:
        train_root: SICE Part1 root or a flat folder of low-light images (see the module docstring).
        val_root: SICE Part2-layout root for validation (``None``: no validation).
        test_root: SICE Part2 root for the full-reference test.
        predict_root: folder of the user's photos, enhanced at native resolution.
        image_size: training resize (square side, Pillow LANCZOS). Official Zero-DCE code: 256; paper and
            Zero-DCE++ code: 512.
        batch_size: training batch size (official: 8).
        eval_batch_size: validation/test batch size (default 1: full-resolution images; unpaired photos
            of different sizes always use 1).
        num_workers: DataLoader workers (official: 4); persistent when > 0.
        eval_size: ``(width, height)`` that val/test pairs are resized to; the paper's 1200×900.
            ``None`` = native size (input and label must then have equal sizes).
        eval_resample: filter for ``eval_size``; the paper's filter is not found, bicubic as in issue #9.
        low_per_sequence: pair protocol of val/test, see :func:`find_pairs`.
        val_max_pairs: validation uses at most this many pairs (a fixed random subset drawn with ``seed``);
            ``None`` = all.
        seed: seed of the validation subset (the official training script seeds its file list with 1143).
        dataset_name: the test set's name in results and tables (e.g. ``sice_part2``); ``None`` = recognised
            from its pair count (767 = Zero-DCE's Part2 protocol), else ``custom``
            (:mod:`datamodules.dataset_identity`).
    """

    def __init__(
        self,
        train_root: str | None = None,
        val_root: str | None = None,
        test_root: str | None = None,
        predict_root: str | None = None,
        image_size: int = 256,
        batch_size: int = 8,
        num_workers: int = min(4, os.cpu_count() or 1),
        eval_size: tuple[int, int] | None = (1200, 900),
        eval_resample: str = "bicubic",
        low_per_sequence: str = "half",
        val_max_pairs: int | None = 16,
        seed: int = 1143,
        eval_batch_size: int = 1,
        dataset_name: str | None = None,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers)
        if image_size < 1:
            raise ValueError(f"image_size must be ≥ 1, got {image_size}")
        if eval_size is not None and (len(eval_size) != 2 or min(eval_size) < 1):
            raise ValueError(f"eval_size must be (width, height) or None, got {eval_size!r}")
        if val_max_pairs is not None and val_max_pairs < 1:
            raise ValueError(f"val_max_pairs must be ≥ 1 or None, got {val_max_pairs}")
        self.save_hyperparameters()
        self.train_root, self.val_root, self.test_root, self.predict_root = train_root, val_root, test_root, predict_root
        self.image_size = image_size
        self.eval_size = tuple(int(v) for v in eval_size) if eval_size is not None else None
        self.eval_resample, self.low_per_sequence = eval_resample, low_per_sequence
        self.val_max_pairs, self.seed, self.dataset_name = val_max_pairs, seed, dataset_name
        pairs_per_sequence(2, low_per_sequence)  # fail at construction on an unknown rule

    # ----------------------------------------------------------------------------------- discovery
    def _pair_set(self, root: str | None, argument: str, max_pairs: int | None) -> PairDataset:
        pairs = find_pairs(root, self.low_per_sequence, argument=argument)
        if max_pairs is not None and len(pairs) > max_pairs:
            keep = np.sort(np.random.default_rng(self.seed).choice(len(pairs), size=max_pairs, replace=False))
            pairs = [pairs[int(i)] for i in keep]
        files = [p for pair in pairs for p in pair]
        sizes = dict(zip(files, _check_headers(files), strict=True))
        if self.eval_size is None:
            for src, tgt in pairs:
                if sizes[src] != sizes[tgt]:
                    raise DatasetLayoutError(
                        f"{src}: size {sizes[src]} differs from its label {tgt} {sizes[tgt]} "
                        "(expected equal sizes, or set eval_size to resize both)"
                    )
        names = unique_names([s for s, _ in pairs], [s.parent.name for s, _ in pairs])
        return PairDataset(pairs, names, self.eval_size, self.eval_resample)

    def _test_set(self) -> PairDataset | ImageFileDataset:
        """Part2 pairs when the test root has a label folder, else every photo below it (unpaired)."""
        root = _check_root(self.test_root, "test_root", f"a SICE Part2 root {PART2_LAYOUT}, or a folder of photos")
        if has_labels(root):
            return self._pair_set(self.test_root, "test_root", None)
        found = list_images_recursive(root, what="low-light photos, or a SICE Part2 root with a Label/ folder")
        files, names = [p for p, _ in found], [n for _, n in found]
        _check_headers(files)
        return ImageFileDataset(files, names, None, groups=[n.rpartition("/")[0] for n in names])

    def build_dataset(self, split: Split) -> Dataset:
        if split == "train":
            files = find_train_images(self.train_root)
            _check_headers(files)
            flat = all(p.parent == files[0].parent for p in files) and files[0].parent == Path(self.train_root).expanduser()
            names = unique_names(files, None if flat else [p.parent.name for p in files])
            return ImageFileDataset(files, names, (self.image_size, self.image_size), "lanczos")
        if split == "val":
            return self._pair_set(self.val_root, "val_root", self.val_max_pairs)
        if split == "test":
            return self._test_set()
        root = _check_root(self.predict_root, "predict_root", "a folder of photos to enhance (sub-folders allowed)")
        files, names, skipped = predict_images(root, what="photos to enhance", skip_bad=self.predict_skip_bad)
        dataset = ImageFileDataset(files, names, None)
        dataset.skipped = skipped  # (file, reason) of unreadable files left out (--run.skip_bad)
        return dataset

    def batch_size_of(self, split: Split, dataset: Dataset) -> int:
        if split != "train" and (isinstance(dataset, ImageFileDataset) or self.eval_size is None):
            return 1  # native sizes differ between images
        return super().batch_size_of(split, dataset)

    # ------------------------------------------------------------------------------------ identity
    def describe_split(self, split: Split, ds: Dataset) -> dict:
        root = Path(self.split_root(split)).expanduser()
        if isinstance(ds, PairDataset):
            files = [p for pair in ds.pairs for p in pair]
            protocol = {"pairs": f"low_per_sequence={self.low_per_sequence}",
                        "resize": list(self.eval_size) if self.eval_size else None,
                        "resample": self.eval_resample if self.eval_size else None,
                        "colour": "rgb", "range": "[0, 1] from 8-bit", "reference": "label"}
            return describe_dataset(files, root, len(ds), "pairs", protocol, candidates=["sice_part2"],
                                    configured=self.dataset_name, layout="sice_part2")
        groups = sorted(set(ds.groups or []), key=natural_key)
        protocol = {"resize": None, "colour": "rgb", "range": "[0, 1] from 8-bit", "reference": None,
                    "groups": groups}
        return describe_dataset(ds.files, root, len(ds), "images", protocol, candidates=(),
                                configured=self.dataset_name, layout="unpaired")

    # ------------------------------------------------------------------------------------- summary
    def summary(self) -> str:
        """Human-readable counts and roots (scans the configured roots when ``setup`` has not run yet)."""
        lines = ["SICEDataModule"]
        if self.train_root is not None:
            n = len(self.train_set) if self.train_set is not None else len(find_train_images(self.train_root))
            lines.append(f"  train:   {n} images from {self.train_root} (resized to {self.image_size}x{self.image_size})")
        for label, root, ds, cap in (("val", self.val_root, self.val_set, self.val_max_pairs),
                                     ("test", self.test_root, self.test_set, None)):
            if root is None:
                continue
            if label == "test" and not has_labels(root):
                n = len(ds) if ds is not None else len(list_images_recursive(root))
                lines.append(f"  test:    {n} unpaired photos from {root} (native size, no-reference metrics)")
                continue
            if ds is not None:
                n = len(ds)
            else:
                n = len(find_pairs(root, self.low_per_sequence, f"{label}_root"))
                n = n if cap is None else min(n, cap)
            size = f"{self.eval_size[0]}x{self.eval_size[1]} ({self.eval_resample})" if self.eval_size else "native size"
            lines.append(f"  {label + ':':8} {n} pairs from {root} (low_per_sequence={self.low_per_sequence!r}, {size})")
        if self.predict_root is not None:
            n = len(self.predict_set) if self.predict_set is not None else len(list_images_recursive(self.predict_root))
            lines.append(f"  predict: {n} images from {self.predict_root} (native size)")
        if len(lines) == 1:
            lines.append("  (no root configured)")
        return "\n".join(lines)
