"""Opt-in speed options for ``test`` and ``predict``: bf16 networks, channels_last, ``torch.compile``.

By default every network runs in fp32, contiguous, eager: the numbers a results table reports. Three options trade
exactness for speed, each chosen by name on the command line (``--run.eval_precision bf16``,
``--run.channels_last true``, ``--run.compile true``; see :mod:`experiments.lightning_cli`) and recorded in
``results.json``:

* ``precision="bf16"``: the networks' forward passes run under ``torch.autocast(<device>, torch.bfloat16)``, whatever
  precision training used; their outputs are cast back to fp32 before anything else (curve application of
  Zero-DCE stays in fp32 because its input image is fp32; metrics, colour conversion and normalisation are fp32).
* ``channels_last=True``: the networks' 4-D parameters (and Zero-DCE's input) in ``torch.channels_last``, the
  layout oneDNN's and cuDNN's fastest convolutions use. PyTorch's convolution follows the weight's layout.
* ``compile=True``: each paper's hot path through ``torch.compile(dynamic=True)`` (no recompilation per image
  size): Zero-DCE's curve-map network and curve iterations (8 full-resolution elementwise passes fused into one
  kernel), ReFusion's fusion network F. The first image pays the compilation (tens of seconds on a CPU).

What each pays, measured per paper, is in ``benchmarks/results/inference_options.json``; the tests compare each
option with fp32 at a stated tolerance (``tests/test_inference_options.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

InferencePrecision = Literal["32", "bf16"]


@dataclass(frozen=True)
class InferenceOptions:
    """How ``test``/``predict`` run the networks (defaults: exact fp32, eager, contiguous)."""

    precision: InferencePrecision = "32"
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        if self.precision not in ("32", "bf16"):
            raise ValueError(f"inference precision must be '32' or 'bf16', got {self.precision!r}")

    @property
    def exact(self) -> bool:
        """True for the default: results equal to the fp32 eager ones (channels_last and compile change the
        summation order: equal to float rounding, not bit for bit)."""
        return self == InferenceOptions()

    @property
    def enabled(self) -> set[str]:
        """The options turned on, by the names ``inference_not_offered`` uses: ``bf16``, ``channels_last``, ``compile``."""
        on = {"bf16": self.precision == "bf16", "channels_last": self.channels_last, "compile": self.compile}
        return {k for k, v in on.items() if v}

    def record(self) -> dict[str, Any]:
        """What ``results.json`` stores."""
        return asdict(self)


class FastInference:
    """Mixin for the papers' LightningModules: :meth:`configure_inference` once, then the inference code paths
    call their networks through :meth:`network` inside :meth:`inference_autocast` and cast with :meth:`to_fp32`.

    A subclass lists its inference networks in :meth:`inference_networks`.
    """

    inference: InferenceOptions = InferenceOptions()

    def inference_networks(self) -> Iterable[nn.Module]:
        """The networks test/predict run (channels_last applies to their parameters)."""
        raise NotImplementedError

    #: option name → why this paper does not offer it (measured); see each module
    inference_not_offered: dict[str, str] = {}

    def configure_inference(self, options: InferenceOptions | None = None, **kwargs: Any) -> None:
        """Set the options (an :class:`InferenceOptions`, or its fields as keywords); an option the paper does not
        offer (:attr:`inference_not_offered`) raises ``ValueError`` with the reason."""
        options = options or InferenceOptions(**kwargs)
        refused = sorted(options.enabled & set(self.inference_not_offered))
        if refused:
            raise ValueError(f"{type(self).__name__}: inference option {refused[0]} is not offered: "
                             f"{self.inference_not_offered[refused[0]]}")
        self.inference = options
        self.__dict__["_compiled"] = {}
        fmt = torch.channels_last if options.channels_last else torch.contiguous_format
        for net in self.inference_networks():
            for p in net.parameters():
                if p.ndim == 4:
                    p.data = p.data.contiguous(memory_format=fmt)

    def inference_autocast(self) -> Any:
        """``torch.autocast`` in bf16 on this module's device when ``precision="bf16"``, else a no-op."""
        if self.inference.precision != "bf16":
            return nullcontext()
        device = next(iter(self.parameters())).device.type  # type: ignore[attr-defined]
        return torch.autocast(device, dtype=torch.bfloat16)

    def network(self, net: Callable, key: str | None = None) -> Callable:
        """``net``, or its compiled form when ``compile`` is on (compiled once per ``key``, default its id)."""
        if not self.inference.compile:
            return net
        cache: dict = self.__dict__.setdefault("_compiled", {})
        key = key or str(id(net))
        if key not in cache:
            cache[key] = torch.compile(net, dynamic=True)
        return cache[key]

    def inference_call(self, net: Callable, key: str | None = None) -> Callable:
        """``net`` as test/predict run it: compiled (:meth:`network`), under bf16 autocast with its output back in
        fp32 (:meth:`to_fp32`); ``net`` itself with the default options."""
        fn = self.network(net, key)
        if self.inference.precision != "bf16":
            return fn

        def call(*args: Any, **kwargs: Any) -> Tensor:
            with self.inference_autocast():
                return self.to_fp32(fn(*args, **kwargs))

        return call

    def layout(self, x: Tensor) -> Tensor:
        """A 4-D input in channels_last when that option is on."""
        if self.inference.channels_last and x.ndim == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    @staticmethod
    def to_fp32(x: Tensor) -> Tensor:
        """A network output back in fp32 and the contiguous layout (the rest of the pipeline expects both)."""
        return x.float().contiguous()
