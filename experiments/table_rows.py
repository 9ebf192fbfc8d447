"""Which of our runs fills which paper row (the rules are in :mod:`experiments.table`'s docstring): matching
a row's hyper-parameters, dataset, protocol and variant, the count warning, the filled rows and the runs left
over, and a run's training length."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_MISSING = object()
#: Keys a table may set for all its rows and a row may override.
_REQUIREMENT_KEYS = ("dataset", "protocol", "variant", "count")


# -- matching -------------------------------------------------------------------------------------------------

def lookup(run: dict, key: str) -> Any:
    """A ``match`` key's value in a run's results (the search order is in :mod:`experiments.table`'s docstring)."""
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
    """``⚠ 11 of 767 pairs`` when the run's count is not the paper's (see :mod:`experiments.table`'s docstring), else None."""
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


def training_text(run: dict) -> str:
    """``1234 steps``, ``3 epochs``, ``official weights`` (pretrained, not trained here), ``checkpoint <file>`` (a
    Darkroom ``.ckpt`` loaded as pretrained weights, e.g. each epoch that ``darkroom reproduce`` tests) or
    ``unknown``.

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
    elif str(run.get("pretrained") or "").endswith(".ckpt"):
        return f"checkpoint {Path(str(run['pretrained'])).name}"
    else:
        return "official weights" if pretrained else "not trained"
    return text + (" from pretrained weights" if pretrained else "")


def _plural(n: Any, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")
