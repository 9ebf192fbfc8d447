"""torchmetrics ``Metric`` classes: per-image averages, correct under DDP; their pure functions are in
:mod:`metrics.functional` (torchmetrics' split). ``metrics`` does not import ``losses``: losses derive from
metrics (:mod:`losses.mef_ssim`), and what both need is in :mod:`imaging`."""
