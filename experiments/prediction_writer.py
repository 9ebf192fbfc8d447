"""The ``predict`` image writer: full-resolution PNGs that never destroy an input or an earlier result.

``predict_step`` returns ``{"output": N×C×H×W float in [0, 1], "name": [str, ...]}`` (C = 1 or 3), optionally
``"notes": [str, ...]`` (one line per item, e.g. Zero-DCE++'s crop to a multiple of its scale factor, printed
when the item is written); each item becomes ``<output_dir>/<name>.png``. A name may be a relative path with
``/`` separators (``DICM/01`` → ``<output_dir>/DICM/01.png``, sub-folders created): the predict folders of
the single-image DataModules are walked at any depth and mirrored
(:func:`datamodules.image_io.list_images_recursive`). Before the first batch is predicted (``on_predict_start``)
the writer refuses, with an :class:`UnsafeOutputError` naming both paths:

* an output folder that is, or lies inside, an input folder: every DataModule hyper-parameter whose name
  ends in ``root`` or ``_dir`` (``predict_root``, ``train_root``, DPED's ``root``, ...) and the folder of
  every predict input file, all compared after ``Path.resolve()`` (so symlinks do not fool it);
* an output file that is one of the predict input files (same resolved path);
* two predictions with the same output file (``a.jpg`` and ``a.png`` both → ``a.png``; compared
  case-insensitively, path included, as on macOS / Windows file systems);
* a name that is absolute, has an empty, ``.`` or ``..`` component, a backslash or NUL, or whose file resolves
  outside the output folder (e.g. through a symbolic link inside it);
* an output file that already exists, unless ``overwrite=True`` (``--run.overwrite true``):
  :class:`OutputExistsError`, naming the file.

The names are known up front for the predict datasets of the Darkroom DataModules (``ImageFileDataset``:
``names`` / ``files``; ``FusionPairDataset``: ``pairs``; ``ExposureStackDataset``: ``stacks``). For any other
dataset the same checks run per batch, before anything of that batch is written. Files are written atomically
(:func:`datamodules.image_io.write_image`: temporary file in the same folder, then ``os.replace``), so a killed
run leaves only complete PNGs.

Unreadable inputs: the DataModules decode every predict file at ``setup`` and stop, naming the file, unless
told to skip them (``--run.skip_bad true``); the skipped files (a dataset's ``skipped`` list of
``(file, reason)``) are reported here, one line each, before the first batch. When predict ends the writer
prints one summary line: ``predict: 17 images written to OUT, 0 skipped, 6.2 s``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from datamodules.base import DarkroomDataModule
from datamodules.image_io import write_image

OVERWRITE_HINT = ("pass --run.overwrite true (ImageWriter(overwrite=True)) to replace it, "
                  "or choose another --run.output_dir")


class UnsafeOutputError(ValueError):
    """``predict`` would write into its inputs, over one of its own outputs, or outside its output folder."""


class OutputExistsError(UnsafeOutputError):
    """An output file already exists and the writer was not told to overwrite."""


def input_folders(datamodule: DarkroomDataModule | None) -> list[tuple[str, Path]]:
    """``(label, resolved folder)`` for every data folder of the DataModule (:meth:`~datamodules.base.DarkroomDataModule.roots`).

    Labels read like the CLI argument (``data.predict_root=photos``).
    """
    if datamodule is None:
        return []
    return [(f"data.{key}={value}", Path(value).expanduser().resolve()) for key, value in datamodule.roots().items()]


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
        skipped: ``(input file, reason)`` of the unreadable inputs the DataModule left out (``--run.skip_bad``).
        summary: the summary line of the last finished run (``predict: N images written to …``).
    """

    def __init__(self, output_dir: str | Path, overwrite: bool = False) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.overwrite = overwrite
        self.written: list[Path] = []
        self.skipped: list[tuple[Path, str]] = []
        self.summary: str | None = None
        self._notes = 0  # items written with a note (predict_step's "notes")
        self._started = time.perf_counter()  # the CLI makes the writer just before the run: the time counts setup
        self._claimed: dict[str, str] = {}  # casefolded output file name → what it comes from (this run)
        self._done: set[str] = set()  # casefolded output file names written in this run
        self._inputs: dict[Path, Path] = {}  # resolved input file → as given

    # ------------------------------------------------------------------------------------------- checks
    @property
    def resolved_dir(self) -> Path:
        return self.output_dir.expanduser().resolve()

    def target(self, name: str) -> Path:
        """``<output_dir>/<name>.png``; ``name`` is a file name or a relative path with ``/`` separators
        (``DICM/01``). Anything else (absolute, an empty / ``.`` / ``..`` component, ``\\`` or NUL) is an
        :class:`UnsafeOutputError`."""
        parts = name.split("/") if isinstance(name, str) else []
        plain = bool(parts) and all(p not in ("", ".", "..") and not any(c in p for c in "\\\0") for p in parts)
        if not plain:
            raise UnsafeOutputError(
                f"prediction name {name!r} is not a plain file name or relative path; it would be written outside "
                f"{self.output_dir}"
            )
        return self.output_dir.joinpath(*parts[:-1], f"{parts[-1]}.png")

    def _key(self, target: Path) -> str:
        """What identifies an output file across file systems: its path below the output folder, casefolded."""
        return target.relative_to(self.output_dir).as_posix().casefold()

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
        out = self.resolved_dir
        for target, source in zip(targets, sources, strict=True):
            key = self._key(target)
            if key in claimed:
                raise UnsafeOutputError(
                    f"two predictions map to the same output file {target}: {claimed[key]} and {source}; "
                    f"rename one of the inputs"
                )
            claimed[key] = source
            resolved = target.expanduser().resolve()
            if out not in resolved.parents:
                raise UnsafeOutputError(
                    f"output file {target} resolves to {resolved}, outside --run.output_dir {self.output_dir} "
                    f"(resolved {out}), through a symbolic link; predict writes only inside its output folder"
                )
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
        self._notes = 0
        datamodule = getattr(trainer, "datamodule", None)
        datasets = [getattr(dl, "dataset", None) for dl in _loaders(getattr(trainer, "predict_dataloaders", None))]
        if not datasets and datamodule is not None:
            datasets = [getattr(datamodule, "predict_set", None)]
        self.skipped = [item for d in datasets for item in (getattr(d, "skipped", None) or [])]
        for _, reason in self.skipped:
            print(f"predict: skipped (unreadable): {reason}", file=sys.stderr)
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
        keys = [self._key(t) for t in targets]
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
        notes = prediction.get("notes") or [""] * len(names)
        notes = [notes] if isinstance(notes, str) else list(notes)
        for image, target, key, note in zip(outputs, targets, keys, notes, strict=True):
            self.written.append(write_image(target, image))
            self._done.add(key)
            if note:
                self._notes += 1
                print(f"predict: {target}: {note}", file=sys.stderr)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """One summary line: images written, skipped, seconds (since the writer was made, or the last run)."""
        seconds = time.perf_counter() - self._started
        noted = self._notes
        n = len(self.written)
        self.summary = (f"predict: {n} image{'' if n == 1 else 's'} written to {self.output_dir}, {len(self.skipped)} "
                        f"skipped, {seconds:.1f} s" + (f" ({noted} with a note above)" if noted else ""))
        print(self.summary)
        self._started = time.perf_counter()
