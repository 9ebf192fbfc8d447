"""What the networks share: the one convolution helper, and :class:`Network`, a module that can say how to rebuild it.

A LightningModule receives its networks as constructor arguments (configs nest them with ``class_path``). To keep a
checkpoint self-describing when a network was built in Python, each network remembers its constructor arguments
(:class:`Network`), and :func:`network_spec` turns it into the ``class_path`` / ``init_args`` dict a config holds;
:func:`build_network` is the inverse, used when a module is rebuilt from saved hyper-parameters.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

__all__ = ["Network", "build_network", "conv", "network_spec"]


def conv(c_in: int, c_out: int, kernel_size: int = 1, groups: int = 1, bias: bool = False) -> nn.Conv2d:
    """A stride-1 ``nn.Conv2d`` with zero 'same' padding (``kernel_size // 2``, odd kernels), bias-free by default
    (ReFusion's official ``ReFusion.py`` and DeepFuse's official ``main.py`` layers)."""
    return nn.Conv2d(c_in, c_out, kernel_size, stride=1, padding=kernel_size // 2, groups=groups, bias=bias)


class Network(nn.Module):
    """An ``nn.Module`` that records the arguments it was constructed with in ``init_args`` (defaults filled in).

    The outermost constructor records: a subclass that calls ``super().__init__(...)`` is recorded with its own
    arguments, so ``network_spec`` names the class the user chose.
    """

    init_args: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self: nn.Module, *args: Any, **kw: Any) -> None:
            if "init_args" not in self.__dict__:
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                recorded: dict[str, Any] = {}
                for name, value in list(bound.arguments.items())[1:]:
                    kind = signature.parameters[name].kind
                    if kind is inspect.Parameter.VAR_KEYWORD:
                        recorded.update(value)  # a subclass's **kwargs: the parent's arguments by name
                    elif kind is inspect.Parameter.VAR_POSITIONAL:
                        if value:
                            raise TypeError(f"{type(self).__qualname__}: pass its arguments by name, so that "
                                            "they can be recorded")
                    else:
                        recorded[name] = value
                self.__dict__["init_args"] = recorded
            init(self, *args, **kw)

        cls.__init__ = recording_init  # type: ignore[method-assign]


def network_spec(net: nn.Module) -> dict[str, Any]:
    """``{"class_path": "networks.zero_dce.DCENet", "init_args": {...}}`` for a :class:`Network` instance.

    Raises:
        TypeError: ``net`` does not record its arguments (not a :class:`Network`).
    """
    if not isinstance(net, Network):
        raise TypeError(f"{type(net).__qualname__} does not record its constructor arguments; derive it from "
                        "networks.layers.Network, or pass the network as a class_path/init_args config")
    return {"class_path": f"{type(net).__module__}.{type(net).__qualname__}", "init_args": dict(net.init_args)}


def build_network(net: nn.Module | Mapping[str, Any] | None, default: Callable[[], nn.Module]) -> nn.Module:
    """The network a LightningModule was given: ``net`` itself, ``default()`` for ``None``, or the class a
    ``{"class_path", "init_args"}`` dict names (hyper-parameters read back from a checkpoint)."""
    if net is None:
        return default()
    if isinstance(net, nn.Module):
        return net
    if not isinstance(net, Mapping) or "class_path" not in net:
        raise TypeError(f"a network must be an nn.Module or a {{class_path, init_args}} dict, got {net!r}")
    module, _, name = str(net["class_path"]).rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    return cls(**dict(net.get("init_args") or {}))
