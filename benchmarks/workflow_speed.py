"""Workflow overheads: the local sweep runner's seconds per run beyond training, and ``table`` /
``compare`` time for 50 runs. Prints figures and writes benchmarks/results/workflow_speed.json.

    python benchmarks/workflow_speed.py                       # 50 synthetic result folders + a 3-run sweep
    python benchmarks/workflow_speed.py --sweep-dir runs/demo/sweeps/zero_dce_loss_ablation   # an existing sweep

Sweep overhead per run = wall time of the run's process (fit + test + start-up) − the training loop's
own time (``fit_seconds`` in results.json, measured by the FitTimer callback).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from experiments import compare, sweep, table  # noqa: E402
from experiments.env import REPO_ROOT  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "workflow_speed.json"


def fake_runs(root: Path, n: int) -> list[Path]:
    """``n`` run folders shaped like real ones: results.json, a 200-row metrics.csv, 6 test samples × 3."""
    rng = np.random.default_rng(0)
    dirs = []
    for i in range(n):
        run = root / "zero_dce" / f"run{i:03d}"
        (run / "logs" / "fit_0").mkdir(parents=True)
        rows = ["epoch,step,train/loss_step,val/psnr"] + [f"0,{s},{1 / (s + 1):.5f}," for s in range(200)]
        (run / "logs" / "fit_0" / "metrics.csv").write_text("\n".join(rows))
        init = {"variant": "zero_dce", "n_layers": [3, 7][i % 2], "n_filters": 32, "n_iterations": 8,
                "loss_form": "official", "exposure_level": 0.6, "lr": 1e-4 * (1 + i % 5),
                "loss_weights": {"spa": 1.0, "exp": 10.0, "col": 5.0, "tv": 200.0}}
        (run / "results.json").write_text(json.dumps({
            "paper": "zero_dce", "metrics": {"psnr": 15 + rng.random(), "ssim": 0.5, "mae": 100.0,
                                             "input_psnr": 10.0, "input_ssim": 0.3, "input_mae": 200.0},
            "time": f"2026-01-{1 + i % 28:02d}", "run_dir": str(run), "git_commit": "x", "checkpoint": None,
            "dataset_root": {}, "config": {"model": {"init_args": init}}}))
        for column in ("input", "output", "target"):
            (run / "samples" / column).mkdir(parents=True)
            for k in range(6):
                Image.fromarray(rng.integers(0, 255, (144, 192, 3), dtype=np.uint8)).save(
                    run / "samples" / column / f"img{k}.png")
        dirs.append(run)
    return dirs


def sweep_overhead(sweep_dir: Path | None, steps: int) -> dict:
    if sweep_dir is None:
        from datamodules.synthetic.sice import write_sice

        tmp = Path(tempfile.mkdtemp())
        data = write_sice(tmp / "sice", n_train=8, n_test=2, size=(96, 72), seed=0)
        cfg = {"method": "grid", "parameters": {"model.init_args.loss_weights.tv": {"values": [0.0, 100.0, 200.0]}},
               "command": ["${env}", "darkroom", "fit", "-c", str(REPO_ROOT / "experiments/zero_dce/demo.yaml"),
                           "${args}"]}
        extra = ["--data.init_args.train_root", str(data / "Dataset_Part1"),
                 "--data.init_args.test_root", str(data / "Dataset_Part2"), "--data.init_args.image_size", "64",
                 "--data.init_args.num_workers", "0", "--data.init_args.eval_size", "null",
                 "--trainer.max_steps", str(steps), "--trainer.enable_progress_bar", "false"]
        sweep_dir = tmp / "sweep"
        sweep.run_local(cfg, sweep_dir, extra)
    records = json.loads((sweep_dir / "sweep_status.json").read_text())
    per_run = [r["wall_seconds"] - r["fit_seconds"] for r in records
               if r.get("wall_seconds") is not None and r.get("fit_seconds") is not None]
    return {"sweep_dir": str(sweep_dir), "runs": len(records), "overhead_s_per_run": per_run,
            "overhead_s_mean": float(np.mean(per_run)) if per_run else None,
            "fit_s_mean": float(np.mean([r["fit_seconds"] for r in records if r.get("fit_seconds")])) if per_run else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--sweep-dir", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=10, help="training steps per sweep run (new sweep only)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    dirs = fake_runs(tmp, args.runs)
    t0 = time.perf_counter()
    md = table.render_all("zero_dce", table.load_runs(tmp))
    t_table = time.perf_counter() - t0
    t0 = time.perf_counter()
    page = compare.build_report(dirs)
    t_compare = time.perf_counter() - t0
    sw = sweep_overhead(args.sweep_dir, args.steps)
    result = {"benchmark": "workflow_speed", "machine": platform.machine(), "cpu_count": os.cpu_count(),
              "runs": args.runs, "table_seconds": t_table, "compare_seconds": t_compare,
              "compare_html_kib": len(page) / 1024, "table_lines": md.count("\n"), "sweep": sw,
              "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    print(f"table for {args.runs} runs: {t_table:.2f} s; compare for {args.runs} runs: {t_compare:.2f} s "
          f"({len(page) / 1024:.0f} KiB HTML)")
    print(f"sweep runner overhead: {sw['overhead_s_mean']:.1f} s per run beyond {sw['fit_s_mean']:.1f} s of training "
          f"({sw['runs']} runs)")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
