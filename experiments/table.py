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
#: Keys a table may set for all its rows and a row may override.
_REQUIREMENT_KEYS = ("dataset", "protocol", "variant", "count")
#: The results.json fields a W&B run's config may carry (copied to the results-like dict when present).
_WANDB_FIELDS = ("dataset", "variant", "training", "metric_variants", "pretrained")
NOT_COMPARED = "n/c"


# -- loading --------------------------------------------------------------------------------------------------

def load_paper_results(paper: str) -> dict:
    path = REPO_ROOT / "experiments" / paper / "results.yaml"
    if not path.is_file():
        known = sorted(p.parent.name for p in (REPO_ROOT / "experiments").glob("*/results.yaml"))
        raise SystemExit(f"darkroom table: no {path} (papers with results: {', '.join(known)})")
    spec = yaml.safe_load(path.read_text())
    problems = check_spec(spec)
    if problems:
        raise SystemExit(f"darkroom table: {path}:\n  " + "\n  ".join(problems))
    return spec


def check_spec(spec: dict) -> list[str]:
    """Problems of a results.yaml: every row that takes runs (has ``match``) must declare its dataset and variant."""
    problems = []
    for table in spec.get("tables", []):
        if not isinstance(table, dict) or "name" not in table:
            problems.append(f"a table without a name: {table!r}")
            continue
        for row in table.get("rows") or []:
            if "match" not in row:
                continue
            req = requirements(table, row)
            where = f"{table['name']}/{row.get('method')}"
            if "dataset" not in req:
                problems.append(f"{where}: a row with `match` must declare `dataset` (row or table; null = not found)")
            elif not (req["dataset"] is None or isinstance(req["dataset"], str)
                      or (isinstance(req["dataset"], list) and all(isinstance(d, str) for d in req["dataset"]))):
                problems.append(f"{where}: `dataset` must be a name, a list of names or null")
            if not req.get("variant") or not isinstance(req["variant"], (str, list)):
                problems.append(f"{where}: a row with `match` must declare `variant` (a name or a list)")
            if not isinstance(req.get("protocol", {}), dict):
                problems.append(f"{where}: `protocol` must be a mapping")
    return problems


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
    """Runs of ``ENTITY/PROJECT`` in group ``paper`` from the W&B API, as results.json-like dicts.

    ``dataset``, ``variant``, ``training``, ``metric_variants`` and ``pretrained`` come from the run's config
    when it has them; a run without ``dataset`` fills no paper row (it is listed under "your runs").
    """
    from experiments.env import wandb_configured

    if not wandb_configured():
        raise SystemExit("darkroom table --wandb: W&B is not configured (wandb login); use local --runs instead")
    import wandb

    runs = []
    for run in wandb.Api().runs(path, filters={"group": paper}):
        metrics = {k.split("/", 1)[1]: v for k, v in run.summary.items()
                   if isinstance(k, str) and k.startswith("test/") and isinstance(v, (int, float))}
        if not metrics:
            continue
        config = dict(run.config)
        result = {"paper": paper, "metrics": metrics, "config": config, "run_dir": run.url,
                  "git_commit": (run.metadata or {}).get("git", {}).get("commit"), "checkpoint": None,
                  "dataset_root": {}, "time": run.created_at, "_path": run.url}
        for key in _WANDB_FIELDS:
            if config.get(key) is not None:
                result[key] = config[key]
        if not isinstance(result.get("dataset"), dict):
            result.pop("dataset", None)
        runs.append(result)
    return runs


# -- matching -------------------------------------------------------------------------------------------------

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
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return a == b


def _hyper(match: dict | None) -> dict:
    return {k: v for k, v in (match or {}).items() if k != "metric_prefix"}


def matching_runs(runs: list[dict], paper: str, match: dict) -> list[dict]:
    """Runs of ``paper`` whose hyper-parameters fit ``match`` (newest first); dataset, protocol, variant unchecked."""
    crit = _hyper(match)
    found = [r for r in runs if r.get("paper") == paper
             and all(_equal(lookup(r, k), v) for k, v in crit.items())]
    return sorted(found, key=lambda r: str(r.get("time", "")), reverse=True)


def requirements(table: dict, row: dict) -> dict:
    """The row's ``dataset``, ``protocol``, ``variant`` and ``count`` (the table's, updated by the row's)."""
    req = {k: table[k] for k in _REQUIREMENT_KEYS if k in table}
    for k in _REQUIREMENT_KEYS:
        if k in row:
            req[k] = {**(req.get(k) or {}), **(row[k] or {})} if k == "protocol" else row[k]
    return req


def _names(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _show(value: Any) -> str:
    return json.dumps(value) if value is None or isinstance(value, (list, dict, bool)) else str(value)


def mismatch(run: dict, req: dict) -> list[str]:
    """Why ``run`` cannot fill a row with requirements ``req`` (empty: it can)."""
    reasons = []
    dataset = run.get("dataset")
    wanted = req.get("dataset")
    if not isinstance(dataset, dict):
        reasons.append("no dataset recorded (older results.json)")
    elif wanted is None:
        reasons.append("the paper's test set is not found" if "dataset" in req else "the row declares no dataset")
    elif dataset.get("name") not in _names(wanted):
        reasons.append(f"dataset {dataset.get('name')} ≠ {'/'.join(_names(wanted))}")
    else:
        protocol = dataset.get("protocol") or {}
        for key, value in (req.get("protocol") or {}).items():
            got = protocol.get(key, _MISSING) if isinstance(protocol, dict) else _MISSING
            if got is _MISSING:
                reasons.append(f"protocol {key} not recorded (paper: {_show(value)})")
            elif not _equal(got, value):
                reasons.append(f"protocol {key} {_show(got)} ≠ {_show(value)}")
    variants = _names(req.get("variant"))
    if run.get("variant") not in variants:
        reasons.append(f"variant {run.get('variant') or 'not recorded'} ≠ {'/'.join(variants) or '?'}")
    evaluation = (run.get("precision") or {}).get("evaluation") if isinstance(run.get("precision"), dict) else None
    if evaluation not in (None, "32-true"):
        reasons.append(f"evaluated in {evaluation}, not fp32")
    return reasons


def count_warning(run: dict, req: dict) -> str | None:
    """``⚠ 11 of 767 pairs`` when the run's count is not the paper's (see the module docstring), else None."""
    dataset = run.get("dataset") or {}
    count, unit = dataset.get("count"), dataset.get("unit") or "items"
    paper_count = req.get("count", dataset.get("paper_count"))
    if "count" in req and req["count"] is not None:
        off = count is None or not _equal(count, req["count"])
    else:
        off = dataset.get("count_matches_paper") is False
    if not off:
        return None
    if paper_count is not None:
        return f"⚠ {'?' if count is None else count} of {paper_count} {unit}"
    return f"⚠ {'?' if count is None else count} {unit}, not the paper's count"


# -- filling --------------------------------------------------------------------------------------------------

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
    warning: str | None = None  # e.g. "⚠ 11 of 767 pairs": the row is filled but not compared
    no_delta: set[str] = field(default_factory=set)  # metrics whose Δ is not shown
    used: list[dict] = field(default_factory=list)  # every run that fits the row (best first)
    rejected: list[tuple[dict, list[str]]] = field(default_factory=list)  # fit on hyper-parameters only, and why


@dataclass
class OtherRun:
    """A run of the paper that fills no row of the printed tables."""

    run: dict
    reasons: list[str]


def _metric_notes(table: dict) -> tuple[dict[str, str], set[str]]:
    return dict(table.get("metric_notes") or {}), set(table.get("no_delta") or [])


def fill_table(table: dict, paper: str, runs: list[dict]) -> list[FilledRow]:
    """The table's rows with our runs' numbers, and the runs that fit a row's hyper-parameters only."""
    metrics = list(table["metrics"])
    _, no_delta = _metric_notes(table)
    rows = []
    for row in table["rows"]:
        match = row.get("match")
        takes_runs = "match" in row
        prefix = (match or {}).get("metric_prefix", "")
        candidates = matching_runs(runs, paper, match or {}) if takes_runs else []
        candidates = [r for r in candidates if any(prefix + m in (r.get("metrics") or {}) for m in metrics)]
        req = requirements(table, row)
        found, rejected = [], []
        for run in candidates:
            why = mismatch(run, req)
            (rejected.append((run, why)) if why else found.append(run))
        found.sort(key=lambda r: count_warning(r, req) is not None)  # stable: newest first within each group
        best = found[0] if found else None
        ours = {m: ((best.get("metrics") or {}).get(prefix + m) if best else None) for m in metrics}
        prov, warning = {}, None
        if best:
            prov = {"run": best.get("run_dir") or best.get("_path"), "commit": best.get("git_commit"),
                    "checkpoint": best.get("checkpoint") or best.get("pretrained"),
                    "dataset_root": best.get("dataset_root"), "dataset": best.get("dataset") or {},
                    "training": training_text(best), "metric_variants": best.get("metric_variants") or {}}
            warning = count_warning(best, req)
        rows.append(FilledRow(method=row["method"], paper={m: row.get(m) for m in metrics}, ours=ours, run=best,
                              n_runs=len(found), source=row.get("source"), note=row.get("note"), provenance=prov,
                              warning=warning, no_delta=set(metrics) if warning else set(no_delta) & set(metrics),
                              used=found, rejected=rejected))
    return rows


def other_runs(filled: list[tuple[dict, list[FilledRow]]], paper: str, runs: list[dict]) -> list[OtherRun]:
    """Runs of ``paper`` that fill no row of the ``filled`` tables, each with why (newest first)."""
    used = {id(r) for _, rows in filled for row in rows for r in row.used}
    out = []
    for run in sorted((r for r in runs if r.get("paper") == paper and id(r) not in used),
                      key=lambda r: str(r.get("time", "")), reverse=True):
        reasons = [f"{t['name']}/{row.method}: {'; '.join(why)}"
                   for t, rows in filled for row in rows for r, why in row.rejected if r is run]
        out.append(OtherRun(run, reasons or ["no paper row's hyper-parameters (and metrics) match"]))
    return out


# -- text -----------------------------------------------------------------------------------------------------

def training_text(run: dict) -> str:
    """``1234 steps``, ``3 epochs``, ``official weights`` (pretrained, not trained here) or ``unknown``.

    Reads ``training.steps`` / ``training.epochs``; pretrained = ``pretrained`` set or ``training.from == "pretrained"``.
    """
    training = run.get("training")
    if not isinstance(training, dict):
        return "unknown"
    pretrained = bool(run.get("pretrained")) or training.get("from") == "pretrained"
    steps, epochs = training.get("steps"), training.get("epochs")
    if steps:
        text = _plural(steps, "step") + (f" ({_plural(epochs, 'epoch')})" if epochs else "")
    elif epochs:
        text = _plural(epochs, "epoch")
    else:
        return "official weights" if pretrained else "not trained"
    return text + (" from pretrained weights" if pretrained else "")


def _plural(n: Any, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def dataset_text(run: dict) -> tuple[str, str]:
    """(name, count) of a run's dataset for the tables: ``("sice_part2", "767 pairs")``."""
    dataset = run.get("dataset")
    if not isinstance(dataset, dict):
        return "not recorded", "–"
    name = str(dataset.get("name") or "custom")
    if dataset.get("named_by"):
        name += f" (by {dataset['named_by']})"
    count = f"{dataset.get('count', '?')} {dataset.get('unit') or 'items'}"
    if dataset.get("paper_count") is not None and dataset.get("count_matches_paper") is False:
        count += f" (paper: {dataset['paper_count']})"
    return name, count


def _fmt(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _delta(row: FilledRow, metric: str) -> str:
    p, o = row.paper[metric], row.ours[metric]
    if p is None or o is None:
        return "–"
    return NOT_COMPARED if metric in row.no_delta else _fmt(o - p)


def _status(row: FilledRow, takes_runs: bool) -> str:
    if row.run is not None:
        name = Path(str(row.provenance["run"])).name
        return f"{name}, {row.provenance['training']}" + (f" (+{row.n_runs - 1} more)" if row.n_runs > 1 else "")
    return "no run" if takes_runs else "not reproduced here"


def _provenance(row: FilledRow) -> str:
    p = row.provenance
    ds = p.get("dataset") or {}
    name, count = dataset_text(row.run or {})
    text = (f"run {p['run']}, commit {p['commit']}, checkpoint {p['checkpoint']}, {p['training']}, "
            f"dataset {name}, {count}, sha256 {str(ds.get('sha256'))[:12]}, data {json.dumps(p['dataset_root'])}")
    if p.get("metric_variants"):
        text += "; metrics: " + "; ".join(f"{k}: {v}" for k, v in p["metric_variants"].items())
    return text


def _table_notes(table: dict, rows: list[FilledRow]) -> tuple[list[str], dict[str, list[str]]]:
    """(notes on the whole table, notes per row method)."""
    notes, no_delta = _metric_notes(table)
    metrics = list(table["metrics"])
    general = [f"{m}: {notes[m]}" + (" (Δ not computed)" if m in no_delta else "") for m in metrics if m in notes]
    general += [f"{m}: Δ not computed" for m in metrics if m in no_delta and m not in notes]
    per_row: dict[str, list[str]] = {}
    for row in rows:
        items = []
        if row.warning:
            items.append(f"{row.warning}: filled, but the test set is not the paper's, so no Δ")
        if row.note:
            items.append(row.note)
        per_row[row.method] = items
    return general, per_row


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "Δ": r"$\Delta$", "–": "--", "—": "---",
          "⚠": r"\textbf{!}", "≠": r"$\neq$", "≈": r"$\approx$", "→": r"$\to$", "×": r"$\times$", "↑": r"$\uparrow$",
          "↓": r"$\downarrow$", "·": r"$\cdot$", "²": r"$^2$", "≤": r"$\leq$", "≥": r"$\geq$",
          "§": r"\S{}", "−": "$-$", "σ": r"$\sigma$", "μ": r"$\mu$"}


def _tex(text: str) -> str:
    return "".join(_LATEX.get(c, c) for c in str(text))


def _csv(lines: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(lines)
    return buf.getvalue().rstrip("\n")


def _latex_table(lines: list[list[str]], cols: str, notes: list[str], comment: str) -> str:
    esc = [[_tex(c) for c in line] for line in lines]
    out = [f"% {comment}", r"\begin{tabular}{" + cols + "}", r"\toprule", " & ".join(esc[0]) + r" \\", r"\midrule"]
    out += [" & ".join(line) + r" \\" for line in esc[1:]]
    if notes:
        out.append(r"\midrule")
        out += [r"\multicolumn{" + str(len(lines[0])) + r"}{p{0.9\linewidth}}{\footnotesize " + _tex(n) + r"} \\" for n in notes]
    out += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(out)


def render(table: dict, rows: list[FilledRow], fmt: str = "markdown") -> str:
    metrics = list(table["metrics"])
    header = ["method"]
    for m in metrics:
        header += [f"{m} paper", f"{m} ours", f"{m} Δ"]
    header += ["run", "warning"]
    takes_runs = {r["method"]: "match" in r for r in table["rows"]}
    general, per_row = _table_notes(table, rows)
    body = []
    for row in rows:
        cells = [row.method]
        for m in metrics:
            cells += [_fmt(row.paper[m]), _fmt(row.ours[m]), _delta(row, m)]
        cells += [_status(row, takes_runs[row.method]), row.warning or ""]
        body.append(cells)
    if fmt == "csv":
        notes_col = []
        for row, cells in zip(rows, body, strict=True):
            items = list(per_row[row.method])
            items += [g for g in general if row.run is not None]
            if row.run is not None:
                items.append(_provenance(row))
            notes_col.append([*cells, " | ".join(items)])
        return _csv([[*header, "notes"], *notes_col])
    if fmt == "latex":
        notes = list(general) + [f"{m}: {n}" for m, items in per_row.items() for n in items]
        cols = "l" + "rrr" * len(metrics) + "ll"
        return _latex_table([header, *body], cols, notes, f"{table.get('caption', '')} — {table.get('source', '')}")
    lines = [f"### {table.get('caption', table['name'])}", "", f"Paper numbers: {table.get('source', 'n/a')}", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(line) + " |" for line in body]
    notes = [f"- {g}" for g in general]
    notes += [f"- {r.method}: {_provenance(r)}" for r in rows if r.run is not None]
    notes += [f"- {method}: {n}" for method, items in per_row.items() for n in items]
    if notes:
        lines += ["", "Provenance and notes:", *notes]
    return "\n".join(lines)


def render_other_runs(others: list[OtherRun], metrics: list[str], fmt: str = "markdown") -> str:
    """The "your runs" block: runs that fill no paper row, with their dataset, training, variant and metrics."""
    header = ["your run", "dataset", "count", "training", "variant", *metrics, "other metrics",
              "not in a paper row because"]
    body = []
    for other in others:
        run = other.run
        values = run.get("metrics") or {}
        name, count = dataset_text(run)
        rest = ", ".join(f"{k} {_fmt(v) if isinstance(v, (int, float)) else v}"
                         for k, v in sorted(values.items()) if k not in metrics)
        body.append([Path(str(run.get("run_dir") or run.get("_path"))).name, name, count, training_text(run),
                     str(run.get("variant") or "not recorded"),
                     *[_fmt(values.get(m)) if isinstance(values.get(m), (int, float)) else "–" for m in metrics],
                     rest or "–", "; ".join(other.reasons)])
    if fmt == "csv":
        return _csv([header, *body])
    if fmt == "latex":
        cols = "lllll" + "r" * len(metrics) + "ll"
        return _latex_table([header, *body], cols, [],
                            "Your runs: not on the paper's test set, protocol or variant (no Delta)")
    lines = ["#### Your runs (in no paper row: other dataset, protocol, variant or hyper-parameters; no Δ)", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in line) + " |" for line in body]
    return "\n".join(lines)


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
