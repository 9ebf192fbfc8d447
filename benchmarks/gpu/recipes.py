"""The papers' recipe configs (``experiments/<paper>/*.yaml``) as the fits use them: the LightningModule with its
recipe's settings, the training patch and batch sizes."""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

from benchmarks.gpu.common import RECIPES, ROOT


def _recipe(paper: str) -> dict[str, Any]:
    import yaml

    return yaml.safe_load((ROOT / RECIPES[paper]).read_text())


def _import(class_path: str) -> Any:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def build_model(paper: str, dry: bool, overrides: dict[str, Any] | None = None) -> Any:
    """The paper's LightningModule with its recipe's settings (+ what a benchmark without a logger needs)."""
    conf = _recipe(paper)["model"]
    kwargs = dict(conf.get("init_args") or {})
    kwargs["log_images"] = False if paper == "refusion" else 0
    if paper == "dped":
        from losses.vgg import VGG19Features
        from networks.dped import DPEDDiscriminator, DPEDGenerator

        # random VGG-19: the cost without the weight file
        kwargs.update(content_network=VGG19Features("relu5_4", pretrained=False), vgg_weights=None)
        if dry:
            kwargs.update(generator=DPEDGenerator(n_blocks=1, channels=8),
                          discriminator=DPEDDiscriminator(in_size=32, width=0.25), content_network=nn.Identity())
    if paper == "refusion":
        kwargs.update(meta_steps=1 if dry else 5)
    kwargs.update(overrides or {})
    return _import(conf["class_path"])(**kwargs)


def fit_sizes(paper: str, dry: bool) -> dict[str, Any]:
    """Training patch side and batch size: the recipe's (dry run: 32 px and 2, ReFusion 1)."""
    data = _recipe(paper)["data"]["init_args"]
    side = data.get("image_size", data.get("crop_size", data.get("patch_size", 100)))
    if dry:
        return {"side": {"deepfuse": 24, "refusion": 16}.get(paper, 32), "batch_size": 1 if paper == "refusion" else 2}
    return {"side": int(side), "batch_size": int(data["batch_size"])}
