"""``darkroom sweep FILE``: W&B sweeps, registered with a server or run locally from the same YAML.

The YAML is a standard W&B sweep definition (``method``, ``metric``, ``parameters``, ``command``;
https://docs.wandb.ai/guides/sweeps/define-sweep-configuration). Its ``command`` runs
``darkroom fit`` with the sweep's arguments, so ``wandb sweep FILE`` + ``wandb agent ID`` work on any
number of machines (each agent one process, or one DDP job)::

    darkroom sweep experiments/zero_dce/sweeps/loss_ablation.yaml           # register (W&B configured)
    darkroom sweep experiments/zero_dce/sweeps/loss_ablation.yaml --local   # expand and run here
    darkroom sweep FILE --local --dry-run                                   # list the runs only
    darkroom sweep FILE --local -- --trainer.max_steps 50                   # extra args for every run

``--local`` expands ``grid`` (every combination of ``values``/``value``) and ``random`` (``--count``
draws, default ``run_cap`` or 10; the W&B distributions ``uniform``, ``int_uniform``, ``q_uniform``,
``log_uniform``, ``log_uniform_values``, ``q_log_uniform_values``, ``normal``, ``q_normal``,
``log_normal``, ``categorical``). Nested parameters (``parameters: {model: {parameters: …}}``) and
dotted names (``model.init_args.loss_weights.tv``) both become ``--model.init_args.loss_weights.tv=V``.
Each run gets its own directory ``<out>/<paper>/<run name>/`` (the name derives from its parameters),
runs in its own process with a progress line, tests its best checkpoint (``--run.test_after_fit``)
and writes ``results.json``. A crashed run is recorded (``sweep_status.json``: exit code and the tail
of its output) and skipped; re-running the sweep skips runs that already have ``results.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

_DISTRIBUTIONS = ("uniform", "int_uniform", "q_uniform", "log_uniform", "log_uniform_values", "q_log_uniform",
                  "q_log_uniform_values", "normal", "q_normal", "log_normal", "q_log_normal", "categorical",
                  "constant")


class SweepConfigError(ValueError):
    """The sweep YAML does not follow the W&B sweep syntax (the message names the key)."""


def load_sweep(path: str | Path) -> dict:
    """Read and check a sweep YAML (``method``, ``parameters``, ``command``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: sweep file not found")
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SweepConfigError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(cfg, dict):
        raise SweepConfigError(f"{path}: expected a mapping with method/parameters/command")
    method = cfg.get("method")
    if method not in ("grid", "random", "bayes"):
        raise SweepConfigError(f"{path}: method must be grid, random or bayes, got {method!r}")
    if not isinstance(cfg.get("parameters"), dict) or not cfg["parameters"]:
        raise SweepConfigError(f"{path}: 'parameters' must be a non-empty mapping")
    return cfg


def flatten_parameters(parameters: dict, prefix: str = "") -> dict[str, dict]:
    """W&B nested ``parameters`` (and dotted names) → ``{"a.b.c": spec}``."""
    flat: dict[str, dict] = {}
    for name, spec in parameters.items():
        key = f"{prefix}{name}"
        if not isinstance(spec, dict):
            raise SweepConfigError(f"parameter {key!r}: expected a mapping (values/value/distribution/parameters)")
        if "parameters" in spec:
            flat.update(flatten_parameters(spec["parameters"], f"{key}."))
        else:
            flat[key] = spec
    return flat


def _grid_values(key: str, spec: dict) -> list:
    if "values" in spec:
        if not isinstance(spec["values"], list) or not spec["values"]:
            raise SweepConfigError(f"parameter {key!r}: 'values' must be a non-empty list")
        return list(spec["values"])
    if "value" in spec:
        return [spec["value"]]
    raise SweepConfigError(f"parameter {key!r}: grid search needs 'values' or 'value' (got {sorted(spec)})")


def sample_parameter(key: str, spec: dict, rng: random.Random) -> Any:
    """One draw of a parameter with W&B's distribution semantics."""
    if "value" in spec:
        return spec["value"]
    dist = spec.get("distribution", "categorical" if "values" in spec else "uniform")
    if dist not in _DISTRIBUTIONS:
        raise SweepConfigError(f"parameter {key!r}: unknown distribution {dist!r}")
    if dist in ("categorical", "constant") or "values" in spec:
        values = spec.get("values")
        if not values:
            raise SweepConfigError(f"parameter {key!r}: 'values' must be a non-empty list")
        probs = spec.get("probabilities")
        return rng.choices(values, weights=probs)[0] if probs else rng.choice(values)
    q = spec.get("q", 1)
    if dist in ("normal", "q_normal", "log_normal", "q_log_normal"):
        x = rng.gauss(spec.get("mu", 0.0), spec.get("sigma", 1.0))
        x = math.exp(x) if "log" in dist else x
    else:
        if "min" not in spec or "max" not in spec:
            raise SweepConfigError(f"parameter {key!r}: distribution {dist} needs min and max")
        lo, hi = spec["min"], spec["max"]
        if dist == "int_uniform":
            return rng.randint(int(lo), int(hi))
        if dist in ("log_uniform_values", "q_log_uniform_values"):
            x = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        elif dist in ("log_uniform", "q_log_uniform"):
            x = math.exp(rng.uniform(lo, hi))
        else:
            x = rng.uniform(lo, hi)
    if dist.startswith("q_"):
        x = round(x / q) * q
        return int(x) if float(q).is_integer() and float(x).is_integer() else x
    return x


def expand(cfg: dict, count: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """The runs of a sweep as ``{dotted name: value}`` dicts (grid: all combinations; random: ``count`` draws)."""
    params = flatten_parameters(cfg["parameters"])
    if cfg["method"] == "grid":
        keys = list(params)
        return [dict(zip(keys, combo, strict=True))
                for combo in itertools.product(*(_grid_values(k, params[k]) for k in keys))]
    n = count or cfg.get("run_cap") or 10
    rng = random.Random(seed)
    return [{k: sample_parameter(k, spec, rng) for k, spec in params.items()} for _ in range(int(n))]


def format_value(value: Any) -> str:
    """How W&B's ``${args}`` writes a value: JSON for lists/dicts/bools, str otherwise."""
    if isinstance(value, (list, dict, bool)) or value is None:
        return json.dumps(value)
    return str(value)


def run_arguments(params: dict[str, Any], hyphens: bool = True) -> list[str]:
    """``{"a.b": 1}`` → ``["--a.b=1"]`` (``${args}``) or ``["a.b=1"]`` (``${args_no_hyphens}``)."""
    return [f"{'--' if hyphens else ''}{k}={format_value(v)}" for k, v in params.items()]


def build_command(cfg: dict, params: dict[str, Any]) -> list[str]:
    """The sweep's ``command`` with its macros filled; ``darkroom`` becomes this Python's ``-m experiments.cli``."""
    command = cfg.get("command") or ["${env}", "${program}", "${args}"]
    out: list[str] = []
    for token in command:
        if token in ("${env}", "${interpreter}"):
            continue
        if token == "${program}":
            token = cfg.get("program", "darkroom")
        if token == "${args}":
            out += run_arguments(params)
        elif token == "${args_no_hyphens}":
            out += run_arguments(params, hyphens=False)
        elif token == "${args_json}":
            out.append(json.dumps(params))
        elif token == "darkroom" and not out:
            out += [sys.executable, "-m", "experiments.cli"]
        else:
            out.append(token)
    return out


def run_name(params: dict[str, Any]) -> str:
    """A readable, deterministic run name: ``<short values>-<hash>`` (the hash keeps distinct runs apart)."""
    digest = hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:8]
    short = "_".join(str(format_value(v)).replace("/", "-").replace(" ", "")[-24:] for v in params.values())
    keep = "".join(c if c.isalnum() or c in "-_.=" else "" for c in short)[:60]
    return f"{keep}-{digest}" if keep else digest


@dataclass
class RunRecord:
    """One local sweep run: its parameters, where it lives, and how it ended."""

    name: str
    params: dict
    run_dir: str
    status: str = "pending"  # finished | failed | skipped | pending
    returncode: int | None = None
    wall_seconds: float | None = None
    fit_seconds: float | None = None
    error: str | None = None
    metrics: dict = field(default_factory=dict)


def _find_run_dir(out: Path, name: str) -> Path | None:
    found = [p for p in out.glob(f"*/{name}") if p.is_dir()]
    return found[0] if found else None


def run_local(cfg: dict, out: Path, extra_args: list[str], count: int | None = None, seed: int = 0,
              dry_run: bool = False, timeout: float | None = None) -> list[RunRecord]:
    """Run every expanded run of ``cfg`` here, one process each; never stops on a failed run."""
    out.mkdir(parents=True, exist_ok=True)
    status_path = out / "sweep_status.json"
    runs = expand(cfg, count=count, seed=seed)
    records: list[RunRecord] = []
    for i, params in enumerate(runs, 1):
        name = run_name(params)
        existing = _find_run_dir(out, name)
        rec = RunRecord(name=name, params=params, run_dir=str(existing or out / "<paper>" / name))
        prefix = f"[sweep {i}/{len(runs)}] {name}"
        if existing is not None and (existing / "results.json").exists():
            rec.status = "skipped"
            rec.metrics = json.loads((existing / "results.json").read_text()).get("metrics", {})
            print(f"{prefix}: already finished, skipped")
            records.append(rec)
            continue
        cmd = build_command(cfg, params) + ["--run.root", str(out), "--run.name", name,
                                            "--run.test_after_fit=true", *extra_args]
        if dry_run:
            print(f"{prefix}: {' '.join(cmd)}")
            records.append(rec)
            continue
        print(f"{prefix}: running ({', '.join(run_arguments(params))})", flush=True)
        t0 = time.perf_counter()
        log_path = out / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with log_path.open("w") as log:
                proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
            rec.returncode = proc.returncode
        except subprocess.TimeoutExpired:
            rec.returncode = -1
        rec.wall_seconds = time.perf_counter() - t0
        run_dir = _find_run_dir(out, name)
        rec.run_dir = str(run_dir) if run_dir else rec.run_dir
        results = run_dir / "results.json" if run_dir else None
        if rec.returncode == 0 and results is not None and results.exists():
            res = json.loads(results.read_text())
            rec.status, rec.metrics, rec.fit_seconds = "finished", res.get("metrics", {}), res.get("fit_seconds")
            print(f"{prefix}: finished in {rec.wall_seconds:.0f} s", flush=True)
        else:
            rec.status = "failed"
            tail = log_path.read_text().strip().splitlines()[-15:]
            rec.error = ("timed out" if rec.returncode == -1 else f"exit code {rec.returncode}") + "\n" + "\n".join(tail)
            print(f"{prefix}: FAILED ({rec.error.splitlines()[0]}); log: {log_path}; continuing", flush=True)
        records.append(rec)
        status_path.write_text(json.dumps([asdict(r) for r in records], indent=2))
    if not dry_run:
        status_path.write_text(json.dumps([asdict(r) for r in records], indent=2))
        done = sum(r.status in ("finished", "skipped") for r in records)
        print(f"[sweep] {done}/{len(records)} runs finished, {sum(r.status == 'failed' for r in records)} failed; "
              f"status: {status_path}")
    return records


def register(cfg: dict, project: str, entity: str | None) -> str:
    """Register the sweep with the W&B server; returns its id (needs ``wandb login``)."""
    from experiments.env import wandb_configured

    if not wandb_configured():
        raise SystemExit("darkroom sweep: W&B is not configured (run `wandb login` or set WANDB_API_KEY); "
                         "use --local to run the sweep here without a server")
    import wandb

    clean = {k: v for k, v in cfg.items() if k != "darkroom"}
    return wandb.sweep(clean, project=project, entity=entity)


def main(argv: list[str] | None = None) -> None:
    argv = list(argv or [])
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    parser = argparse.ArgumentParser(prog="darkroom sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path, help="sweep YAML (W&B syntax)")
    parser.add_argument("--local", action="store_true", help="expand and run here, without a W&B server")
    parser.add_argument("--out", type=Path, default=None, help="local: sweep folder (default runs/sweeps/<name>)")
    parser.add_argument("--count", type=int, default=None, help="local random search: number of runs")
    parser.add_argument("--seed", type=int, default=0, help="local random search: sampling seed")
    parser.add_argument("--dry-run", action="store_true", help="local: print the runs without running them")
    parser.add_argument("--timeout", type=float, default=None, help="local: seconds per run before it counts as failed")
    parser.add_argument("--project", default="darkroom")
    parser.add_argument("--entity", default=None)
    args = parser.parse_args(argv)
    cfg = load_sweep(args.file)
    if args.local:
        if cfg["method"] == "bayes":
            print("[sweep] bayes search needs the W&B server; running it locally as random search")
            cfg = {**cfg, "method": "random"}
        out = args.out or Path("runs") / "sweeps" / args.file.stem
        run_local(cfg, out, extra, count=args.count, seed=args.seed, dry_run=args.dry_run, timeout=args.timeout)
    else:
        sweep_id = register(cfg, args.project, args.entity)
        print(f"registered sweep {sweep_id}; start agents with: wandb agent {args.entity + '/' if args.entity else ''}"
              f"{args.project}/{sweep_id}")
