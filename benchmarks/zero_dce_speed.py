"""Zero-DCE speed: inference ms per 1200×900 image (the papers' runtime setting, [CVPR Table 3]; Zero-DCE++ at its
test scale factor 12) and training ms per step (256×256, batch 8), fp32 vs bf16-mixed, with and without
channels_last and torch.compile. Prints a table and writes benchmarks/results/zero_dce_speed.json
(``zero_dce_pp_speed.json`` for ``--variant zero_dce_pp``; a ``_cuda`` suffix on a GPU).

    python benchmarks/zero_dce_speed.py                 # every combination, CUDA if available
    python benchmarks/zero_dce_speed.py --quick         # 600×450 inference, batch 2 at 128², 2 rounds, no compile
    python benchmarks/zero_dce_speed.py --variant zero_dce_pp   # scale factor 12 at 1200×900

How: the inference variants (precision × channels_last × compile) run interleaved in **one**
``harness.interleave`` call (order rotated every round), the training variants in another; each gives min and
median ms after warm-up calls (2 on a CPU, 2 more when compile variants run; the first compiles). Every variant
has its own copy of the same weights. Ratios are variant ÷ the ``32-true`` variant (fp32, contiguous, eager), and each variant's median ÷ the
time its FLOPs (``harness.count_flops`` of one eager call: convolutions, 2 per multiply-add) take at this CPU's
measured conv peak for its dtype ("× limit"; bf16 variants against the bf16 peak).

A training step is the real one: DCE-Net forward, the four official losses, backward, grad-norm clipping at 0.1,
Adam. On CUDA the clock is read after a synchronise. A variant that fails (e.g. no compiler) is recorded under
``errors`` and left out of the timing.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import harness  # noqa: E402
from lightning_modules.zero_dce import DCENet  # noqa: E402
from losses.zero_dce import ZeroDCELoss  # noqa: E402

BASELINE = "32-true"


@dataclass(frozen=True)
class Settings:
    """Sizes and repeat counts of one run."""

    infer_hw: tuple[int, int]  # H, W of the inference image
    train_batch: int
    train_size: int
    infer_rounds: int
    train_rounds: int
    warmup: int


def settings(quick: bool, gpu: bool, variant: str) -> Settings:
    """Full: 1200×900 inference, batch 8 at 256² training. Quick: 600×450 (Zero-DCE++ keeps its 1200×900 test
    setting, cheap at scale 12), batch 2 at 128², 2 rounds."""
    if quick:
        hw = (900, 1200) if variant == "zero_dce_pp" else (450, 600)
        return Settings(hw, 2, 128, 2, 2, 1)
    return Settings((900, 1200), 8, 256, 50 if gpu else 5, 50 if gpu else 6, 10 if gpu else 2)


def _autocast(device: torch.device, precision: str) -> AbstractContextManager[Any]:
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def variant_name(precision: str, channels_last: bool, compile_: bool) -> str:
    """``32-true``, ``bf16-mixed+channels_last+compile``, …"""
    return precision + ("+channels_last" if channels_last else "") + ("+compile" if compile_ else "")


def make_net(variant: str, scale: float = 1.0) -> DCENet:
    """DCE-Net (Zero-DCE, or Zero-DCE++ with ``scale``), seeded."""
    torch.manual_seed(0)
    pp = variant == "zero_dce_pp"
    return DCENet(depthwise_separable=pp, shared_map=pp, scale_factor=scale, init="default" if pp else "official")


def inference_variants(variant: str, combos: list[tuple[str, bool, bool]], device: torch.device,
                       hw: tuple[int, int]) -> tuple[dict[str, Callable[[], Any]], Callable[[], Any]]:
    """One no-grad forward per combination (its own copy of the weights), and the eager fp32 forward whose
    FLOPs are counted."""
    scale = 12.0 if variant == "zero_dce_pp" else 1.0  # official test settings
    base = make_net(variant, scale).to(device).eval()
    x = torch.rand(1, 3, *hw, device=device) * 0.4
    fns: dict[str, Callable[[], Any]] = {}
    for precision, cl, comp in combos:
        net = copy.deepcopy(base)
        xi = x.contiguous(memory_format=torch.channels_last) if cl else x
        if cl:
            net = net.to(memory_format=torch.channels_last)
        fwd = torch.compile(net) if comp else net

        def run(fwd: Callable[..., Any] = fwd, xi: torch.Tensor = xi, precision: str = precision) -> None:
            with torch.no_grad(), _autocast(device, precision):
                fwd(xi)

        fns[variant_name(precision, cl, comp)] = run

    def reference() -> None:
        with torch.no_grad():
            base(x)

    return fns, reference


def training_variants(variant: str, combos: list[tuple[str, bool, bool]], device: torch.device, batch: int,
                      size: int) -> tuple[dict[str, Callable[[], Any]], Callable[[], Any]]:
    """One training step per combination (own net, loss and Adam), and an eager fp32 step for the FLOP count."""
    x = torch.rand(batch, 3, size, size, device=device) * 0.4
    base = make_net(variant).to(device)

    def make_step(precision: str, cl: bool, comp: bool) -> Callable[[], None]:
        net = copy.deepcopy(base)
        if cl:
            net = net.to(memory_format=torch.channels_last)
        fwd = torch.compile(net) if comp else net
        loss_fn = ZeroDCELoss(weights={"tv": 1600.0 if variant == "zero_dce_pp" else 200.0}).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=1e-4, weight_decay=1e-4)
        xi = x.contiguous(memory_format=torch.channels_last) if cl else x

        def step() -> None:
            with _autocast(device, precision):
                enhanced, maps = fwd(xi)
                loss = loss_fn(enhanced, xi, maps)["total"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 0.1)
            opt.step()

        return step

    fns = {variant_name(*c): make_step(*c) for c in combos}
    return fns, make_step("32-true", False, False)


def first_calls(fns: dict[str, Callable[[], Any]]) -> tuple[dict[str, Callable[[], Any]], dict[str, str]]:
    """Call each variant once (the compile, and a warm-up); the ones that fail go to ``errors``."""
    ok, errors = {}, {}
    for name, fn in fns.items():
        try:
            fn()
            ok[name] = fn
        except Exception as exc:  # a backend without e.g. a compiler: record it, keep measuring the rest
            errors[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            print(f"  {name}: {errors[name]}", file=sys.stderr)
    return ok, errors


def measure(fns: dict[str, Callable[[], Any]], reference: Callable[[], Any], combos: list[tuple[str, bool, bool]],
            rounds: int, warmup: int, device: torch.device, what: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Interleave the variants that run, add the FLOP limit of each, and return the comparison and errors."""
    fns, errors = first_calls(fns)
    flops = harness.count_flops(reference)
    with harness.LoadWatch() as load:
        results = harness.interleave(fns, rounds, warmup=max(warmup - 1, 0), device=device)
    dtypes = {variant_name(*c): torch.bfloat16 if c[0] == "bf16-mixed" else torch.float32 for c in combos}
    harness.with_flop_limits(results, {n: flops for n in results}, dtypes, device)
    for (precision, cl, comp) in combos:
        name = variant_name(precision, cl, comp)
        if name in results:
            results[name].update(precision=precision, channels_last=cl, compile=comp)
    return harness.comparison(results, BASELINE, load, what=what), errors


def default_out(variant: str, device: torch.device) -> Path:
    stem = "zero_dce_speed" if variant == "zero_dce" else "zero_dce_pp_speed"
    suffix = "" if device.type == "cpu" else f"_{device.type}"
    return harness.RESULTS / f"{stem}{suffix}.json"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="zero_dce", choices=["zero_dce", "zero_dce_pp"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="small sizes, 2 rounds, no torch.compile")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--no-compile-train", action="store_true",
                        help="compile the inference variants only (on a CPU, Zero-DCE++'s compiled backward ran over "
                             "20 min for one training step, inside a generated inductor kernel of the compiled backward)")
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default benchmarks/results/…)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    s = settings(args.quick, device.type == "cuda", args.variant)
    compiles = [False] if (args.quick or args.no_compile) else [False, True]
    combos = list(itertools.product(["32-true", "bf16-mixed"], [False, True], compiles))
    env = harness.environment(device)
    print(f"Zero-DCE speed ({args.variant}) on {device} ({env['device_name']}, {env['threads']} threads, "
          f"allocator {env['allocator']}), torch {env['torch']}, load {env['load_average']}")
    pp = args.variant == "zero_dce_pp"
    infer_what = (f"1 image {s.infer_hw[1]}x{s.infer_hw[0]}" + (", scale_factor 12" if pp else "")
                  + ", no grad, ms per image")
    train_what = f"{s.train_size}x{s.train_size}, batch {s.train_batch}, official losses + Adam + clip 0.1, ms per step"
    warmup = s.warmup + (2 if True in compiles else 0)  # compile: the first call compiles, autocast may recompile
    with harness.LoadWatch() as load:
        fns, ref = inference_variants(args.variant, combos, device, s.infer_hw)
        print(f"inference: {infer_what}", flush=True)
        infer, infer_err = measure(fns, ref, combos, s.infer_rounds, warmup, device, infer_what)
        del fns, ref
        print(harness.table(infer), flush=True)
        train_combos = [c for c in combos if not (args.no_compile_train and c[2])]
        fns, ref = training_variants(args.variant, train_combos, device, s.train_batch, s.train_size)
        print(f"training: {train_what}", flush=True)
        train, train_err = measure(fns, ref, train_combos, s.train_rounds, warmup, device, train_what)
        for r in train["results"].values():
            r["samples_per_s"] = s.train_batch / (r["median_ms"] / 1000.0)
        print(harness.table(train), flush=True)
    payload = {
        "environment": env, "load": load.record, "quick": args.quick, "variant": args.variant,
        "settings": {**asdict(s), "warmup_calls": warmup, "compile": compiles,
                     "compile_training": (not args.no_compile_train) and True in compiles, "baseline": BASELINE,
                     "infer_setting": infer_what, "train_setting": train_what},
        "comparisons": {"inference": infer, "training": train},
        "errors": {"inference": infer_err, "training": train_err},
    }
    harness.write_result("zero_dce_speed", payload, args.out or default_out(args.variant, device))
    return payload


if __name__ == "__main__":
    main()
