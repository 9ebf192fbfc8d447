"""``darkroom table PAPER``: the paper's tables with our numbers beside the paper's, and the gap.

Reads ``experiments/<paper>/results.yaml`` (the paper's rows, numbers and sources) and the
``results.json`` of our runs (every one below ``--runs``, default ``runs/``; or the W&B API with
``--wandb ENTITY/PROJECT`` when online). A row's ``match`` says which runs reproduce it: each key is
looked up in the run's ``results.json`` (top level, then ``config.model.init_args``, then
``config.data.init_args``, then the full dotted path from ``config``), values compared exactly (floats
to 1e-9); ``metric_prefix`` picks prefixed metrics (``input_psnr`` for the unenhanced-input row).
When several runs match (and report the row's metrics), the most recent wins and the count is shown. Rows without a run say so.
Ablation tables fill from a sweep's runs: ``darkroom table zero_dce --runs runs/sweeps/loss_ablation``.

    darkroom table zero_dce                       # Markdown (default)
    darkroom table zero_dce --format latex        # or csv
    darkroom table zero_dce --table network_size_ablation --runs runs/sweeps/network_size
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from experiments.env import REPO_ROOT

_MISSING = object()


def load_paper_results(paper: str) -> dict:
    path = REPO_ROOT / "experiments" / paper / "results.yaml"
    if not path.is_file():
        known = sorted(p.parent.name for p in (REPO_ROOT / "experiments").glob("*/results.yaml"))
        raise SystemExit(f"darkroom table: no {path} (papers with results: {', '.join(known)})")
    return yaml.safe_load(path.read_text())


def load_runs(root: Path) -> list[dict]:
    """Every ``results.json`` below ``root`` (each with ``_path`` added)."""
    runs = []
    for path in sorted(Path(root).glob("**/results.json")):
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        data["_path"] = str(path)
        runs.append(data)
    return runs


def load_wandb_runs(path: str, paper: str) -> list[dict]:
    """Runs of ``ENTITY/PROJECT`` in group ``paper`` from the W&B API, as results.json-like dicts."""
    from experiments.env import wandb_configured

    if not wandb_configured():
        raise SystemExit("darkroom table --wandb: W&B is not configured (wandb login); use local --runs instead")
    import wandb

    runs = []
    for run in wandb.Api().runs(path, filters={"group": paper}):
        metrics = {k.split("/", 1)[1]: v for k, v in run.summary.items()
                   if isinstance(k, str) and k.startswith("test/") and isinstance(v, (int, float))}
        if metrics:
            runs.append({"paper": paper, "metrics": metrics, "config": dict(run.config), "run_dir": run.url,
                         "git_commit": (run.metadata or {}).get("git", {}).get("commit"), "checkpoint": None,
                         "dataset_root": {}, "time": run.created_at, "_path": run.url})
    return runs


def lookup(run: dict, key: str) -> Any:
    """A ``match`` key's value in a run's results (see the module docstring for the search order)."""
    config = run.get("config") or {}
    places = [run, _get(config, "model.init_args"), _get(config, "data.init_args"), config]
    for place in places:
        if isinstance(place, dict):
            value = _get(place, key)
            if value is not _MISSING:
                return value
    return _MISSING


def _get(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if isinstance(data, dict) and part in data:
            data = data[part]
        else:
            return _MISSING
    return data


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def matching_runs(runs: list[dict], paper: str, match: dict) -> list[dict]:
    crit = {k: v for k, v in match.items() if k != "metric_prefix"}
    found = [r for r in runs if r.get("paper") == paper
             and all(_equal(lookup(r, k), v) for k, v in crit.items())]
    return sorted(found, key=lambda r: str(r.get("time", "")), reverse=True)


@dataclass
class FilledRow:
    method: str
    paper: dict[str, float | None]
    ours: dict[str, float | None]
    run: dict | None
    n_runs: int
    source: str | None = None
    note: str | None = None
    provenance: dict = field(default_factory=dict)


def fill_table(table: dict, paper: str, runs: list[dict]) -> list[FilledRow]:
    metrics = list(table["metrics"])
    rows = []
    for row in table["rows"]:
        match = row.get("match")
        prefix = (match or {}).get("metric_prefix", "")
        found = matching_runs(runs, paper, match) if match else []
        found = [r for r in found if any(prefix + m in r.get("metrics", {}) for m in metrics)]
        best = found[0] if found else None
        ours = {m: (best["metrics"].get(prefix + m) if best else None) for m in metrics}
        prov = {}
        if best:
            prov = {"run": best.get("run_dir") or best.get("_path"), "commit": best.get("git_commit"),
                    "checkpoint": best.get("checkpoint") or best.get("pretrained"),
                    "dataset_root": best.get("dataset_root")}
        rows.append(FilledRow(method=row["method"], paper={m: row.get(m) for m in metrics}, ours=ours, run=best,
                              n_runs=len(found), source=row.get("source"), note=row.get("note"), provenance=prov))
    return rows


def _fmt(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _status(row: FilledRow, has_match: bool) -> str:
    if row.run is not None:
        return f"{Path(str(row.provenance['run'])).name}" + (f" (+{row.n_runs - 1} more)" if row.n_runs > 1 else "")
    return "no run" if has_match else "not reproduced here"


def render(table: dict, rows: list[FilledRow], fmt: str = "markdown") -> str:
    metrics = list(table["metrics"])
    header = ["method"]
    for m in metrics:
        header += [f"{m} paper", f"{m} ours", f"{m} Δ"]
    header.append("run")
    body = []
    has_match = {r["method"]: bool(r.get("match")) for r in table["rows"]}
    for row in rows:
        cells = [row.method]
        for m in metrics:
            p, o = row.paper[m], row.ours[m]
            cells += [_fmt(p), _fmt(o), _fmt(o - p) if (p is not None and o is not None) else "–"]
        cells.append(_status(row, has_match[row.method]))
        body.append(cells)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(header)
        writer.writerows(body)
        return buf.getvalue()
    if fmt == "latex":
        cols = "l" + "rrr" * len(metrics) + "l"
        esc = [[c.replace("_", r"\_").replace("%", r"\%").replace("Δ", r"$\Delta$").replace("–", "--")
                for c in line] for line in [header, *body]]
        lines = [r"\begin{tabular}{" + cols + "}", r"\toprule", " & ".join(esc[0]) + r" \\", r"\midrule"]
        lines += [" & ".join(line) + r" \\" for line in esc[1:]]
        lines += [r"\bottomrule", r"\end{tabular}"]
        return f"% {table.get('caption', '')} — {table.get('source', '')}\n" + "\n".join(lines)
    lines = [f"### {table.get('caption', table['name'])}", "", f"Paper numbers: {table.get('source', 'n/a')}", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(line) + " |" for line in body]
    notes = [f"- {r.method}: run {r.provenance['run']}, commit {r.provenance['commit']}, "
             f"checkpoint {r.provenance['checkpoint']}, data {json.dumps(r.provenance['dataset_root'])}"
             for r in rows if r.run is not None]
    notes += [f"- {r.method}: {r.note}" for r in rows if r.note]
    if notes:
        lines += ["", "Provenance and notes:", *notes]
    return "\n".join(lines)


def render_all(paper: str, runs: list[dict], fmt: str = "markdown", only: str | None = None) -> str:
    spec = load_paper_results(paper)
    tables = [t for t in spec["tables"] if (only is None or t["name"] == only) and t.get("metrics") and t.get("rows")]
    if not tables:
        raise SystemExit(f"darkroom table: {paper} has no table {only!r} "
                         f"(tables: {', '.join(t['name'] for t in spec['tables'])})")
    return "\n\n".join(render(t, fill_table(t, paper, runs), fmt) for t in tables)


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
