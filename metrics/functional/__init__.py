"""Metrics as pure functions (torchmetrics' ``functional`` split): tensors in, per-image scores out, no state.

* :mod:`metrics.functional.mef_ssim` — MEF-SSIM (also DeepFuse's loss, :mod:`losses.mef_ssim`).
* :mod:`metrics.functional.fusion` — the image-fusion metrics of the CDDFuse evaluator (public functions),
  on the 0–255 float64 implementations of :mod:`metrics.functional.fusion_core`.

The ``Metric`` classes that average them over a test set are in :mod:`metrics` (``metrics.mef_ssim``,
``metrics.fusion``).
"""
