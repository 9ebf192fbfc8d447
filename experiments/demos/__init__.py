"""The parts of ``darkroom demo``: one module per paper with ``run(out, length) -> DemoResult``.

A paper joins the demo by adding its module here and its name to :data:`PARTS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

#: Demo parts in the order they run (module names under ``experiments.demos``).
PARTS: tuple[str, ...] = ("zero_dce", "deepfuse", "dped", "refusion", "sweep")

#: The parts of the default-length demo: every paper. The sweep part (five short runs, each mostly a process
#: start-up: ~35 s on 2 cores) runs with ``--full``, ``--quick`` or ``--only sweep``.
DEFAULT_PARTS: tuple[str, ...] = ("zero_dce", "deepfuse", "dped", "refusion")

#: How long the parts train. ``"quick"``: seconds, tiny data, a smoke test of the pipeline (the checks against the
#: baselines are not enforced). ``"default"``: ``darkroom demo``, under 3 minutes on 2 idle cores, checks enforced.
#: ``"full"``: ``darkroom demo --full``, the lengths of each ``experiments/<paper>/demo.yaml``.
LENGTHS: tuple[str, ...] = ("quick", "default", "full")

#: The recipe each paper's ``experiments/<paper>/demo.yaml`` is an overlay on.
DEMO_RECIPES: dict[str, str] = {"zero_dce": "paper.yaml", "deepfuse": "paper.yaml", "dped": "iphone.yaml",
                                "refusion": "mfif.yaml"}
_EXPERIMENTS = Path(__file__).resolve().parents[1]


def check_length(length: str) -> str:
    """``length`` if it is one of :data:`LENGTHS`, else a ``ValueError`` naming them."""
    if length not in LENGTHS:
        raise ValueError(f"demo length must be one of {', '.join(LENGTHS)}, got {length!r}")
    return length


def demo_configs(paper: str) -> list[str]:
    """``["-c", <recipe>, "-c", <demo overlay>]``: the arguments that give ``paper``'s demo configuration."""
    folder = _EXPERIMENTS / paper
    return ["-c", str(folder / DEMO_RECIPES[paper]), "-c", str(folder / "demo.yaml")]


def config_args(config: str | Path) -> list[str]:
    """``-c`` arguments for a config file of ``experiments/<paper>/``: an overlay (a demo, or a reproduction budget of
    :data:`experiments.reproduce.RECIPES`) comes with its recipe."""
    from experiments.reproduce import RECIPES

    config = Path(config)
    if config.name == "demo.yaml":
        return demo_configs(config.parent.name)
    for r in RECIPES.values():
        if config.name == r.overlay and config.parent.name == r.folder:
            return ["-c", str(config.parent / r.recipe), "-c", str(config)]
    return ["-c", str(config)]


@dataclass
class DemoResult:
    """What one demo part reports: a titled Markdown table, files to look at, and whether it passed its check."""

    title: str
    table: str
    files: dict[str, str] = field(default_factory=dict)
    ok: bool = True
    failure: str = ""


def markdown_table(rows: list[tuple[str, dict]], columns: list[tuple[str, str]], digits: int = 3) -> str:
    """``rows`` = (method, {metric: value}); ``columns`` = (metric key, header)."""
    lines = ["| method | " + " | ".join(h for _, h in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, values in rows:
        cells = [f"{values[k]:.{digits}f}" if values.get(k) is not None else "–" for k, _ in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
