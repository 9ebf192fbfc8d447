"""Build the DPED patch dataset from raw phone/DSLR photo pairs (``darkroom prepare dped``).

:func:`prepare_dped` pairs the files of two folders by stem (:func:`pair_files`), aligns each pair
(:func:`imaging.alignment.align_pair`, :func:`imaging.alignment.warp_to_common`), cuts its patch pairs
(:func:`imaging.patches.extract_patch_pairs`) in a process pool, and writes the REAL DPED layout read
by the official code (``load_dataset.py``, ``test_model.py``) and by :mod:`datamodules.dped`::

    out/<phone>/training_data/<phone>/<i>.jpg      i = 0..N-1, contiguous
    out/<phone>/training_data/canon/<i>.jpg        same i = aligned pair
    out/<phone>/test_data/patches/<phone>/<i>.jpg
    out/<phone>/test_data/patches/canon/<i>.jpg
    out/<phone>/test_data/full_size_test_images/<stem>.jpg   held-out whole phone photos
    out/<phone>/alignment_report.csv / .json       one row per raw pair

Pairs are split at the photo level (a scene never gives both training and test patches). The
alignment and patch choices (documented vs ours) are listed in :mod:`imaging.alignment` and
:mod:`imaging.patches`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from datamodules.image_io import (
    DatasetLayoutError,
    ImageReadError,
    check_image_header,
    list_images,
    natural_key,
    read_image,
    write_uint8,
)
from imaging.alignment import align_pair, warp_to_common
from imaging.patches import extract_patch_pairs

__all__ = ["REPORT_FIELDS", "PrepareReport", "pair_files", "prepare_dped"]


REPORT_FIELDS: tuple[str, ...] = (
    "stem", "phone_file", "dslr_file", "split", "ok", "reason", "n_matches", "n_inliers", "reprojection_error",
    "phone_width", "phone_height", "dslr_width", "dslr_height", "common_width", "common_height",
    "n_candidates", "n_kept", "n_flat", "n_low_similarity", "mean_similarity", "mean_abs_shift",
    "first_index", "seconds",
)


@dataclass
class PrepareReport:
    """What :func:`prepare_dped` did: one row per raw pair (keys :data:`REPORT_FIELDS`) and totals.

    ``split`` is ``"train"``, ``"test"`` (patches in ``test_data/patches``) or ``"full_test"`` (whole
    phone photo in ``test_data/full_size_test_images``; not aligned, no patches). A pair's patches are
    ``first_index .. first_index + n_kept - 1`` of its split's folders.
    """

    out_dir: Path
    phone: str
    rows: list[dict]
    settings: dict
    n_train_patches: int = 0
    n_test_patches: int = 0
    n_full_test_images: int = 0
    seconds: float = 0.0

    @property
    def n_pairs(self) -> int:
        return len(self.rows)

    @property
    def rejected(self) -> list[dict]:
        """Rows of the pairs that were aligned and rejected (with their ``reason``)."""
        return [r for r in self.rows if r["split"] != "full_test" and not r["ok"]]

    def totals(self) -> dict:
        return {"n_pairs": self.n_pairs, "n_rejected_pairs": len(self.rejected),
                "n_train_patches": self.n_train_patches, "n_test_patches": self.n_test_patches,
                "n_full_test_images": self.n_full_test_images, "seconds": round(self.seconds, 3)}

    def summary(self) -> str:
        """A few human-readable lines (what the CLI prints)."""
        t = self.totals()
        lines = [f"DPED layout written to {self.out_dir}: {t['n_train_patches']} training and {t['n_test_patches']} "
                 f"test patch pairs, {t['n_full_test_images']} full-size test images, from {t['n_pairs']} pairs "
                 f"in {t['seconds']:.1f} s",
                 f"{t['n_rejected_pairs']} pair(s) rejected (see {self.out_dir / 'alignment_report.csv'})"]
        lines += [f"  {r['stem']}: {r['reason']}" for r in self.rejected[:10]]
        if len(self.rejected) > 10:
            lines.append(f"  ... and {len(self.rejected) - 10} more")
        return "\n".join(lines)

    def write(self) -> tuple[Path, Path]:
        """Write ``alignment_report.csv`` and ``alignment_report.json`` into :attr:`out_dir`."""
        csv_path, json_path = self.out_dir / "alignment_report.csv", self.out_dir / "alignment_report.json"
        with open(csv_path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(REPORT_FIELDS))
            writer.writeheader()
            writer.writerows([{k: ("" if r.get(k) is None else r.get(k)) for k in REPORT_FIELDS} for r in self.rows])

        def clean(v: object) -> object:
            return None if isinstance(v, float) and not math.isfinite(v) else v

        doc = {"phone": self.phone, "settings": self.settings, "totals": self.totals(),
               "pairs": [{k: clean(r.get(k)) for k in REPORT_FIELDS} for r in self.rows]}
        json_path.write_text(json.dumps(doc, indent=1))
        return csv_path, json_path


@dataclass(frozen=True)
class _PairJob:
    stem: str
    phone_path: str
    dslr_path: str
    split: str
    stage_dir: str
    align: dict
    warp: dict
    patches: dict
    quality: int


def _read_uint8(path: str | Path) -> np.ndarray:
    """An image file as H×W×3 uint8 RGB via :func:`read_image` (exact for 8-bit files)."""
    return (read_image(path) * 255.0 + 0.5).astype(np.uint8)


def _empty_row(stem: str, phone_path: str, dslr_path: str, split: str) -> dict:
    row: dict = dict.fromkeys(REPORT_FIELDS)
    row.update(stem=stem, phone_file=str(phone_path), dslr_file=str(dslr_path), split=split, ok=False,
               n_matches=0, n_inliers=0, n_candidates=0, n_kept=0, n_flat=0, n_low_similarity=0)
    return row


def _process_pair(job: _PairJob) -> dict:
    """Worker: read, align, warp, cut and stage the patches of one pair; returns its report row."""
    start = time.perf_counter()
    row = _empty_row(job.stem, job.phone_path, job.dslr_path, job.split)
    try:
        phone, dslr = _read_uint8(job.phone_path), _read_uint8(job.dslr_path)
    except ImageReadError as err:
        row["reason"] = f"unreadable image: {err}"
        row["seconds"] = round(time.perf_counter() - start, 3)
        return row
    row.update(phone_width=phone.shape[1], phone_height=phone.shape[0], dslr_width=dslr.shape[1],
               dslr_height=dslr.shape[0])
    al = align_pair(phone, dslr, **job.align)
    row.update(n_matches=al.n_matches, n_inliers=al.n_inliers, reason=al.reason,
               reprojection_error=None if not math.isfinite(al.reprojection_error) else round(al.reprojection_error, 4))
    if al.ok:
        try:
            phone_al, dslr_crop = warp_to_common(phone, dslr, al, **job.warp)
        except ValueError as err:
            row["reason"] = f"no common area: {err}"
        else:
            pp, dp, stats = extract_patch_pairs(phone_al, dslr_crop, **job.patches)
            stage = Path(job.stage_dir)
            for k in range(len(pp)):  # one file per patch: a loop over files, not over pixels
                write_uint8(stage / "phone" / f"{k}.jpg", pp[k], quality=job.quality)
                write_uint8(stage / "canon" / f"{k}.jpg", dp[k], quality=job.quality)
            counts = stats.counts()
            row.update(ok=True, common_width=phone_al.shape[1], common_height=phone_al.shape[0],
                       **{k: (round(v, 4) if isinstance(v, float) and math.isfinite(v) else
                              (None if isinstance(v, float) else v)) for k, v in counts.items()})
            if stats.n_kept == 0:
                row.update(ok=False, reason=f"no patch kept ({stats.n_candidates} candidates: {stats.n_flat} flat, "
                                            f"{stats.n_low_similarity} below similarity {job.patches['min_similarity']})")
    row["seconds"] = round(time.perf_counter() - start, 3)
    return row


def _worker_init() -> None:
    """One thread per worker process: the parallelism is over pairs."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def pair_files(phone_dir: str | Path, dslr_dir: str | Path) -> list[tuple[str, Path, Path]]:
    """``(stem, phone_file, dslr_file)`` for files with the same stem in both folders, naturally sorted.

    Raises:
        DatasetLayoutError: a folder is missing or empty, a stem appears twice in one folder, or some
            files have no partner (all of them are listed).
    """
    def by_stem(folder: str | Path, what: str) -> dict[str, Path]:
        files = list_images(folder, what=what)
        out: dict[str, Path] = {}
        for f in files:
            if f.stem in out:
                raise DatasetLayoutError(f"{folder}: two files with the stem {f.stem!r} ({out[f.stem].name}, {f.name}); "
                                         "expected one image per stem")
            out[f.stem] = f
        return out

    phones = by_stem(phone_dir, "phone photos")
    dslrs = by_stem(dslr_dir, "DSLR photos with the same file stems as the phone photos")
    lonely = [str(phones[s]) for s in sorted(phones.keys() - dslrs.keys(), key=natural_key)]
    lonely += [str(dslrs[s]) for s in sorted(dslrs.keys() - phones.keys(), key=natural_key)]
    if lonely:
        shown = "\n  ".join(lonely[:50]) + (f"\n  ... and {len(lonely) - 50} more" if len(lonely) > 50 else "")
        raise DatasetLayoutError(f"{len(lonely)} file(s) without a partner of the same stem in {phone_dir} / "
                                 f"{dslr_dir} (expected pairs phone/<stem>.* + dslr/<stem>.*):\n  {shown}")
    return [(s, phones[s], dslrs[s]) for s in sorted(phones, key=natural_key)]


def prepare_dped(
    phone_dir: str | Path,
    dslr_dir: str | Path,
    out_dir: str | Path,
    phone: str = "iphone",
    *,
    test_fraction: float = 0.05,
    n_full_test: int = 5,
    workers: int | None = None,
    seed: int = 0,
    patch_size: int = 100,
    stride: int | None = None,
    max_shift: int = 4,
    min_similarity: float = 0.9,
    flat_std: float = 0.01,
    ratio: float = 0.75,
    ransac_threshold: float = 3.0,
    min_inliers: int = 30,
    match_max_side: int = 1600,
    output_scale: str | float = "phone",
    quality: int = 95,
    overwrite: bool = False,
    progress: bool = True,
) -> PrepareReport:
    """Align raw phone/DSLR pairs and write the DPED patch layout under ``out_dir/<phone>/``.

    Pairs are the files of ``phone_dir`` and ``dslr_dir`` with the same stem. They are split at the
    photo level with ``seed``: ``n_full_test`` pairs give whole phone photos for
    ``test_data/full_size_test_images`` (their pairs give no patch at all), ``round(test_fraction ·
    rest)`` pairs (≥ 1 when ``test_fraction > 0``) give ``test_data/patches``, the others
    ``training_data``. Each pair is aligned (:func:`align_pair`), warped (:func:`warp_to_common`) and cut
    (:func:`extract_patch_pairs`) in a process pool; patch indices are contiguous from 0 in stem order,
    independent of the number of workers. Rejected pairs are reported, never used.

    Args:
        phone_dir, dslr_dir: folders of raw photos (any image format :mod:`datamodules.image_io` reads).
        out_dir: output root; the layout goes to ``out_dir/<phone>/``.
        phone: phone name used in the layout (DPED: ``iphone``, ``sony``, ``blackberry``).
        test_fraction, n_full_test, seed: the split (see above).
        workers: processes (``None`` = all cores; ≤ 1 = in this process).
        patch_size, stride, max_shift, min_similarity, flat_std: :func:`extract_patch_pairs`.
        ratio, ransac_threshold, min_inliers, match_max_side: :func:`align_pair`.
        output_scale: :func:`warp_to_common`.
        quality: JPEG quality of the patches and of re-encoded full-size images.
        overwrite: replace an existing layout (otherwise an existing one is an error).
        progress: show a tqdm progress bar.

    Returns:
        :class:`PrepareReport` (also written as ``alignment_report.csv`` / ``.json``).

    Raises:
        DatasetLayoutError: missing/empty folders or unpaired files (listed).
        ValueError: a split that leaves no training pair, or invalid settings.
        FileExistsError: the layout exists and ``overwrite`` is False.
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    if not phone or any(c in phone for c in "/\\") or phone in (".", ".."):
        raise ValueError(f"phone must be a plain folder name such as 'iphone', got {phone!r}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if n_full_test < 0:
        raise ValueError(f"n_full_test must be >= 0, got {n_full_test}")
    pairs = pair_files(phone_dir, dslr_dir)
    n = len(pairs)
    rest = n - n_full_test
    n_test = round(test_fraction * rest) if rest > 0 else 0
    if test_fraction > 0 and n_test == 0 and rest >= 2:
        n_test = 1
    if rest - n_test < 1:
        raise ValueError(f"{n} pair(s) in {phone_dir}: with n_full_test={n_full_test} and test_fraction={test_fraction} "
                         "no pair is left for training; add pairs or lower n_full_test / test_fraction")
    order = np.random.default_rng(seed).permutation(n)
    split = np.array(["train"] * n, dtype=object)
    split[order[:n_full_test]] = "full_test"
    split[order[n_full_test: n_full_test + n_test]] = "test"

    root = Path(out_dir) / phone
    targets = [root / "training_data", root / "test_data", root / ".staging"]
    existing = [t for t in targets if t.exists() and any(t.iterdir())]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]}: a DPED layout already exists here; pass overwrite=True "
                              "(--overwrite) to replace it, or choose another output folder")
    for t in targets:
        if t.exists():
            shutil.rmtree(t)
    train_dir, test_dir = root / "training_data", root / "test_data" / "patches"
    full_dir = root / "test_data" / "full_size_test_images"
    for d in (train_dir / phone, train_dir / "canon", test_dir / phone, test_dir / "canon", full_dir):
        d.mkdir(parents=True, exist_ok=True)

    settings = {"phone_dir": str(phone_dir), "dslr_dir": str(dslr_dir), "test_fraction": test_fraction,
                "n_full_test": n_full_test, "seed": seed, "output_scale": output_scale, "quality": quality}
    align_kw = {"ratio": ratio, "ransac_threshold": ransac_threshold, "min_inliers": min_inliers,
                "match_max_side": match_max_side}
    patch_kw = {"size": patch_size, "stride": stride, "max_shift": max_shift, "min_similarity": min_similarity,
                "flat_std": flat_std}
    settings.update(align_kw, **{f"patch_{k}": v for k, v in patch_kw.items()})
    rows: dict[str, dict] = {}
    jobs: list[_PairJob] = []
    for i, (stem, p_file, d_file) in enumerate(pairs):
        if split[i] == "full_test":
            row = _empty_row(stem, str(p_file), str(d_file), "full_test")
            try:
                check_image_header(p_file)
                if p_file.suffix.lower() in (".jpg", ".jpeg"):
                    shutil.copyfile(p_file, full_dir / f"{stem}.jpg")
                else:
                    write_uint8(full_dir / f"{stem}.jpg", _read_uint8(p_file), quality=quality)
                row["ok"] = True
            except ImageReadError as err:
                row["reason"] = f"unreadable image: {err}"
            rows[stem] = row
        else:
            jobs.append(_PairJob(stem, str(p_file), str(d_file), str(split[i]), str(root / ".staging" / str(i)),
                                 align_kw, {"output_scale": output_scale}, patch_kw, quality))

    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    bar = tqdm(total=len(jobs), desc=f"aligning {phone} pairs", unit="pair", disable=not progress)
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            rows[job.stem] = _process_pair(job)
            bar.update()
    else:
        import multiprocessing as mp

        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=mp.get_context("spawn"),
                                 initializer=_worker_init) as pool:
            futures = {pool.submit(_process_pair, job): job for job in jobs}
            for fut in as_completed(futures):
                rows[futures[fut].stem] = fut.result()
                bar.update()
    bar.close()

    # contiguous indices in stem order, whatever the completion order
    counters = {"train": 0, "test": 0}
    dests = {"train": train_dir, "test": test_dir}
    job_by_stem = {j.stem: j for j in jobs}
    ordered = [rows[stem] for stem, _, _ in pairs]
    for row in ordered:
        if row["split"] == "full_test" or not row["ok"]:
            continue
        stage, dest = Path(job_by_stem[row["stem"]].stage_dir), dests[row["split"]]
        row["first_index"] = counters[row["split"]]
        for k in range(row["n_kept"]):
            idx = counters[row["split"]] + k
            os.replace(stage / "phone" / f"{k}.jpg", dest / phone / f"{idx}.jpg")
            os.replace(stage / "canon" / f"{k}.jpg", dest / "canon" / f"{idx}.jpg")
        counters[row["split"]] += row["n_kept"]
    shutil.rmtree(root / ".staging", ignore_errors=True)
    report = PrepareReport(root, phone, ordered, settings, n_train_patches=counters["train"],
                           n_test_patches=counters["test"],
                           n_full_test_images=sum(1 for r in ordered if r["split"] == "full_test" and r["ok"]),
                           seconds=time.perf_counter() - start)
    report.write()
    return report
