"""``darkroom table PAPER``: the paper's tables with our numbers beside the paper's, and the gap.

Reads ``experiments/<paper>/results.yaml`` (the paper's rows, numbers and sources) and the
``results.json`` of our runs (every one below ``--runs``, default ``runs/``; or the W&B API with
``--wandb ENTITY/PROJECT`` when online).

**When a run fills a paper row.** Only rows with a ``match`` key (``{}`` allowed) take runs. A run fills
such a row when all of these hold:

1. ``paper`` is this paper, and the run reports at least one of the table's metrics (with the row's
   ``metric_prefix``: ``input_psnr`` for the unenhanced-input row).
2. Hyper-parameters: each ``match`` key is looked up in the run's ``results.json`` (top level, then
   ``config.model.init_args``, then ``config.data.init_args``, then the full dotted path from
   ``config``), values compared exactly (floats to 1e-9).
3. Dataset: ``results.json`` ``dataset.name`` is the row's ``dataset`` (a name, or a list of names;
   ``null`` = the paper's test set is not found, so no run can fill the row). A results.json without a
   ``dataset`` block (older runs, W&B runs whose config lacks it) never matches.
4. Protocol: every key of the row's ``protocol`` equals the run's ``dataset.protocol`` value (a key the
   run lacks does not match).
5. Variant: ``results.json`` ``variant`` (top level) is the row's ``variant`` (a name or a list).

``dataset``, ``protocol``, ``variant`` and ``count`` may be given per table and overridden per row (a row's
``protocol`` updates the table's). Metric columns are read by their plain name only: a variant column
(``psnr_gtmean``, ``ssim_y``) never fills a ``psnr`` or ``ssim`` column.

When several runs fill a row, runs on the paper's count are preferred, then the most recent; the count of
runs is shown. Rows without a run say so.

**Count.** A run whose dataset has the row's name but not the paper's count (``dataset.count_matches_paper:
false``, or ``dataset.count`` ≠ the table's ``count:`` when results.yaml gives one, which then wins) still
fills the row, but the row carries a warning (``⚠ 11 of 767 pairs``) and *no* Δ: every Δ cell of that
row reads ``n/c`` (not compared), since a gap on another test set is not a gap to the paper.

**Metric notes.** ``metric_notes: {metric: text}`` (per table; YAML anchors share them) is printed
under the table; ``no_delta: [metric, ...]`` lists metrics whose unit or range differs from (or is unknown
against) the paper's: our value is shown, its Δ reads ``n/c``.

**Your runs.** Every run of the paper that fills no row of the tables printed is listed in a second
table under them: dataset, count and unit, training length (steps or epochs; ``official weights`` for
released weights never trained here), variant, its metrics, no Δ, and why it is not in a paper row.

Output: Markdown (default; notes and provenance under each table, ``#### Your runs`` block at the end),
CSV (columns ``warning`` and ``notes`` per row; the your-runs block is a second CSV table after a blank
line), LaTeX (``booktabs`` tabular; warnings in their column, notes as full-width rows; your runs as a
second tabular).

Ablation tables fill from a sweep's runs: ``darkroom table zero_dce --runs runs/sweeps/loss_ablation``.

    darkroom table zero_dce                       # Markdown (default)
    darkroom table zero_dce --format latex        # or csv
    darkroom table zero_dce --table network_size_ablation --runs runs/sweeps/network_size
"""

from __future__ import annotations

import argparse
from pathlib import Path

# This module is the command; what it reads, how rows are filled and how they print live beside it and are
# re-exported here: table_sources (results.yaml, results.json, W&B), table_rows (matching and filling),
# table_render (Markdown, CSV, LaTeX).
from experiments.table_render import (  # noqa: F401  (re-exported)
    _LATEX,
    NOT_COMPARED,
    _csv,
    _delta,
    _fmt,
    _latex_table,
    _provenance,
    _status,
    _table_notes,
    _tex,
    dataset_text,
    render,
    render_other_runs,
)
from experiments.table_rows import (  # noqa: F401  (re-exported)
    _MISSING,
    _REQUIREMENT_KEYS,
    FilledRow,
    OtherRun,
    _equal,
    _get,
    _hyper,
    _metric_notes,
    _names,
    _plural,
    _show,
    count_warning,
    fill_table,
    lookup,
    matching_runs,
    mismatch,
    other_runs,
    requirements,
    training_text,
)
from experiments.table_sources import (  # noqa: F401  (re-exported)
    _WANDB_FIELDS,
    check_spec,
    load_paper_results,
    load_runs,
    load_wandb_runs,
)


def render_all(paper: str, runs: list[dict], fmt: str = "markdown", only: str | None = None) -> str:
    spec = load_paper_results(paper)
    tables = [t for t in spec["tables"] if (only is None or t["name"] == only) and t.get("metrics") and t.get("rows")]
    if not tables:
        raise SystemExit(f"darkroom table: {paper} has no table {only!r} "
                         f"(tables: {', '.join(t['name'] for t in spec['tables'])})")
    filled = [(t, fill_table(t, paper, runs)) for t in tables]
    parts = [render(t, rows, fmt) for t, rows in filled]
    others = other_runs(filled, paper, runs)
    if others:
        metrics = list(dict.fromkeys(m for t in tables for m in t["metrics"]))
        parts.append(render_other_runs(others, metrics, fmt))
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="darkroom table", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paper", help="zero_dce, deepfuse, dped or refusion")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="folder searched for results.json")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", default=None, help="read runs from the W&B API")
    parser.add_argument("--format", choices=["markdown", "csv", "latex"], default="markdown")
    parser.add_argument("--table", default=None, help="only this table (its name in results.yaml)")
    args = parser.parse_args(argv)
    runs = load_wandb_runs(args.wandb, args.paper) if args.wandb else load_runs(args.runs)
    print(render_all(args.paper, runs, args.format, args.table))
