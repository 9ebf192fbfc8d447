"""DPED part of ``darkroom demo``: synthetic phone/DSLR photos → SIFT + RANSAC alignment into the real DPED patch
layout (:func:`experiments.prepare_dped.prepare_dped`) → short GAN training → test against the DSLR patches."""

from __future__ import annotations

import json
import time
from pathlib import Path

from experiments.demos import DemoResult, check_length, demo_configs, markdown_table

#: Training iterations per demo length (``full``: ``experiments/dped/demo.yaml``'s 800; the cosine schedule
#: decays to 0 over whichever is used).
STEPS: dict[str, int] = {"quick": 10, "default": 400, "full": 800}


def run(out: Path, length: str = "default", steps: int | None = None) -> DemoResult:
    """Train DPED briefly on synthetic aligned patches and test it; the table compares it with the phone patches.

    ``ok``: DPED's per-patch PSNR on the test patches beats the unenhanced phone patches (not checked in
    ``quick`` mode, which only runs the pipeline).
    """
    from datamodules.synthetic.dped_pairs import write_phone_dslr_pairs
    from experiments.cli import cli_main
    from experiments.lightning_cli import last_checkpoint
    from experiments.prepare_dped import prepare_dped

    quick = check_length(length) == "quick"
    t0 = time.time()
    raw = write_phone_dslr_pairs(out / "data" / "dped_raw", n_pairs=6 if quick else 16, size=(640, 480), seed=0)
    report = prepare_dped(raw / "phone", raw / "dslr", out / "data" / "dped", "iphone", n_full_test=1,
                          test_fraction=0.2, workers=2, seed=0, overwrite=True, progress=False)
    print(f"[demo] synthetic phone/DSLR pairs aligned into {report.out_dir}: {report.n_train_patches} training and "
          f"{report.n_test_patches} test patches ({time.time() - t0:.1f} s)")
    common = [*demo_configs("dped"), "--data.init_args.root", str(out / "data" / "dped"),
              "--run.root", str(out / "runs"), "--run.group", "dped"]
    t0 = time.time()
    fit_args = ["fit", *common, "--run.name", f"demo-{time.strftime('%Y%m%d-%H%M%S')}",
                "--trainer.max_steps", str(steps or STEPS[length])]
    fit = cli_main(fit_args)
    ckpt = last_checkpoint(fit.trainer)
    print(f"[demo] DPED trained {fit.trainer.global_step} iterations in {time.time() - t0:.0f} s → {ckpt}")
    test = cli_main(["test", *common, "--ckpt_path", ckpt])
    results = json.loads(Path(test.results_writer.path).read_text())
    m = results["metrics"]
    phone = {k[len("input_"):]: v for k, v in m.items() if k.startswith("input_")}
    ours = {k: v for k, v in m.items() if not k.startswith("input_")}
    cols = [("psnr", "PSNR ↑ (dB)"), ("ms_ssim", "MS-SSIM ↑")]
    table = markdown_table([("phone patches (no enhancement)", phone), ("DPED (demo training, per-pixel content stand-in)", ours)], cols)
    return DemoResult(
        title="DPED on synthetic aligned test patches (per-patch means against the DSLR patches)",
        table=table,
        files={"phone | DPED | DSLR grid": str(getattr(test.model, "last_grid_path", "")),
               "alignment report": str(report.out_dir / "alignment_report.csv"),
               "results": str(test.results_writer.path)},
        ok=ours["psnr"] > phone["psnr"] or quick,
        failure="DPED did not beat the unenhanced phone patches on PSNR",
    )
