"""Stage 5, ``recipe`` (optional, ``--zero-dce-recipe EPOCHS``): issue 15's Zero-DCE reproduction recipe on the
2002 training images, and the trained network against the official weights' output on LIME/6."""

from __future__ import annotations

import math
import os
import time
from typing import Any

from benchmarks.gpu.common import RECIPES, TRAIN_256, _say
from benchmarks.gpu.recipes import _recipe, build_model
from benchmarks.gpu.run import Run


def stage_recipe(run: Run) -> None:
    """Issue 15's Zero-DCE recipe for ``--zero-dce-recipe`` epochs on the 2002 training images."""
    import lightning as L
    import numpy as np
    import torch
    from lightning.pytorch.callbacks import Callback

    from datamodules.sice import SICEDataModule
    from experiments.precision import MIXED, FP32EvalMixedPrecision

    epochs = run.args.zero_dce_recipe
    rec: dict[str, Any] = {"epochs": epochs}
    run.doc["recipe"] = rec
    if not epochs:
        rec.update(status="skipped", reason="not requested (--zero-dce-recipe EPOCHS)")
        return
    folder = next((p for p in (run.data / TRAIN_256, run.data / "lowlight" / "train") if p.is_dir()), None)
    if folder is None or run.broken:
        rec.update(status="skipped", reason=run.broken or f"training images not found: {run.data / TRAIN_256} or "
                   f"{run.data / 'lowlight/train'} (prepare --train-images)")
        return
    recipe = _recipe("zero_dce")
    data = recipe["data"]["init_args"]
    side, bs = (32, 2) if run.dry else (int(data["image_size"]), int(data["batch_size"]))
    rec.update(images=str(folder), image_size=side, batch_size=bs, config=RECIPES["zero_dce"],
               precision=run.args.recipe_precision)
    try:
        L.seed_everything(int(recipe.get("seed_everything", 0)), verbose=False)
        model = build_model("zero_dce", run.dry)
        dm = SICEDataModule(train_root=str(folder), image_size=side, batch_size=bs,
                            num_workers=0 if run.dry else min(8, max((os.cpu_count() or 2) - 2, 1)))
        per_epoch: list[dict[str, float]] = []

        class Epochs(Callback):
            def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
                self.t = time.perf_counter()

            def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
                loss = trainer.callback_metrics.get("train/loss_epoch")
                per_epoch.append({"epoch": trainer.current_epoch, "loss": float(loss) if loss is not None else None,
                                  "seconds": round(time.perf_counter() - self.t, 2)})
                _say(f"recipe epoch {trainer.current_epoch}: loss {per_epoch[-1]['loss']}, "
                     f"{per_epoch[-1]['seconds']} s")

        prec = run.args.recipe_precision
        tcfg = recipe["trainer"]
        kwargs: dict[str, Any] = dict(
            accelerator="gpu" if run.device.type == "cuda" else "cpu", devices=1, max_epochs=epochs, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            num_sanity_val_steps=0, limit_val_batches=0, callbacks=[Epochs()],
            gradient_clip_val=tcfg.get("gradient_clip_val"), gradient_clip_algorithm=tcfg.get("gradient_clip_algorithm"))
        if run.dry:
            kwargs["limit_train_batches"] = 2
        if run.args.recipe_max_s:
            from datetime import timedelta

            kwargs["max_time"] = timedelta(seconds=run.args.recipe_max_s)
        if prec in MIXED:
            kwargs["plugins"] = [FP32EvalMixedPrecision(prec, run.device.type)]
        else:
            kwargs["precision"] = prec
        t0 = time.perf_counter()
        trainer = L.Trainer(**kwargs)
        trainer.fit(model, datamodule=dm)
        wall = time.perf_counter() - t0
        samples = int(trainer.global_step) * bs
        rec.update(status="ok", wall_s=round(wall, 1), global_step=int(trainer.global_step), per_epoch=per_epoch,
                   epochs_done=len(per_epoch), train_images=len(dm.train_set),
                   samples_per_s=round(samples / wall, 1) if wall > 0 else None,
                   params_finite=bool(all(torch.isfinite(q).all() for q in model.parameters())))
        ref = run.data / "reference/zero_dce/LIME/6_float32.npz"
        img = run.data / "lowlight/test/LIME/6.bmp"
        if ref.is_file() and img.is_file():
            from datamodules.image_io import load_tensor

            model.eval()
            with torch.no_grad():
                y, _ = model.net.to(run.device)(load_tensor(img)[None].to(run.device))
            out = y[0].permute(1, 2, 0).float().cpu().numpy()
            mse = float(np.mean((out - np.load(ref)["enhanced"]) ** 2))
            rec["vs_official_LIME_6"] = {"psnr_db": round(10 * math.log10(1 / mse), 2) if mse > 0 else None,
                                         "mean_ours": float(out.mean()),
                                         "mean_official": float(np.load(ref)["enhanced"].mean()),
                                         "note": "the retrained network's output vs the official weights' output"}
        if run.args.recipe_weights:
            run.args.recipe_weights.parent.mkdir(parents=True, exist_ok=True)
            torch.save(model.net.state_dict(), run.args.recipe_weights)
            rec["weights_file"] = str(run.args.recipe_weights)
    except Exception as err:
        rec.update(run.record_error("recipe", err))
    run.save()
