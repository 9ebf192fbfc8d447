"""Speed of the DPED alignment pipeline (datamodules/alignment.py) on synthetic phone/DSLR pairs.

Measures, on a pair with a 3000×2000 DSLR image (phone at 0.75× = 2250×1500):

* ``align_pair`` seconds per pair (SIFT + ratio test + RANSAC, matching downscale to 1600 px);
* the full per-pair pipeline: align + ``warp_to_common`` + ``extract_patch_pairs`` (100×100, ±4 px);
* pairs/s of ``prepare_dped`` on several such pairs with all cores (reads JPEGs, writes the layout).

Also reports the corner error against the true homography. Prints the figures and writes
``benchmarks/results/dped_alignment_speed.json``. Not a test.

Usage: ``python benchmarks/dped_alignment_speed.py [--quick] [--pairs N] [--workers N]``
(``--quick``: 1500×1000, 2 pairs; default ≈ 1–3 min on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datamodules.alignment import align_pair, extract_patch_pairs, prepare_dped, warp_to_common  # noqa: E402
from datamodules.synthetic.dped_pairs import render_pair, write_phone_dslr_pairs  # noqa: E402
from datamodules.synthetic.photos import load_photo  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "dped_alignment_speed.json"


def _corner_error(est: np.ndarray, true: np.ndarray, size: tuple[int, int]) -> float:
    w, h = size
    c = np.array([[0, 0, 1], [w - 1, 0, 1], [w - 1, h - 1, 1], [0, h - 1, 1]], dtype=np.float64)
    a, b = c @ est.T, c @ true.T
    return float(np.linalg.norm(a[:, :2] / a[:, 2:] - b[:, :2] / b[:, 2:], axis=1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1500×1000 and 2 pairs")
    parser.add_argument("--pairs", type=int, default=None, help="pairs for the prepare_dped run (default 4)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats of the single-pair figures")
    args = parser.parse_args()
    size = (1500, 1000) if args.quick else (3000, 2000)
    n_pairs = args.pairs or (2 if args.quick else 4)
    repeats = args.repeats or (1 if args.quick else 2)

    rng = np.random.default_rng(0)
    phone, dslr, true_h = render_pair(load_photo("astronaut"), size, rng)
    align_s, full_s, parts = [], [], {}
    al = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        al = align_pair(phone, dslr)
        t1 = time.perf_counter()
        pa, dc = warp_to_common(phone, dslr, al)
        t2 = time.perf_counter()
        pp, _, stats = extract_patch_pairs(pa, dc)
        t3 = time.perf_counter()
        align_s.append(t1 - t0)
        full_s.append(t3 - t0)
        parts = {"warp_s": t2 - t1, "patches_s": t3 - t2, "common_size": list(pa.shape[1::-1]),
                 "n_candidates": stats.n_candidates, "n_kept": stats.n_kept}
    assert al is not None and al.ok, al.reason if al else "no alignment"
    single = {"dslr_size": list(size), "phone_size": list(al.phone_size), "align_pair_s": min(align_s),
              "pipeline_s": min(full_s), "n_matches": al.n_matches, "n_inliers": al.n_inliers,
              "reprojection_error_px": al.reprojection_error,
              "corner_error_px": _corner_error(al.homography, true_h, al.phone_size), **parts}
    print(f"single pair, DSLR {size[0]}×{size[1]}, phone {al.phone_size[0]}×{al.phone_size[1]}:")
    print(f"  align_pair      {single['align_pair_s']:.2f} s  ({al.n_inliers}/{al.n_matches} inliers, "
          f"RMS {al.reprojection_error:.2f} px, corner error {single['corner_error_px']:.2f} px)")
    print(f"  full pipeline   {single['pipeline_s']:.2f} s  (warp {parts['warp_s']:.2f} s, patches "
          f"{parts['patches_s']:.2f} s, {parts['n_kept']}/{parts['n_candidates']} patches kept)")

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        raw = write_phone_dslr_pairs(Path(tmp) / "raw", n_pairs=n_pairs, size=size, seed=1)
        render_s = time.perf_counter() - t0
        rep = prepare_dped(raw / "phone", raw / "dslr", Path(tmp) / "out", n_full_test=0, test_fraction=0.0,
                           workers=args.workers, progress=False)
    n_ok = sum(1 for r in rep.rows if r["ok"])
    per_pair = [r["seconds"] for r in rep.rows if r["seconds"] is not None]
    batch = {"mean_worker_s_per_pair": float(np.mean(per_pair)),"n_pairs": n_pairs, "n_aligned": n_ok, "workers": args.workers, "seconds": rep.seconds,
             "pairs_per_s": n_pairs / rep.seconds, "n_train_patches": rep.n_train_patches,
             "render_pairs_s": render_s}
    print(f"prepare_dped: {n_pairs} pairs ({n_ok} aligned) with {args.workers} workers in {rep.seconds:.1f} s "
          f"= {batch['pairs_per_s']:.3f} pairs/s incl. process start-up, {rep.n_train_patches} patch pairs; "
          f"{batch['mean_worker_s_per_pair']:.2f} s per pair inside a worker (read + align + cut + write)")

    result = {"benchmark": "dped_alignment_speed", "quick": args.quick, "single_pair": single, "prepare_dped": batch,
              "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "opencv": cv2.__version__,
                          "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                          "loadavg": list(os.getloadavg())}}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
