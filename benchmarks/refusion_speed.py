"""ReFusion speed and memory, before/after the networks' speed-up (issue 13): inference ms of F, P, R at 640×480
(MSRS size), and time and peak memory of one plain fusion step (F on L_f with P's maps, R on L_r, Adam) and of one
meta-learning iteration (inner step on one batch + second-order outer step on the next + P update) on square crops,
batch 2 doubled to 4 by source swapping (the official recipe).

Variants: ``before`` = ``lightning_modules/refusion.py`` at git revision ``--before-rev`` (default ``HEAD``, loaded
from ``git show`` into a temporary module; its resolved commit is recorded; the baseline of every ratio),
``after`` = the working tree, with block gradient checkpointing off (``after``) or on (``after+ckpt``); the meta
iteration of ``after`` uses the default ``meta_gradient="jvp"``.

* Inference: before and after in **one** fresh process, per network one ``harness.interleave`` call (rotated
  order, one warm-up call each); min and median ms, max |after − before|.
* Training steps: every (variant, step, size) in its own fresh process (``spawn``: the memory high-water mark is
  per process), the variants' order rotated from one (step, size) to the next; memory = the process's RSS
  high-water mark (``VmHWM``, absolute, includes the ~0.4 GiB of imports) and the high-water minus the RSS before
  the first call; min and median ms (``harness.summary``) over the timed iterations after one warm-up. The address
  space is capped (``--cpu-limit-gib``, default 20): a case that needs more fails with an allocation error,
  recorded under ``exceeds`` instead of waking the OOM killer.
* Each forward and step also gets its distance from the FLOP limit: median ÷ the time its ``harness.count_flops``
  FLOPs (one extra call after the timing; with checkpointing this includes the recomputation) take at this CPU's
  measured fp32 conv peak ("× limit").

    python benchmarks/refusion_speed.py                 # 640×480 inference; steps at 128² and 256²
    python benchmarks/refusion_speed.py --quick         # 64×48 inference; steps at 32², batch 2, 1 iteration,
                                                        # variants before and after+ckpt (5 processes, not 7)
    python benchmarks/refusion_speed.py --sizes 256 --what meta_iteration --variants after+ckpt --merge

Writes benchmarks/results/refusion_speed.json (``harness`` layout: environment, load, settings, ``comparisons``
per network and per (step, size), plus the ``runs`` of ``--merge``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks import harness  # noqa: E402

OUT = harness.RESULTS / "refusion_speed.json"
VARIANTS = ("before", "after", "after+ckpt")
NETS = ("FusionNet", "LossProposalNet", "ReconstructionNet")


def _load(variant: str, before_rev: str) -> ModuleType:
    if variant != "before":
        import lightning_modules.refusion as mod

        return mod
    src = subprocess.run(["git", "show", f"{before_rev}:lightning_modules/refusion.py"], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout
    with tempfile.TemporaryDirectory(prefix="darkroom-refusion-before-") as tmp:
        path = Path(tmp) / "refusion_before.py"
        path.write_text(src)
        spec = importlib.util.spec_from_file_location("refusion_before", path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules["refusion_before"] = mod
        spec.loader.exec_module(mod)  # the source is read here; the file is not needed afterwards
    return mod


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _step_case(variant: str, what: str, size: int, batch: int, warmup: int, iters: int, threads: int,
               cpu_limit_gib: float, before_rev: str) -> dict[str, Any]:
    """One training-step measurement in this (fresh) process (module docstring): summary, memory, FLOPs."""
    limit = int(cpu_limit_gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    torch.set_num_threads(threads)
    from losses.refusion import refusion_fusion_loss, refusion_reconstruction_loss

    mod = _load(variant, before_rev)
    torch.manual_seed(0)
    f, p, r = mod.FusionNet(), mod.LossProposalNet(), mod.ReconstructionNet()
    if variant == "after+ckpt":
        for net in (f, p, r):
            mod.set_gradient_checkpointing(net, True)
    opt = torch.optim.Adam([*f.parameters(), *r.parameters()], lr=1e-4)
    half = torch.rand(batch // 2, 2, 1, size, size)
    x1 = torch.cat([half, half.flip(1)])  # source swapping
    half2 = torch.rand(batch // 2, 2, 1, size, size)
    x2 = torch.cat([half2, half2.flip(1)])

    def fusion_step() -> None:
        with torch.no_grad():
            w, v = p(x1)
        fused = f(x1)
        loss = refusion_fusion_loss(fused, x1, w, v) + refusion_reconstruction_loss(r(fused.detach()), x1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def meta_iteration() -> None:
        step = mod.inner_update(f, r, p, x1, 1e-4)
        mod.meta_loss(f, r, x2, step).backward()
        mod.normalised_gradient_update_(p.parameters(), 1e-4)
        for q in p.parameters():
            q.grad = None

    fn = {"fusion_step": fusion_step, "meta_iteration": meta_iteration}[what]
    rss0 = _status_mib("VmRSS")
    times: list[float] = []
    try:
        for i in range(warmup + iters):
            t0 = time.perf_counter()
            fn()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    except (RuntimeError, MemoryError) as err:
        if "alloc" not in str(err).lower() and not isinstance(err, MemoryError):
            raise
        return {"exceeds": f"{cpu_limit_gib:g} GiB address space", "error": str(err).splitlines()[0][:200],
                "vmhwm_mib": _status_mib("VmHWM")}
    hwm = _status_mib("VmHWM")
    try:
        flops: int | None = harness.count_flops(fn)  # after the memory is read: it does not move the high-water mark
    except Exception as err:  # noqa: BLE001 — a counter that cannot follow an op only loses the FLOP figure
        print(f"count_flops failed for {variant} {what}: {err}", file=sys.stderr)
        flops = None
    return {**harness.summary(times), "vmhwm_mib": hwm, "vmhwm_minus_start_mib": hwm - rss0, "rss_start_mib": rss0,
            "flops": flops, "allocator": harness.environment()["allocator"]}


def _inference_case(hw: tuple[int, int], warmup: int, rounds: int, threads: int, before_rev: str) -> dict[str, Any]:
    """F, P, R forward (no_grad) at hw, before and after interleaved in this one process: per network
    ``{"results": {variant: summary}, "flops": {variant: n}, "max_abs_diff_after_vs_before", "load"}``."""
    torch.set_num_threads(threads)
    mods = {"before": _load("before", before_rev), "after": _load("after", before_rev)}
    out: dict[str, Any] = {"allocator": harness.environment()["allocator"]}
    for net_name in NETS:
        nets = {}
        for v, mod in mods.items():
            torch.manual_seed(0)
            nets[v] = getattr(mod, net_name)().eval()
        nets["after"].load_state_dict(nets["before"].state_dict())
        g = torch.Generator().manual_seed(0)
        x = torch.rand(1, 2, *hw, generator=g) if net_name != "ReconstructionNet" else torch.rand(1, 1, *hw, generator=g)
        fns: dict[str, Callable[[], Any]] = {v: (lambda net=net, x=x: net(x)) for v, net in nets.items()}
        with torch.no_grad():
            outs = {v: fn() for v, fn in fns.items()}
            flops = {v: harness.count_flops(fn) for v, fn in fns.items()}
            with harness.LoadWatch() as load:
                results = harness.interleave(fns, rounds, warmup)
        a, b = (torch.cat(t, 1) if isinstance(t, tuple) else t for t in (outs["before"], outs["after"]))
        out[net_name] = {"results": results, "flops": flops, "load": load.record,
                         "max_abs_diff_after_vs_before": (a - b).abs().max().item()}
    return out


def _fresh(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def _group(results: dict[str, dict[str, Any]], exceeds: dict[str, dict[str, Any]], **info: Any) -> dict[str, Any]:
    """A comparison over the variants that ran (baseline ``before`` when it ran, else the first), FLOP limits
    added, ``exceeds`` kept beside; for step cases also the memory ratios (high-water minus start ÷ baseline's)."""
    order = [v for v in VARIANTS if v in results]
    results = {v: results[v] for v in order}
    harness.with_flop_limits(results, {v: r["flops"] for v, r in results.items() if r.get("flops")})
    baseline = order[0] if order else None
    if baseline is None:
        return {**info, "baseline": None, "results": {}, "ratios": {}, "exceeds": exceeds}
    group = harness.comparison(results, baseline, **info)
    if all("vmhwm_minus_start_mib" in r for r in results.values()):
        base = results[baseline]["vmhwm_minus_start_mib"]
        group["memory_ratios"] = {v: r["vmhwm_minus_start_mib"] / base for v, r in results.items()}
    group["exceeds"] = exceeds
    return group


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="64×48 inference, 2 rounds; steps at 32² with batch 2, 1 iteration, variants before and "
                             "after+ckpt (unless --variants)")
    parser.add_argument("--sizes", type=int, nargs="*", default=None, help="square crop sides (default 128 256)")
    parser.add_argument("--what", nargs="*", default=["fusion_step", "meta_iteration"])
    parser.add_argument("--variants", nargs="*", default=None, choices=VARIANTS, help="default: all three")
    parser.add_argument("--batch", type=int, default=None, help="after source swapping (official 2 → 4)")
    parser.add_argument("--iters", type=int, default=None)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-inference", action="store_true")
    parser.add_argument("--before-rev", default="HEAD")
    parser.add_argument("--cpu-limit-gib", type=float, default=20.0)
    parser.add_argument("--merge", action="store_true",
                        help="add to / replace cases in the existing results file instead of starting a new one")
    parser.add_argument("--out", type=Path, default=OUT, help="result JSON (default benchmarks/results/…)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)  # the FLOP peak is measured here, at the children's thread count
    sizes = args.sizes if args.sizes is not None else ([32] if args.quick else [128, 256])
    if args.variants is None:
        args.variants = ["before", "after+ckpt"] if args.quick else list(VARIANTS)
    infer_hw = (48, 64) if args.quick else (480, 640)
    iters = args.iters or (1 if args.quick else 3)
    batch = args.batch or (2 if args.quick else 4)
    infer_rounds = 2 if args.quick else max(iters, 3)
    rev = subprocess.run(["git", "rev-parse", args.before_rev], cwd=REPO, capture_output=True, text=True).stdout.strip()
    env = harness.environment()
    previous = json.loads(args.out.read_text()) if args.merge and args.out.is_file() else {}
    comparisons: dict[str, Any] = previous.get("comparisons", {})
    runs: list[dict[str, Any]] = previous.get("runs", [])
    watch = harness.LoadWatch()
    watch.__enter__()  # left at write(): the file is rewritten after every case, with the load up to then
    runs.append({"argv": sys.argv[1:] if argv is None else argv, "load_before": watch.before,
                 "threads": args.threads, "allocator": env["allocator"]})

    def write() -> dict[str, Any]:
        watch.__exit__()
        runs[-1]["load_after"] = watch.after
        payload = {
            "environment": env, "load": watch.record, "quick": args.quick,
            "settings": {
                "before_rev": rev, "baseline": "before",
                "variants": {"before": f"lightning_modules/refusion.py at {rev}",
                             "after": "working tree, gradient checkpointing off",
                             "after+ckpt": "working tree, set_gradient_checkpointing on F, P, R"},
                "memory_measure": "VmHWM of a fresh process per case (MiB); vmhwm_minus_start_mib: minus VmRSS "
                                  "before the first call",
                "train_batch_after_swap": batch, "inference_size_hw": list(infer_hw), "warmup": 1,
                "inference_rounds": infer_rounds, "step_iterations": iters, "threads": args.threads},
            "runs": runs,
            "comparisons": comparisons,
        }
        harness.write_result("refusion_speed", payload, args.out)
        return payload

    print(f"ReFusion speed: {env['threads']} threads, allocator {env['allocator']}, load {env['load_average']}, "
          f"before = {rev[:10]}")
    if not args.no_inference:
        inf = _fresh(_inference_case, infer_hw, 1, infer_rounds, args.threads, args.before_rev)
        for net in NETS:
            r = inf[net]
            res = {v: {**s, "flops": r["flops"][v]} for v, s in r["results"].items()}
            comparisons[f"inference_{net}"] = _group(
                res, {}, what=f"{net} forward, no grad, 1 image {infer_hw[1]}x{infer_hw[0]}, ms",
                load=r["load"], max_abs_diff_after_vs_before=r["max_abs_diff_after_vs_before"],
                allocator=inf["allocator"])
            print(f"{net}: max|Δ| {r['max_abs_diff_after_vs_before']:.1e}")
            print(harness.table(comparisons[f"inference_{net}"]))
        write()
    case = 0
    for size in sizes:
        for what in args.what:
            key = f"{what}_{size}x{size}"
            old = comparisons.get(key, {})
            results = {v: r for v, r in old.get("results", {}).items() if v not in args.variants}
            exceeds = {v: r for v, r in old.get("exceeds", {}).items() if v not in args.variants}
            order = args.variants[case % len(args.variants):] + args.variants[:case % len(args.variants)]
            case += 1
            for variant in order:  # rotated from one case to the next
                with harness.LoadWatch() as load:
                    res = _fresh(_step_case, variant, what, size, batch, 1, iters, args.threads,
                                 args.cpu_limit_gib, args.before_rev)
                res["load"] = load.record
                res["iterations"] = iters
                if "exceeds" in res:
                    exceeds[variant] = res
                    results.pop(variant, None)
                    print(f"{key} {variant:<11} exceeds {res['exceeds']}", flush=True)
                else:
                    results[variant] = res
                    exceeds.pop(variant, None)
                    print(f"{key} {variant:<11} {res['min_ms']:9.0f} ms min {res['median_ms']:9.0f} median "
                          f"{res['vmhwm_mib'] / 1024:6.2f} GiB VmHWM  load {load.after[0] if load.after else '-'}",
                          flush=True)
                comparisons[key] = _group(
                    results, exceeds, what=f"{what}, {size}x{size} crops, batch {batch} after source swapping, "
                                           "ms per step, fresh process per variant")
                write()
            if comparisons[key]["results"]:
                print(harness.table(comparisons[key]))
    return write()


if __name__ == "__main__":
    main()
