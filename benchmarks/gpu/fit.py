"""Stages 3 and 4, ``fit`` and ``compile``: short fits of each paper's LightningModule through
``lightning.Trainer`` in each precision, eager and compiled, with samples/s, peak memory and finiteness."""

from __future__ import annotations

import gc
import time
from typing import Any

from benchmarks.gpu.batches import cached_loader, synthetic_batches
from benchmarks.gpu.common import COMPILE_ESTIMATE_S, COMPILED, PRECISIONS, _say
from benchmarks.gpu.recipes import _recipe, build_model
from benchmarks.gpu.run import Run, alarm


def make_probe(device: Any, warmup: int, key: str) -> Any:
    """A Lightning callback: loss finiteness at every batch (kept on the device), samples/s after ``warmup``
    optimiser-step batches, ReFusion's meta phase timed apart."""
    import torch
    from lightning.pytorch.callbacks import Callback

    from benchmarks.harness import synchronize

    class Probe(Callback):
        def __init__(self) -> None:
            self.finite: list[torch.Tensor] = []
            self.losses: list[torch.Tensor] = []
            self.no_loss = 0
            self.steps = 0
            self.samples = 0
            self.t_fit = self.t0 = self.t1 = None
            self.meta_s, self.meta_batches, self._meta_t = 0.0, 0, None

        @staticmethod
        def _meta(module: Any) -> bool:
            return getattr(module, "phase", None) == "meta"

        def on_train_start(self, trainer: Any, module: Any) -> None:
            synchronize(device)
            self.t_fit = time.perf_counter()

        def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
            if self._meta(module):
                synchronize(device)
                self._meta_t = time.perf_counter()

        def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
            if self._meta(module) and self._meta_t is not None:
                synchronize(device)
                self.meta_s += time.perf_counter() - self._meta_t
                self._meta_t = None

        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            if isinstance(loss, torch.Tensor):
                loss = loss.detach()
                self.finite.append(torch.isfinite(loss).all().reshape(1))
                self.losses.append(loss.float().reshape(-1)[:1])
            else:
                self.no_loss += 1
            if self._meta(module):
                self.meta_batches += 1
                return
            self.steps += 1
            if self.steps == warmup:
                synchronize(device)
                self.t0 = time.perf_counter()
            elif self.steps > warmup:
                self.samples += int(batch[key].shape[0])

        def on_train_end(self, trainer: Any, module: Any) -> None:
            synchronize(device)
            self.t1 = time.perf_counter()

    return Probe()


def _compile(model: Any, paper: str, backend: str) -> list[str]:
    """Compile the paper's networks in place (state-dict keys unchanged); returns their names."""
    names = list(COMPILED[paper])
    for name in names:
        getattr(model, name).compile(backend=backend)
    if paper == "dped":
        loss = model.build_loss()
        if loss.vgg is not None and type(loss.vgg).__name__ != "Identity":
            loss.vgg.compile(backend=backend)
            names.append("loss.vgg")
    return names


def run_fit(run: Run, paper: str, precision: str, compiled: bool, batches: list[dict],
            data_info: dict[str, Any], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    import lightning as L
    import torch

    from experiments.precision import MIXED, FP32EvalMixedPrecision

    steps, warmup = (2, 1) if run.dry else (run.args.steps, run.args.warmup)
    recipe = _recipe(paper)
    seed = int(recipe.get("seed_everything", 0))
    L.seed_everything(seed, verbose=False)
    model = build_model(paper, run.dry, overrides)
    case: dict[str, Any] = {"status": "running", "precision": precision, "compile": compiled, "steps": steps,
                            "model_overrides": overrides or None,
                            "warmup_steps": warmup, "batch_size": data_info["batch_size"],
                            "side": data_info["side"], "seed": seed}
    if compiled:
        backend = "aot_eager" if run.dry else run.args.compile_backend
        case["compiled"] = _compile(model, paper, backend)
        case["compile_backend"] = backend
    trainer_cfg = recipe.get("trainer", {})
    clip = {k: trainer_cfg[k] for k in ("gradient_clip_val", "gradient_clip_algorithm") if k in trainer_cfg}
    meta_batches = 2 * model.meta_steps_now() if paper == "refusion" else 0
    probe = make_probe(run.device, warmup, data_info["samples_key"])
    kwargs: dict[str, Any] = dict(
        accelerator="gpu" if run.device.type == "cuda" else "cpu", devices=1, max_steps=steps, max_epochs=-1,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0, callbacks=[probe], **clip)
    if precision in MIXED:
        kwargs["plugins"] = [FP32EvalMixedPrecision(precision, run.device.type)]
    else:
        kwargs["precision"] = precision
    trainer = L.Trainer(**kwargs)
    case["precision_plugin"] = f"{type(trainer.precision_plugin).__name__}({trainer.precision_plugin.precision!r}, " \
                               f"{getattr(trainer.precision_plugin, 'device', run.device.type)!r})"
    case["gradient_clip"] = clip or None
    if run.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    p = probe
    try:
        trainer.fit(model, train_dataloaders=cached_loader(batches, meta_batches + steps + 1))
    except BaseException as err:
        err.gpu_check_context = {"epoch": trainer.current_epoch, "global_step": trainer.global_step,  # type: ignore[attr-defined]
                                 "phase": getattr(model, "phase", None), "steps_done": p.steps,
                                 "meta_batches_done": p.meta_batches}
        raise
    case["wall_s"] = round(time.perf_counter() - t0, 2)
    if p.t0 is None or p.t1 is None or p.steps <= warmup:
        raise RuntimeError(f"only {p.steps} optimiser-step batches ran (global_step {trainer.global_step}); "
                           f"need more than the {warmup} warm-up steps")
    finite = torch.cat(p.finite).cpu() if p.finite else torch.ones(0, dtype=torch.bool)
    losses = torch.cat(p.losses).cpu() if p.losses else torch.zeros(0)
    params = [q.detach() for q in model.parameters()]
    params_finite = bool(torch.stack([torch.isfinite(q).all() for q in params]).all().item()) if params else True
    bad = (~finite).nonzero().flatten().tolist()
    case.update({
        "status": "ok", "global_step": int(trainer.global_step), "steps_timed": p.steps - warmup,
        "samples_timed": p.samples, "timed_s": round(p.t1 - p.t0, 3),
        "samples_per_s": round(p.samples / (p.t1 - p.t0), 2) if p.t1 > p.t0 else None,
        "step_ms_mean": round(1000 * (p.t1 - p.t0) / max(p.steps - warmup, 1), 3),
        "warmup_s": round(p.t0 - p.t_fit, 2),
        "loss_finite_all_steps": not bad and p.no_loss == 0, "nonfinite_steps": len(bad),
        "first_nonfinite_batch": bad[0] if bad else None, "batches_without_loss": p.no_loss,
        "params_finite": params_finite,
        "loss_first": float(losses[0]) if len(losses) else None, "loss_last": float(losses[-1]) if len(losses) else None,
    })
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    if scaler is not None:
        case["grad_scaler_scale"] = float(scaler.get_scale())
    if paper == "refusion":
        its = p.meta_batches // 2
        case["meta"] = {"iterations": its, "batches": p.meta_batches, "seconds": round(p.meta_s, 2),
                        "s_per_iteration": round(p.meta_s / its, 3) if its else None,
                        "note": "the meta phase runs first: its time includes the first-call warm-up"}
        case["samples_note"] = "samples = source pairs per batch as loaded (the swapped copy not counted)"
    if run.device.type == "cuda":
        case["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        case["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 3)
    else:
        case["peak_gib"] = None
        case["peak_note"] = "CPU: no CUDA memory statistics"
    if compiled:
        from torch._dynamo.utils import counters

        case["graph_breaks"] = int(sum(counters["graph_break"].values()))
    return case


def stage_fit(run: Run, compiled: bool) -> None:
    import torch

    out: dict[str, Any] = run.doc.setdefault("fit", {})
    data_cache: dict[str, tuple[list[dict], dict]] = run.__dict__.setdefault("_batches", {})
    wanted = set(run.args.compile_precisions)
    for paper in run.args.papers:
        rec = out.setdefault(paper, {})
        for precision in PRECISIONS:
            name = f"{precision}+compile" if compiled else precision
            if compiled and precision not in wanted:
                rec[name] = {"status": "skipped", "reason": "not in the plan: compile runs for "
                             f"{', '.join(sorted(wanted)) or 'no precision'} only (--compile-precisions; time budget, "
                             "see decisions.compile)"}
                continue
            estimate = (COMPILE_ESTIMATE_S[paper] if compiled else 15) if not run.dry else 0
            reason = run.skip_reason(estimate)
            if reason:
                rec[name] = {"status": "skipped", "reason": reason}
                run.save()
                continue
            t0 = time.perf_counter()
            try:
                with alarm(None if run.dry else max(run.left - 5, 10)):
                    if paper not in data_cache:
                        data_cache[paper] = synthetic_batches(run, paper, 2 if run.dry else 4)
                        rec["data"] = data_cache[paper][1]
                    rec[name] = run_fit(run, paper, precision, compiled, *data_cache[paper])
                c = rec[name]
                _say(f"fit {paper} {name}: {c['samples_per_s']} samples/s, peak {c['peak_gib']} GiB, "
                     f"loss finite {c['loss_finite_all_steps']}, params finite {c['params_finite']}, "
                     f"warm-up {c['warmup_s']} s ({time.perf_counter() - t0:.0f} s)")
            except Exception as err:
                rec[name] = run.record_error(f"fit {paper} {name}", err)
            finally:
                if compiled:
                    torch._dynamo.reset()
                gc.collect()
                if run.device.type == "cuda":
                    torch.cuda.empty_cache()
            run.save()
            if compiled and paper == "refusion" and rec[name]["status"] == "error" \
                    and rec[name].get("context", {}).get("phase") == "meta":
                _refusion_meta_off(run, rec, name, precision, data_cache[paper])


def _refusion_meta_off(run: Run, rec: dict[str, Any], name: str, precision: str,
                       data: tuple[list[dict], dict[str, Any]]) -> None:
    """The compiled ReFusion fit failed in its meta phase: measure the compiled fusion phase alone (``meta=False``,
    the fixed-loss ablation), so the compile figures are not lost with it."""
    import torch

    key = f"{name}:meta-off"
    reason = run.skip_reason(0 if run.dry else COMPILE_ESTIMATE_S["refusion"])
    if reason:
        rec[key] = {"status": "skipped", "reason": reason}
        return
    try:
        with alarm(None if run.dry else max(run.left - 5, 10)):
            rec[key] = run_fit(run, "refusion", precision, True, *data, overrides={"meta": False})
        rec[key]["note"] = f"retry of {name} without the meta phase, which failed (see {name})"
        _say(f"fit refusion {key}: {rec[key]['samples_per_s']} samples/s")
    except Exception as err:
        rec[key] = run.record_error(f"fit refusion {key}", err)
    finally:
        torch._dynamo.reset()
        gc.collect()
    run.save()
