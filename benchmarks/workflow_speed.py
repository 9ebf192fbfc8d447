"""Workflow overheads: the local sweep runner's seconds per run beyond training, and ``table`` /
``compare`` time for 50 runs. Prints figures and writes benchmarks/results/workflow_speed.json.

    python benchmarks/workflow_speed.py                       # 50 synthetic result folders + a 3-run sweep
    python benchmarks/workflow_speed.py --quick               # 10 folders, 2 rounds, a 1-run sweep of 2 steps
    python benchmarks/workflow_speed.py --sweep-dir runs/demo/sweeps/zero_dce_loss_ablation   # an existing sweep

``table`` (``table.render_all`` over ``table.load_runs``, the baseline of the ratios) and ``compare``
(``compare.build_report``) run interleaved by ``harness.interleave`` (rotated order, ``--rounds`` rounds after one
warm-up call each); min and median ms. Sweep overhead per run = wall time of the run's process (fit + test +
start-up) − the training loop's own time (``fit_seconds`` in results.json, measured by the FitTimer callback),
one figure per run of the sweep (``harness.summary`` over the runs).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import harness  # noqa: E402
from experiments import compare, sweep, table  # noqa: E402
from experiments.env import REPO_ROOT  # noqa: E402

BASELINE = "table"


def fake_runs(root: Path, n: int) -> list[Path]:
    """``n`` run folders shaped like real ones: results.json, a 200-row metrics.csv, 6 test samples × 3."""
    rng = np.random.default_rng(0)
    dirs = []
    for i in range(n):
        run = root / "zero_dce" / f"run{i:03d}"
        (run / "logs" / "fit_0").mkdir(parents=True)
        rows = ["epoch,step,train/loss_step,val/psnr"] + [f"0,{s},{1 / (s + 1):.5f}," for s in range(200)]
        (run / "logs" / "fit_0" / "metrics.csv").write_text("\n".join(rows))
        net = {"class_path": "networks.zero_dce.DCENet",
               "init_args": {"n_layers": [3, 7][i % 2], "n_filters": 32, "n_iterations": 8}}
        init = {"variant": "zero_dce", "net": net,
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


def _new_sweep(tmp: Path, steps: int, values: list[float]) -> Path:
    """A Zero-DCE demo sweep over ``values`` of the TV weight on synthetic SICE data, run here; its folder."""
    from datamodules.synthetic.sice import write_sice

    data = write_sice(tmp / "sice", n_train=8, n_test=2, size=(96, 72), seed=0)
    cfg = {"method": "grid", "parameters": {"model.init_args.loss_weights.tv": {"values": values}},
           "command": ["${env}", "darkroom", "fit", "-c", str(REPO_ROOT / "experiments/zero_dce/demo.yaml"),
                       "${args}"]}
    extra = ["--data.init_args.train_root", str(data / "Dataset_Part1"),
             "--data.init_args.test_root", str(data / "Dataset_Part2"), "--data.init_args.image_size", "64",
             "--data.init_args.num_workers", "0", "--data.init_args.eval_size", "null",
             "--trainer.max_steps", str(steps), "--trainer.enable_progress_bar", "false"]
    sweep_dir = tmp / "sweep"
    sweep.run_local(cfg, sweep_dir, extra)
    return sweep_dir


def sweep_overhead(sweep_dir: Path | None, steps: int, values: list[float]) -> dict[str, Any]:
    """Run a Zero-DCE demo sweep over ``values`` of the TV weight (``steps`` training steps each, synthetic SICE
    data) unless ``sweep_dir`` is given, and summarise its runs' overheads (seconds beyond the training loop)."""
    if sweep_dir is None:
        with tempfile.TemporaryDirectory(prefix="darkroom-workflow-sweep-") as tmp:
            return {**sweep_overhead(_new_sweep(Path(tmp), steps, values), steps, values), "sweep_dir": "new (deleted)"}
    records = json.loads((sweep_dir / "sweep_status.json").read_text())
    done = [r for r in records if r.get("wall_seconds") is not None and r.get("fit_seconds") is not None]
    out: dict[str, Any] = {"sweep_dir": str(sweep_dir), "runs": len(records), "runs_with_times": len(done)}
    if done:
        out["overhead"] = harness.summary([r["wall_seconds"] - r["fit_seconds"] for r in done])
        out["fit"] = harness.summary([r["fit_seconds"] for r in done])
        out["overhead_over_fit"] = out["overhead"]["median_ms"] / out["fit"]["median_ms"]
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=None, help="synthetic result folders (default 50, 10 quick)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds of table/compare (default 3, 2 quick)")
    parser.add_argument("--sweep-dir", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=None, help="training steps per sweep run (new sweep only; "
                                                                 "default 10, 2 quick)")
    parser.add_argument("--quick", action="store_true", help="10 folders, 2 rounds, a 1-run sweep of 2 steps")
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default benchmarks/results/…)")
    args = parser.parse_args(argv)
    n_runs = args.runs or (10 if args.quick else 50)
    rounds = args.rounds or (2 if args.quick else 3)
    steps = args.steps or (2 if args.quick else 10)
    values = [0.0] if args.quick else [0.0, 100.0, 200.0]
    env = harness.environment()
    print(f"workflow speed: {env['threads']} threads, allocator {env['allocator']}, load {env['load_average']}")
    tmp_dir = tempfile.TemporaryDirectory(prefix="darkroom-workflow-runs-")
    tmp = Path(tmp_dir.name)
    dirs = fake_runs(tmp, n_runs)
    made: dict[str, Any] = {}

    def run_table() -> None:
        made["md"] = table.render_all("zero_dce", table.load_runs(tmp))

    def run_compare() -> None:
        made["page"] = compare.build_report(dirs)

    with harness.LoadWatch() as load:
        with harness.LoadWatch() as group_load:
            results = harness.interleave({"table": run_table, "compare": run_compare}, rounds, warmup=1)
        group = harness.comparison(results, BASELINE, group_load, what=f"{n_runs} synthetic Zero-DCE run folders, "
                                   "ms per call", runs=n_runs, compare_html_kib=len(made["page"]) / 1024,
                                   table_lines=made["md"].count("\n"))
        print(harness.table(group, unit="s"))
        tmp_dir.cleanup()
        with harness.LoadWatch() as sweep_load:
            sw = sweep_overhead(args.sweep_dir, steps, values)
        sw["load"] = sweep_load.record
    if "overhead" in sw:
        print(f"sweep runner overhead: {sw['overhead']['median_ms'] / 1000:.1f} s per run (median; min "
              f"{sw['overhead']['min_ms'] / 1000:.1f} s) beyond {sw['fit']['median_ms'] / 1000:.1f} s of training "
              f"({sw['runs']} runs)")
    else:
        print(f"sweep: no run with both wall and fit seconds ({sw['runs']} runs)")
    payload = {
        "environment": env, "load": load.record, "quick": args.quick,
        "settings": {"runs": n_runs, "rounds": rounds, "warmup": 1, "sweep_steps": steps, "sweep_values": values,
                     "baseline": BASELINE},
        "comparisons": {"table_compare": group},
        "sweep": sw,
    }
    harness.write_result("workflow_speed", payload, args.out)
    return payload


if __name__ == "__main__":
    main()
