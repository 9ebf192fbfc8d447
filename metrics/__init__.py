"""torchmetrics ``Metric`` classes: per-image averages, correct under DDP."""
