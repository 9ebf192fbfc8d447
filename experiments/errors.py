"""What the ``darkroom`` command prints for a user error: one line, not a traceback.

A user error is bad input that the message fully explains: a dataset folder in the wrong layout, an unreadable image,
a wrong or broken weights file, missing files, a sweep file's mistake, a prediction that would overwrite files, a run
stopped on a non-finite loss or metric, or an image too large for the memory. Everything else is a programming error
and keeps its traceback. ``--debug`` (or ``DARKROOM_DEBUG=1``) shows the traceback of user errors too.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterable
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
        from experiments.env import environment_set

        with environment_set(**{DEBUG_ENV: "1"}):  # the config parser reads it too (experiments.lightning_cli)
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


def config_error_line(message: str, options: Iterable[str] = ()) -> str:
    """One line for a jsonargparse error message: its first line and, for a nested block, its most specific line;
    for an unknown argument, the nearest valid one (``did you mean``).

    ``options``: the parser's own option strings (``--trainer.max_epochs`` …), for unrecognised top-level arguments.

    Example:
        >>> print(config_error_line('Parser key "data":\\n  Errors:\\n    - Problem with given class_path '
        ...                         "'datamodules.sice.SICEDataModule':\\n        Option 'trian_root' is not accepted"))
        Parser key "data": Option 'trian_root' is not accepted; did you mean --data.init_args.train_root?
    """
    lines = [ln.strip().lstrip("- ").strip() for ln in message.strip().splitlines() if ln.strip()]
    first = lines[0] if lines else message.strip()
    noise = ("Does not validate", "Subtypes", "Errors:", "Given value", "Expected a <class 'NoneType'>",
             "Problem with given class_path")
    specific = [ln for ln in lines[1:] if not ln.startswith(noise)]
    line = f"{first} {specific[0]}" if specific else first
    suggestion = None
    unknown = re.search(r"Option '([\w.]+)' is not accepted", message)
    owner = re.search(r"class_path '([\w.]+)'", message)
    section = re.search(r'Parser key "(\w+)"', message)
    if unknown and owner:
        module, _, name = owner.group(1).rpartition(".")
        try:
            params = inspect.signature(getattr(importlib.import_module(module), name).__init__).parameters
        except (ImportError, AttributeError, ValueError, TypeError):
            params = {}
        match = difflib.get_close_matches(unknown.group(1), [p for p in params if p != "self"], n=1)
        prefix = f"--{section.group(1)}.init_args." if section else "--"
        suggestion = f"{prefix}{match[0]}" if match else None
    else:
        unrecognised = re.search(r"unrecognized arguments: (--[\w.]+)", message, re.IGNORECASE)
        if unrecognised:
            match = difflib.get_close_matches(unrecognised.group(1).split("=")[0], list(options), n=1)
            suggestion = match[0] if match else None
    return line + (f"; did you mean {suggestion}?" if suggestion else "")
