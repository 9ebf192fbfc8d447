"""Stage 2, ``inference``: ms per image at each paper's runtime size, fp32 / bf16 / fp16 autocast, network and
module, the variants interleaved (``harness.interleave``)."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

from benchmarks.gpu.common import DRY_RUNTIME_SIZE, PRECISIONS, RUNTIME, _say
from benchmarks.gpu.run import Run, alarm


def _inference_model(run: Run, paper: str) -> tuple[Any, str]:
    """The module in eval mode on the device, with the official weights where the data root has them."""
    from lightning_modules.deepfuse import DeepFuse
    from lightning_modules.dped import DPED
    from lightning_modules.refusion import ReFusion
    from lightning_modules.zero_dce import ZeroDCE

    d = run.data
    files = {"zero_dce": d / "weights/zero_dce/Epoch99.pth", "zero_dce_pp": d / "weights/zero_dce_pp/Epoch99.pth",
             "deepfuse": d / "weights/deepfuse/DF_model_Epoch99.npz", "dped": d / "weights/dped/iphone_orig.index",
             "refusion": d / "weights/refusion/ReFusion_IVIF.pth"}
    official = files[paper].is_file()
    weights = f"official ({files[paper].relative_to(d)})" if official else "default init (official weights absent)"
    if paper in ("zero_dce", "zero_dce_pp"):
        kw = {"log_images": 0}
        if paper == "zero_dce_pp":
            kw["eval_scale_factor"] = 12.0
        model = (ZeroDCE.from_official(files[paper], variant=paper, **kw) if official
                 else ZeroDCE(variant=paper, **kw))
    elif paper == "deepfuse":
        model = DeepFuse.from_official(files[paper], log_images=0) if official else DeepFuse(log_images=0)
    elif paper == "dped":
        model = DPED.from_official(files[paper].with_suffix(""), log_images=0) if official else DPED(log_images=0)
    else:
        model = ReFusion.from_official(files[paper], task="ivif", log_images=False) if official else \
            ReFusion(task="ivif", log_images=False)
    return model.to(run.device).eval(), weights


def inference_calls(paper: str, model: Any, device: Any, w: int, h: int) -> tuple[dict[str, Callable[[], Any]], str]:
    """``{"network": fn, "module": fn}`` on a seeded random input of W×H, and what they run."""
    import torch

    g = torch.Generator().manual_seed(0)
    if paper in ("zero_dce", "zero_dce_pp"):
        x = torch.rand(1, 3, h, w, generator=g).to(device)
        return ({"network": lambda: model.net(x), "module": lambda: model.enhance(x, tile_size=None)},
                f"1×3×{h}×{w} RGB; module = ZeroDCE.enhance(tile_size=None)")
    if paper == "deepfuse":
        from lightning_modules.deepfuse import rgb_to_ycbcr

        x = torch.rand(1, 2, 3, h, w, generator=g).to(device)
        y = rgb_to_ycbcr(x)[:, :, :1].contiguous()
        return ({"network": lambda: model.net(y), "module": lambda: model(x)},
                f"1×2×3×{h}×{w} RGB pair; network on the Y pair; module = DeepFuse.forward (colour, official luma)")
    if paper == "dped":
        x = torch.rand(1, 3, h, w, generator=g).to(device)
        return {"network": lambda: model.generator(x)}, f"1×3×{h}×{w} RGB; DPED.forward is the generator"
    x = torch.rand(1, 2, 1, h, w, generator=g).to(device)
    return ({"network": lambda: model.fusion(x.flatten(1, 2)), "module": lambda: model(x)},
            f"1×2×1×{h}×{w} grey pair; module = ReFusion.forward (min–max normalised Y)")


def stage_inference(run: Run) -> None:
    import torch

    from benchmarks import harness

    out: dict[str, Any] = run.doc.setdefault("inference", {})
    rounds, warmup = (2, 0) if run.dry else (run.args.rounds, 3)  # + the checking call below
    for paper in run.args.papers:
        info = RUNTIME[paper]
        w, h = DRY_RUNTIME_SIZE[paper] if run.dry else info["size"]
        rec: dict[str, Any] = {"size_wxh": f"{w}x{h}", **{k: v for k, v in info.items() if k != "size"},
                               "rounds": rounds, "warmup_calls": warmup, "variants": {}}
        out[paper] = rec
        reason = run.skip_reason(0 if run.dry else 10)
        if reason:
            rec.update(status="skipped", reason=reason)
            run.save()
            continue
        try:
            model, rec["weights"] = _inference_model(run, paper)
            calls, rec["input"] = inference_calls(paper, model, run.device, w, h)
            variants: dict[str, Callable[[], Any]] = {}
            for what, fn in calls.items():
                for precision in PRECISIONS:
                    variants[f"{what}/{precision}"] = _autocast_call(fn, run.device, precision)
            alive, finite = {}, {}
            for name, fn in variants.items():  # one call each: an error is this variant's, not the stage's
                try:
                    result = fn()
                    harness.synchronize(run.device)
                    first = result[0] if isinstance(result, (tuple, list)) else result
                    finite[name] = bool(torch.isfinite(first).all().item())
                    alive[name] = fn
                except Exception as err:
                    rec["variants"][name] = run.record_error(f"inference {paper} {name}", err)
            if alive:
                with alarm(None if run.dry else max(run.left - 5, 10)):
                    timed = harness.interleave(alive, rounds=rounds, warmup=warmup, device=run.device, progress=False)
                for name, summary in timed.items():
                    rec["variants"][name] = {"status": "ok", "output_finite": finite[name], **summary}
                    if not finite[name]:
                        run.doc["errors"].append(f"inference {paper} {name}: output not finite")
            try:
                rec["gflop"] = {what: round(harness.count_flops(_autocast_call(fn, run.device, "32-true")) / 1e9, 3)
                                for what, fn in calls.items()}
            except Exception as err:  # FLOP counting is a side figure
                rec["gflop"] = f"not counted: {type(err).__name__}: {err}"
            rec["status"] = "ok"
            best = {k: v["median_ms"] for k, v in rec["variants"].items() if v.get("status") == "ok"}
            _say(f"inference {paper} {w}x{h}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in best.items()))
        except Exception as err:
            rec.update(run.record_error(f"inference {paper}", err))
        gc.collect()
        if run.device.type == "cuda":
            torch.cuda.empty_cache()
        run.save()


def _autocast_call(fn: Callable[[], Any], device: Any, precision: str) -> Callable[[], Any]:
    import torch

    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)

    def call() -> Any:
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype or torch.bfloat16,
                                                    enabled=dtype is not None):
            return fn()

    return call
