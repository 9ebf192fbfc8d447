"""Zero-DCE part of ``darkroom demo``: synthetic SICE → short training → test against the labels."""

from __future__ import annotations

import json
import time
from pathlib import Path

from experiments.demos import DemoResult, check_length, demo_configs, markdown_table

#: Training steps per demo length (``full``: ``experiments/zero_dce/demo.yaml``'s 200).
STEPS: dict[str, int] = {"quick": 20, "default": 60, "full": 200}


def run(out: Path, length: str = "default", steps: int | None = None) -> DemoResult:
    """Train Zero-DCE briefly on synthetic SICE Part1 and test it on Part2; the table compares it with the input."""
    from datamodules.synthetic.sice import write_sice
    from experiments.cli import cli_main
    from experiments.lightning_cli import best_checkpoint

    quick = check_length(length) == "quick"
    steps = steps or STEPS[length]
    t0 = time.time()
    data = write_sice(out / "data" / "sice", n_train=12 if quick else 40, n_test=4 if quick else 8, seed=0)
    print(f"[demo] synthetic SICE written to {data} ({time.time() - t0:.1f} s)")
    common = [*demo_configs("zero_dce"),
              "--data.init_args.train_root", str(data / "Dataset_Part1"),
              "--data.init_args.val_root", str(data / "Dataset_Part2"),
              "--data.init_args.test_root", str(data / "Dataset_Part2"),
              "--run.root", str(out / "runs"), "--run.group", "zero_dce"]
    t0 = time.time()
    fit = cli_main(["fit", *common, "--run.name", f"demo-{time.strftime('%Y%m%d-%H%M%S')}",
                    "--trainer.max_steps", str(steps)])
    ckpt = best_checkpoint(fit.trainer)
    print(f"[demo] Zero-DCE trained {fit.trainer.global_step} steps in {time.time() - t0:.0f} s → {ckpt}")
    test = cli_main(["test", *common, "--ckpt_path", ckpt])
    results = json.loads(Path(test.results_writer.path).read_text())
    m = results["metrics"]
    inp = {k[len("input_"):]: v for k, v in m.items() if k.startswith("input_")}
    ours = {k: v for k, v in m.items() if not k.startswith("input_")}
    cols = [("psnr", "PSNR ↑ (dB)"), ("ssim", "SSIM ↑"), ("mae", "MAE ↓ (0–255)")]
    table = markdown_table([("input (no enhancement)", inp), ("Zero-DCE (demo training)", ours)], cols)
    ok = ours["psnr"] > inp["psnr"]
    return DemoResult(
        title="Zero-DCE on synthetic SICE Part2 (per-image means against the well-exposed labels)",
        table=table,
        files={"before | after | label grid": str(getattr(test.model, "last_grid_path", "")),
               "results": str(test.results_writer.path)},
        ok=ok or quick,
        failure="Zero-DCE did not beat the unenhanced input on PSNR",
    )
