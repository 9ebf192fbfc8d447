"""The ``darkroom`` command.

``darkroom fit|validate|test|predict`` are LightningCLI subcommands (``--print_config`` works):
models and datamodules are chosen by ``class_path`` in the YAML configs under ``experiments/``.
Every run gets a run directory ``runs/<paper>/<name>/`` with a CSV log, the resolved config,
checkpoints and a W&B run (offline when no account is configured). ``test`` writes
``results.json`` there; ``predict`` writes one PNG per input image.

Other subcommands (plain argparse): ``help``, ``demo``, ``prepare``, ``sweep``, ``table``, ``compare``, ``reproduce``.

Examples::

    darkroom fit -c experiments/zero_dce/paper.yaml --data.init_args.train_root my_data/lowlight/train
    darkroom fit -c experiments/zero_dce/paper.yaml --ckpt_path runs/zero_dce/<run>/checkpoints/last.ckpt
    darkroom test -c experiments/zero_dce/paper.yaml --ckpt_path runs/zero_dce/<run>/checkpoints/last.ckpt
    darkroom predict -c experiments/zero_dce/paper.yaml --model.init_args.pretrained Epoch99.pth \\
        --data.init_args.predict_root my_photos --run.output_dir enhanced
    darkroom demo
"""

from __future__ import annotations

import os
import sys
from typing import Any

from experiments.env import configure_environment

configure_environment()


def cli_main(args: list[str] | None = None, run: bool = True) -> Any:
    """Run a LightningCLI subcommand in-process (used by ``demo``, sweeps and the tests); returns the CLI."""
    from experiments.lightning_cli import DarkroomCLI

    return DarkroomCLI(args=args, run=run)


#: the plain-argparse subcommands: name → module of ``experiments`` with a ``main(argv)`` (imported only when chosen)
EXTRA_COMMANDS: dict[str, str] = {"demo": "demo", "prepare": "prepare", "sweep": "sweep", "table": "table",
                                  "compare": "compare", "reproduce": "reproduce", "help": "paper_help"}

OVERVIEW = ("darkroom: fit | validate | test | predict (LightningCLI; see `darkroom fit --help`)\n"
            "          help PAPER  a paper's own model and data arguments and an example "
            "(zero_dce, zero_dce_pp, deepfuse, dped, refusion)\n"
            "          demo     run the main job end to end on synthetic data (CPU, minutes)\n"
            "          prepare  build datasets: `darkroom prepare synthetic|dped --help`\n"
            "          sweep    run a W&B sweep YAML (registered, or --local)\n"
            "          table    the paper's tables with our numbers beside them\n"
            "          compare  one HTML report comparing run directories\n"
            "          reproduce  train a paper's recipe on real data and compare with the official model\n"
            "--debug   the traceback of a user error (bad data, weights or config), which prints one line "
            "otherwise; or DARKROOM_DEBUG=1\n"
            "environment: DARKROOM_ALLOCATOR=auto (default: jemalloc/tcmalloc when installed) | jemalloc | "
            "tcmalloc | glibc | system\n")


_OVERVIEW_SHOWN = "_DARKROOM_OVERVIEW_SHOWN"


def _print_overview() -> None:
    try:
        print(OVERVIEW, flush=True)
    except BrokenPipeError:  # `darkroom --help | head -1`
        sys.stderr.close()
        raise SystemExit(0) from None


def main(argv: list[str] | None = None) -> None:
    """Console entry point of ``darkroom``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):  # at once: nothing heavy is imported for the overview
        if os.environ.pop(_OVERVIEW_SHOWN, None) is None:  # not the allocator re-exec of the process that printed it
            _print_overview()
            os.environ[_OVERVIEW_SHOWN] = "1"
        if not args:
            return
    if argv is None:  # the console entry point: run with a caching allocator (experiments/allocator.py)
        from experiments.allocator import reexec

        reexec()
    os.environ.pop(_OVERVIEW_SHOWN, None)  # no re-exec happened: the mark is for that only
    from experiments.errors import run_reporting_user_errors

    run_reporting_user_errors(_dispatch, args)


def _dispatch(argv: list[str]) -> None:
    if argv and argv[0] in EXTRA_COMMANDS:
        import importlib

        importlib.import_module(f"experiments.{EXTRA_COMMANDS[argv[0]]}").main(argv[1:])
        return
    from experiments.sweep_config import map_config_paths, suite_config

    cli_main(map_config_paths(argv, suite_config))


if __name__ == "__main__":
    main()
