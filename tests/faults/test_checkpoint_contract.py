"""``--ckpt_path`` respects the user, results never overwrite each other, evaluation is fp32 whatever the
training precision, and checkpoint writes are atomic."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import run_args, zero_dce_args

from datamodules.atomic_files import remove_stale_temp_files
from experiments.checkpointing import AtomicCheckpointIO, parse_interval
from experiments.cli import cli_main
from experiments.demos import demo_configs
from experiments.lightning_cli import CheckpointMismatchError
from lightning_modules.checkpoints import CheckpointError

REPO = Path(__file__).resolve().parents[2]
ZERO_DCE = demo_configs("zero_dce")


def _args(root: Path, tmp: Path, name: str, steps: int = 2) -> list[str]:
    return [*ZERO_DCE, *zero_dce_args(root, val=False), "--data.init_args.val_root", "null",
            "--trainer.max_steps", str(steps), "--trainer.limit_test_batches", "2", *run_args(tmp),
            "--run.name", name]


@pytest.fixture(scope="module")
def trained(sice_root, tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("contract")
    cli_main(["fit", *_args(sice_root, tmp, "base"), "--model.init_args.lr", "0.002"])
    return tmp, tmp / "runs" / "zero_dce" / "base" / "checkpoints" / "last.ckpt"


def test_last_ckpt_is_written_without_validation_and_carries_the_model_class(trained):
    _, last = trained
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2
    assert ckpt["darkroom"]["model_class"] == "lightning_modules.zero_dce.ZeroDCE"
    assert "rng" in ckpt["callbacks"]["ResumeState"]
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]


def test_checkpoint_of_another_model_class_is_refused(trained, tmp_path):
    _, last = trained
    with pytest.raises(CheckpointMismatchError, match=r"ZeroDCE.*DeepFuse"):
        cli_main(["test", *demo_configs("deepfuse"), "--ckpt_path", str(last),
                  "--run.root", str(tmp_path / "runs"), "--run.wandb", "false"])


def test_command_line_argument_wins_over_the_checkpoint(trained, sice_root, capfd):
    tmp, last = trained
    cli = cli_main(["fit", *_args(sice_root, tmp, "base", steps=3), "--model.init_args.lr", "0.0005",
                    "--ckpt_path", str(last)])
    assert cli.model.hparams.lr == 0.0005
    assert cli.trainer.global_step == 3
    err = capfd.readouterr().err
    assert "--model.init_args.lr=0.0005" in err and "kept over the checkpoint's 0.002" in err
    # without the argument, the checkpoint's value replaces the config file's, and says so
    cli = cli_main(["validate", *_args(sice_root, tmp, "base"), "--ckpt_path", str(last), "--trainer.limit_val_batches", "1",
                    "--data.init_args.val_root", str(sice_root / "Dataset_Part2")])
    assert cli.model.hparams.lr == 0.0005
    assert "from the checkpoint" in capfd.readouterr().err


def test_truncated_checkpoint_names_the_file(trained, tmp_path):
    _, last = trained
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="broken.ckpt"):
        cli_main(["test", *ZERO_DCE, "--ckpt_path", str(broken), "--run.root", str(tmp_path / "runs"),
                  "--run.wandb", "false"])


def test_each_test_dataset_gets_its_own_results_file(trained, sice_root, tmp_path):
    tmp, last = trained
    other = tmp_path / "other_test_set"
    shutil.copytree(sice_root / "Dataset_Part2", other)
    for root in (sice_root / "Dataset_Part2", other):
        cli_main(["test", *_args(sice_root, tmp, "base"), "--data.init_args.test_root", str(root),
                  "--ckpt_path", str(last)])
    run = last.parent.parent
    files = sorted(p.name for p in run.glob("results_*.json"))
    assert len(files) == 2 and any(f.startswith("results_other_test_set-") for f in files)
    newest = json.loads((run / "results.json").read_text())
    assert newest["dataset_root"]["test_root"] == str(other)
    assert newest["checkpoint_step"] == torch.load(last, weights_only=True)["global_step"]
    assert newest["world_size"] == 1


def test_evaluation_is_fp32_under_bf16_mixed(trained, sice_root):
    tmp, last = trained
    run = last.parent.parent
    metrics = {}
    for precision, eval_precision in (("32-true", "32"), ("bf16-mixed", "32"), ("bf16-mixed", "autocast")):
        cli_main(["test", *_args(sice_root, tmp, "base"), "--trainer.precision", precision,
                  "--run.eval_precision", eval_precision, "--ckpt_path", str(last)])
        res = json.loads((run / "results.json").read_text())
        metrics[(precision, eval_precision)] = res["metrics"]
        assert res["precision"]["trainer"] == precision
    assert metrics[("bf16-mixed", "32")] == metrics[("32-true", "32")]
    assert res["precision"]["evaluation"] == "bf16-mixed (autocast)"
    assert metrics[("bf16-mixed", "autocast")] != metrics[("32-true", "32")]


def test_parse_interval():
    assert parse_interval("500") == ("steps", 500) and parse_interval("20steps") == ("steps", 20)
    assert parse_interval("10min") == ("seconds", 600) and parse_interval("90s") == ("seconds", 90)
    assert parse_interval(None) is None and parse_interval("null") is None
    for bad in ("ten", "0", "5 parsecs"):
        with pytest.raises(ValueError, match="checkpoint interval"):
            parse_interval(bad)


_WRITER = """
import os, sys, torch
sys.path.insert(0, {repo!r})
from experiments.checkpointing import AtomicCheckpointIO
io = AtomicCheckpointIO()
state = {{"state_dict": {{"w": torch.randn(4_000_000)}}, "global_step": 0}}
for step in range(10_000):
    state["global_step"] = step
    io.save_checkpoint(state, {path!r})
    print(step, flush=True)
"""


def kill_during_writes(folder: Path, kills: int, seed: int = 0) -> tuple[int, int]:
    """Kill a process that rewrites a 16 MB checkpoint in a loop ``kills`` times at random moments;
    return (loadable last.ckpt count, temp files left after the cleanup)."""
    import random

    rng = random.Random(seed)
    path = folder / "last.ckpt"
    script = folder / "writer.py"
    script.write_text(_WRITER.format(repo=str(REPO), path=str(path)))
    loadable = 0
    for _ in range(kills):
        proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "TMPDIR": "/dev/shm" if Path("/dev/shm").is_dir() else "/tmp"})
        proc.stdout.readline()  # at least one complete write
        time.sleep(rng.uniform(0.0, 0.3))
        proc.kill()
        proc.wait()
        try:
            torch.load(path, map_location="cpu", weights_only=True)["global_step"]
            loadable += 1
        except Exception:  # noqa: BLE001 - any failure to load counts as torn
            pass
        remove_stale_temp_files(folder)
    left = [p for p in folder.iterdir() if p.name not in ("last.ckpt", "writer.py")]
    return loadable, len(left)


def test_killed_checkpoint_writes_never_leave_a_torn_file(tmp_path):
    loadable, left = kill_during_writes(tmp_path, kills=5)
    assert loadable == 5 and left == 0


def test_atomic_io_refuses_storage_options(tmp_path):
    with pytest.raises(TypeError):
        AtomicCheckpointIO().save_checkpoint({}, tmp_path / "x.ckpt", storage_options={"a": 1})
