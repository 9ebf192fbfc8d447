"""Per-image test results: one row per image or pair, every metric, the ids the grids and ``samples/`` use.

Each LightningModule records its test batches into a :class:`PerImageRows` (``module.per_image``); the
``darkroom`` command's :class:`experiments.callbacks.ResultsWriter` gathers the rows of every process,
writes them to ``per_image.csv`` and reports each summary metric as the mean of its rows, as the papers
average per-image scores.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection


def per_image_scores(metrics: Metric | MetricCollection, prefix: str = "") -> dict[str, Tensor]:
    """The last batch's per-image scores of ``metrics``, by column name.

    Reads ``last_scores`` (a Tensor[N], or a ``{name: Tensor[N]}`` dict for multi-value metrics such as
    :class:`metrics.fusion.FusionMetrics`). Column names: a collection's keys without their stage
    (``test/input_psnr`` → ``input_psnr``); a dict's names lower-cased after ``prefix``.
    Metrics without per-image values (batch-level ones, or not updated since the last read) are left out:
    reading consumes the values, so a metric skipped for one batch never repeats an older batch's scores.
    """
    items = metrics.items() if isinstance(metrics, MetricCollection) else [("", metrics)]
    out: dict[str, Tensor] = {}
    for key, metric in items:
        column = prefix + key.split("/", 1)[-1]
        scores = getattr(metric, "last_scores", None)
        if isinstance(scores, Tensor):
            out[column] = scores
            metric.last_scores = None
        elif isinstance(scores, Mapping):
            out.update({f"{column}{k.lower()}": v for k, v in scores.items()})
            metric.last_scores = {}
    return out


class PerImageRows:
    """Rows ``{"id", ["group"], metric: value}`` keyed by id; several :meth:`add` calls for one id merge."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, object]] = {}

    def reset(self) -> None:
        self.rows = {}

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, names: Sequence[str], scores: Mapping[str, Tensor | None],
            groups: Sequence[str] | None = None) -> None:
        """Record N images: ``names`` (N ids), ``scores`` ``{column: Tensor[N]}``, optional N ``groups``."""
        columns = {k: v.detach().double().cpu().tolist() for k, v in scores.items() if v is not None}
        for k, values in columns.items():
            if len(values) != len(names):
                raise ValueError(f"per-image column {k!r} has {len(values)} values for {len(names)} images")
        for i, name in enumerate(names):
            row = self.rows.setdefault(str(name), {"id": str(name)})
            if groups is not None:
                row["group"] = str(groups[i])
            row.update({k: v[i] for k, v in columns.items()})

    def add_metrics(self, names: Sequence[str], *metrics: Metric | MetricCollection,
                    groups: Sequence[str] | None = None) -> None:
        """:meth:`add` the last batch of each metric (see :func:`per_image_scores`)."""
        scores: dict[str, Tensor] = {}
        for m in metrics:
            scores.update(per_image_scores(m))
        self.add(names, scores, groups)


def gather_rows(rows: Iterable[dict], world_size: int) -> list[dict]:
    """The rows of every process (``torch.distributed.all_gather_object``), merged by id; call on all ranks."""
    local = list(rows)
    if world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        parts: list[list[dict] | None] = [None] * world_size
        torch.distributed.all_gather_object(parts, local)
        local = [r for part in parts for r in (part or [])]
    merged: dict[str, dict] = {}
    for r in local:
        merged.setdefault(r["id"], {}).update(r)
    return list(merged.values())


def order_rows(rows: list[dict], order: Sequence[str] | None) -> list[dict]:
    """Rows in dataset order (``order`` = the dataset's ids); ids not in it follow in their current order."""
    if not order:
        return rows
    rank = {name: i for i, name in enumerate(order)}
    return sorted(rows, key=lambda r: rank.get(r["id"], len(rank)))


def metric_columns(rows: Sequence[dict]) -> list[str]:
    """Metric column names in first-seen order."""
    seen: dict[str, None] = {}
    for r in rows:
        for k in r:
            if k not in ("id", "group"):
                seen.setdefault(k, None)
    return list(seen)


def column_means(rows: Sequence[dict]) -> dict[str, float]:
    """Mean of each metric column over the rows that have it (NaN propagates: a NaN row makes the mean NaN)."""
    out = {}
    for column in metric_columns(rows):
        values = [float(r[column]) for r in rows if r.get(column) is not None]
        out[column] = math.fsum(values) / len(values) if values else math.nan
    return out


def group_summaries(rows: Sequence[dict]) -> dict[str, dict]:
    """``{group: {"count": n, "metrics": means}}`` for rows with a group (``""`` = the root folder)."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if "group" in r:
            groups.setdefault(str(r["group"]), []).append(r)
    return {g: {"count": len(rs), "metrics": column_means(rs)} for g, rs in groups.items()}


def rows_to_csv(rows: Sequence[dict]) -> str:
    """CSV text: ``id``, ``group`` (when any row has one), then every metric column; missing values empty."""
    columns = metric_columns(rows)
    head = ["id"] + (["group"] if any("group" in r for r in rows) else []) + columns
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(head)
    for r in rows:
        writer.writerow(["" if r.get(c) is None else (repr(r[c]) if isinstance(r[c], float) else r[c]) for c in head])
    return buf.getvalue()
