"""The docstring examples of every module of ``losses`` and ``metrics`` run as doctests (tiny tensors, ~1 s)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from collections.abc import Iterator

import pytest
import torch
from torch import nn

import losses
import metrics

MODULES = sorted(
    m.name for pkg in (losses, metrics) for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")
)
#: Modules whose public API must carry examples (the others may have none, e.g. the NIQE model fetcher).
WITH_EXAMPLES = {
    "losses._common", "losses.dped", "losses.mef_ssim", "losses.refusion", "losses.zero_dce",
    "metrics.dped", "metrics.full_reference", "metrics.functional.fusion", "metrics.functional.mef_ssim",
    "metrics.fusion", "metrics.mef_ssim", "metrics.no_reference",
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = [t for t in finder.find(module, globs={**vars(module), "torch": torch, "nn": nn}) if t.examples]
    if name in WITH_EXAMPLES:
        assert tests, f"{name}: no docstring examples found"
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed (output above)"


def test_every_example_module_exists() -> None:
    assert WITH_EXAMPLES <= set(MODULES)
