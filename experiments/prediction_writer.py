"""The ``predict`` image writer: full-resolution PNGs that never destroy an input or an earlier result.

``predict_step`` returns ``{"output": N×C×H×W float in [0, 1], "name": [str, ...]}`` (C = 1 or 3); each item
becomes ``<output_dir>/<name>.png``. Before the first batch is predicted (``on_predict_start``) the writer
refuses, with an :class:`UnsafeOutputError` naming both paths:

* an output folder that is, or lies inside, an input folder: every DataModule hyper-parameter whose name
  ends in ``root`` or ``_dir`` (``predict_root``, ``train_root``, DPED's ``root``, ...) and the folder of
  every predict input file, all compared after ``Path.resolve()`` (so symlinks do not fool it);
* an output file that is one of the predict input files (same resolved path);
* two predictions with the same output file (``a.jpg`` and ``a.png`` both → ``a.png``; compared
  case-insensitively, as on macOS / Windows file systems);
* an output file that already exists, unless ``overwrite=True`` (``--run.overwrite true``):
  :class:`OutputExistsError`, naming the file.

The names are known up front for the predict datasets of the Darkroom DataModules (``ImageFileDataset``:
``names`` / ``files``; ``FusionPairDataset``: ``pairs``; ``ExposureStackDataset``: ``stacks``). For any other
dataset the same checks run per batch, before anything of that batch is written. Files are written atomically
(:func:`datamodules.image_io.write_image`: temporary file in the same folder, then ``os.replace``), so a killed
run leaves only complete PNGs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from datamodules.image_io import write_image

OVERWRITE_HINT = ("pass --run.overwrite true (ImageWriter(overwrite=True)) to replace it, "
                  "or choose another --run.output_dir")


class UnsafeOutputError(ValueError):
    """``predict`` would write into its inputs, over one of its own outputs, or outside its output folder."""


class OutputExistsError(UnsafeOutputError):
    """An output file already exists and the writer was not told to overwrite."""


def input_folders(datamodule: Any) -> list[tuple[str, Path]]:
    """``(label, resolved folder)`` for every DataModule hyper-parameter ending in ``root`` or ``_dir``.

    Values may be a path or a list of paths; empty / ``None`` values are skipped. Labels read like the CLI
    argument (``data.predict_root=photos``).
    """
    hparams = getattr(datamodule, "hparams", None) or {}
    folders: list[tuple[str, Path]] = []
    for key, value in dict(hparams).items():
        if not (isinstance(key, str) and (key.endswith("root") or key.endswith("_dir"))) or not value:
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, (str, os.PathLike)) and str(v):
                folders.append((f"data.{key}={v}", Path(v).expanduser().resolve()))
    return folders


def predict_items(dataset: Any) -> list[tuple[str, tuple[Path, ...]]] | None:
    """``(name, input files)`` of every item of a Darkroom predict dataset, in order; ``None`` if unknown.

    ``ImageFileDataset`` (SICE, DPED): ``names`` and ``files``; ``FusionPairDataset``: ``pairs`` with
    ``name``, ``first``, ``second``, ``stack``; ``ExposureStackDataset``: ``stacks`` with ``name`` and ``files``
    (item ``i`` is stack ``i % len(stacks)``, as in its ``__getitem__``).
    """
    if dataset is None:
        return None
    if hasattr(dataset, "names") and hasattr(dataset, "files"):
        return [(str(n), (Path(f),)) for n, f in zip(dataset.names, dataset.files, strict=True)]
    if hasattr(dataset, "pairs"):
        return [(str(p.name), tuple(Path(f) for f in (p.first, p.second, *getattr(p, "stack", ()))))
                for p in dataset.pairs]
    if hasattr(dataset, "stacks"):
        stacks = list(dataset.stacks)
        if not stacks:
            return []
        n = len(dataset) if hasattr(dataset, "__len__") else len(stacks)
        return [(str(stacks[i % len(stacks)].name), tuple(Path(f) for f in stacks[i % len(stacks)].files))
                for i in range(n)]
    return None


def _loaders(loaders: Any) -> list[Any]:
    if loaders is None:
        return []
    if isinstance(loaders, Mapping):
        return list(loaders.values())
    if isinstance(loaders, (list, tuple)):
        return list(loaders)
    return [loaders]


class ImageWriter(BasePredictionWriter):
    """Writes each predicted image as ``<output_dir>/<name>.png`` at full resolution, never over its input.

    Args:
        output_dir: the folder for the PNGs (created when needed). It must not be, or lie inside, an input
            folder of the DataModule.
        overwrite: replace output files that already exist (default: refuse, naming the file).

    Attributes:
        written: the files written by the current ``predict`` run, in order.
    """

    def __init__(self, output_dir: str | Path, overwrite: bool = False) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.overwrite = overwrite
        self.written: list[Path] = []
        self._claimed: dict[str, str] = {}  # casefolded output file name → what it comes from (this run)
        self._done: set[str] = set()  # casefolded output file names written in this run
        self._inputs: dict[Path, Path] = {}  # resolved input file → as given

    # ------------------------------------------------------------------------------------------- checks
    @property
    def resolved_dir(self) -> Path:
        return self.output_dir.expanduser().resolve()

    def target(self, name: str) -> Path:
        """``<output_dir>/<name>.png``; a name that is not a plain file name is an :class:`UnsafeOutputError`."""
        plain = isinstance(name, str) and name not in ("", ".", "..") and not any(c in name for c in "/\\\0")
        if not plain:
            raise UnsafeOutputError(
                f"prediction name {name!r} is not a plain file name; it would be written outside {self.output_dir}"
            )
        return self.output_dir / f"{name}.png"

    def check_output_dir(self, folders: Iterable[tuple[str, Path]]) -> None:
        """Refuse an output folder that is, or lies inside, any of ``folders`` (``(label, resolved path)``)."""
        out = self.resolved_dir
        if out.exists() and not out.is_dir():
            raise UnsafeOutputError(f"--run.output_dir {self.output_dir} is a file, not a folder")
        for label, folder in folders:
            if out == folder or folder in out.parents:
                where = "is" if out == folder else "lies inside"
                raise UnsafeOutputError(
                    f"--run.output_dir {self.output_dir} (resolved {out}) {where} the input folder {label} "
                    f"(resolved {folder}); predict never writes into its inputs: choose an output folder outside it"
                )

    def claim(self, names: Sequence[str], sources: Sequence[str]) -> list[Path]:
        """Check and reserve the output files of ``names`` before any of them is written.

        Args:
            names: prediction names (output ``<name>.png``).
            sources: what each name comes from, for messages (its input files, or batch and index).

        Raises:
            UnsafeOutputError: a name is not a plain file name, two names give the same file (also with one
                claimed earlier in this run), or an output file is a predict input file.
            OutputExistsError: an output file exists and ``overwrite`` is false.
        """
        targets = [self.target(n) for n in names]
        claimed = dict(self._claimed)
        existing: list[Path] = []
        for target, source in zip(targets, sources, strict=True):
            key = target.name.casefold()
            if key in claimed:
                raise UnsafeOutputError(
                    f"two predictions map to the same output file {target}: {claimed[key]} and {source}; "
                    f"rename one of the inputs"
                )
            claimed[key] = source
            resolved = target.expanduser().resolve()
            if resolved in self._inputs:
                raise UnsafeOutputError(
                    f"output file {target} (resolved {resolved}) is the predict input file "
                    f"{self._inputs[resolved]}; "
                    f"predict never writes over its inputs: choose another --run.output_dir"
                )
            if not self.overwrite and target.exists():
                existing.append(target)
        if existing:
            more = f" ({len(existing)} of the {len(targets)} output files exist)" if len(existing) > 1 else ""
            raise OutputExistsError(f"output file {existing[0]} already exists{more}; {OVERWRITE_HINT}")
        self._claimed = claimed
        return targets

    # -------------------------------------------------------------------------------------------- hooks
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if pl_module is not None and hasattr(pl_module, "predict_step"):
            super().setup(trainer, pl_module, stage)

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """All checks that need no prediction, before the first batch (the predict dataloaders exist)."""
        self.written, self._claimed, self._done, self._inputs = [], {}, set(), {}
        datamodule = getattr(trainer, "datamodule", None)
        datasets = [getattr(dl, "dataset", None) for dl in _loaders(getattr(trainer, "predict_dataloaders", None))]
        if not datasets and datamodule is not None:
            datasets = [getattr(datamodule, "predict_set", None)]
        items_per_set = [predict_items(d) for d in datasets]
        known = [item for items in items_per_set if items is not None for item in items]
        for _, files in known:
            for f in files:
                self._inputs.setdefault(f.expanduser().resolve(), f)
        folders = input_folders(datamodule)
        seen = {folder for _, folder in folders}
        for resolved, given in self._inputs.items():
            if resolved.parent not in seen:
                seen.add(resolved.parent)
                folders.append((f"of {given}", resolved.parent))
        self.check_output_dir(folders)
        if known:
            self.claim([n for n, _ in known], [", ".join(map(str, files)) or n for n, files in known])
        strategy = getattr(trainer, "strategy", None)
        if strategy is not None:  # no rank writes before every rank has checked the folder as it was
            strategy.barrier("image_writer_checked")

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: dict[str, Any],
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Check every file of the batch, then write them: ``prediction["output"]`` N×C×H×W in [0, 1]."""
        names = prediction["name"]
        names = [names] if isinstance(names, str) else list(names)
        outputs = prediction["output"]
        if len(outputs) != len(names):
            raise ValueError(
                f"predict_step returned {len(outputs)} outputs but {len(names)} names (batch {batch_idx})"
            )
        targets = [self.target(n) for n in names]
        keys = [t.name.casefold() for t in targets]
        for i, (target, key) in enumerate(zip(targets, keys, strict=True)):
            if key in self._done or key in keys[:i]:
                raise UnsafeOutputError(
                    f"two predictions map to the same output file {target}: "
                    f"{self._claimed.get(key, 'an earlier one')} and batch {batch_idx} item {i}; rename one of the inputs"
                )
        # Names known up front were checked in on_predict_start; the others are checked here, before writing.
        fresh = [i for i, key in enumerate(keys) if key not in self._claimed]
        if fresh:
            self.claim([names[i] for i in fresh], [f"batch {batch_idx} item {i}" for i in fresh])
        for image, target, key in zip(outputs, targets, keys, strict=True):
            self.written.append(write_image(target, image))
            self._done.add(key)
