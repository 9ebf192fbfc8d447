"""Peak memory and time of ``darkroom predict`` with Zero-DCE on one photo of 2, 12 and 48 megapixels, with exact
tiled inference (``--run.tile_size 512``, the default; the baseline of the ratios) and without
(``--run.tile_size null``). Prints a table and writes benchmarks/results/predict_memory.json.

    python benchmarks/predict_memory.py                   # 2, 12, 48 MP, tiled and untiled, 14 GB limit, 2 repeats
    python benchmarks/predict_memory.py --sizes 2 12 --limit-gb 20 --repeats 3
    python benchmarks/predict_memory.py --quick           # one 0.3 MP (640×480) photo, 1 repeat
    python benchmarks/predict_memory.py --per-pixel       # also re-measure lightning_modules.memory.BYTES_PER_PIXEL

Each case runs in a fresh process (the peak is per process, so the cases cannot share one) under an address-space
limit (``ulimit -v``, ``--limit-gb``), so a case that does not fit fails on its own ("over the limit of N GB",
recorded under ``exceeds``) instead of taking the machine down; predict refuses such an image before it runs
(``NotEnoughMemoryError``, from the measured bytes per pixel), and an allocation that still fails under the limit
is reported the same way. ``--repeats`` processes per case, tiled and untiled alternating in rotated order; min
and median seconds per image (``harness.summary``) and the largest peak over the repeats. Peak memory = the
process's resident-set high-water mark (``VmHWM``; ``ru_maxrss`` of the child when it died first): Python,
PyTorch, Lightning, the decoded photo, the network's activations and the PNG encoder. Seconds per image = the time
of predict's summary line (setup with the decode check of the input, inference, PNG write). The photo is
synthetic (smooth low-light gradients and noise, JPEG q92) in a temporary folder; the weights are the official
``Epoch99.pth`` when ../shared/data (``$DARKROOM_SHARED_DATA``) has it, else random (memory and time do not depend
on the weights).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DARKROOM_SHARED_DATA", REPO.parent / "shared" / "data"))
WEIGHTS = SHARED / "weights" / "zero_dce" / "Epoch99.pth"
SIZES = {2: (1632, 1224), 12: (4000, 3000), 48: (8000, 6000)}  # W×H, 4:3
QUICK_SIZE = (640, 480)  # --quick: 0.3 MP
BASELINE = "tiled"


def _hwm() -> int | None:
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return None


def _write_photo(path: Path, width: int, height: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    yy = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    xx = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    base = 10 + 50 * (0.5 + 0.5 * np.sin(6 * xx + 3 * yy) * np.cos(4 * yy))
    img = np.empty((height, width, 3), np.uint8)
    for c, gain in enumerate((1.0, 0.9, 0.7)):
        img[..., c] = np.clip(base * gain + rng.normal(0, 3, (height, width)).astype(np.float32), 0, 255)
    Image.fromarray(img).save(path, quality=92)


# ------------------------------------------------------------------------------------------------ child side
def _child_predict(args: argparse.Namespace) -> None:
    """One ``darkroom predict`` in this process; prints one JSON line."""
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    sys.path.insert(0, str(REPO))
    import torch

    from experiments import allocator
    from experiments.cli import cli_main

    result: dict[str, Any] = {"threads": torch.get_num_threads(), "allocator": allocator.current()}
    work = Path(args.work)
    argv = ["predict", "-c", str(REPO / "experiments" / "zero_dce" / "paper.yaml"),
            "--data.init_args.predict_root", str(work / "in"), "--data.init_args.num_workers", "0",
            "--run.output_dir", str(work / f"out-{args.tile}"), "--run.overwrite", "true",
            "--run.root", str(work / "runs"), "--run.wandb", "false", "--trainer.enable_progress_bar", "false",
            "--run.tile_size", args.tile]
    if WEIGHTS.is_file():
        argv += ["--model.init_args.pretrained", str(WEIGHTS)]
    t0 = time.perf_counter()
    try:
        cli = cli_main(argv)
        summary = cli.image_writer.summary or ""
        result.update(status="ok", summary=summary, seconds=float(summary.rsplit(", ", 1)[-1].split()[0]))
    except BaseException as err:  # MemoryError, NotEnoughMemoryError, RuntimeError "can't allocate memory"
        result.update(status="error", error=f"{type(err).__name__}: {' '.join(str(err).split())[:400]}")
    result.update(process_seconds=time.perf_counter() - t0, peak_rss=_hwm())
    print("RESULT " + json.dumps(result), flush=True)


def _child_per_pixel(args: argparse.Namespace) -> None:
    """Peak bytes per pixel of one model's whole-image forward (no_grad, fp32) at one size."""
    sys.path.insert(0, str(REPO))
    import torch

    kind, h, w = args.kind, args.height, args.width
    if kind in ("zero_dce", "zero_dce_pp"):
        from lightning_modules.zero_dce import ZeroDCE

        m = ZeroDCE(variant=kind, eval_scale_factor=12.0 if kind == "zero_dce_pp" else None).eval()
        x = torch.rand(1, 3, h, w)

        def run():
            return m.enhance(x, tile_size=None)
    elif kind == "dped":
        from lightning_modules.dped import DPEDGenerator

        g = DPEDGenerator().eval()
        x = torch.rand(1, 3, h, w)

        def run():
            return g(x)
    else:
        from lightning_modules.deepfuse import DeepFuse
        from lightning_modules.refusion import ReFusion

        m = (DeepFuse if kind == "deepfuse" else ReFusion)().eval()
        x = torch.rand(1, 2, 3, h, w)

        def run():
            return m(x)
    before = _hwm()
    with torch.no_grad():
        run()
    print("RESULT " + json.dumps({"kind": kind, "pixels": h * w, "bytes_per_pixel": (_hwm() - before) / (h * w)}))


# ----------------------------------------------------------------------------------------------- parent side
def _run_child(argv: list[str], limit_gb: float) -> tuple[dict, int]:
    limit = int(limit_gb * 2**30)

    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, __file__, *argv], stdout=subprocess.PIPE, stderr=err, text=True,
                                cwd=REPO, preexec_fn=preexec)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own ru_maxrss
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        err_text = err.read()
    maxrss = usage.ru_maxrss * 1024
    line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        tail = " ".join(err_text.strip().splitlines()[-2:])[-300:]
        return {"status": "error", "error": f"exit {proc.returncode}: {tail}"}, maxrss
    return json.loads(line[len("RESULT "):]), maxrss


def _case(work: Path, tile: str, limit_gb: float) -> dict[str, Any]:
    """One predict in a fresh process: its result, status line, peak."""
    load = os.getloadavg()[0]
    res, maxrss = _run_child(["--child", "predict", "--work", str(work), "--tile", tile], limit_gb)
    peak = res.get("peak_rss") or maxrss
    over = res["status"] != "ok" and any(
        k in res.get("error", "") for k in ("NotEnoughMemory", "MemoryError", "can't allocate", "exit -9"))
    status = (f"over the limit of {limit_gb:g} GB" if over else res["status"]) + (
        f" ({res['error'][:160]})" if res["status"] != "ok" else "")
    return {**res, "peak": peak, "over": over, "status_line": status, "load_1min_at_start": round(load, 2)}


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 12, 48], choices=sorted(SIZES))
    parser.add_argument("--limit-gb", type=float, default=14.0, help="address-space limit of each case (ulimit -v)")
    parser.add_argument("--tile", default="512", help="tile size of the tiled cases")
    parser.add_argument("--repeats", type=int, default=None, help="fresh processes per case (default 2, 1 quick)")
    parser.add_argument("--per-pixel", action="store_true", help="also measure bytes per pixel of every model")
    parser.add_argument("--quick", action="store_true", help="one 0.3 MP (640×480) photo, 1 repeat")
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default benchmarks/results/…)")
    parser.add_argument("--child", choices=["predict", "per_pixel"], help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--kind", help=argparse.SUPPRESS)
    parser.add_argument("--height", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--width", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "predict":
        return _child_predict(args)
    if args.child == "per_pixel":
        return _child_per_pixel(args)

    sys.path.insert(0, str(REPO))
    from benchmarks import harness

    repeats = args.repeats or (1 if args.quick else 2)
    sizes = [("0.3mp", QUICK_SIZE)] if args.quick else [(f"{mp}mp", SIZES[mp]) for mp in args.sizes]
    env = harness.environment()
    print(f"predict memory: Zero-DCE, CPU ({env['machine']}, {env['cpu_count']} cores), allocator {env['allocator']}, "
          f"limit {args.limit_gb:g} GB per case, {repeats} repeat(s), load average {env['load_average']}")
    print(f"{'MP':>6} {'W×H':>10} {'tiles':>6} {'peak RSS GB':>12} {'s/image':>8}  status")
    comparisons: dict[str, Any] = {}
    threads = None
    with harness.LoadWatch() as load, tempfile.TemporaryDirectory(prefix="darkroom-predict-memory-") as tmp:
        for label, (w, h) in sizes:
            work = Path(tmp) / label
            (work / "in").mkdir(parents=True)
            _write_photo(work / "in" / f"photo_{label}.jpg", w, h)
            tiles = {"tiled": args.tile, "untiled": "null"}
            runs: dict[str, list[dict[str, Any]]] = {v: [] for v in tiles}
            with harness.LoadWatch() as size_load:
                for r in range(repeats):
                    order = list(tiles)[r % 2:] + list(tiles)[:r % 2]  # tiled first, then untiled first, …
                    for variant in order:
                        res = _case(work, tiles[variant], args.limit_gb)
                        threads = res.get("threads", threads)
                        runs[variant].append(res)
                        secs = f"{res['seconds']:.1f}" if res.get("seconds") is not None else "-"
                        gb = f"{res['peak'] / 2**30:.2f}" if res["peak"] and res["status"] == "ok" else "-"
                        print(f"{label:>6} {f'{w}×{h}':>10} {tiles[variant]:>6} {gb:>12} {secs:>8}  "
                              f"{res['status_line']}", flush=True)
            results: dict[str, dict[str, Any]] = {}
            exceeds: dict[str, dict[str, Any]] = {}
            for variant, rs in runs.items():
                ok = [x for x in rs if x["status"] == "ok" and x.get("seconds") is not None]
                info = {"tiled": variant == "tiled", "tile_size": None if tiles[variant] == "null" else int(tiles[variant]),
                        "peak_rss_gb": round(max(x["peak"] for x in rs if x["peak"]) / 2**30, 3)
                        if any(x["peak"] for x in rs) else None,
                        "process_seconds": [round(x.get("process_seconds", float("nan")), 1) for x in rs],
                        "status": sorted({x["status_line"] for x in rs}),
                        "allocator": sorted({x["allocator"] for x in rs if x.get("allocator")}),
                        "load_1min_at_start": [x["load_1min_at_start"] for x in rs]}
                if ok:
                    results[variant] = {**harness.summary([x["seconds"] for x in ok]), **info}
                else:
                    exceeds[variant] = info
            group: dict[str, Any] = {"what": f"darkroom predict, one {w}x{h} photo ({w * h / 1e6:.1f} MP), "
                                             "ms per image (predict's summary line), fresh process per run",
                                     "megapixels": round(w * h / 1e6, 2), "width": w, "height": h}
            if BASELINE in results:
                group = harness.comparison(results, BASELINE, size_load, **group)
                base_peak = results[BASELINE]["peak_rss_gb"]
                group["memory_ratios"] = {v: r["peak_rss_gb"] / base_peak for v, r in results.items()
                                          if r["peak_rss_gb"] and base_peak}
            else:
                group.update(baseline=None, load=size_load.record, results=results, ratios={})
            group["exceeds"] = exceeds
            comparisons[label] = group
        per_pixel = []
        if args.per_pixel:
            for kind in ("zero_dce", "zero_dce_pp", "dped", "deepfuse", "refusion"):
                for h, w in ((480, 640), (960, 1280)):
                    res, _ = _run_child(["--child", "per_pixel", "--kind", kind, "--height", str(h), "--width", str(w)],
                                        args.limit_gb)
                    per_pixel.append(res)
                    print(f"bytes per pixel {kind:<12} {w}×{h}: {res.get('bytes_per_pixel', float('nan')):.0f}")
    for label, group in comparisons.items():
        if group["results"]:
            print(f"{label}: seconds per image" + (f", peak ÷ tiled {group.get('memory_ratios')}"
                                                     if group.get("memory_ratios") else ""))
            print(harness.table(group, unit="s"))
    payload = {
        "environment": env, "load": load.record, "quick": args.quick,
        "settings": {"model": "Zero-DCE (" + ("official Epoch99.pth" if WEIGHTS.is_file() else "random weights") + ")",
                     "command": "darkroom predict -c experiments/zero_dce/paper.yaml --run.tile_size {512|null}",
                     "device": "cpu", "threads_in_children": threads, "limit_gb_per_case": args.limit_gb,
                     "repeats": repeats, "baseline": BASELINE,
                     "peak_memory": "VmHWM of a fresh process per case (Python + PyTorch + Lightning + photo + "
                                    "activations); the largest over the repeats",
                     "seconds_per_image": "time of predict's summary line: setup with the decode check, inference, "
                                          "PNG write"},
        "comparisons": comparisons,
        "bytes_per_pixel_whole_image": per_pixel or None,
    }
    harness.write_result("predict_memory", payload, args.out)
    return payload


if __name__ == "__main__":
    main()
