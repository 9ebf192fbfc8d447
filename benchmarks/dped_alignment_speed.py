"""Speed of the DPED alignment pipeline (imaging/alignment.py, imaging/patches.py, experiments/prepare_dped.py) on synthetic phone/DSLR pairs.

Measures, on a pair with a 3000×2000 DSLR image (phone at 0.75× = 2250×1500):

* ``align_pair`` ms per pair (SIFT + ratio test + RANSAC, matching downscale to 1600 px);
* ``pipeline``: the full per-pair pipeline, align + ``warp_to_common`` + ``extract_patch_pairs`` (100×100, ±4 px);
* pairs/s of ``prepare_dped`` on several such pairs with all cores (reads JPEGs, writes the layout; one run, a
  process pool, so not interleaved).

The two single-pair variants run interleaved by ``harness.interleave`` (rotated order, ``--repeats`` rounds after one
warm-up call each, none with ``--quick``); min and median ms; ratios ÷ ``align_pair``. Also reports the corner error
against the true homography. Prints the figures and writes ``benchmarks/results/dped_alignment_speed.json``. Not a
test.

Usage: ``python benchmarks/dped_alignment_speed.py [--quick] [--pairs N] [--workers N] [--out FILE]``
(``--quick``: 1500×1000, 2 pairs, 1 round; default ≈ 1–3 min on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import harness  # noqa: E402
from datamodules.synthetic.dped_pairs import render_pair, write_phone_dslr_pairs  # noqa: E402
from datamodules.synthetic.photos import load_photo  # noqa: E402
from experiments.prepare_dped import prepare_dped  # noqa: E402
from imaging.alignment import align_pair, warp_to_common  # noqa: E402
from imaging.patches import extract_patch_pairs  # noqa: E402

BASELINE = "align_pair"


def _corner_error(est: np.ndarray, true: np.ndarray, size: tuple[int, int]) -> float:
    w, h = size
    c = np.array([[0, 0, 1], [w - 1, 0, 1], [w - 1, h - 1, 1], [0, h - 1, 1]], dtype=np.float64)
    a, b = c @ est.T, c @ true.T
    return float(np.linalg.norm(a[:, :2] / a[:, 2:] - b[:, :2] / b[:, 2:], axis=1).mean())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1500×1000, 2 pairs, 1 round without warm-up")
    parser.add_argument("--pairs", type=int, default=None, help="pairs for the prepare_dped run (default 4)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds of the single-pair figures")
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default benchmarks/results/…)")
    args = parser.parse_args(argv)
    size = (1500, 1000) if args.quick else (3000, 2000)
    n_pairs = args.pairs or (2 if args.quick else 4)
    repeats = args.repeats or (1 if args.quick else 2)
    warmup = 0 if args.quick else 1
    env = harness.environment()
    print(f"DPED alignment speed: {env['threads']} torch threads, {env['cpu_count']} CPUs, allocator "
          f"{env['allocator']}, OpenCV {cv2.__version__}, load {env['load_average']}")

    rng = np.random.default_rng(0)
    phone, dslr, true_h = render_pair(load_photo("astronaut"), size, rng)
    last: dict[str, Any] = {}

    def align() -> None:
        last["al"] = align_pair(phone, dslr)

    def pipeline() -> None:
        al = align_pair(phone, dslr)
        t1 = time.perf_counter()
        pa, dc = warp_to_common(phone, dslr, al)
        t2 = time.perf_counter()
        _, _, stats = extract_patch_pairs(pa, dc)
        t3 = time.perf_counter()
        last["parts"] = {"warp_ms": 1000 * (t2 - t1), "patches_ms": 1000 * (t3 - t2),
                         "common_size": list(pa.shape[1::-1]), "n_candidates": stats.n_candidates,
                         "n_kept": stats.n_kept}

    with harness.LoadWatch() as load:
        with harness.LoadWatch() as single_load:
            results = harness.interleave({"align_pair": align, "pipeline": pipeline}, repeats, warmup)
        al, parts = last["al"], last["parts"]
        assert al is not None and al.ok, al.reason if al else "no alignment"
        results["pipeline"].update(parts)
        single = harness.comparison(
            results, BASELINE, single_load, what=f"one pair, DSLR {size[0]}x{size[1]}, phone "
                                                 f"{al.phone_size[0]}x{al.phone_size[1]}, ms per pair",
            dslr_size=list(size), phone_size=list(al.phone_size), n_matches=al.n_matches, n_inliers=al.n_inliers,
            reprojection_error_px=al.reprojection_error,
            corner_error_px=_corner_error(al.homography, true_h, al.phone_size))
        print(f"single pair, DSLR {size[0]}×{size[1]}, phone {al.phone_size[0]}×{al.phone_size[1]}: "
              f"{al.n_inliers}/{al.n_matches} inliers, RMS {al.reprojection_error:.2f} px, corner error "
              f"{single['corner_error_px']:.2f} px; pipeline: warp {parts['warp_ms']:.0f} ms, patches "
              f"{parts['patches_ms']:.0f} ms, {parts['n_kept']}/{parts['n_candidates']} patches kept")
        print(harness.table(single, unit="s"))

        with tempfile.TemporaryDirectory() as tmp, harness.LoadWatch() as batch_load:
            t0 = time.perf_counter()
            raw = write_phone_dslr_pairs(Path(tmp) / "raw", n_pairs=n_pairs, size=size, seed=1)
            render_s = time.perf_counter() - t0
            rep = prepare_dped(raw / "phone", raw / "dslr", Path(tmp) / "out", n_full_test=0, test_fraction=0.0,
                               workers=args.workers, progress=False)
    n_ok = sum(1 for r in rep.rows if r["ok"])
    per_pair = [r["seconds"] for r in rep.rows if r["seconds"] is not None]
    batch = {"mean_worker_s_per_pair": float(np.mean(per_pair)), "n_pairs": n_pairs, "n_aligned": n_ok,
             "workers": args.workers, "seconds": rep.seconds, "pairs_per_s": n_pairs / rep.seconds,
             "n_train_patches": rep.n_train_patches, "render_pairs_s": render_s, "load": batch_load.record}
    print(f"prepare_dped: {n_pairs} pairs ({n_ok} aligned) with {args.workers} workers in {rep.seconds:.1f} s "
          f"= {batch['pairs_per_s']:.3f} pairs/s incl. process start-up, {rep.n_train_patches} patch pairs; "
          f"{batch['mean_worker_s_per_pair']:.2f} s per pair inside a worker (read + align + cut + write)")

    payload = {
        "environment": env, "load": load.record, "quick": args.quick,
        "settings": {"dslr_size": list(size), "repeats": repeats, "warmup": warmup, "baseline": BASELINE,
                     "opencv": cv2.__version__, "prepare_pairs": n_pairs, "workers": args.workers},
        "comparisons": {"single_pair": single},
        "prepare_dped": batch,
    }
    harness.write_result("dped_alignment_speed", payload, args.out)
    return payload


if __name__ == "__main__":
    main()
