"""Allocator speed: the system malloc vs the caching allocator ``darkroom`` picks (experiments/allocator.py),
on CPU, plus Zero-DCE's in-place ReLU vs out of place. Prints a table and writes
benchmarks/results/allocator_speed.json.

    python benchmarks/allocator_speed.py                      # 5 rounds, 1 and 2 threads, every variant found
    python benchmarks/allocator_speed.py --rounds 3 --threads 1 --variants system auto

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
round by round; each subprocess does one warm-up call per workload, then ``--calls`` timed calls. Reported:
min and median over all timed calls, page faults (``ru_minflt``) per call, the allocator each subprocess
actually ran with, the thread count, and the load average before and after (a shared machine).

In-place (``--inplace``, on by default): Zero-DCE forward (1200×900, no grad) and training step with the ReLUs of
``DCENet.curve_maps`` in place (the code) vs out of place (``F.relu`` patched to ignore ``inplace``), under the
system allocator (large blocks are unmapped on free, so the peak RSS is the peak of live memory), 1 thread:
peak RSS increase over the state before the call, and time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from experiments import allocator  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "allocator_speed.json"
WEIGHTS = Path(os.environ.get("DARKROOM_SHARED_DATA", ROOT.parent / "shared" / "data")) / "weights/zero_dce/Epoch99.pth"
WORKLOADS = ("zero_dce_fwd", "zero_dce_train", "mef_ssim")


# ---- worker side ----------------------------------------------------------------------------------------

def _workloads(names: list[str]):
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
        x = torch.rand(1, 3, 900, 1200) * 0.5

        def fwd() -> None:
            with torch.no_grad():
                net(x)

        made["zero_dce_fwd"] = fwd
    if "zero_dce_train" in names:
        tnet = DCENet()
        loss_fn = ZeroDCELoss()
        opt = torch.optim.Adam(tnet.parameters(), lr=1e-4, weight_decay=1e-4)
        xb = torch.rand(8, 3, 256, 256) * 0.4

        def train() -> None:
            enhanced, maps = tnet(xb)
            loss = loss_fn(enhanced, xb, maps)["total"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(tnet.parameters(), 0.1)
            opt.step()

        made["zero_dce_train"] = train
    if "mef_ssim" in names:
        sources = torch.rand(1, 2, 1, 480, 640)
        fused0 = sources.mean(1)

        def mef() -> None:
            fused = fused0.clone().requires_grad_(True)
            mef_ssim(fused, sources).sum().backward()

        made["mef_ssim"] = mef
    return made


def _minflt() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    if args.no_inplace:  # DCENet.curve_maps calls F.relu(..., inplace=True): make it out of place
        import torch.nn.functional as F

        relu = F.relu
        F.relu = lambda input, inplace=False: relu(input, inplace=False)  # noqa: E731
    fns = _workloads(args.workloads)
    out: dict = {"allocator": allocator.current(), "threads": torch.get_num_threads(), "results": {}}
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

def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _variant_env(variant: str) -> tuple[dict[str, str], str]:
    """The environment (without any allocator setting inherited from here) and description of a variant."""
    base = {k: v for k, v in os.environ.items() if k not in (
        "LD_PRELOAD", "MALLOC_CONF", "GLIBC_TUNABLES", allocator.MARKER, allocator.SWITCH,
        *allocator.TCMALLOC_ENV)}
    base["PYTHONPATH"] = str(ROOT)
    return allocator.allocator_env({**base, allocator.SWITCH: variant})


def _spawn(variant: str, threads: int, workloads: list[str], calls: int, no_inplace: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--threads", str(threads), "--calls", str(calls),
           "--workloads", *workloads] + (["--no-inplace"] if no_inplace else [])
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


def _summary(samples: list[float]) -> dict:
    return {"min": round(min(samples), 1), "median": round(statistics.median(samples), 1), "n": len(samples)}


def run_allocators(args: argparse.Namespace) -> dict:
    variants = args.variants or _available_variants()
    report: dict = {}
    for threads in args.threads:
        per: dict = {v: {"allocator": set(), "ms": {w: [] for w in args.workloads},
                         "minflt": {w: [] for w in args.workloads}} for v in variants}
        load_before = _load()
        for r in range(args.rounds):
            order = variants[r % len(variants):] + variants[:r % len(variants)]
            for v in order:
                res = _spawn(v, threads, args.workloads, args.calls)
                per[v]["allocator"].add(res["allocator"])
                for w in args.workloads:
                    per[v]["ms"][w] += res["results"][w]["ms"]
                    per[v]["minflt"][w] += res["results"][w]["minflt"]
            print(f"  threads {threads} round {r + 1}/{args.rounds} done (load {_load()})", flush=True)
        report[str(threads)] = {
            "load_before": load_before, "load_after": _load(),
            "variants": {v: {"allocator": sorted(d["allocator"]),
                             "workloads": {w: {"ms": _summary(d["ms"][w]),
                                               "minflt_per_call": round(statistics.median(d["minflt"][w]))}
                                           for w in args.workloads}}
                         for v, d in per.items()},
        }
    return report


def run_inplace(args: argparse.Namespace) -> dict:
    work = ["zero_dce_fwd", "zero_dce_train"]
    samples: dict = {m: {w: {"ms": [], "peak": []} for w in work} for m in ("inplace", "out_of_place")}
    load_before = _load()
    for r in range(args.inplace_rounds):
        modes = ("inplace", "out_of_place") if r % 2 == 0 else ("out_of_place", "inplace")
        for mode in modes:
            for w in work:  # one workload per process: the peak RSS is per process
                res = _spawn("system", 1, [w], args.calls, no_inplace=mode == "out_of_place")
                samples[mode][w]["ms"] += res["results"][w]["ms"]
                samples[mode][w]["peak"].append(res["results"][w]["peak_rss_increase_mib"])
    return {"threads": 1, "allocator": "system", "load_before": load_before, "load_after": _load(),
            "modes": {m: {w: {"ms": _summary(d["ms"]), "peak_rss_increase_mib": min(d["peak"])}
                          for w, d in per.items()} for m, per in samples.items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--no-inplace", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--calls", type=int, default=1, help="timed calls per workload per subprocess")
    p.add_argument("--rounds", type=int, default=5, help="subprocesses per variant (interleaved)")
    p.add_argument("--inplace-rounds", type=int, default=3)
    p.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    p.add_argument("--variants", nargs="+", default=None,
                   choices=["system", "auto", "jemalloc", "tcmalloc", "glibc"])
    p.add_argument("--no-inplace-check", action="store_true", help="skip the in-place vs out-of-place part")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    if args.worker:
        args.threads = args.threads[0]
        return worker(args)
    print(f"darkroom's choice here: {_variant_env('auto')[1]}")
    t0 = time.time()
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "weights": str(WEIGHTS) if WEIGHTS.is_file() else "random",
        "auto": _variant_env("auto")[1],
        "config": {"rounds": args.rounds, "calls_per_process": args.calls, "workloads": args.workloads},
        "threads": run_allocators(args),
    }
    if not args.no_inplace_check:
        result["inplace"] = run_inplace(args)
    result["wall_s"] = round(time.time() - t0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for threads, rep in result["threads"].items():
        print(f"\n{threads} thread(s), load {rep['load_before']} → {rep['load_after']}")
        print(f"{'variant':10s} " + " ".join(f"{w + ' ms min/med':>26s} {'faults':>8s}" for w in args.workloads))
        for v, d in rep["variants"].items():
            cells = " ".join(f"{d['workloads'][w]['ms']['min']:>12.1f} / {d['workloads'][w]['ms']['median']:>9.1f}"
                             f" {d['workloads'][w]['minflt_per_call']:>8d}" for w in args.workloads)
            print(f"{v:10s} {cells}   [{'; '.join(d['allocator'])}]")
    if "inplace" in result:
        print(f"\nin-place ReLU (system malloc, 1 thread, load {result['inplace']['load_before']} → "
              f"{result['inplace']['load_after']})")
        for mode, per in result["inplace"]["modes"].items():
            print(f"{mode:13s} " + "  ".join(f"{w}: {d['ms']['min']:.0f}/{d['ms']['median']:.0f} ms, peak "
                                               f"+{d['peak_rss_increase_mib']:.0f} MiB" for w, d in per.items()))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
