"""Last part of ``darkroom demo``: a small local sweep (the Zero-DCE loss ablation, a few steps per run),
its ablation table and an HTML report comparing the runs."""

from __future__ import annotations

import time
from pathlib import Path

from experiments.demos import DemoResult, check_length

#: Training steps of each sweep run per demo length.
STEPS: dict[str, int] = {"quick": 2, "default": 10, "full": 25}
from experiments.env import REPO_ROOT


def run(out: Path, length: str = "default", steps: int | None = None) -> DemoResult:
    quick = check_length(length) == "quick"
    from datamodules.synthetic.sice import write_sice
    from experiments import compare, sweep, table

    data = out / "data" / "sice"
    if not (data / "Dataset_Part2").is_dir():
        write_sice(data, n_train=12 if quick else 40, n_test=4 if quick else 8, seed=0)
    cfg = sweep.load_sweep(REPO_ROOT / "experiments" / "zero_dce" / "sweeps" / "loss_ablation.yaml")
    steps = steps or STEPS[length]
    extra = ["--data.init_args.train_root", str(data / "Dataset_Part1"),
             "--data.init_args.test_root", str(data / "Dataset_Part2"),
             "--data.init_args.image_size", "64", "--data.init_args.num_workers", "0",
             "--data.init_args.eval_size", "null", "--model.init_args.lr", "1e-3",
             "--trainer.max_steps", str(steps), "--trainer.enable_progress_bar", "false",
             "--trainer.enable_model_summary", "false"]
    sweep_dir = out / "sweeps" / "zero_dce_loss_ablation"
    t0 = time.time()
    records = sweep.run_local(cfg, sweep_dir, extra)
    print(f"[demo] sweep of {len(records)} runs in {time.time() - t0:.0f} s")
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
