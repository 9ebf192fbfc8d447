"""The parts of the prepared GPU check; ``benchmarks/gpu_check.py`` is its entry point and its docstring documents
the run (stages, output, time).

:mod:`~benchmarks.gpu.common` (paths, papers, tables), :mod:`~benchmarks.gpu.payload` (``prepare`` and the data
root), :mod:`~benchmarks.gpu.run` (a run's state and JSON report), one module per stage
(:mod:`~benchmarks.gpu.parity`, :mod:`~benchmarks.gpu.inference`, :mod:`~benchmarks.gpu.fit`,
:mod:`~benchmarks.gpu.zero_dce_recipe`) and what the fits are built from (:mod:`~benchmarks.gpu.recipes`,
:mod:`~benchmarks.gpu.batches`).
"""
