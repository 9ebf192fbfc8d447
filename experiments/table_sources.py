"""What ``darkroom table`` reads: the paper's tables (``experiments/<paper>/results.yaml``, checked) and our runs
(every ``results.json`` below a folder, or the W&B API)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from experiments.env import REPO_ROOT
from experiments.table_rows import requirements

#: The results.json fields a W&B run's config may carry (copied to the results-like dict when present).
_WANDB_FIELDS = ("dataset", "variant", "training", "metric_variants", "pretrained")


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
