"""``darkroom demo --quick`` runs every part end to end (synthetic data in the real layouts → fit → test → table)
and points at files that exist. The quick mode only smoke-tests the pipeline: the checks against the baselines
need the default demo (under 3 minutes on 2 idle cores) or ``--full`` (the lengths of each
experiments/<paper>/demo.yaml)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

from experiments import demo
from experiments.demos import DEFAULT_PARTS, LENGTHS, PARTS, check_length

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_demo_runs_every_part(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    parts = list(PARTS)
    demo.main(["--quick", "--out", str(tmp_path), "--only", *parts])
    out = capsys.readouterr().out
    assert out.count("\n## ") == len(parts)
    for line in out.splitlines():
        if line.startswith(("results:", "alignment report:")):
            assert Path(line.split(": ", 1)[1]).is_file(), line
    assert "| phone patches (no enhancement) |" in out and "| pixel mean (raw) |" in out
    assert "demo finished" in out


def test_unknown_part_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        demo.main(["--out", str(tmp_path), "--only", "dpde"])


@pytest.mark.parametrize(("part", "table", "key"), [("zero_dce", "STEPS", "max_steps"), ("deepfuse", "STEPS", "max_steps"),
                                                    ("dped", "STEPS", "max_steps"), ("refusion", "EPOCHS", "max_epochs"),
                                                    ("sweep", "STEPS", None)])
def test_demo_lengths_grow_and_full_is_the_demo_config(part: str, table: str, key: str | None) -> None:
    lengths = getattr(importlib.import_module(f"experiments.demos.{part}"), table)
    assert tuple(lengths) == LENGTHS
    assert lengths["quick"] < lengths["default"] <= lengths["full"]
    if key is not None:
        cfg = yaml.safe_load((REPO / "experiments" / part / "demo.yaml").read_text())
        assert lengths["full"] == cfg["trainer"][key], f"--full must train as long as experiments/{part}/demo.yaml"


def test_demo_length_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []

    def part(name: str):
        return type("Part", (), {"run": staticmethod(lambda out, length: seen.append((name, length)) or _result())})

    monkeypatch.setattr(importlib, "import_module", lambda name: part(name.rsplit(".", 1)[-1]))
    for flags, length, parts in (([], "default", DEFAULT_PARTS), (["--full"], "full", PARTS),
                                 (["--quick"], "quick", PARTS), (["--only", "sweep"], "default", ("sweep",))):
        seen.clear()
        demo.main([*flags, "--out", str(tmp_path)])
        assert seen == [(p, length) for p in parts]
    assert set(DEFAULT_PARTS) == set(PARTS) - {"sweep"}  # the default demo trains every paper
    with pytest.raises(SystemExit):
        demo.main(["--quick", "--full", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="quick, default, full"):
        check_length("long")


def _result():
    from experiments.demos import DemoResult

    return DemoResult(title="t", table="| method |")
