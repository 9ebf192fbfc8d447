"""ReFusion speed and memory, before/after the networks' speed-up (issue 13): inference ms of F, P, R at 640×480
(MSRS size), and time and peak memory of one plain fusion step (F on L_f with P's maps, R on L_r, Adam) and of one
meta-learning iteration (inner step on one batch + second-order outer step on the next + P update) on square crops,
batch 2 doubled to 4 by source swapping (the official recipe).

Variants: ``before`` = ``lightning_modules/refusion.py`` at git revision ``--before-rev`` (default ``HEAD``, loaded
from ``git show`` into a temporary module; its resolved commit is recorded), ``after`` = the working tree, with
block gradient checkpointing off (``after``) or on (``after+ckpt``); the meta iteration of ``after`` uses the default
``meta_gradient="jvp"``.

* Inference: before and after in **one** process, calls interleaved (before, after, before, …); min and median ms.
* Training steps: every (variant, step, size) in its own fresh process (``spawn``), cases interleaved over variants;
  memory = the process's RSS high-water mark (``VmHWM``, absolute, includes the ~0.4 GiB of imports) and the
  high-water minus the RSS before the first call; min and median ms over the timed iterations (after one warm-up).
  The address space is capped (``--cpu-limit-gib``, default 20): a case that needs more fails with an allocation
  error, recorded as ``"exceeds"``, instead of waking the OOM killer.

    python benchmarks/refusion_speed.py                 # 640×480 inference; steps at 128² and 256²
    python benchmarks/refusion_speed.py --quick         # 320×240 inference; steps at 128² only, 1 iteration
    python benchmarks/refusion_speed.py --sizes 256 --what meta_iteration --variants after+ckpt

Writes benchmarks/results/refusion_speed.json (machine, threads, load average before/after, allocator, torch
version, settings, figures).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
OUT = Path(__file__).resolve().parent / "results" / "refusion_speed.json"
VARIANTS = ("before", "after", "after+ckpt")


def _load(variant: str, before_rev: str) -> ModuleType:
    if variant != "before":
        import lightning_modules.refusion as mod

        return mod
    src = subprocess.run(["git", "show", f"{before_rev}:lightning_modules/refusion.py"], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "refusion_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("refusion_before", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["refusion_before"] = mod
    spec.loader.exec_module(mod)
    return mod


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _stats(times: list[float]) -> dict:
    return {"ms_min": min(times), "ms_median": statistics.median(times), "ms_all": times}


def _step_case(variant: str, what: str, size: int, batch: int, warmup: int, iters: int, threads: int,
               cpu_limit_gib: float, before_rev: str) -> dict:
    """One training-step measurement in this (fresh) process (module docstring)."""
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
    times = []
    try:
        for i in range(warmup + iters):
            t0 = time.perf_counter()
            fn()
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1000.0)
    except (RuntimeError, MemoryError) as err:
        if "alloc" not in str(err).lower() and not isinstance(err, MemoryError):
            raise
        return {"exceeds": f"{cpu_limit_gib:g} GiB address space", "error": str(err).splitlines()[0][:200],
                "vmhwm_mib": _status_mib("VmHWM")}
    hwm = _status_mib("VmHWM")
    return {**_stats(times), "vmhwm_mib": hwm, "vmhwm_minus_start_mib": hwm - rss0, "rss_start_mib": rss0}


def _inference_case(hw: tuple[int, int], warmup: int, iters: int, threads: int, before_rev: str) -> dict:
    """F, P, R forward (no_grad) at hw, before and after interleaved in this one process."""
    torch.set_num_threads(threads)
    mods = {"before": _load("before", before_rev), "after": _load("after", before_rev)}
    out: dict = {}
    for net_name in ("FusionNet", "LossProposalNet", "ReconstructionNet"):
        nets = {}
        for v, mod in mods.items():
            torch.manual_seed(0)
            nets[v] = getattr(mod, net_name)().eval()
        nets["after"].load_state_dict(nets["before"].state_dict())
        g = torch.Generator().manual_seed(0)
        x = torch.rand(1, 2, *hw, generator=g) if net_name != "ReconstructionNet" else torch.rand(1, 1, *hw, generator=g)
        times: dict[str, list[float]] = {v: [] for v in nets}
        outs = {}
        with torch.no_grad():
            for i in range(warmup + iters):
                for v, net in nets.items():
                    t0 = time.perf_counter()
                    y = net(x)
                    dt = (time.perf_counter() - t0) * 1000.0
                    if i >= warmup:
                        times[v].append(dt)
                    outs[v] = y
        a, b = outs["before"], outs["after"]
        a, b = (torch.cat(t, 1) if isinstance(t, tuple) else t for t in (a, b))
        out[net_name] = {v: _stats(t) for v, t in times.items()} | {"max_abs_diff_after_vs_before":
                                                                    (a - b).abs().max().item()}
    return out


def _fresh(fn, *args) -> dict:
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="*", default=None, help="square crop sides (default 128 256)")
    parser.add_argument("--what", nargs="*", default=["fusion_step", "meta_iteration"])
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--batch", type=int, default=4, help="after source swapping (official 2 → 4)")
    parser.add_argument("--iters", type=int, default=None)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-inference", action="store_true")
    parser.add_argument("--before-rev", default="HEAD")
    parser.add_argument("--cpu-limit-gib", type=float, default=20.0)
    parser.add_argument("--merge", action="store_true",
                        help="add to / replace cases in the existing results file instead of starting a new one")
    args = parser.parse_args(argv)
    sizes = args.sizes if args.sizes is not None else ([128] if args.quick else [128, 256])
    infer_hw = (240, 320) if args.quick else (480, 640)
    iters = args.iters or (1 if args.quick else 3)
    rev = subprocess.run(["git", "rev-parse", args.before_rev], cwd=REPO, capture_output=True, text=True).stdout.strip()
    load_start = list(os.getloadavg())
    previous = json.loads(OUT.read_text()) if args.merge and OUT.is_file() else {}
    results: dict = previous.get("results", {})
    runs: list = previous.get("runs", [])
    runs.append({"argv": sys.argv[1:] if argv is None else argv, "load_average_1_5_15min_start": load_start,
                 "threads": args.threads, "allocator": os.environ.get("LD_PRELOAD") or "glibc default"})

    def write() -> dict:
        runs[-1]["load_average_1_5_15min_end"] = list(os.getloadavg())
        report = {
            "machine": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "threads": args.threads, "torch": torch.__version__,
            "allocator": os.environ.get("LD_PRELOAD") or "glibc default", "runs": runs,
            "before_rev": rev, "variants": {"before": f"lightning_modules/refusion.py at {rev}",
                                            "after": "working tree, gradient checkpointing off",
                                            "after+ckpt": "working tree, set_gradient_checkpointing on F, P, R"},
            "memory_measure": "VmHWM of a fresh process per case (MiB); vmhwm_minus_start_mib: minus VmRSS before "
                              "the first call",
            "train_batch_after_swap": args.batch, "inference_size_hw": list(infer_hw), "warmup": 1,
            "results": results,
        }
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(report, indent=2))
        return report

    if not args.no_inference:
        results["inference"] = _fresh(_inference_case, infer_hw, 1, max(iters, 3), args.threads, args.before_rev)
        results["inference"]["load_average_after"] = list(os.getloadavg())
        write()
        for net, r in results["inference"].items():
            if net == "load_average_after":
                continue
            print(f"{net:<20} before {r['before']['ms_min']:8.0f} ms  after {r['after']['ms_min']:8.0f} ms (min)  "
                  f"max|Δ| {r['max_abs_diff_after_vs_before']:.1e}  load {os.getloadavg()[0]:.2f}")
    for size in sizes:
        for what in args.what:
            for variant in args.variants:  # interleaved over variants
                key = f"{what}_{size}x{size}_{variant}"
                res = _fresh(_step_case, variant, what, size, args.batch, 1, iters, args.threads,
                             args.cpu_limit_gib, args.before_rev)
                res["load_average_after"] = list(os.getloadavg())
                res["iterations"] = iters
                results[key] = res
                write()
                if "exceeds" in res:
                    print(f"{key:<36} exceeds {res['exceeds']}")
                else:
                    print(f"{key:<36} {res['ms_min']:9.0f} ms min {res['ms_median']:9.0f} median "
                          f"{res['vmhwm_mib'] / 1024:6.2f} GiB VmHWM  load {res['load_average_after'][0]:.2f}")
    return write()


if __name__ == "__main__":
    main()
