"""Before/after image grids: built once, logged to every logger that takes images, saved as PNG."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from datamodules.image_io import write_image


def make_grid(columns: list[torch.Tensor], max_rows: int = 4, height: int = 160, pad: int = 2) -> torch.Tensor:
    """Lay out images as a grid: one column per tensor (e.g. input | output | target), one row per sample.

    Args:
        columns: tensors N×C×H×W in [0, 1] (C = 1 or 3; sizes may differ between columns).
        max_rows: at most this many samples.
        height: every tile is resized to this height, keeping its aspect ratio.

    Returns:
        3×H'×W' tensor in [0, 1] with white padding.
    """
    rows = []
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
        rows.append(torch.cat(tiles, dim=-1))
    width = max(r.shape[-1] for r in rows)
    rows = [F.pad(r, (0, width - r.shape[-1]), value=1.0) for r in rows]
    return torch.cat(rows, dim=-2)[0]


def log_grid(module, key: str, columns: list[torch.Tensor], captions: list[str] | None = None,
             folder: str = "images") -> Path | None:
    """Log a grid to W&B (``log_image``) and write it as PNG under ``<trainer.default_root_dir>/<folder>/``.

    Runs on global rank zero only. Returns the PNG path.
    """
    trainer = module.trainer
    if trainer is None or not trainer.is_global_zero:
        return None
    grid = make_grid(columns)
    step = trainer.global_step
    path = Path(trainer.default_root_dir) / folder / f"{key.replace('/', '_')}_step{step:06d}.png"
    write_image(path, grid)
    caption = " | ".join(captions) if captions else None
    for logger in trainer.loggers:
        if hasattr(logger, "log_image"):
            logger.log_image(key=key, images=[grid.permute(1, 2, 0).numpy()], step=step,
                             caption=[caption] if caption else None)
    return path


def save_samples(module, names: list[str], columns: dict[str, torch.Tensor], first_index: int, limit: int = 8,
                 folder: str = "samples") -> None:
    """Write the first ``limit`` test samples of a run, one PNG per column and sample:
    ``<trainer.default_root_dir>/samples/<column>/<name>.png`` (e.g. columns input / output / target).

    ``first_index`` is the position of the batch's first sample in the test set (``batch_idx ·
    batch size``); samples from ``limit`` on are not written. ``darkroom compare`` lays these out side
    by side across runs. Rank zero only.
    """
    trainer = module.trainer
    if trainer is None or not trainer.is_global_zero or first_index >= limit:
        return
    root = Path(trainer.default_root_dir) / folder
    for i, name in enumerate(names[: limit - first_index]):
        for column, images in columns.items():
            img = images[i].detach().float().cpu().clamp(0, 1)
            write_image(root / column / f"{name}.png", img.expand(3, -1, -1) if img.shape[0] == 1 else img)


def side_by_side(sources: torch.Tensor) -> torch.Tensor:
    """N×K×C×H×W (a stack or a pair of sources) → N×C×H×(K·W), the sources next to each other."""
    n, k, c, h, w = sources.shape
    return sources.permute(0, 2, 3, 1, 4).reshape(n, c, h, k * w)
