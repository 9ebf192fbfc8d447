"""``darkroom demo --quick`` runs every part end to end (synthetic data in the real layouts → fit → test → table)
and points at files that exist. The quick mode only smoke-tests the pipeline: the checks against the baselines
need the full demo (minutes; measured figures are in each experiments/<paper>/demo.yaml)."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments import demo
from experiments.demos import PARTS


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
