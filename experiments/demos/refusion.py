"""ReFusion part of ``darkroom demo``: synthetic multi-focus pairs → short meta-learning training → test against
the pixel-mean and pixel-max baselines on the fusion metrics (no reference needed; the all-in-focus originals are
written too, under ``reference/``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from experiments.demos import DemoResult, markdown_table
from experiments.env import REPO_ROOT


def run(out: Path, quick: bool = False, epochs: int | None = None) -> DemoResult:
    """Train ReFusion briefly on synthetic near/far-focus pairs and test it; ``ok`` = it beats pixel mean on Qabf.

    Args:
        out: working folder (data under ``out/data``, runs under ``out/runs``).
        quick: seconds instead of minutes (one official epoch; the check is then not enforced).
        epochs: Lightning epochs (two per official epoch: meta phase, fusion phase); default from ``demo.yaml``.
    """
    from datamodules.synthetic.fusion_pairs import write_multi_focus
    from experiments.cli import cli_main

    t0 = time.time()
    data = write_multi_focus(out / "data" / "multi_focus", n_train=4 if quick else 16, n_test=2 if quick else 4,
                             size=(64, 64) if quick else (96, 96), seed=0)
    print(f"[demo] synthetic multi-focus pairs written to {data} ({time.time() - t0:.1f} s)")
    config = str(REPO_ROOT / "experiments" / "refusion" / "demo.yaml")
    common = ["-c", config, "--data.init_args.train_root", str(data / "train"),
              "--data.init_args.val_root", str(data / "test"), "--data.init_args.test_root", str(data / "test"),
              "--run.root", str(out / "runs"), "--run.group", "refusion"]
    if quick:
        common += ["--data.init_args.crop_size", "48", "--model.init_args.meta_steps", "1"]
    fit_args = ["--trainer.max_epochs", str(epochs or (2 if quick else 12))]
    t0 = time.time()
    fit = cli_main(["fit", *common, *fit_args, "--run.name", f"demo-{time.strftime('%Y%m%d-%H%M%S')}"])
    ckpt = fit.trainer.checkpoint_callback.best_model_path or fit.trainer.checkpoint_callback.last_model_path
    print(f"[demo] ReFusion trained {fit.trainer.global_step} fusion steps in {time.time() - t0:.0f} s → {ckpt}")
    test = cli_main(["test", *common, "--ckpt_path", ckpt])
    m = json.loads(Path(test.results_writer.path).read_text())["metrics"]
    rows = [("pixel mean", {k[5:]: v for k, v in m.items() if k.startswith("mean_")}),
            ("pixel max", {k[4:]: v for k, v in m.items() if k.startswith("max_")}),
            ("ReFusion (demo training)", {k: v for k, v in m.items() if not k.startswith(("mean_", "max_"))})]
    cols = [("qabf", "Qabf ↑"), ("ssim", "SSIM ↑ (sum)"), ("vif", "VIF ↑ (sum)"), ("sf", "SF ↑"), ("ag", "AG ↑"),
            ("en", "EN ↑")]
    ok = rows[2][1]["qabf"] > rows[0][1]["qabf"]
    return DemoResult(
        title="ReFusion on synthetic multi-focus pairs (per-image means; CDDFuse evaluator conventions)",
        table=markdown_table(rows, cols),
        files={"source 1 | source 2 | fused | mean grid": str(getattr(test.model, "last_grid_path", "") or ""),
               "results": str(test.results_writer.path)},
        ok=ok or quick,
        failure="ReFusion did not beat the pixel mean on Qabf",
    )
