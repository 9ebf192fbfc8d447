"""The ``darkroom`` command.

``darkroom fit|validate|test|predict`` are LightningCLI subcommands (``--print_config`` works):
models and datamodules are chosen by ``class_path`` in the YAML configs under ``experiments/``.
Every run gets a run directory ``runs/<paper>/<name>/`` with a CSV log, the resolved config,
checkpoints and a W&B run (offline when no account is configured). ``test`` writes
``results.json`` there; ``predict`` writes one PNG per input image.

Other subcommands (plain argparse): ``demo``, ``prepare``, ``sweep``, ``table``, ``compare``, ``reproduce``.

Examples::

    darkroom fit -c experiments/zero_dce/paper.yaml --data.init_args.train_root data/lowlight/train
    darkroom fit -c experiments/zero_dce/paper.yaml --ckpt_path runs/zero_dce/<run>/checkpoints/last.ckpt
    darkroom test -c experiments/zero_dce/paper.yaml --ckpt_path runs/zero_dce/<run>/checkpoints/last.ckpt
    darkroom predict -c experiments/zero_dce/paper.yaml --model.init_args.pretrained Epoch99.pth \\
        --data.init_args.predict_root my_photos --run.output_dir enhanced
    darkroom demo
"""

from __future__ import annotations

import sys
from typing import Any

from experiments.env import configure_environment

configure_environment()


def cli_main(args: list[str] | None = None, run: bool = True) -> Any:
    """Run a LightningCLI subcommand in-process (used by ``demo``, sweeps and the tests); returns the CLI."""
    from experiments.lightning_cli import DarkroomCLI

    return DarkroomCLI(args=args, run=run)


def _extra_commands() -> dict[str, Any]:
    from experiments import compare, demo, paper_help, prepare, reproduce, sweep, table

    return {"demo": demo.main, "prepare": prepare.main, "sweep": sweep.main, "table": table.main,
            "compare": compare.main, "reproduce": reproduce.main, "help": paper_help.main}


def main(argv: list[str] | None = None) -> None:
    """Console entry point of ``darkroom``."""
    if argv is None:  # the console entry point: run with a caching allocator (experiments/allocator.py)
        from experiments.allocator import reexec

        reexec()
    argv = list(sys.argv[1:] if argv is None else argv)
    from experiments.errors import run_reporting_user_errors

    run_reporting_user_errors(_dispatch, argv)


def _dispatch(argv: list[str]) -> None:
    extra = _extra_commands()
    if argv and argv[0] in extra:
        extra[argv[0]](argv[1:])
        return
    if argv and argv[0] in ("-h", "--help"):
        print("darkroom: fit | validate | test | predict (LightningCLI; see `darkroom fit --help`)\n"
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
    from experiments.sweep_config import map_config_paths, suite_config

    cli_main(map_config_paths(argv, suite_config))


if __name__ == "__main__":
    main()
