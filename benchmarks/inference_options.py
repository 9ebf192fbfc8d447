"""Test/predict speed options (lightning_modules/inference.py) per paper: fp32 eager (the default) vs bf16,
channels_last, both, and torch.compile, where the paper offers them. Writes benchmarks/results/inference_options.json.

    python -m experiments.allocator exec -- python benchmarks/inference_options.py          # all papers
    python -m experiments.allocator exec -- python benchmarks/inference_options.py --quick  # tiny sizes, no compile

Each call is the LightningModule's own forward, as ``darkroom test``/``predict`` run it (Zero-DCE with its default
512² exact tiling above 4 tiles of pixels), batch 1, no grad, with the official weights from ../shared/data where
present (the released Zero-DCE's subnormal weights flushed, as the modules do), else random weights. Sizes: the
papers' runtime settings where the papers give one (Zero-DCE 1200×900 [CVPR Table 3]; Zero-DCE++ the same at
scale 12; DeepFuse 512×384 pair), ReFusion 640×480 pair, DPED 1280×720. The variants of one paper run interleaved
(harness.interleave) after warm-up calls (compile's warm-up includes the compilation); each result is min and median
ms, ratio to the fp32 default, distance from the FLOP limit (harness.flop_limit: FLOPs of the fp32 call at the
measured conv peak of the variant's dtype), and max |Δ| of the output to fp32.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

from lightning_modules.deepfuse import DeepFuse, DeepFuseNet  # noqa: E402
from lightning_modules.dped import DPED  # noqa: E402
from lightning_modules.inference import InferenceOptions  # noqa: E402
from lightning_modules.refusion import ReFusion  # noqa: E402
from lightning_modules.zero_dce import ZeroDCE  # noqa: E402

#: official weights per paper, under harness.SHARED (random weights where absent)
WEIGHTS = {"zero_dce": "weights/zero_dce/Epoch99.pth", "zero_dce_pp": "weights/zero_dce_pp/Epoch99.pth",
           "deepfuse": "weights/deepfuse/DF_model_Epoch99.npz", "refusion": "weights/refusion/ReFusion_IVIF.pth",
           "dped": "weights/dped/iphone_orig"}
OPTIONS = {
    "fp32": InferenceOptions(),
    "bf16": InferenceOptions(precision="bf16"),
    "channels_last": InferenceOptions(channels_last=True),
    "bf16+channels_last": InferenceOptions(precision="bf16", channels_last=True),
    "compile": InferenceOptions(compile=True),
    "bf16+channels_last+compile": InferenceOptions(precision="bf16", channels_last=True, compile=True),
}


def _recording(model: torch.nn.Module, x: torch.Tensor, outputs: dict, key: str) -> Callable[[], None]:
    """A call of ``model(x)`` that keeps its output in ``outputs[key]``."""
    def call() -> None:
        outputs[key] = model(x)
    return call


def _weights(rel: str) -> str | None:
    path = harness.SHARED / rel
    return str(path) if path.exists() or Path(str(path) + ".index").exists() else None


def papers(quick: bool) -> dict[str, tuple[Callable[[], torch.nn.Module], Callable[[], torch.Tensor], str]]:
    """name → (model factory, input factory, size description)."""
    def zero_dce(variant: str) -> Callable[[], torch.nn.Module]:
        w = _weights(WEIGHTS[variant])
        return lambda: ZeroDCE.from_official(w, variant=variant) if w else ZeroDCE(variant=variant,
                                                                                    eval_scale_factor=12.0 if variant == "zero_dce_pp" else 1.0)

    def refusion() -> torch.nn.Module:
        w = _weights(WEIGHTS["refusion"])
        return ReFusion.from_official(w) if w else ReFusion()

    def deepfuse() -> torch.nn.Module:
        w = _weights(WEIGHTS["deepfuse"])
        return DeepFuse.from_official(w) if w else DeepFuse(net=DeepFuseNet("official"))

    def dped() -> torch.nn.Module:
        w = _weights(WEIGHTS["dped"])
        return DPED.from_official(w) if w else DPED()

    hw = {"zero_dce": (900, 1200), "zero_dce_pp": (900, 1200), "deepfuse": (384, 512), "refusion": (480, 640),
          "dped": (720, 1280)}
    if quick:
        hw = {k: (48, 60) for k in hw}
    g = torch.Generator().manual_seed(0)

    def image(k: str, *lead: int) -> Callable[[], torch.Tensor]:
        return lambda: torch.rand(*lead, 3, *hw[k], generator=g) * 0.5

    def pair(k: str, c: int) -> Callable[[], torch.Tensor]:
        return lambda: torch.rand(1, 2, c, *hw[k], generator=g)

    return {
        "zero_dce": (zero_dce("zero_dce"), image("zero_dce", 1), f"{hw['zero_dce'][1]}×{hw['zero_dce'][0]}"),
        "zero_dce_pp": (zero_dce("zero_dce_pp"), image("zero_dce_pp", 1),
                        f"{hw['zero_dce_pp'][1]}×{hw['zero_dce_pp'][0]}, scale 12"),
        "deepfuse": (deepfuse, pair("deepfuse", 3), f"{hw['deepfuse'][1]}×{hw['deepfuse'][0]} RGB pair"),
        "refusion": (refusion, pair("refusion", 1), f"{hw['refusion'][1]}×{hw['refusion'][0]} IR-visible pair"),
        "dped": (dped, image("dped", 1), f"{hw['dped'][1]}×{hw['dped'][0]}"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--papers", nargs="+", default=None, help="subset of zero_dce zero_dce_pp deepfuse refusion dped")
    parser.add_argument("--variants", nargs="+", default=None, choices=list(OPTIONS),
                        help="subset of the variants (fp32 is always measured: the baseline)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="48×60 inputs, 2 rounds, no compile")
    parser.add_argument("--out", type=Path, default=harness.RESULTS / "inference_options.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds = 2 if args.quick else args.rounds
    table = papers(args.quick)
    results: dict[str, dict] = {}
    with harness.LoadWatch() as load:
        for name in args.papers or list(table):
            make_model, make_input, size = table[name]
            x = make_input()
            base = make_model().eval()
            offered = {k: o for k, o in OPTIONS.items()
                       if not (args.quick and o.compile) and not (o.enabled & set(base.inference_not_offered))
                       and (k == "fp32" or args.variants is None or k in args.variants)}
            print(f"{name} ({size}): {', '.join(offered)}", file=sys.stderr)
            models = {}  # one model per variant: a compiled network is cached per configure_inference
            for k, o in offered.items():
                models[k] = base if k == "fp32" else make_model().eval()
                models[k].configure_inference(o)
            outputs: dict[str, torch.Tensor] = {}

            with torch.no_grad():
                timings = harness.interleave({k: _recording(models[k], x, outputs, k) for k in offered}, rounds,
                                             warmup=1)
            reference = outputs["fp32"]
            model = base
            ratio = harness.ratios(timings, "fp32")
            with torch.no_grad():
                flops = harness.count_flops(lambda: base(x))  # noqa: B023  (called here, in this iteration)
            for k, o in offered.items():
                timings[k]["flop_limit"] = harness.flop_limit(
                    flops, timings[k]["median_ms"], torch.bfloat16 if o.precision == "bf16" else torch.float32)
            results[name] = {
                "size": size,
                "weights": "official" if _weights(WEIGHTS[name]) else "random",
                "not_offered": dict(model.inference_not_offered),
                "variants": {k: {**timings[k], "ratio_to_fp32": ratio[k],
                                 "max_abs_diff_to_fp32": (outputs[k] - reference).abs().max().item()}
                             for k in offered},
            }
            for k in offered:
                r = results[name]["variants"][k]
                print(f"  {k:<20} median {r['median_ms']:9.1f} ms  min {r['min_ms']:9.1f} ms  "
                      f"×{r['ratio_to_fp32']['median']:.2f} of fp32  {r['flop_limit']['ratio']:.1f}× the FLOP limit  "
                      f"max|Δ| {r['max_abs_diff_to_fp32']:.1e}")
    harness.write_result("inference_options", {
        "what": "LightningModule forward as test/predict run it, batch 1, no grad; variants interleaved",
        "rounds": rounds, "warmup": 1, "quick": args.quick, "load_average": load.record,
        "environment": harness.environment(), "results": results}, out=args.out)


if __name__ == "__main__":
    main()
