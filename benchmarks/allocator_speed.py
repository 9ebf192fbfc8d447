"""Allocator speed: the system malloc vs the caching allocator ``darkroom`` picks (experiments/allocator.py),
on CPU, plus Zero-DCE's in-place ReLU vs out of place. Prints a table and writes
benchmarks/results/allocator_speed.json.

    python benchmarks/allocator_speed.py                      # 5 rounds, 1 and 2 threads, every variant found
    python benchmarks/allocator_speed.py --rounds 3 --threads 1 --variants system auto
    python benchmarks/allocator_speed.py --quick              # small workloads, 1 round, system vs auto (2 processes)

Workloads (one call each = one sample):

* ``zero_dce_fwd``: DCE-Net forward + curves, 1×3×900×1200, no grad; official ``Epoch99.pth`` from
  ../shared/data/weights/zero_dce when present (subnormal weights flushed: they make CPU convs ~20× slower),
  else random weights;
* ``zero_dce_train``: one real training step, batch 8 at 256²: forward, the four official losses, backward,
  grad-norm clipping at 0.1, Adam;
* ``mef_ssim``: ``losses.mef_ssim`` forward + backward, an exposure pair 2×1×480×640 (fused requires grad).

Variants: ``system`` (``DARKROOM_ALLOCATOR=system``: plain glibc malloc) and each of ``jemalloc`` /
``tcmalloc`` / ``glibc`` (tunables) that is available (``--variants auto`` = what darkroom picks here). LD_PRELOAD only works at
process start, so every sample set comes from a fresh subprocess, and the variants alternate (rotated order)
round by round; each subprocess does one warm-up call per workload, then ``--calls`` timed calls. Reported, one
``harness.comparison`` per (workload, thread count): min and median ms over all timed calls (``harness.summary``),
ratios variant ÷ ``system``, page faults (``ru_minflt``) per call, the allocator each subprocess actually ran with
(``experiments.allocator.current()`` inside it), the thread count, and the load average before and after (a shared
machine). ``--quick``: the workloads at a quarter of the pixels (zero_dce_fwd 600×450, training batch 2 at 128²,
mef_ssim 320×240), 1 round, the current thread count, ``system`` vs ``auto``, no in-place part unless
``--inplace-rounds`` is given (then on the forward only): 2 subprocesses.

In-place (``--inplace``, on by default): Zero-DCE forward (1200×900, no grad) and training step with the ReLUs of
``DCENet.curve_maps`` in place (the code) vs out of place (``F.relu`` patched to ignore ``inplace``), under the
system allocator (large blocks are unmapped on free, so the peak RSS is the peak of live memory), 1 thread:
peak RSS increase over the state before the call, and time; ratios out of place ÷ in place.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from experiments import allocator  # noqa: E402

WEIGHTS = Path(os.environ.get("DARKROOM_SHARED_DATA", ROOT.parent / "shared" / "data")) / "weights/zero_dce/Epoch99.pth"
WORKLOADS = ("zero_dce_fwd", "zero_dce_train", "mef_ssim")


# ---- worker side ----------------------------------------------------------------------------------------

def _workloads(names: list[str], quick: bool = False) -> dict[str, Callable[[], None]]:
    """The workloads (module docstring); ``quick``: a quarter of the pixels, training batch 2 at 128²."""
    import torch

    from lightning_modules.tiling import flush_subnormal_
    from lightning_modules.zero_dce import DCENet, load_official_weights
    from losses.mef_ssim import mef_ssim
    from losses.zero_dce import ZeroDCELoss

    torch.manual_seed(0)
    made = {}
    if "zero_dce_fwd" in names:
        if WEIGHTS.is_file():
            net = load_official_weights(WEIGHTS)
            flush_subnormal_(net)
        else:
            net = DCENet().eval()
        x = torch.rand(1, 3, *((450, 600) if quick else (900, 1200))) * 0.5

        def fwd() -> None:
            with torch.no_grad():
                net(x)

        made["zero_dce_fwd"] = fwd
    if "zero_dce_train" in names:
        tnet = DCENet()
        loss_fn = ZeroDCELoss()
        opt = torch.optim.Adam(tnet.parameters(), lr=1e-4, weight_decay=1e-4)
        xb = torch.rand(*((2, 3, 128, 128) if quick else (8, 3, 256, 256))) * 0.4

        def train() -> None:
            enhanced, maps = tnet(xb)
            loss = loss_fn(enhanced, xb, maps)["total"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(tnet.parameters(), 0.1)
            opt.step()

        made["zero_dce_train"] = train
    if "mef_ssim" in names:
        sources = torch.rand(1, 2, 1, *((240, 320) if quick else (480, 640)))
        fused0 = sources.mean(1)

        def mef() -> None:
            fused = fused0.clone().requires_grad_(True)
            mef_ssim(fused, sources).sum().backward()

        made["mef_ssim"] = mef
    return made


def _minflt() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def worker(args: argparse.Namespace) -> None:
    """One sample set in this (fresh) process: one warm-up and ``--calls`` timed calls per workload; prints one
    ``RESULT {json}`` line."""
    import torch

    torch.set_num_threads(args.threads)
    if args.no_inplace:  # DCENet.curve_maps calls F.relu(..., inplace=True): make it out of place
        import torch.nn.functional as F

        relu = F.relu
        F.relu = lambda input, inplace=False: relu(input, inplace=False)  # noqa: E731
    fns = _workloads(args.workloads, args.quick)
    out: dict[str, Any] = {"allocator": allocator.current(), "threads": torch.get_num_threads(), "results": {}}
    for name in args.workloads:
        fn = fns[name]
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        f0 = _minflt()
        fn()  # warm-up
        warm_faults = _minflt() - f0
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0
        times, faults = [], []
        for _ in range(args.calls):
            f0, t0 = _minflt(), time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
            faults.append(_minflt() - f0)
        out["results"][name] = {"ms": times, "minflt": faults, "warmup_minflt": warm_faults,
                                "peak_rss_increase_mib": round(peak_kib / 1024, 1)}
    print("RESULT " + json.dumps(out), flush=True)


# ---- driver side ----------------------------------------------------------------------------------------

def _variant_env(variant: str) -> tuple[dict[str, str], str]:
    """The environment (without any allocator setting inherited from here) and description of a variant."""
    base = {k: v for k, v in os.environ.items() if k not in (
        "LD_PRELOAD", "MALLOC_CONF", "GLIBC_TUNABLES", allocator.MARKER, allocator.SWITCH,
        *allocator.TCMALLOC_ENV)}
    base["PYTHONPATH"] = str(ROOT)
    return allocator.allocator_env({**base, allocator.SWITCH: variant})


def _spawn(variant: str, threads: int, workloads: list[str], calls: int, no_inplace: bool = False,
           quick: bool = False) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", "--threads", str(threads), "--calls", str(calls),
           "--workloads", *workloads] + (["--no-inplace"] if no_inplace else []) + (["--quick"] if quick else [])
    done = subprocess.run(cmd, env=_variant_env(variant)[0], capture_output=True, text=True, timeout=1800)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"worker {variant} failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(line[len("RESULT "):])


def _available_variants() -> list[str]:
    found = ["system"]  # "auto" is one of the others (the JSON's "auto" says which)
    for kind in ("jemalloc", "tcmalloc"):
        if allocator.find_library(kind) is not None:
            found.append(kind)
    if allocator._glibc() is not None:
        found.append("glibc")
    return found


def run_allocators(args: argparse.Namespace, harness: Any) -> dict[str, Any]:
    """Per thread count: every variant's subprocesses in rotated order, round by round; one comparison per
    (workload, thread count) keyed ``"<workload> threads=<n>"``."""
    variants = args.variants or _available_variants()
    comparisons: dict[str, Any] = {}
    for threads in args.threads:
        per: dict[str, Any] = {v: {"allocator": set(), "ms": {w: [] for w in args.workloads},
                                   "minflt": {w: [] for w in args.workloads}} for v in variants}
        with harness.LoadWatch() as load:
            for r in range(args.rounds):
                order = variants[r % len(variants):] + variants[:r % len(variants)]
                for v in order:
                    res = _spawn(v, threads, args.workloads, args.calls, quick=args.quick)
                    per[v]["allocator"].add(res["allocator"])
                    for w in args.workloads:
                        per[v]["ms"][w] += res["results"][w]["ms"]
                        per[v]["minflt"][w] += res["results"][w]["minflt"]
                print(f"  threads {threads} round {r + 1}/{args.rounds} done (load {harness.load_average()})",
                      flush=True)
        for w in args.workloads:
            results = {v: {**harness.summary([t / 1000.0 for t in d["ms"][w]]),
                           "minflt_per_call": round(statistics.median(d["minflt"][w])),
                           "allocator": sorted(d["allocator"])} for v, d in per.items()}
            comparisons[f"{w} threads={threads}"] = harness.comparison(
                results, "system", load, what=f"{w}, {threads} thread(s), ms per call, {args.rounds} fresh process(es) "
                                              f"per variant × {args.calls} call(s)", threads=threads, workload=w)
    return comparisons


def run_inplace(args: argparse.Namespace, harness: Any) -> dict[str, Any]:
    """In-place vs out-of-place ReLUs under the system allocator, 1 thread, one workload per process (the peak
    RSS is per process); one comparison per workload keyed ``"inplace <workload>"``."""
    work = ["zero_dce_fwd"] if args.quick else ["zero_dce_fwd", "zero_dce_train"]
    samples: dict[str, Any] = {m: {w: {"ms": [], "peak": []} for w in work} for m in ("inplace", "out_of_place")}
    with harness.LoadWatch() as load:
        for r in range(args.inplace_rounds):
            modes = ("inplace", "out_of_place") if r % 2 == 0 else ("out_of_place", "inplace")
            for mode in modes:
                for w in work:
                    res = _spawn("system", 1, [w], args.calls, no_inplace=mode == "out_of_place", quick=args.quick)
                    samples[mode][w]["ms"] += res["results"][w]["ms"]
                    samples[mode][w]["peak"].append(res["results"][w]["peak_rss_increase_mib"])
    comparisons: dict[str, Any] = {}
    for w in work:
        results = {m: {**harness.summary([t / 1000.0 for t in per[w]["ms"]]),
                       "peak_rss_increase_mib": min(per[w]["peak"])} for m, per in samples.items()}
        group = harness.comparison(results, "inplace", load, what=f"{w}, ReLUs in place vs out of place, system "
                                   "malloc, 1 thread, ms per call", threads=1, allocator="system", workload=w)
        base = results["inplace"]["peak_rss_increase_mib"]
        group["memory_ratios"] = {m: r["peak_rss_increase_mib"] / base if base else None for m, r in results.items()}
        comparisons[f"inplace {w}"] = group
    return comparisons


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--no-inplace", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, nargs="+", default=None, help="default 1 2 (quick: the current count)")
    p.add_argument("--calls", type=int, default=1, help="timed calls per workload per subprocess")
    p.add_argument("--rounds", type=int, default=None, help="subprocesses per variant (interleaved; default 5, 1 quick)")
    p.add_argument("--inplace-rounds", type=int, default=None, help="default 3 (quick: none unless given)")
    p.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    p.add_argument("--variants", nargs="+", default=None,
                   choices=["system", "auto", "jemalloc", "tcmalloc", "glibc"])
    p.add_argument("--no-inplace-check", action="store_true", help="skip the in-place vs out-of-place part")
    p.add_argument("--quick", action="store_true", help="small workloads, 1 round, system vs auto, no in-place part")
    p.add_argument("--out", type=Path, default=None, help="result JSON (default benchmarks/results/…)")
    args = p.parse_args(argv)
    if args.worker:
        args.threads = (args.threads or [1])[0]
        return worker(args)
    from benchmarks import harness

    args.threads = args.threads or ([harness.environment()["threads"]] if args.quick else [1, 2])
    args.rounds = args.rounds or (1 if args.quick else 5)
    if args.quick and args.inplace_rounds is None:
        args.no_inplace_check = True  # quick: two subprocesses only (each one's start-up is most of its time)
    args.inplace_rounds = args.inplace_rounds or 3
    if args.quick and args.variants is None:
        args.variants = ["system", "auto"]
    env = harness.environment()
    auto = _variant_env("auto")[1]
    print(f"darkroom's choice here: {auto}; this driver runs with {env['allocator']}, load {env['load_average']}")
    t0 = time.time()
    with harness.LoadWatch() as load:
        comparisons = run_allocators(args, harness)
        if not args.no_inplace_check:
            comparisons.update(run_inplace(args, harness))
    payload = {
        "environment": env, "load": load.record, "quick": args.quick,
        "settings": {"weights": str(WEIGHTS) if WEIGHTS.is_file() else "random", "auto": auto,
                     "rounds": args.rounds, "calls_per_process": args.calls, "workloads": args.workloads,
                     "threads": args.threads, "inplace_rounds": None if args.no_inplace_check else args.inplace_rounds,
                     "baseline": "system (allocators); inplace (in-place check)",
                     "note": "environment is the driver's; each result's allocator is what its subprocesses ran with"},
        "comparisons": comparisons,
        "wall_s": round(time.time() - t0),
    }
    for name, group in comparisons.items():
        print(f"\n{name} (load {group['load']['before']} → {group['load']['after']})")
        print(harness.table(group))
        for v, r in group["results"].items():
            extra = (f"faults/call {r['minflt_per_call']}" if "minflt_per_call" in r
                     else f"peak +{r['peak_rss_increase_mib']:.0f} MiB")
            print(f"    {v:13s} {extra}  [{'; '.join(r['allocator']) if isinstance(r.get('allocator'), list) else ''}]")
    harness.write_result("allocator_speed", payload, args.out)
    return payload


if __name__ == "__main__":
    main()
