"""Kill -9 and resume: the final weights equal an uninterrupted run's, at an epoch boundary and mid-epoch.

Each run is a real ``darkroom fit`` in its own process, killed with SIGKILL by ``killer.KillAt`` at a
given step (no chance to clean up), then resumed with ``--ckpt_path …/last.ckpt``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import run_args, zero_dce_args

REPO = Path(__file__).resolve().parents[2]
STEPS_PER_EPOCH = 14  # write_sice(n_train=4): 4 sequences × 7 exposures = 28 images, batch 2


def _fit(tmp: Path, sice: Path, name: str, *extra: str, kill_at: int | None = None) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "experiments.cli", "fit", "-c", str(REPO / "experiments/zero_dce/paper.yaml"),
            *zero_dce_args(sice, val=False, test=False), "--trainer.max_epochs", "3",
            *run_args(tmp, summary=False), "--run.name", name, "--run.checkpoint_every", "5", *extra]
    if kill_at is not None:
        cfg = tmp / f"kill_{name}.yaml"
        cfg.write_text("trainer:\n  callbacks:\n    - class_path: killer.KillAt\n"
                       f"      init_args: {{step: {kill_at}}}\n")
        args += ["-c", str(cfg)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), str(REPO)]),
           "WANDB_MODE": "offline"}
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _last(tmp: Path, name: str) -> dict:
    return torch.load(tmp / "runs" / "zero_dce" / name / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=True)


def _max_diff(a: dict, b: dict) -> float:
    return max((a["state_dict"][k] - b["state_dict"][k]).abs().max().item() for k in a["state_dict"])


@pytest.mark.slow
def test_kill_and_resume_equals_uninterrupted(sice_root, tmp_path):
    ref = _fit(tmp_path, sice_root, "ref")
    assert ref.returncode == 0, ref.stderr[-2000:]
    reference = _last(tmp_path, "ref")
    assert reference["global_step"] == 3 * STEPS_PER_EPOCH

    # kill as epoch 2 starts: last.ckpt is the epoch-end state (step 14) → an epoch-boundary resume;
    # kill at step 12: last.ckpt is the interval checkpoint at step 10 → a mid-epoch resume
    for name, kill_at, resumed_from in (("boundary", STEPS_PER_EPOCH, STEPS_PER_EPOCH), ("mid", 12, 10)):
        killed = _fit(tmp_path, sice_root, name, kill_at=kill_at)
        assert killed.returncode == -9, killed.stderr[-2000:]
        assert _last(tmp_path, name)["global_step"] == resumed_from
        leftovers = [p.name for p in (tmp_path / "runs" / "zero_dce" / name / "checkpoints").iterdir()
                     if p.name != "last.ckpt" and not p.name.startswith("best")]
        assert not leftovers
        ckpt = tmp_path / "runs" / "zero_dce" / name / "checkpoints" / "last.ckpt"
        resumed = _fit(tmp_path, sice_root, name, "--ckpt_path", str(ckpt))
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        final = _last(tmp_path, name)
        assert final["global_step"] == reference["global_step"] and final["epoch"] == reference["epoch"]
        assert _max_diff(final, reference) < 1e-6, name
        timing = (tmp_path / "runs" / "zero_dce" / name / "timing.json").read_text()
        assert '"global_step": 42' in timing
