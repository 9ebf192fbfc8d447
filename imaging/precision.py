"""Numeric-precision helpers shared by the losses and the metrics (which must not import each other).

:func:`autocast_off` is how every loss (:mod:`losses`) and metric (:mod:`metrics`) computes in float32 / float64
inside a ``bf16-mixed`` / ``16-mixed`` Lightning step.
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["autocast_off"]


def autocast_off(device_type: str) -> contextlib.AbstractContextManager:
    """``torch.autocast(device_type, enabled=False)``, or a no-op for a device type autocast does not know.

    ``torch.autocast`` raises ``RuntimeError: unsupported scalarType`` for ``"meta"`` (no autocast dtype), so a
    loss that disables autocast on its input's device could not run on meta tensors (the device-agnostic
    tests, ``tests/test_device_agnostic.py``, run every loss there). No autocast can be active for such a
    device, so there is nothing to disable.

    Args:
        device_type: ``tensor.device.type`` of the inputs (``"cpu"``, ``"cuda"``, ``"meta"``, …).

    Example:
        >>> x = torch.ones(2, 2)
        >>> with torch.autocast("cpu", dtype=torch.bfloat16), autocast_off(x.device.type):
        ...     (x @ x).dtype
        torch.float32
    """
    is_available = getattr(torch.amp, "is_autocast_available", None)  # torch ≥ 2.4
    if is_available is not None and not is_available(device_type):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, enabled=False)
