"""Zero-DCE (CVPR 2020) and Zero-DCE++ (TPAMI 2021): the training system, :class:`ZeroDCE`.

The networks, the curve application and the official weight reader are in :mod:`networks.zero_dce` (re-exported
here, where earlier code imports them from).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection

from lightning_modules.base import DarkroomModule, Stage
from lightning_modules.image_grid import save_samples
from lightning_modules.memory import check_memory
from lightning_modules.tiling import dce_enhance, flush_subnormal_, use_tiles
from losses.zero_dce import ZeroDCELoss
from metrics.full_reference import MAE, PSNR, SSIM, VARIANTS
from metrics.no_reference import LOE, NIQE, ColourCast, MeanBrightness
from networks.layers import build_network
from networks.zero_dce import (  # noqa: F401  (re-exported: the public API named in earlier issues)
    INITS,
    OFFICIAL_WEIGHT_FILES,
    SIGNS,
    DCENet,
    DCENetPP,
    DepthwiseSeparableConv,
    apply_curves,
    crop_to_multiple,
    load_official_weights,
)

__all__ = ["DCENet", "DCENetPP", "DepthwiseSeparableConv", "ZeroDCE", "ZeroDCELossWeights", "apply_curves",
           "crop_to_multiple", "load_official_weights"]


@dataclass
class ZeroDCELossWeights:
    """Overrides of the four zero-reference loss weights; ``None`` keeps the variant's official weight, 0 switches a
    term off (``--model.init_args.loss_weights.tv 0``).

    The defaults live in one place, :class:`losses.zero_dce.ZeroDCELoss` (official code: 1 / 10 / 5 / 200 for
    Zero-DCE, tv 1600 for Zero-DCE++); the paper's Eq. 8 weights are
    ``experiments/zero_dce/ablations/paper_losses.yaml``.
    """

    spa: float | None = None
    exp: float | None = None
    col: float | None = None
    tv: float | None = None


class ZeroDCE(DarkroomModule):
    """Zero-DCE / Zero-DCE++: zero-reference low-light enhancement by iterated pixel-wise curves.

    Training uses only low-light (and over-exposed) images and the four losses of
    :class:`losses.zero_dce.ZeroDCELoss`; validation and test score the enhanced image against a
    well-exposed label (per-image PSNR / SSIM / MAE, :mod:`metrics.full_reference`).

    Args:
        variant: ``"zero_dce"`` or ``"zero_dce_pp"``: the official weight-file layout, the loss weights' defaults,
            the tags, and the network when ``net`` is not given.
        net: the curve-estimation network (:class:`~networks.zero_dce.DCENet`; its arguments are the l-f-n
            network-size ablation [SUPP Table 1], the Zero-DCE++ components [TPAMI Table 4], the training scale
            factor and the curve sign). ``None`` = the variant's official network: ``DCENet()`` (79,416 parameters)
            or ``DCENetPP()`` (depthwise-separable convs, one shared map: 10,561 parameters).
        eval_scale_factor: the curve-estimation scale at validation/test/predict (official Zero-DCE++ test: 12;
            ``None`` = the net's training ``scale_factor``). Validation, test and predict crop an image to a multiple of it from the
            top-left corner, as the official Zero-DCE++ test does (the label is cropped the same way);
            :meth:`enhance` can pad instead.
        loss_weights: :class:`ZeroDCELossWeights`.
        loss_form: ``"official"`` (default) or ``"paper"`` forms of every loss term (digest §3).
        exposure_level: E of the exposure loss (0.6; [TPAMI Table 2] ablates 0.4–0.7).
        lr, weight_decay: Adam, official 1e-4 / 1e-4 (global grad-norm clipping 0.1 is a Trainer
            argument: ``gradient_clip_val`` in the configs).
        pretrained: optional weights to start from: an official ``Epoch99.pth`` (loaded with the
            official key layout) or a Darkroom ``.ckpt``.
        log_images: how many validation samples go into the before/after grid.
        metric_variants: extra test columns for conventions the field mixes (:data:`metrics.full_reference.VARIANTS`):
            ``gtmean`` / ``gtmean_llflow`` (output scaled to the label's mean brightness, LLFlow-style tables)
            and ``y`` (PSNR/SSIM on luma) add ``psnr_<variant>`` and ``ssim_<variant>``.

    Test data with labels (SICE Part2) gives PSNR / SSIM / MAE of the output and of the input
    (``input_*``); unpaired photos (no ``Label/``) give no-reference metrics of both
    (:mod:`metrics.no_reference`: ``niqe``, ``brightness``, ``colour_cast``, and ``loe`` of the output
    against the input). Per-image values go to ``per_image.csv`` (:mod:`lightning_modules.per_image`).
    """

    paper = "zero_dce"
    monitor = ("val/psnr", "max")
    networks = ("net",)

    def __init__(
        self,
        variant: Literal["zero_dce", "zero_dce_pp"] = "zero_dce",
        net: DCENet | None = None,
        eval_scale_factor: float | None = None,
        loss_weights: ZeroDCELossWeights = ZeroDCELossWeights(),  # noqa: B008 (immutable use)
        loss_form: Literal["official", "paper"] = "official",
        exposure_level: float = 0.6,
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
        pretrained: str | None = None,
        log_images: int = 4,
        metric_variants: list[Literal["gtmean", "gtmean_llflow", "y"]] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(loss_weights, dict):
            loss_weights = ZeroDCELossWeights(**loss_weights)
        pp = variant == "zero_dce_pp"
        self.net = build_network(net, DCENetPP if pp else DCENet)
        self.save_hyperparameters()
        self.hparams["loss_weights"] = asdict(loss_weights)
        self.record_networks("net")
        self.loss = ZeroDCELoss(weights=asdict(loss_weights), forms=loss_form, well_exposed=exposure_level,
                                variant=variant)
        self.eval_scale_factor = float(eval_scale_factor or self.net.scale_factor)
        metrics = MetricCollection({"psnr": PSNR(), "ssim": SSIM(), "mae": MAE()}, compute_groups=False)
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.test_input_metrics = metrics.clone(prefix="test/input_")
        variants = list(metric_variants or [])
        unknown = sorted(set(variants) - set(VARIANTS))
        if unknown:
            raise ValueError(f"metric_variants: unknown {unknown}; expected some of {sorted(VARIANTS)}")
        self.test_variant_metrics = MetricCollection(
            {f"{m}_{v}": cls(v) for v in variants for m, cls in (("psnr", PSNR), ("ssim", SSIM))},
            prefix="test/", compute_groups=False)
        no_ref = MetricCollection({"niqe": NIQE(), "brightness": MeanBrightness(), "colour_cast": ColourCast()},
                                  compute_groups=False)
        self.test_nr_metrics = no_ref.clone(prefix="test/")
        self.test_input_nr_metrics = no_ref.clone(prefix="test/input_")
        self.test_loe = MetricCollection({"loe": LOE()}, prefix="test/")
        self.variant = variant
        self.metric_variants = {
            "psnr": "RGB, data range 1, mean of per-image PSNR", "ssim": "torchmetrics SSIM (Gaussian 11, σ 1.5) "
            "on RGB, data range 1, mean of per-image values", "mae": "mean |output − label| over pixels and "
            "channels on 0–255 (the paper's MAE unit is not found)",
            **{f"{m}_{v}": f"{m.upper()} {VARIANTS[v]}" for v in variants for m in ("psnr", "ssim")}}
        self.tags = [variant, f"{self.net.n_layers}-{self.net.n_filters}-{self.net.n_iterations}"]
        self._grid_samples: list[list[torch.Tensor]] = []
        self._grid_names: list[str] = []
        self._train_grid: list | None = None
        if pretrained:
            self.load_pretrained(pretrained)

    # -- weights ---------------------------------------------------------------------------------
    def load_official(self, path: Path) -> None:
        """The official ``Epoch99.pth`` of the variant (``Zero-DCE_code`` / ``Zero-DCE++`` key layout)."""
        official = load_official_weights(path, self.hparams.variant, scale_factor=self.net.scale_factor)
        self.net.load_state_dict(official.state_dict())

    def load_pretrained(self, path: str | Path) -> None:
        """An official ``Epoch99.pth`` or a Darkroom checkpoint; subnormal weights are then zeroed (bit-identical
        output, ~20× faster CPU convolutions: :func:`~lightning_modules.tiling.flush_subnormal_`)."""
        super().load_pretrained(path)
        flush_subnormal_(self.net)

    @classmethod
    def from_official(
        cls, path: str | Path, variant: Literal["zero_dce", "zero_dce_pp"] = "zero_dce", **kwargs: Any
    ) -> ZeroDCE:
        """The released weights in a ready module (Zero-DCE++ evaluates at scale 12, as the official test)."""
        if variant == "zero_dce_pp":
            kwargs.setdefault("eval_scale_factor", 12.0)
        tile_size = kwargs.pop("tile_size", "default")
        model = cls(variant=variant, pretrained=str(path), **kwargs)
        if tile_size != "default":  # tile size of enhance(tile_size="auto"): an int, or None = whole images
            model.tile_size = tile_size
        return model

    # -- inference -------------------------------------------------------------------------------
    def enhance(
        self,
        x: torch.Tensor,
        scale_factor: float | None = None,
        tile_size: int | None | Literal["auto"] = "auto",
        fit: Literal["pad", "crop"] = "pad",
    ) -> torch.Tensor:
        """Enhance N×3×H×W in [0, 1] at full resolution (any H, W).

        Args:
            scale_factor: curve-estimation scale (``None`` = ``eval_scale_factor``). With an integer s ≠ 1 the
                image must be a multiple of s: ``fit="pad"`` pads it (replicate) and crops the output back to
                H×W (validation/test: the output matches the label); ``fit="crop"`` crops it to multiples of s
                from the top-left corner (:func:`crop_to_multiple`), as the official Zero-DCE++ test does, and
                returns the cropped size (predict; padding changes the output by up to 13 grey levels).
            tile_size: exact tiled inference (:mod:`lightning_modules.tiling`; equal to the whole-image result
                to float precision, in the memory of one tile). ``"auto"`` (default): tiles of ``self.tile_size``
                (:data:`~lightning_modules.tiling.DEFAULT_TILE_SIZE` = 512 unless set, e.g. by
                ``--run.tile_size``) when the image has more than 4 tiles of pixels; an int: tiles of that size;
                ``None``: the whole image at once.
            fit: ``"pad"`` or ``"crop"`` (above).

        Returns:
            N×3×H×W (``fit="crop"``: N×3×(H//s·s)×(W//s·s)).
        """
        s = float(scale_factor or self.eval_scale_factor)
        if fit not in ("pad", "crop"):
            raise ValueError(f"ZeroDCE.enhance: fit must be 'pad' or 'crop', got {fit!r}")
        if s != 1 and s.is_integer() and fit == "crop":
            x = crop_to_multiple(x, s)
        h, w = x.shape[-2:]
        if tile_size == "auto":
            tile_size = self.tile_size if use_tiles(h, w, self.tile_size) else None
        if s != 1 and s.is_integer():
            ph, pw = (-h) % int(s), (-w) % int(s)
            if ph or pw:
                x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        # --run.eval_precision bf16 / channels_last / compile (lightning_modules.inference): curve maps in bf16,
        # the curves on the fp32 image; compile fuses the 8 full-resolution curve passes and the net's
        # bf16 casts and activations
        with self.inference_autocast():
            maps = self.network(self.net.curve_maps, "maps") if self.inference.compile else None
            out = dce_enhance(self.net, self.layout(x), s, tile_size, curves=self.network(apply_curves, "curves"),
                              maps=maps)
        return self.to_fp32(out[..., :h, :w])

    def inference_networks(self) -> list[nn.Module]:
        return [self.net]

    def forward(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """N×3×H×W in [0, 1] → enhanced N×3×H×W (at the evaluation scale factor; ``kwargs`` go to :meth:`enhance`)."""
        return self.enhance(x, **kwargs)

    # -- steps -----------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x = batch["input"]
        enhanced, maps = self.net(x)
        terms = self.loss(enhanced, x, maps)
        n = x.shape[0]
        self.log_dict({f"train/loss_{k}": v for k, v in terms.items() if k != "total"},
                      on_step=True, on_epoch=True, batch_size=n)
        self.log("train/loss", terms["total"], on_step=True, on_epoch=True, prog_bar=True, batch_size=n)
        if batch_idx == 0 and self.hparams.log_images:  # kept for a grid when there is no validation
            k = self.hparams.log_images
            self._train_grid = [x[:k].detach().cpu(), enhanced[:k].detach().float().cpu(), list(batch["name"][:k])]
        return terms["total"]

    def on_train_epoch_end(self) -> None:
        """Zero-reference training often has no paired validation set: then grid the epoch's first batch."""
        grid = getattr(self, "_train_grid", None)
        if grid is not None and not sum(self.trainer.num_val_batches or [0]):
            self.log_examples("train", grid[:2], ["input", "Zero-DCE"], grid[2])
        self._train_grid = None

    def evaluate(self, batch: dict, batch_idx: int, stage: Stage) -> None:
        x, y = batch["input"], batch.get("target")
        out = self.enhance(x, fit="crop")
        if out.shape[-2:] != x.shape[-2:]:  # Zero-DCE++ crops to a multiple of its scale factor, as the official test
            h, w = out.shape[-2:]
            x, y = x[..., :h, :w], (y[..., :h, :w] if y is not None else None)
        names, n = list(batch["name"]), x.shape[0]
        if y is not None:
            metrics = self.val_metrics if stage == "val" else self.test_metrics
            metrics.update(out, y)
            self.log_dict(metrics, on_epoch=True, batch_size=n)
            if stage == "test":
                self.test_input_metrics.update(x, y)
                self.log_dict(self.test_input_metrics, on_epoch=True, batch_size=n)
                collections = [self.test_metrics, self.test_input_metrics]
                if len(self.test_variant_metrics):
                    self.test_variant_metrics.update(out, y)
                    self.log_dict(self.test_variant_metrics, on_epoch=True, batch_size=n)
                    collections.append(self.test_variant_metrics)
                self.per_image.add_metrics(names, *collections)
                save_samples(self, names, {"input": x, "output": out, "target": y})
        elif stage == "test":
            self.test_nr_metrics.update(out)
            self.test_input_nr_metrics.update(x)
            self.test_loe.update(out, x)
            for collection in (self.test_nr_metrics, self.test_input_nr_metrics, self.test_loe):
                self.log_dict(collection, on_epoch=True, batch_size=n)
            self.per_image.add_metrics(names, self.test_nr_metrics, self.test_input_nr_metrics, self.test_loe,
                                       groups=batch.get("group"))
            save_samples(self, names, {"input": x, "output": out})
        if batch_idx < self.hparams.log_images:
            self._grid_samples.append([t[:1].detach().cpu() for t in (x, out, y) if t is not None])
            self._grid_names.append(names[0])

    def on_validation_epoch_start(self) -> None:
        self._grid_samples, self._grid_names = [], []

    def on_test_epoch_start(self) -> None:
        self.on_validation_epoch_start()
        super().on_test_epoch_start()

    def on_test_start(self) -> None:
        # subnormal weights (24 % of the released Zero-DCE's) make CPU convolutions ~20× slower; zeroing
        # them leaves the output bit-identical (see lightning_modules.tiling.flush_subnormal_)
        flush_subnormal_(self.net)

    on_predict_start = on_test_start

    def _log_samples(self, stage: str) -> None:
        """One before/after grid of the first ``log_images`` samples (input | Zero-DCE | label), captioned."""
        samples = getattr(self, "_grid_samples", [])
        if not samples:
            return
        columns = [torch.cat([F.interpolate(s[c], size=samples[0][c].shape[-2:], mode="bilinear")
                              for s in samples]) for c in range(len(samples[0]))]
        self.log_examples(stage, columns, ["input", "Zero-DCE", "label"][: len(columns)], self._grid_names)
        self._grid_samples, self._grid_names = [], []

    def on_validation_epoch_end(self) -> None:
        self._log_samples("val")

    def on_test_epoch_end(self) -> None:
        self._log_samples("test")
        super().on_test_epoch_end()

    def predict_output(self, batch: dict) -> tuple[torch.Tensor, list[str]]:
        """Enhance full-size photos, tiled above 4 tiles of pixels (:meth:`enhance`). At an integer ``eval_scale_factor`` s ≠ 1 (Zero-DCE++: 12) an image that is not a
        multiple of s is cropped to one from the top-left corner, as the official Zero-DCE++ test does; its
        note says so (``cropped 326×326 → 324×324 (W×H) …``), printed when the image is written."""
        x = batch["input"]
        s = float(self.eval_scale_factor)
        if not use_tiles(*x.shape[-2:], self.tile_size):  # whole image: refused before it runs if it cannot fit
            names = batch["name"]
            name = names if isinstance(names, str) else ", ".join(map(str, names))
            check_memory("zero_dce" if s == 1 else "zero_dce_pp", name, *x.shape[-2:], x.device,
                         "use --run.tile_size 512 (exact tiling, the same output)", images=x.shape[0])
        out = self.enhance(x, fit="crop")
        notes = [""] * x.shape[0]
        if out.shape[-2:] != x.shape[-2:]:
            (h, w), (ch, cw) = x.shape[-2:], out.shape[-2:]
            notes = [f"cropped {w}×{h} → {cw}×{ch} (W×H, top-left; a multiple of the scale factor {s:g}, "
                     f"as the official Zero-DCE++ test)"] * x.shape[0]
        return out, notes

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            self.net.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
