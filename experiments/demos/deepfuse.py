"""DeepFuse part of ``darkroom demo``: synthetic exposure stacks → short training → MEF-SSIM test.

The table compares DeepFuse (trained from scratch for a few minutes on a CPU) with the two training-free
baselines scored on the same test stacks: the per-pixel mean of the exposures and Mertens (1, 1, 1).
The check: DeepFuse must beat the mean of the exposures on MEF-SSIM (what it is trained to maximise).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from experiments.demos import DemoResult, check_length, demo_configs, markdown_table

#: Training steps per demo length (``full``: ``experiments/deepfuse/demo.yaml``'s 150).
STEPS: dict[str, int] = {"quick": 8, "default": 100, "full": 150}


def run(out: Path, length: str = "default", steps: int | None = None) -> DemoResult:
    """Train DeepFuse on synthetic stacks (extreme pairs) and test it on whole synthetic test stacks."""
    from datamodules.synthetic.exposure_stacks import write_exposure_stacks
    from experiments.cli import cli_main
    from experiments.lightning_cli import best_checkpoint

    quick = check_length(length) == "quick"
    steps = steps or STEPS[length]
    t0 = time.time()
    data = write_exposure_stacks(out / "data" / "exposure_stacks", n_train=6 if quick else 24,
                                 n_test=2 if quick else 4, size=(96, 72) if quick else (128, 96), seed=0)
    print(f"[demo] synthetic exposure stacks written to {data} ({time.time() - t0:.1f} s)")
    common = [*demo_configs("deepfuse"),
              "--data.init_args.train_root", str(data / "train"),
              "--data.init_args.test_root", str(data / "test"),
              "--run.root", str(out / "runs"), "--run.group", "deepfuse"]
    t0 = time.time()
    fit = cli_main(["fit", *common, "--run.name", f"demo-{time.strftime('%Y%m%d-%H%M%S')}",
                    "--trainer.max_steps", str(steps)])
    ckpt = best_checkpoint(fit.trainer)
    print(f"[demo] DeepFuse trained {fit.trainer.global_step} steps in {time.time() - t0:.0f} s → {ckpt}")
    test = cli_main(["test", *common, "--ckpt_path", ckpt])
    m = json.loads(Path(test.results_writer.path).read_text())["metrics"]
    rows = [(label, {k: m.get(f"{prefix}{k}") for k in ("mef_ssim", "ms_mef_ssim")})
            for label, prefix in (("mean of the exposures", "mean_"), ("Mertens (1, 1, 1)", "mertens_"),
                                  ("DeepFuse (demo training)", ""))]
    table = markdown_table(rows, [("mef_ssim", "MEF-SSIM ↑"), ("ms_mef_ssim", "MS MEF-SSIM ↑")])
    ok = m["mef_ssim"] > m["mean_mef_ssim"]
    return DemoResult(
        title="DeepFuse on synthetic exposure stacks (per-stack means of MEF-SSIM on Y, all exposures)",
        table=table,
        files={"exposures | DeepFuse | Mertens grid": str(getattr(test.model, "last_grid_path", "")),
               "results": str(test.results_writer.path)},
        ok=ok or quick,
        failure="DeepFuse did not beat the mean of the exposures on MEF-SSIM",
    )
