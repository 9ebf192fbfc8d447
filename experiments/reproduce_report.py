"""The report of ``darkroom reproduce`` (:mod:`experiments.reproduce`): a Markdown table per epoch and per image, the
learning curve as a PNG and a side-by-side grid (input | ours | official).

Two forms: an enhancement recipe without labels (Zero-DCE) is scored against the official model's outputs
(:func:`write_report`'s to-official form: PSNR / SSIM to the official model, plus each model's NIQE / LOE); any other
recipe reports its own test metrics for ours per epoch, the official model and the training-free baselines that
the test scores on the same images (:func:`write_metrics_report`).

Every figure names what it was measured on: the test photos (count, the dataset block's file-list hash), the
training length (epochs of the kept checkpoint) and the precision of evaluation (fp32, ``darkroom test``'s default).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from datamodules.atomic_files import atomic_write_text
from datamodules.image_io import load_tensor, write_image
from lightning_modules.image_grid import make_grid

if TYPE_CHECKING:
    from experiments.reproduce import Evaluation, Recipe

#: PSNR to the official model that the reproduction issue targets: the mean, and the worst photo.
TARGET_MEAN_DB, TARGET_MIN_DB = 30.0, 25.0


def _results(path: Path | None) -> dict:
    return json.loads(path.read_text()) if path is not None and path.is_file() else {}


def _per_image(results_json: Path | None) -> list[dict]:
    """Rows of the run's ``per_image_<tag>.csv`` (the one next to ``results.json`` of the same test)."""
    if results_json is None:
        return []
    files = sorted(results_json.parent.glob("per_image_*.csv"))
    if not files:
        return []
    with files[-1].open() as f:
        return list(csv.DictReader(f))


def _photo_id(row_id: str) -> str:
    """The photo of a paired row: the official-label layout names each photo ``<id>_<id>`` (sequence folder + file)."""
    half = (len(row_id) - 1) // 2
    return row_id[:half] if len(row_id) % 2 == 1 and row_id == f"{row_id[:half]}_{row_id[:half]}" else row_id


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def curve_png(points: list[tuple[int, float]], path: Path, title: str, target: float | None = None,
              size: tuple[int, int] = (640, 400), target_label: str = "target") -> Path:
    """A line plot of ``(epoch, value)`` points as PNG (Pillow; a dashed line at ``target``, labelled
    ``target_label``), axes labelled; the value axis spans the data with a tenth of its range either side."""
    from PIL import Image, ImageDraw, ImageFont

    w, h = size
    left, right, top, bottom = 60, 20, 36, 44
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    xs = [p[0] for p in points] or [0, 1]
    ys = [p[1] for p in points] + ([target] if target is not None else [])
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    span = (max(ys) - min(ys)) or abs(max(ys)) * 0.1 or 1.0
    y0, y1 = min(ys) - span / 10, max(ys) + span / 10
    digits = max(1, min(4, 1 - math.floor(math.log10(span / 5))))

    def at(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * (w - left - right), h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom))

    draw.rectangle([left, top, w - right, h - bottom], outline="black")
    for k in range(6):
        y = y0 + (y1 - y0) * k / 5
        draw.text((4, at(x0, y)[1] - 6), f"{y:.{digits}f}", fill="black", font=font)
    for x in sorted(set(xs)):
        draw.text((at(x, y0)[0] - 4, h - bottom + 6), str(x), fill="black", font=font)
    if target is not None:
        ty = at(x0, target)[1]
        for sx in range(left, w - right, 12):
            draw.line([sx, ty, min(sx + 6, w - right), ty], fill=(200, 0, 0))
        draw.text((w - right - 120, ty - 14), f"{target_label} {target:.{digits + 1}g}", fill=(200, 0, 0), font=font)
    if len(points) > 1:
        draw.line([at(x, y) for x, y in points], fill=(0, 70, 160), width=2)
    for x, y in points:
        cx, cy = at(x, y)
        draw.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=(0, 70, 160))
    draw.text((left, 10), title, fill="black", font=font)
    draw.text((w // 2 - 20, h - 18), "epoch", fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def grid_png(samples: Path, path: Path, height: int = 160, official: Path | None = None) -> Path | None:
    """input | ours | official for every image a test saved: ``samples/{input,output,target}/<id>.png`` of a paired
    test, or (``official`` given) the official model's ``output`` from its own test's samples folder."""
    names = sorted(p.stem for p in (samples / "output").glob("*.png")) if (samples / "output").is_dir() else []
    if official is not None:
        names = [n for n in names if (official / "output" / f"{n}.png").is_file()]
    columns = [samples / "input", samples / "output", official / "output" if official else samples / "target"]
    rows = []
    for i, name in enumerate(names):
        images = [load_tensor(c / f"{name}.png")[None] for c in columns]
        rows.append(make_grid(images, max_rows=1, height=height, captions=["input", "ours", "official"] if i == 0
                              else None, row_names=[name]))
    if not rows:
        return None
    width = max(r.shape[-1] for r in rows)
    rows = [F.pad(r, (0, width - r.shape[-1]), value=1.0) for r in rows]
    write_image(path, torch.cat(rows, dim=-2))
    return path


def write_report(out: Path, paper: str, evaluations: list[Evaluation], sources: dict[str, str],
                 recipe: Recipe | None = None) -> Path:
    """``<out>/report.md`` with ``learning_curve.png`` and ``grid.png`` beside it; returns the report's path.
    ``recipe`` (default: an enhancement recipe scored against the official outputs) picks the form."""
    if recipe is not None and not recipe.to_official:
        return write_metrics_report(out, paper, evaluations, sources, recipe)
    official = _results(evaluations[0].photos)
    ours = [e for e in evaluations if e.epoch is not None]
    dataset = official.get("dataset") or {}
    lines = [f"# Darkroom reproduction: {paper}", "",
             f"Training data `{sources['data']}`; test photos `{sources['test']}` ({dataset.get('count', '?')} "
             f"images, file list SHA-256 `{str(dataset.get('sha256', ''))[:12]}…`); official weights "
             f"`{sources['reference']}`. Evaluation: `darkroom test`, fp32, batch 1, native size. PSNR / SSIM are "
             "of our output against the official model's output (8-bit PNG) on the same photo; NIQE / LOE / "
             "brightness are each model's own (no reference).", "",
             "| model | epochs | PSNR to official (dB) ↑ | worst photo (dB) | SSIM to official ↑ | NIQE ↓ | LOE ↓ | "
             "brightness |", "|---|---|---|---|---|---|---|---|"]
    m = official.get("metrics", {})
    lines.append(f"| official | – | – | – | – | {_fmt(m.get('niqe'))} | {_fmt(m.get('loe'), 1)} | "
                 f"{_fmt(m.get('brightness'))} |")
    if m.get("input_niqe") is not None:
        lines.append(f"| input | – | – | – | – | {_fmt(m.get('input_niqe'))} | – | {_fmt(m.get('input_brightness'))} |")
    curve: list[tuple[int, float]] = []
    for e in ours:
        photos, paired = _results(e.photos).get("metrics", {}), _results(e.to_official).get("metrics", {})
        rows = _per_image(e.to_official)
        worst = min((float(r["psnr"]) for r in rows if r.get("psnr")), default=None)
        if paired.get("psnr") is not None:
            curve.append((e.epoch, float(paired["psnr"])))
        lines.append(f"| ours | {e.epoch} | {_fmt(paired.get('psnr'), 2)} | {_fmt(worst, 2)} | "
                     f"{_fmt(paired.get('ssim'))} | {_fmt(photos.get('niqe'))} | {_fmt(photos.get('loe'), 1)} | "
                     f"{_fmt(photos.get('brightness'))} |")
    out.mkdir(parents=True, exist_ok=True)
    curve_png(curve, out / "learning_curve.png", f"{paper}: mean PSNR of ours to the official model",
              target=TARGET_MEAN_DB)
    lines += ["", f"Target: mean ≥ {TARGET_MEAN_DB:g} dB with no photo below {TARGET_MIN_DB:g} dB.", "",
              "![learning curve](learning_curve.png)", ""]
    if ours:
        last = ours[-1]
        rows = _per_image(last.to_official)
        lines += [f"## Per photo, epoch {last.epoch}", "", "| photo | PSNR to official (dB) | SSIM to official |",
                  "|---|---|---|"]
        lines += [f"| {_photo_id(r['id'])} | {_fmt(float(r['psnr']), 2)} | {_fmt(float(r['ssim']))} |" for r in rows
                  if r.get("psnr")]
        grid = grid_png(last.to_official.parent / "samples", out / "grid.png") if last.to_official else None
        if grid is not None:
            lines += ["", "![input | ours | official](grid.png)"]
    report = out / "report.md"
    atomic_write_text(report, "\n".join(lines) + "\n")
    return report


#: Metrics where lower is better (every other reported metric: higher is better).
LOWER_IS_BETTER = frozenset({"niqe", "loe", "mse", "lpips"})


def _arrow(metric: str) -> str:
    return "↓" if metric in LOWER_IS_BETTER else "↑"


def write_metrics_report(out: Path, paper: str, evaluations: list[Evaluation], sources: dict[str, str],
                         recipe: Recipe) -> Path:
    """The report of a recipe scored by its own test metrics: one row for the official model, one per training-free
    baseline (scored by the official model's test, on the same images) and one per epoch of ours; the learning
    curve of ``recipe.curve`` with the official model's value as the dashed line; the per-image table of the
    curve metric for the last epoch, the best epoch, the official model and the baselines; the grid."""
    official_run = _results(evaluations[0].photos)
    official = official_run.get("metrics", {})
    ours = [e for e in evaluations if e.epoch is not None]
    dataset = official_run.get("dataset") or {}
    metrics = [m for m in recipe.metrics if m in official] or sorted(k for k in official if "_" not in k)
    holdout = f" (held out from training: {sources['holdout']})" if sources.get("holdout") else ""
    lines = [f"# Darkroom reproduction: {paper}", "",
             f"Training data `{sources['data']}`; test set `{sources['test']}`{holdout}: {dataset.get('count', '?')} "
             f"{dataset.get('unit', 'images').rstrip('s') if dataset.get('count') == 1 else dataset.get('unit', 'images')}, file list SHA-256 `{str(dataset.get('sha256', ''))[:12]}…`; official "
             f"weights `{sources['reference']}`. Evaluation: `darkroom test` of `{recipe.recipe}` + "
             f"`{recipe.overlay}`, fp32, batch 1; the mean over the test set. The baselines need no training: the "
             "official model's test scores them on the same images.", "",
             "| model | epochs | " + " | ".join(f"{m} {_arrow(m)}" for m in metrics) + " |",
             "|---|---|" + "---|" * len(metrics)]

    def row(name: str, epochs: str, values: dict, prefix: str = "") -> str:
        return f"| {name} | {epochs} | " + " | ".join(_fmt(values.get(prefix + m), 4) for m in metrics) + " |"

    lines.append(row("official", "–", official))
    lines += [row(name, "–", official, prefix) for prefix, name in recipe.baselines]
    curve: list[tuple[int, float]] = []
    scores: dict[int, dict] = {}
    for e in ours:
        scores[e.epoch] = _results(e.photos).get("metrics", {})
        if scores[e.epoch].get(recipe.curve) is not None:
            curve.append((e.epoch, float(scores[e.epoch][recipe.curve])))
        lines.append(row("ours", str(e.epoch), scores[e.epoch]))
    out.mkdir(parents=True, exist_ok=True)
    target = official.get(recipe.curve)
    curve_png(curve, out / "learning_curve.png", f"{paper}: {recipe.curve} of ours per epoch (dashed: official)",
              target=float(target) if target is not None else None, target_label="official")
    lines += ["", f"![learning curve of {recipe.curve}](learning_curve.png)", ""]
    if ours:
        last = ours[-1]
        best = max((e for e in ours if e.epoch in dict(curve)), key=lambda e: dict(curve)[e.epoch], default=last)
        per = {label: {r["id"]: r for r in _per_image(path)} for label, path in
               (("last", last.photos), ("best", best.photos), ("official", evaluations[0].photos))}
        m = recipe.curve
        heads = [f"ours, epoch {last.epoch} (last)"] + ([f"ours, epoch {best.epoch} (best)"] if best is not last
                                                         else []) + ["official"] + [n for _, n in recipe.baselines]
        lines += [f"## {m} per image", "", "| image | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
        for ident, off in per["official"].items():
            cells = [per["last"].get(ident, {}).get(m)] + ([per["best"].get(ident, {}).get(m)] if best is not last
                                                           else [])
            cells += [off.get(m)] + [off.get(prefix + m) for prefix, _ in recipe.baselines]
            lines.append(f"| {ident} | " + " | ".join(_fmt(float(c) if c not in (None, "") else None, 4)
                                                       for c in cells) + " |")
        grid = grid_png(last.photos.parent / "samples", out / "grid.png",
                        official=evaluations[0].photos.parent / "samples")
        if grid is not None:
            lines += ["", f"![input | ours, epoch {last.epoch} | official](grid.png)"]
    report = out / "report.md"
    atomic_write_text(report, "\n".join(lines) + "\n")
    return report
