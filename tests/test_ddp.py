"""Every paper fits with 2 processes on the CPU (DDP, gloo) through ``python -m experiments.cli fit``: the demo
configuration on the paper's tiny synthetic data reaches its step limit, both ranks write one run directory, and
the checkpoint holds the steps (ReFusion's also a finite loss-proposal network P).

Exact evaluation under DDP (2 processes give the metrics of 1): faults/test_ddp_exact_eval.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import deepfuse_args, dped_args, fast_args, refusion_args, zero_dce_args

from experiments.demos import demo_configs

REPO = Path(__file__).resolve().parents[1]
STEPS = 2


def _paper_args(paper: str, request: pytest.FixtureRequest) -> tuple[list[str], dict]:
    """The paper's data arguments, and its :func:`fast_args` settings beyond the paper's usual ones."""
    if paper == "zero_dce":
        return zero_dce_args(request.getfixturevalue("sice_root")), {}
    if paper == "deepfuse":
        # batch 1 and one validation stack per process (validation on train/): the unpadded evaluation sampler
        # needs at least one each
        root = request.getfixturevalue("small_stacks_root")
        return deepfuse_args(root, batch_size=1, val_split="train"), {"max_epochs": 3}
    if paper == "dped":
        return dped_args(request.getfixturevalue("dped_root")), {}
    if paper == "refusion":
        # one validation pair per process (validation on train/): the unpadded evaluation sampler needs at least
        # one each
        data = request.getfixturevalue("fusion_data")
        return refusion_args(demo_configs("refusion"), data, val_split="train"), {}
    raise ValueError(paper)


@pytest.mark.slow
@pytest.mark.parametrize("paper", ["zero_dce", "deepfuse", "dped", "refusion"])
def test_ddp_two_processes_on_cpu(paper: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    data, settings = _paper_args(paper, request)
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "experiments.cli", "fit", *demo_configs(paper), *data,
           *fast_args(tmp_path, STEPS, paper=paper, **settings), "--run.name", "ddp",
           "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = tmp_path / "runs" / paper
    ckpt = torch.load(runs / "ddp" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == STEPS
    assert len(list(runs.iterdir())) == 1  # both ranks used one run directory
    if paper == "refusion":
        p = [v for k, v in ckpt["state_dict"].items() if k.startswith("loss_proposal.")]
        assert p and all(np.isfinite(t.numpy()).all() for t in p)
