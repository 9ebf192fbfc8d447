"""What every loss of :mod:`losses` shares: the float32-under-autocast rule, the reduction and the shape check.

* :func:`fp32` — the decorator every functional loss wears: autocast off, tensor arguments in float32.
* :func:`reduce` / :func:`check_reduction` — ``"mean"`` | ``"sum"`` | ``"none"`` (:data:`Reduction`).
* :func:`check_tensor` — type, rank, fixed sizes, same shape as another input, minimum spatial size, with
  error messages that name the function, the argument, the expected layout and the shape received.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, Literal, ParamSpec, TypeVar

import torch
from torch import Tensor

from imaging.precision import autocast_off

__all__ = ["REDUCTIONS", "Reduction", "check_reduction", "check_tensor", "fp32", "reduce"]

Reduction = Literal["mean", "sum", "none"]
#: The values of :data:`Reduction`.
REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")

_P = ParamSpec("_P")
_T = TypeVar("_T")


def fp32(*, keep_float64: bool = False) -> Callable[[Callable[_P, _T]], Callable[_P, _T]]:
    """Decorator: run a loss with autocast disabled and its tensor arguments in float32.

    The wrapped function runs under :func:`imaging.precision.autocast_off` on the device of its first tensor
    argument (``"cpu"`` if it has none, e.g. a wrong-type input that its own check then refuses), and gets
    every tensor argument, positional or keyword, as ``t.float()`` (a no-op for float32); with
    ``keep_float64=True`` float64 tensors are kept as they are (the loss then runs in float64 for float64
    inputs). Other arguments (modules, numbers, strings) pass unchanged. So a loss gives the same value
    and gradient inside a ``bf16-mixed`` / ``16-mixed`` Lightning step as outside it
    (``tests/test_device_agnostic.py`` checks bit-equality).

    Example:
        >>> @fp32()
        ... def square_sum(x: Tensor) -> Tensor:
        ...     return (x @ x.T).sum()
        >>> with torch.autocast("cpu", dtype=torch.bfloat16):
        ...     square_sum(torch.ones(2, 3, dtype=torch.bfloat16)).dtype
        torch.float32
    """
    kept = (torch.float32, torch.float64) if keep_float64 else (torch.float32,)

    def cast(value: Any) -> Any:
        return value if not isinstance(value, Tensor) or value.dtype in kept else value.float()

    def decorate(fn: Callable[_P, _T]) -> Callable[_P, _T]:
        @functools.wraps(fn)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
            first = next((v for v in (*args, *kwargs.values()) if isinstance(v, Tensor)), None)
            with autocast_off(first.device.type if first is not None else "cpu"):
                return fn(*(cast(a) for a in args), **{k: cast(v) for k, v in kwargs.items()})  # type: ignore[arg-type]

        return wrapper

    return decorate


def check_reduction(reduction: str) -> None:
    """Raise ``ValueError`` unless ``reduction`` is one of :data:`REDUCTIONS`.

    Example:
        >>> check_reduction("avg")
        Traceback (most recent call last):
        ...
        ValueError: reduction: expected 'mean', 'sum' or 'none', got 'avg'
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected 'mean', 'sum' or 'none', got {reduction!r}")


def reduce(x: Tensor, reduction: Reduction) -> Tensor:
    """``x.mean()`` | ``x.sum()`` | ``x`` for ``reduction`` = ``"mean"`` | ``"sum"`` | ``"none"``.

    Example:
        >>> reduce(torch.tensor([1.0, 2.0, 6.0]), "mean")
        tensor(3.)
    """
    check_reduction(reduction)
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    return x


def check_tensor(
    x: object,
    name: str,
    layout: str,
    *,
    ndim: int,
    sizes: Mapping[int, int] | None = None,
    what: str = "",
    same_as: tuple[str, Tensor] | None = None,
    min_size: int = 0,
    min_size_reason: str = "minimum",
) -> None:
    """Check one input of a loss; the error names ``name`` (e.g. ``"color_loss(target)"``) and ``layout``.

    Args:
        x: the input.
        name: the function and argument, as it should appear in the message.
        layout: the expected layout, e.g. ``"N×3×H×W"``.
        ndim: the expected number of dimensions.
        sizes: ``{dim: size}`` that must hold (e.g. ``{1: 3}`` for RGB).
        what: a description put before the layout in the shape error (``"an RGB batch"``).
        same_as: ``(other_name, other)``: ``x`` must have the shape of ``other``.
        min_size: H and W (the last two dims) must be at least this.
        min_size_reason: what the minimum is, completing "smaller than the m×m …".

    Raises:
        TypeError: ``x`` is not a tensor.
        ValueError: wrong rank or size, a different shape than ``other``, or too small.

    Example:
        >>> check_tensor(torch.zeros(1, 4, 8, 8), "f(x)", "N×3×H×W", ndim=4, sizes={1: 3}, what="an RGB batch")
        Traceback (most recent call last):
        ...
        ValueError: f(x): expected an RGB batch N×3×H×W, got shape (1, 4, 8, 8)
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor {layout}, got {type(x).__name__}")
    shape = tuple(x.shape)
    if x.ndim != ndim or any(shape[d] != n for d, n in (sizes or {}).items()):
        raise ValueError(f"{name}: expected {what + ' ' if what else ''}{layout}, got shape {shape}")
    if same_as is not None and shape != tuple(same_as[1].shape):
        raise ValueError(
            f"{name}: shapes differ: {shape} vs {same_as[0]} {tuple(same_as[1].shape)}; expected the same shape"
        )
    if min_size and (shape[-2] < min_size or shape[-1] < min_size):
        raise ValueError(
            f"{name}: image {shape[-2]}×{shape[-1]} is smaller than the {min_size}×{min_size} {min_size_reason}"
        )
