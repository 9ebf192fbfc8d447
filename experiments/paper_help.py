"""``darkroom help PAPER``: a paper's own model and data arguments, their values in the recipe and one example.

``darkroom fit --help`` lists every option, the Trainer's 500 lines included. This lists only the paper's: for the
LightningModule and the DataModule of the recipe (``experiments/<paper>/<recipe>.yaml``), each constructor argument
with the recipe's value (or the default) and the first line of its docstring entry. Data roots the recipe leaves
unset are marked: fit or test needs them.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import yaml

EXPERIMENTS = Path(__file__).resolve().parent

#: ``darkroom help`` name → (experiments folder, recipe, the data option(s) an example sets).
PAPERS: dict[str, tuple[str, str, str]] = {
    "zero_dce": ("zero_dce", "paper.yaml", "--data.init_args.train_root DIR"),
    "zero_dce_pp": ("zero_dce", "paper_pp.yaml", "--data.init_args.train_root DIR"),
    "deepfuse": ("deepfuse", "paper.yaml", "--data.init_args.train_root SCENES"),
    "dped": ("dped", "iphone.yaml", "--data.init_args.root DPED_ROOT"),
    "refusion": ("refusion", "ivif.yaml", "--data.init_args.root MSRS_ROOT"),
}
_SKIP = {"self", "args", "kwargs"}
#: what an unset data root blocks
_NEEDED_BY = {"train_root": "required for fit", "test_root": "required for test", "predict_root": "for predict",
              "root": "required", "val_root": "optional: validation during fit"}


def plain(text: str) -> str:
    """Docstring markup as plain text: ````x```` → ``x``, ``:class:`~a.b.C``` → ``C``.

    Example:
        >>> plain("``None`` = :class:`~networks.zero_dce.DCENet` or :func:`find_pairs`")
        'None = DCENet or find_pairs'
    """
    text = re.sub(r":\w+:`~?([\w.]+)`", lambda m: m.group(1).rsplit(".", 1)[-1], text)
    return text.replace("``", "")


def docstring_args(obj: Any) -> dict[str, str]:
    """``{name: first line of its description}`` from the Google-style ``Args:`` section of ``obj``'s docstring (and of
    its ``__init__``); ``a, b: text`` entries give both names.

    Example:
        >>> def f(a, b):
        ...     '''Summary.
        ...
        ...     Args:
        ...         a: the first. More.
        ...         b, c: two at once,
        ...             continued.
        ...     '''
        >>> docstring_args(f)
        {'a': 'the first. More.', 'b': 'two at once, continued.', 'c': 'two at once, continued.'}
    """
    found: dict[str, str] = {}
    for doc in (inspect.getdoc(obj), inspect.getdoc(getattr(obj, "__init__", None))):
        lines = (doc or "").splitlines()
        in_args, names, text = False, [], []
        for line in [*lines, ""]:
            if re.match(r"^Args:\s*$", line.strip()) and not line.startswith(" "):
                in_args = True
                continue
            if not in_args:
                continue
            entry = re.match(r"^ {4}([\w, ]+?):\s*(.*)$", line)
            if entry or not line.startswith("     "):
                for name in names:
                    found.setdefault(name, " ".join(text))
                names, text = [], []
            if entry:
                names = [n.strip() for n in entry.group(1).split(",")]
                text = [entry.group(2).strip()]
            elif line.startswith("     "):
                text.append(line.strip())
            elif line.strip():
                in_args = False
    return found


def _short(value: Any, width: int = 28) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()
    return text if len(text) <= width else text[:width - 1] + "…"


def _rows(section: dict) -> tuple[str, list[tuple[str, str, str]]]:
    """The class path of a config section and ``(argument, value, description)`` for each constructor argument."""
    class_path = section["class_path"]
    module, _, name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    given = section.get("init_args") or {}
    docs = docstring_args(cls)
    rows = []
    for arg, param in inspect.signature(cls.__init__).parameters.items():
        if arg in _SKIP or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        value = given[arg] if arg in given else (None if param.default is param.empty else param.default)
        description = plain(docs.get(arg, ""))
        if arg in _NEEDED_BY and value is None:
            description = f"[{_NEEDED_BY[arg]}] {description}"
        rows.append((arg, _short(value), description))
    return class_path, rows


def render(paper: str, width: int = 118) -> str:
    """The help text of ``paper`` (a key of :data:`PAPERS`)."""
    folder, recipe, data_example = PAPERS[paper]
    config = EXPERIMENTS / folder / recipe
    cfg = yaml.safe_load(config.read_text())
    rel = config.relative_to(EXPERIMENTS.parent)
    lines = [f"{paper}: the arguments of {rel} (values as the recipe sets them, else the defaults)", ""]
    for key in ("model", "data"):
        class_path, rows = _rows(cfg[key])
        lines.append(f"{key}: {class_path}   (--{key}.init_args.NAME VALUE)")
        name_w = max(len(r[0]) for r in rows)
        for arg, value, description in rows:
            head = f"  {arg:<{name_w}}  {value:<28}  "
            room = max(20, width - len(head))
            lines.append(head + (description if len(description) <= room else description[:room - 1] + "…"))
        lines.append("")
    others = sorted(p.relative_to(EXPERIMENTS.parent).as_posix() for p in (EXPERIMENTS / folder).rglob("*.yaml")
                    if p.name != "results.yaml" and p != config)
    sweeps = [o for o in others if "/sweeps/" in o]
    lines += ["example:", f"  darkroom fit -c {rel} {data_example}", "",
              "other configs of the paper (an overlay goes after its recipe: -c RECIPE -c OVERLAY):",
              *[f"  {o}" for o in others if o not in sweeps],
              "sweeps (darkroom sweep FILE --local):", *[f"  {o}" for o in sweeps], "",
              f"every option, the Trainer's too: darkroom fit -c {rel} --help; one class in full: "
              f"darkroom fit --model.help {cfg['model']['class_path']}"]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    """Console entry of ``darkroom help``; ``argv`` after the subcommand."""
    p = argparse.ArgumentParser(prog="darkroom help", description=__doc__.split("\n\n")[0])
    p.add_argument("paper", choices=sorted(PAPERS), help="the paper (or variant)")
    print(render(p.parse_args(argv).paper))
