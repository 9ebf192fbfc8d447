"""Last part of ``darkroom demo``: a small local sweep (the Zero-DCE loss ablation, a few steps per run),
its ablation table and an HTML report comparing the runs.

Outside ``quick`` mode two local runners share the sweep, as two terminals would (``darkroom sweep FILE --local``
twice on one ``--out``): this process and a second one whose output goes to ``<sweep>/logs/second_runner.log``.
The run locks split the runs between them. Each run is mostly process start-up, which one core does, so each
runner's runs get one thread (``OMP_NUM_THREADS=1``): two runners of two threads each on two cores were slower than
one runner (OpenMP threads spin while they wait for a core).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from experiments.demos import DemoResult, check_length
from experiments.env import REPO_ROOT, environment_set

#: Training steps of each sweep run per demo length.
STEPS: dict[str, int] = {"quick": 2, "default": 10, "full": 25}


def run(out: Path, length: str = "default", steps: int | None = None) -> DemoResult:
    from datamodules.synthetic.sice import write_sice
    from experiments import compare, sweep, table
    from experiments.sweep_status import read_status

    quick = check_length(length) == "quick"

    data = out / "data" / "sice"
    if not (data / "Dataset_Part2").is_dir():
        write_sice(data, n_train=12 if quick else 40, n_test=4 if quick else 8, seed=0)
    sweep_file = REPO_ROOT / "experiments" / "zero_dce" / "sweeps" / "loss_ablation.yaml"
    cfg = sweep.load_sweep(sweep_file)
    steps = steps or STEPS[length]
    extra = ["--data.init_args.train_root", str(data / "Dataset_Part1"),
             "--data.init_args.test_root", str(data / "Dataset_Part2"),
             "--data.init_args.image_size", "64", "--data.init_args.num_workers", "0",
             "--data.init_args.eval_size", "null", "--model.init_args.lr", "1e-3",
             "--trainer.max_steps", str(steps), "--trainer.enable_progress_bar", "false",
             "--trainer.enable_model_summary", "false"]
    sweep_dir = out / "sweeps" / "zero_dce_loss_ablation"
    t0 = time.time()
    second = None if quick else _second_runner(sweep_file, sweep_dir, extra)
    try:
        with environment_set(**({} if second is None else {"OMP_NUM_THREADS": "1"})):
            records = sweep.run_local(cfg, sweep_dir, extra, sweep_file=sweep_file)
    except BaseException:
        if second is not None:
            second.terminate()  # the demo stops: so does its second runner (which stops its run cleanly)
        raise
    if second is not None:
        second.wait()
        records = read_status(sweep_dir / "sweep_status.json")
    print(f"[demo] sweep of {len(records)} runs in {time.time() - t0:.0f} s"
          + ("" if second is None else f" (two runners; the second's output: {sweep_dir / 'logs' / 'second_runner.log'})"))
    md = table.render_all("zero_dce", table.load_runs(sweep_dir), only="loss_ablation")
    report = out / "sweeps" / "zero_dce_loss_ablation.html"
    done = [Path(r.run_dir) for r in records if r.status in ("finished", "skipped")]
    report.write_text(compare.build_report(done, title="Zero-DCE loss ablation (demo sweep)"))
    return DemoResult(
        title=f"Zero-DCE loss ablation, local sweep of {len(records)} runs × {steps} steps (paper: visual only)",
        table=md,
        files={"sweep status": str(sweep_dir / "sweep_status.json"), "comparison report": str(report)},
        ok=all(r.status in ("finished", "skipped") for r in records),
        failure="a sweep run failed (see the sweep status file)",
    )


def _second_runner(sweep_file: Path, sweep_dir: Path, extra: list[str]) -> subprocess.Popen:
    """``darkroom sweep sweep_file --local --out sweep_dir -- extra`` in the background, its output to a log."""
    log = sweep_dir / "logs" / "second_runner.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as f:
        return subprocess.Popen([sys.executable, "-m", "experiments.cli", "sweep", str(sweep_file), "--local",
                                 "--out", str(sweep_dir), "--", *extra], stdout=f, stderr=subprocess.STDOUT,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})

