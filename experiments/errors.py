"""What the ``darkroom`` command prints for a user error: one line, not a traceback.

A user error is bad input that the message fully explains: a dataset folder in the wrong layout, an unreadable image,
a wrong or broken weights file, missing files, a sweep file's mistake, a prediction that would overwrite files, a run
stopped on a non-finite loss or metric, or an image too large for the memory. Everything else is a programming error
and keeps its traceback. ``--debug`` (or ``DARKROOM_DEBUG=1``) shows the traceback of user errors too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

DEBUG_ENV = "DARKROOM_DEBUG"


def user_error_types() -> tuple[type[BaseException], ...]:
    """The exception classes that are user errors (imported here, late, to keep ``darkroom --help`` fast)."""
    from datamodules.image_files import DatasetLayoutError
    from datamodules.image_reading import ImageReadError
    from experiments.callbacks import NonFiniteMetricError
    from experiments.nonfinite_guard import NonFiniteLossError
    from experiments.prediction_writer import UnsafeOutputError
    from experiments.sweep_config import SweepConfigError
    from lightning_modules.memory import NotEnoughMemoryError
    from networks.weight_files import WeightFileError

    return (DatasetLayoutError, ImageReadError, WeightFileError, SweepConfigError, UnsafeOutputError,
            NonFiniteMetricError, NonFiniteLossError, NotEnoughMemoryError, FileNotFoundError)


def run_reporting_user_errors(main: Callable[[list[str]], Any], argv: list[str]) -> Any:
    """``main(argv)``; a user error prints ``darkroom: error: <message>`` (its first line) and exits with status 1.
    ``--debug`` in ``argv`` (removed before ``main`` sees it) or ``DARKROOM_DEBUG=1`` re-raises it instead."""
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    if debug:
        return main(argv)
    try:
        return main(argv)
    except user_error_types() as err:
        message = str(err).strip() or type(err).__name__
        if isinstance(err, FileNotFoundError) and err.filename and str(err.filename) not in message:
            message = f"{err.filename}: {message}"
        first, *rest = message.splitlines()
        more = " (more with --debug)" if rest else ""
        print(f"darkroom: error: {first}{more}", file=sys.stderr)
        raise SystemExit(1) from None
