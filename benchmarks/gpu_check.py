"""The prepared GPU check (issue 13, item 6): every paper's training, inference and official-weights parity on one
CUDA device, in one short run, written to one JSON.

    python benchmarks/gpu_check.py prepare [--train-images]     # here: build gpu_payload/ from ../shared/data
    benchmarks/gpu_check.sh --out $OUT/gpu_check.json            # on the GPU machine (carry gpu_payload)
    python benchmarks/gpu_check.py --dry-run --out /tmp/x.json   # here: every step on tiny sizes, on the CPU

**Needs** a Python with torch (a CUDA build for the real run), lightning, torchmetrics, kornia (+ kornia_rs), numpy,
opencv (cv2), scikit-image, scipy, pillow, pyyaml and tifffile, plus pytest (the parity reuses the helpers of the
parity tests). Nothing is installed by this script: where an import fails it prints one line naming the missing
modules and exits with status 2. The GPU machine's image has all of them except kornia; ``prepare`` puts kornia's
wheels into ``gpu_payload/wheels`` and ``benchmarks/gpu_check.sh`` installs them offline (``--no-index``) when
``import kornia`` fails. wandb, jsonargparse and albumentations are not needed (no CLI, no logger).

**Stages** (in this order; a failing case is recorded in the JSON and the next one runs):

1. ``parity``: the official weights on the device reproduce the official reference outputs, to the tolerances of the
   CPU parity tests (``tests/test_*_network.py``; their loaders and input helpers are imported, not re-written):
   Zero-DCE and Zero-DCE++ on LIME/6 (max |Δ| ≤ 1e-4, PNG mismatch ≤ 1e-4, curve-map range ± 1e-5), DeepFuse on
   forth4 (≤ 1 grey level, > 99.9 % exact; the dry run checks the 128² interior crop instead of the slow full
   image), DPED iPhone on the 100×100 crop (≤ 1e-4), ReFusion on TNO_05, MRI_PET_14 and MFIF_5 (≤ 1 grey
   level, ≥ 99.9 % exact; the dry run: TNO_05 only). On CUDA each case runs twice: ``default`` (PyTorch's defaults, under which
   cuDNN convolutions may use TF32) and ``fp32_strict`` (TF32 off for cuDNN and matmul). Files come from
   ``--data`` (default: ``gpu_payload/`` if present, else ``$DARKROOM_SHARED_DATA`` or ``../shared/data``); a
   missing file makes the case ``skipped`` with the path in the reason.
2. ``inference``: ms per image at each paper's runtime size, fp32 / bf16 autocast / fp16 autocast, the variants
   interleaved (``harness.interleave``: rotated order, CUDA synchronised, min and median): Zero-DCE and
   Zero-DCE++ 1200×900 (paper: 2.5 ms and 1.2 ms on a 2080 Ti, [CVPR Table 3], [TPAMI Table 7]), DeepFuse a
   512×384 exposure pair (the paper's runtime: not found; issue 13 quotes 70 ms, unverified),
   DPED 1280×720 (no GPU figure in the paper), ReFusion 640×480 grey pair (none). ``network`` times the bare
   network, ``module`` the LightningModule's forward (the whole inference path: curves, colour, normalisation).
   Official weights where the payload has them (``weights`` says which), else the default init (same cost).
   Each variant's first call also checks that its output is finite (``output_finite``; a non-finite output is
   listed in ``errors``).
3. ``fit``: 200 optimiser steps (``global_step``) of each paper's LightningModule through ``lightning.Trainer`` in
   ``32-true``, ``bf16-mixed`` and ``16-mixed`` (mixed: ``experiments.precision.FP32EvalMixedPrecision``, the
   plugin ``darkroom fit`` uses), with the recipe's model settings read from ``experiments/<paper>/*.yaml`` and its
   training patch size and batch size. Data: the paper's DataModule on synthetic files in the real layout
   (``datamodules.synthetic``, as ``darkroom demo``), drawn once into 4 batches that are then cycled from memory
   (pinned), so samples/s measures the training step (+ host-to-device copy), not image decoding. Figures:
   samples/s over the steps after the first 20 (warm-up and compilation excluded), peak
   ``torch.cuda.max_memory_allocated``, the loss finite at every step (checked on the device, read once at the end),
   parameters finite at the end, the GradScaler's last scale (16-mixed). ReFusion runs its meta phase first
   (5 meta iterations, timed apart) and then 200 fusion steps; DPED uses a randomly initialised VGG-19 for the
   content term (VGG-19 weights do not travel; same cost). Logger, checkpointing, progress bar and validation off.
4. ``compile``: the same fits with the networks compiled in place (``nn.Module.compile``, inductor, default mode;
   the losses stay eager). **Decision:** only ``bf16-mixed`` is compiled by default (``--compile-precisions``):
   inductor takes ~30–120 s per network and precision on 16 cores, so 15 compiled fits would not fit 8 minutes,
   and bf16-mixed is the precision a run on this GPU would use. The other two are recorded as ``skipped`` with that
   reason. Each compiled case runs only if the time left (``--budget``) covers its estimate, under an alarm. When
   ReFusion's compiled fit fails in its meta phase, ``<case>:meta-off`` retries it with ``meta=False`` (the
   fixed-loss ablation), so the compiled fusion step is still measured.
5. ``recipe`` (optional, ``--zero-dce-recipe EPOCHS``): the Zero-DCE reproduction recipe of issue 15 (256², batch
   8, Adam 1e-4, weight decay 1e-4, grad-norm clip 0.1, ``experiments/zero_dce/paper.yaml``) on the 2002 training
   images (``gpu_payload/lowlight_train_256`` from ``prepare --train-images``, or ``lowlight/train``); per-epoch
   mean loss, samples/s, and the trained network's output on LIME/6 against the official weights' reference
   output (PSNR). Not bounded by ``--budget`` (``--recipe-max-s`` bounds it; ``--stages`` with no stage runs the
   recipe alone).

``--dry-run`` runs every stage on the CPU on tiny sizes, one torch thread (2 steps, the first one warm-up; 32×32
crops, DeepFuse 24², ReFusion 16²; batch 2, ReFusion 1; DPED with a tiny generator, 32² patches and the per-pixel
content term; compile with the ``aot_eager`` backend, which traces with dynamo and AOTAutograd without generating
code), in about a minute. 16-mixed runs there too: the plugin is given
directly (as ``darkroom fit`` does), which keeps float16 autocast and a GradScaler on the CPU (a plain
``Trainer(precision="16-mixed")`` would switch to bf16 on a CPU).

**Output** (``--out``, default ``benchmarks/results/gpu/gpu_check.json``; ``gpu_check.dry-run.json`` for a dry
run), rewritten after every case so that a run stopped early keeps what it measured (SIGTERM, as sent by
``gpu_check.sh``'s timeout, ends the run with ``"status": "interrupted after … s"``)::

    {"benchmark": "gpu_check", "mode": "gpu" | "dry-run", "status": "running" | "complete" | "interrupted …",
     "environment": {harness.environment(...) + gpu, driver, cuda, cudnn, tf32 flags, versions},
     "payload": {...}, "decisions": {...}, "budget": {...},
     "parity":    {paper: {"status", "cases": {name: {"test": "tests/…::…", "status",
                                                   "modes": {"default" | "fp32_strict": {"status", "checks":
                                                             {check: {"value", "limit", "ok"}}}}}}}},
     "inference": {paper: {"size_wxh", "paper_ms", "paper_device", "source", "weights", "input", "gflop",
                           "variants": {"network/32-true": {"status", "output_finite", "min_ms", "median_ms",
                                                            "runs_ms"}, "module/bf16-mixed": …, …}}},
     "fit":       {paper: {"data": {...}, "32-true": case, "bf16-mixed": case, "16-mixed": case,
                           "32-true+compile": case, "bf16-mixed+compile": case, "16-mixed+compile": case}},
     "recipe":    {"status", "per_epoch", "samples_per_s", "vs_official_LIME_6", …},
     "errors":    ["<case>: <error> (at <file:line in the project>)", …]}

with a fit ``case`` = ``{"status": "ok" | "error" | "skipped", "reason" | "error" + "where" + "traceback" +
"context", "samples_per_s", "steps_timed", "step_ms_mean", "warmup_s", "peak_gib", "loss_finite_all_steps",
"nonfinite_steps", "params_finite", "grad_scaler_scale", "meta" (ReFusion), "graph_breaks" (compiled), …}``.

**Time** (H200, 16 cores; estimated, not measured): parity ~15 s, inference ~20 s, synthetic data ~20 s, 15 eager
fits ~2 min, 5 compiled fits ~3–4 min (the estimate per paper is in ``COMPILE_ESTIMATE_S``), i.e. ~6–7 min
under the default ``--budget 450`` s; ``gpu_check.sh`` stops the whole run at 540 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

# This file is the command line (`prepare`, or a run); the parts live in benchmarks/gpu/ (payload, run: state and
# report, parity, inference, fit, zero_dce_recipe, and recipes / batches for the fits) and are re-exported here.
_REPO = str(Path(__file__).resolve().parents[1])
if _REPO not in sys.path:  # run as a file: the repository's packages
    sys.path.insert(0, _REPO)

from benchmarks.gpu.batches import _rebatch, cached_loader, synthetic_batches  # noqa: E402, F401  (re-exported)
from benchmarks.gpu.common import (  # noqa: E402, F401  (re-exported)
    COMPILE_ESTIMATE_S,
    COMPILED,
    DEFAULT_OUT,
    DRY_OUT,
    DRY_RUNTIME_SIZE,
    LIMIT_BYTES,
    PAPERS,
    PARITY_FILES,
    PAYLOAD,
    PRECISIONS,
    RECIPES,
    REQUIRED,
    ROOT,
    RUNTIME,
    TRAIN_256,
    WHEEL_PACKAGES,
    WHEELS,
    _say,
)
from benchmarks.gpu.fit import _compile, _refusion_meta_off, make_probe, run_fit, stage_fit  # noqa: E402, F401
from benchmarks.gpu.inference import (  # noqa: E402, F401  (re-exported)
    _autocast_call,
    _inference_model,
    inference_calls,
    stage_inference,
)
from benchmarks.gpu.parity import (  # noqa: E402, F401  (re-exported)
    REFUSION_PAIRS,
    Missing,
    _check,
    _overall,
    _tests_on_path,
    parity_cases,
    parity_deepfuse,
    parity_dped,
    parity_refusion,
    parity_zero_dce,
    stage_parity,
    tf32,
)
from benchmarks.gpu.payload import (  # noqa: E402, F401  (re-exported)
    _data_root,
    _folder_bytes,
    _sha256,
    _tree_bytes,
    payload_record,
    prepare,
)
from benchmarks.gpu.recipes import _import, _recipe, build_model, fit_sizes  # noqa: E402, F401  (re-exported)
from benchmarks.gpu.run import (  # noqa: E402, F401  (re-exported)
    CaseTimeout,
    Run,
    _error,
    _versions,
    alarm,
    check_modules,
    environment,
)
from benchmarks.gpu.zero_dce_recipe import stage_recipe  # noqa: E402, F401  (re-exported)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="every stage on tiny sizes, on the CPU (~1 min)")
    p.add_argument("--out", type=Path, default=None, help=f"result JSON (default {DEFAULT_OUT.relative_to(ROOT)})")
    p.add_argument("--data", type=Path, default=None,
                   help="data root in the shared/data layout (default gpu_payload/, else $DARKROOM_SHARED_DATA or "
                        "../shared/data)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds for stages 1–4: a case is skipped (recorded) when the time left is below its "
                        "estimate (default 450; dry run 600)")
    p.add_argument("--stages", nargs="*", default=["parity", "inference", "fit", "compile"],
                   choices=["parity", "inference", "fit", "compile"],
                   help="stages 1-4 to run (default all; none: only the recipe, e.g. --stages --zero-dce-recipe 100)")
    p.add_argument("--papers", nargs="+", default=list(PAPERS), choices=PAPERS)
    p.add_argument("--steps", type=int, default=200, help="optimiser steps per fit (200)")
    p.add_argument("--warmup", type=int, default=20, help="steps left out of samples/s (20)")
    p.add_argument("--rounds", type=int, default=20, help="timed inference calls per variant (20)")
    p.add_argument("--compile-precisions", nargs="*", default=["bf16-mixed"], choices=PRECISIONS,
                   help="precisions whose fits are also run compiled (default bf16-mixed; see decisions.compile)")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend on the GPU (inductor)")
    p.add_argument("--zero-dce-recipe", type=int, default=0, metavar="EPOCHS",
                   help="also train the Zero-DCE recipe (issue 15) for EPOCHS epochs on the 2002 training images")
    p.add_argument("--recipe-precision", default="32-true", choices=PRECISIONS)
    p.add_argument("--recipe-weights", type=Path, default=None, help="save the recipe's trained network here (.pt)")
    p.add_argument("--recipe-max-s", type=float, default=None,
                   help="stop the recipe after this many seconds (Lightning's max_time; the epochs done are kept)")
    args = p.parse_args(argv)
    if args.budget is None:
        args.budget = 600.0 if args.dry_run else 450.0
    if args.warmup < 1 or args.steps <= args.warmup:
        p.error("need --steps > --warmup ≥ 1")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["prepare"]:
        return prepare(argv[1:])
    args = parse(argv)
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("WANDB_MODE", "disabled")
    check_modules()
    import logging
    import warnings

    import torch

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*(does not have many workers|GPU available but not used"
                            "|predict_dataloader|val_dataloader|TF32|tensor cores|LeafSpec).*")
    if args.dry_run:  # one thread: on a small shared CPU two threads mostly wait for each other (tests do the same)
        torch.set_num_threads(1)
    elif not torch.cuda.is_available():
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False; torch "
              f"{torch.__version__}); use --dry-run on a CPU", file=sys.stderr)
        return 3
    run = Run(args)
    run.doc["environment"] = environment(run)
    run.doc["payload"] = payload_record(run)
    run.doc["decisions"] = {
        "compile": f"compiled fits for {args.compile_precisions} only: inductor takes ~30-120 s per network and "
                   "precision, so all 15 would not fit the 8-minute budget; bf16-mixed is what this GPU would train "
                   "in. Networks compiled in place (nn.Module.compile, default mode), losses eager"
                   + ("; dry run: aot_eager backend (dynamo + AOTAutograd, no code generation)" if args.dry_run else ""),
        "data": "the paper's DataModule on synthetic files in the real layout, 4 batches drawn once and cycled from "
                "pinned memory: samples/s measures the training step and the host-to-device copy, not decoding",
        "samples_per_s": f"over the optimiser steps after the first {1 if args.dry_run else args.warmup} "
                         "(warm-up, cuDNN autotuning and compilation excluded); CUDA synchronised at both ends",
        "nan_check": "torch.isfinite(loss) kept on the device at every batch, read once after fit; parameters checked "
                     "after fit",
        "dped": "content term on a randomly initialised VGG-19 (VGG19Features(pretrained=False)): the cost without the weights",
        "refusion": "meta phase (5 meta iterations) first, timed apart, then the fusion steps; samples = pairs",
        "16-mixed_on_cpu": "the plugin is passed directly (as darkroom fit does): float16 autocast + GradScaler on "
                           "the CPU; Trainer(precision='16-mixed') would have switched to bf16 there",
    }
    run.save()
    _say(f"{run.doc['mode']} on {run.doc['environment'].get('device_name')} ({run.device}); data {run.data}; "
         f"writing {run.out}")
    stages = {"parity": lambda: stage_parity(run), "inference": lambda: stage_inference(run),
              "fit": lambda: stage_fit(run, compiled=False), "compile": lambda: stage_fit(run, compiled=True)}
    def on_term(signum: int, frame: Any) -> None:  # gpu_check.sh's timeout: keep what was measured
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    try:
        for name in ("parity", "inference", "fit", "compile"):
            if name in args.stages:
                _say(f"stage {name} ({run.elapsed:.0f} s)")
                try:
                    stages[name]()
                except Exception as err:  # a bug in the stage itself: record it, go on
                    run.record_error(f"stage {name}", err)
        stage_recipe(run)
        run.doc["status"] = "complete"
    finally:  # also on KeyboardInterrupt / SystemExit (Lightning exits on an interrupt inside fit)
        if run.doc["status"] == "running":
            run.doc["status"] = f"interrupted after {run.elapsed:.0f} s"
        run.save()
        shutil.rmtree(run.work, ignore_errors=True)
        _say(f"{run.doc['status']} in {run.elapsed:.0f} s: {len(run.doc['errors'])} error(s); wrote {run.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
