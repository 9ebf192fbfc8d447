"""``darkroom prepare``: build datasets in their real on-disk layouts.

    darkroom prepare synthetic --out data/synthetic        # every synthetic dataset the demo/tests use
    darkroom prepare dped --phone DIR --dslr DIR --out DIR  # SIFT + RANSAC alignment → DPED patch layout
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="darkroom prepare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    syn = sub.add_parser("synthetic", help="write the synthetic datasets")
    syn.add_argument("--out", type=Path, default=Path("data/synthetic"))
    syn.add_argument("--seed", type=int, default=0)
    dped = sub.add_parser("dped", help="align raw phone/DSLR pairs and cut DPED patches")
    dped.add_argument("--phone", required=True, help="folder of phone photos")
    dped.add_argument("--dslr", required=True, help="folder of DSLR photos (same file stems)")
    dped.add_argument("--out", required=True, help="output root; writes <out>/<phone_name>/...")
    dped.add_argument("--phone-name", default="iphone", choices=["iphone", "sony", "blackberry"])
    dped.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    dped.add_argument("--seed", type=int, default=0)
    dped.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    args = parser.parse_args(argv)
    if args.what == "synthetic":
        from datamodules.synthetic.sice import write_sice

        print(write_sice(args.out / "sice", seed=args.seed))
    else:
        from experiments.prepare_dped import prepare_dped

        report = prepare_dped(args.phone, args.dslr, args.out, phone=args.phone_name,
                              workers=args.workers, seed=args.seed, overwrite=args.overwrite)
        print(report.summary())
