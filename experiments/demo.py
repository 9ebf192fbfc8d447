"""``darkroom demo``: the main jobs end to end on embedded synthetic data, on a CPU, in minutes.

For each paper in :data:`experiments.demos.PARTS`: write a synthetic dataset in the real layout
(from scikit-image's bundled photos), train briefly with the real DataModule and LightningModule,
test, and print a table against a trivial baseline plus the paths of images to look at.
The default lengths take under 3 minutes on 2 idle CPU cores; ``--full`` trains each part as long as its
``experiments/<paper>/demo.yaml`` says and adds a local sweep (several minutes); ``--quick`` is a smoke test.
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

from experiments.demos import DEFAULT_PARTS, PARTS


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="darkroom demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)")
    parser.add_argument("--only", nargs="*", choices=PARTS, default=None,
                        help=f"run only these parts (default: {' '.join(DEFAULT_PARTS)}; with --full or --quick "
                             f"also sweep)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--full", action="store_const", const="full", dest="length", default="default",
                        help="train each part as long as its experiments/<paper>/demo.yaml (several minutes)")
    length.add_argument("--quick", action="store_const", const="quick", dest="length",
                        help="tiny data and few steps: a smoke test of the pipeline (the checks are not enforced)")
    args = parser.parse_args(argv)
    if args.only is None:
        args.only = list(DEFAULT_PARTS if args.length == "default" else PARTS)
    t0 = time.time()
    results = []
    for name in args.only:
        part = importlib.import_module(f"experiments.demos.{name}")
        t = time.time()
        results.append(part.run(args.out, args.length))
        print(f"[demo] {name} done in {time.time() - t:.0f} s")
    failures = []
    for res in results:
        print(f"\n## {res.title}\n\n{res.table}\n")
        for label, path in res.files.items():
            print(f"{label}: {path}")
        if not res.ok:
            failures.append(res.failure)
    print(f"\ndemo finished in {time.time() - t0:.0f} s")
    if failures:
        raise SystemExit("demo: " + "; ".join(failures) + " — this is a bug, please report it")
