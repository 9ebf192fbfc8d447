"""The sweep YAML of ``darkroom sweep`` (W&B syntax): reading and checking it, expanding ``grid`` and ``random``
searches into runs, and each run's command line and name."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import sys
from collections.abc import Callable
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
    """The runs of a sweep as ``{dotted name: value}`` dicts (grid: all combinations, or the first ``count`` of
    them; random: ``count`` draws)."""
    params = flatten_parameters(cfg["parameters"])
    if count is not None and count < 1:
        raise SweepConfigError(f"--count must be ≥ 1, got {count}")
    if cfg["method"] == "grid":
        keys = list(params)
        runs = [dict(zip(keys, combo, strict=True))
                for combo in itertools.product(*(_grid_values(k, params[k]) for k in keys))]
        return runs[:count] if count is not None else runs
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


#: how a sweep starts ``darkroom``: this Python, ``-m experiments.cli``; with ``-P`` (Python ≥ 3.11) the working
#: folder is not put first on ``sys.path``, so a user's own ``metrics.py`` or ``losses/`` there cannot shadow the
#: suite's packages (on Python 3.10 it still can)
DARKROOM_COMMAND: list[str] = [sys.executable, *(["-P"] if sys.version_info >= (3, 11) else []), "-m", "experiments.cli"]


#: the folder that holds the suite's ``experiments/`` (the configs a sweep names as ``experiments/<paper>/…``)
SUITE_ROOT = Path(__file__).resolve().parents[1]


def resolve_config(value: str, sweep_file: Path | None) -> str:
    """A config path of a sweep as an absolute path: relative paths are looked up beside the sweep file, then in the
    installed suite (:data:`SUITE_ROOT`), never in the working folder, so a sweep runs the same from anywhere.

    Raises:
        SweepConfigError: no such file in either place (both are named).
    """
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    places = ([sweep_file.resolve().parent] if sweep_file is not None else []) + [SUITE_ROOT]
    for place in places:
        if (place / path).is_file():
            return str(place / path)
    raise SweepConfigError(f"config {value!r}: not found beside the sweep file or in the suite (looked in "
                           + ", ".join(str(p) for p in places) + ")")


def map_config_paths(tokens: list[str], resolve: Callable[[str], str]) -> list[str]:
    """``tokens`` with each config path (``-c X``, ``--config X``, ``--config=X``, ``-c=X``) replaced by
    ``resolve(X)``."""
    out: list[str] = []
    for i, token in enumerate(tokens):
        if i and tokens[i - 1] in ("-c", "--config"):
            token = resolve(token)
        elif token.startswith(("--config=", "-c=")):
            key, value = token.split("=", 1)
            token = f"{key}={resolve(value)}"
        out.append(token)
    return out


def suite_config(value: str) -> str:
    """``darkroom fit -c experiments/<paper>/…`` from any folder: a relative config path that is not a file here but is
    one in the installed suite becomes the suite's (a W&B agent runs a sweep's command in its own folder)."""
    path = Path(value).expanduser()
    if path.is_absolute() or path.is_file() or not (SUITE_ROOT / path).is_file():
        return value
    return str(SUITE_ROOT / path)


def build_command(cfg: dict, params: dict[str, Any], sweep_file: Path | None = None) -> list[str]:
    """The sweep's ``command`` with its macros filled; ``darkroom`` becomes :data:`DARKROOM_COMMAND`, and every
    config path (``-c``, ``--config``, a ``config`` parameter) is resolved by :func:`resolve_config`."""
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
            out += DARKROOM_COMMAND
        else:
            out.append(token)
    return map_config_paths(out, lambda value: resolve_config(value, sweep_file))


def run_name(params: dict[str, Any]) -> str:
    """A readable, deterministic run name: ``<short values>-<hash>`` (the hash keeps distinct runs apart)."""
    digest = hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:8]
    short = "_".join(str(format_value(v)).replace("/", "-").replace(" ", "")[-24:] for v in params.values())
    keep = "".join(c if c.isalnum() or c in "-_.=" else "" for c in short)[:60]
    return f"{keep}-{digest}" if keep else digest
