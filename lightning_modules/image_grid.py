"""Before/after image grids: built once, logged to every logger that takes images, saved as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from datamodules.atomic_files import atomic_write_text
from datamodules.image_io import write_image


def _text_strip(texts: list[str], widths: list[int], height: int) -> torch.Tensor:
    """A white strip 3×height×sum(widths) with each text centred in its cell (Pillow's default font)."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (sum(widths), height), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    x = 0
    for text, w in zip(texts, widths, strict=True):
        tw = draw.textlength(text, font=font)
        draw.text((x + max(0, (w - tw) / 2), max(0, (height - 11) / 2)), text, fill="black", font=font)
        x += w
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255


def make_grid(columns: list[torch.Tensor], max_rows: int = 4, height: int = 160, pad: int = 2,
              captions: list[str] | None = None, row_names: list[str] | None = None) -> torch.Tensor:
    """Lay out images as a grid: one column per tensor (e.g. input | output | target), one row per sample.

    Args:
        columns: tensors N×C×H×W in [0, 1] (C = 1 or 3; sizes may differ between columns).
        max_rows: at most this many samples.
        height: every tile is resized to this height, keeping its aspect ratio.
        captions: column names, written in a header row above the columns.
        row_names: sample ids, written to the left of each row.

    Returns:
        3×H'×W' tensor in [0, 1] with white padding.
    """
    rows, widths = [], []
    n = min(min(c.shape[0] for c in columns), max_rows)
    for i in range(n):
        tiles = []
        for col in columns:
            img = col[i : i + 1].detach().float().cpu().clamp(0, 1)
            if img.shape[1] == 1:
                img = img.expand(-1, 3, -1, -1)
            w = max(1, round(img.shape[-1] * height / img.shape[-2]))
            img = F.interpolate(img, size=(height, w), mode="bilinear", align_corners=False, antialias=True)
            tiles.append(F.pad(img, (pad, pad, pad, pad), value=1.0))
        widths.append([t.shape[-1] for t in tiles])
        rows.append(torch.cat(tiles, dim=-1)[0])
    label_w = 0
    if row_names:
        label_w = 8 + 6 * max(len(str(r)) for r in row_names[:n])
        rows = [torch.cat([_text_strip([str(name)], [label_w], r.shape[-2]), r], dim=-1)
                for name, r in zip(row_names[:n], rows, strict=False)]
    if captions:
        header = _text_strip([""] + list(captions)[: len(widths[0])], [label_w] + widths[0], 16)
        rows = [header, *rows]
    width = max(r.shape[-1] for r in rows)
    rows = [F.pad(r, (0, width - r.shape[-1]), value=1.0) for r in rows]
    return torch.cat(rows, dim=-2)


def log_grid(module, key: str, columns: list[torch.Tensor], captions: list[str] | None = None,
             folder: str = "images", row_names: list[str] | None = None) -> Path | None:
    """Log a grid to W&B (``log_image``) and write it as PNG under ``<trainer.default_root_dir>/<folder>/``.

    The PNG carries the column names (``captions``) in a header and each row's sample id (``row_names``).
    Runs on global rank zero only. Returns the PNG path.
    """
    trainer = module.trainer
    if trainer is None or not trainer.is_global_zero:
        return None
    grid = make_grid(columns, captions=captions, row_names=row_names)
    step = trainer.global_step
    path = Path(trainer.default_root_dir) / folder / f"{key.replace('/', '_')}_step{step:06d}.png"
    write_image(path, grid)
    caption = " | ".join(captions) if captions else None
    if caption and row_names:
        caption += f" — {', '.join(map(str, row_names[:4]))}"
    for logger in trainer.loggers:
        if hasattr(logger, "log_image"):
            logger.log_image(key=key, images=[grid.permute(1, 2, 0).numpy()], step=step,
                             caption=[caption] if caption else None)
    return path


#: test samples written per run (``samples/<column>/<id>.png``); at 1200×900, 767 SICE pairs × 3 columns
#: would be ~2,300 PNGs (about 2 GB), so only the first ones are kept and ``samples/README.txt`` says so.
SAMPLE_LIMIT = 8


def save_samples(module, names: list[str], columns: dict[str, torch.Tensor], limit: int | None = None,
                 folder: str = "samples") -> None:
    """Write the first ``limit`` (default :data:`SAMPLE_LIMIT`) test samples this process sees, one PNG per
    column and sample: ``<trainer.default_root_dir>/samples/<column>/<id>.png`` (ids may hold folders,
    ``DICM/01``). ``darkroom compare`` lays these out side by side across runs. Rank zero only; the count
    restarts with each test epoch (:func:`finish_samples`).
    """
    trainer = module.trainer
    limit = SAMPLE_LIMIT if limit is None else limit
    seen = getattr(module, "_samples_seen", 0)
    module._samples_seen = seen + len(names)
    if trainer is None or not trainer.is_global_zero or seen >= limit:
        return
    root = Path(trainer.default_root_dir) / folder
    for i, name in enumerate(names[: limit - seen]):
        for column, images in columns.items():
            img = images[i].detach().float().cpu().clamp(0, 1)
            write_image(root / column / f"{name}.png", img.expand(3, -1, -1) if img.shape[0] == 1 else img)
    module._samples_kept = min(limit, seen + len(names))


def finish_samples(module, folder: str = "samples", limit: int | None = None) -> None:
    """End of a test epoch: write ``samples/README.txt`` (how many samples were kept, of how many, and why)."""
    trainer = module.trainer
    seen, kept = getattr(module, "_samples_seen", 0), getattr(module, "_samples_kept", 0)
    module._samples_seen = module._samples_kept = 0
    if trainer is None or not trainer.is_global_zero or not seen:
        return
    limit = SAMPLE_LIMIT if limit is None else limit
    procs = f" of process 0 (of {trainer.world_size})" if trainer.world_size > 1 else ""
    note = (f"{kept} of {seen} test images{procs} are kept here: the first {limit} in test order, one PNG per "
            f"column and image. Every image has a row in ../per_image.csv. The limit (SAMPLE_LIMIT in "
            f"lightning_modules/image_grid.py) keeps a full test set (767 SICE pairs at 1200x900 would be about "
            f"2 GB of PNGs) off the disk; `darkroom predict` writes every output.\n")
    atomic_write_text(Path(trainer.default_root_dir) / folder / "README.txt", note)


def side_by_side(sources: torch.Tensor) -> torch.Tensor:
    """N×K×C×H×W (a stack or a pair of sources) → N×C×H×(K·W), the sources next to each other."""
    n, k, c, h, w = sources.shape
    return sources.permute(0, 2, 3, 1, 4).reshape(n, c, h, k * w)
