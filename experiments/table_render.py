"""How ``darkroom table`` prints: a filled paper table and the "your runs" block as Markdown, CSV or LaTeX, with
the Δ, notes and provenance."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from experiments.table_rows import FilledRow, OtherRun, _metric_notes, training_text

NOT_COMPARED = "n/c"


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
    reference = table.get("reference_label", "paper")  # what the reference column holds (a recorded run, say)
    for m in metrics:
        header += [f"{m} {reference}", f"{m} ours", f"{m} Δ"]
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
    lines = [f"### {table.get('caption', table['name'])}", "",
             f"{'Paper numbers' if reference == 'paper' else reference.capitalize() + ' numbers'}: "
             f"{table.get('source', 'n/a')}", "",
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
