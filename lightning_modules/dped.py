"""DPED (Ignatov et al., ICCV 2017): phone photo → DSLR-quality photo; the training system, :class:`DPED`.

GAN training with manual optimisation (one generator and one discriminator update per iteration, official losses
of :mod:`losses.dped`), evaluation with the official script's PSNR and MS-SSIM (:mod:`metrics.dped`) on 100×100
test patches, full-size predict. The networks and the official TF1 checkpoint reader are in :mod:`networks.dped`
(re-exported here, where earlier code imports them from).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torchmetrics import MetricCollection

from lightning_modules.base import DarkroomModule, Stage
from lightning_modules.image_grid import save_samples
from losses.dped import DPEDGeneratorLoss, discriminator_loss
from metrics.dped import DPEDMSSSIM, DPEDPSNR, DPEDBatchPSNR
from networks.dped import (
    OFFICIAL_DPED_SOURCE,
    DPEDDiscriminator,
    DPEDGenerator,
    load_official_dped,
    rgb_to_grayscale_tf,
    tf_same_pad,
)
from networks.layers import build_network

__all__ = [
    "DPED",
    "DPEDDiscriminator",
    "DPEDLossWeights",
    "DPEDGenerator",
    "OFFICIAL_DPED_SOURCE",
    "load_official_dped",
    "rgb_to_grayscale_tf",
    "tf_same_pad",
]

# Evaluation: the official script's PSNR and MS-SSIM (:mod:`metrics.dped`) on the unclipped output.


@dataclass
class DPEDLossWeights:
    """Weights of the generator loss terms; ``None`` = the preset's value, 0 switches a term off.

    Official (``loss_preset="official"``): content 10, color 0.5, texture 1, tv 2000; ``"alternative"``:
    1 / 0.1 / 0.4 / 400 (possibly the paper's, unverified). ``--model.init_args.loss_weights.content 0``.
    """

    content: float | None = None
    color: float | None = None
    texture: float | None = None
    tv: float | None = None


def _drop_vgg_state(module: nn.Module, state_dict: dict, prefix: str, local_metadata: Any) -> None:
    """State-dict post hook: the frozen VGG-19 (~20M parameters, loaded from its own file) stays out of checkpoints."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        del state_dict[key]


class DPED(DarkroomModule):
    """DPED GAN training (manual optimisation) and evaluation on 100×100 test patches.

    Per training iteration (official ``train_model.py``): one generator update with
    ``L_G = w_content·L_content + w_color·L_color + w_texture·L_texture + w_tv·L_TV`` (texture from the
    discriminator's logits on the enhanced patches), then one discriminator update on grayscale patches, each
    sample randomly (p = ½) the DSLR patch (target class 0) or the enhanced one (class 1). Deviation: the
    official discriminator step draws a fresh batch and re-runs the updated generator; we reuse this batch's
    enhanced patches (``enhanced.detach()``, before the generator update) — one generator forward per iteration.

    ``trainer.global_step`` counts iterations (the discriminator's optimiser step is not counted), so
    ``max_steps: 20000`` is the official 20,000 iterations. Gradient clipping: none (official); Lightning's
    ``gradient_clip_val`` is not available with manual optimisation.

    Args:
        generator: :class:`~networks.dped.DPEDGenerator` (``None`` = the official 4 blocks × 64 channels, official
            init).
        discriminator: :class:`~networks.dped.DPEDDiscriminator` (``None`` = the official one: grayscale 100×100
            input, its fc layer sized for it).
        content_network: φ of the content term ``‖φ(enhanced) − φ(DSLR)‖²``. ``None`` = the official VGG-19
            relu5_4 features (:class:`~losses.vgg.VGG19Features`, built at ``fit`` from ``vgg_weights``); any frozen
            ``nn.Module`` from images N×3×H×W in [0, 1] to features can stand in (the demo's ``torch.nn.Identity``:
            a per-pixel MSE). It is left out of checkpoints.
        loss_preset: ``"official"`` or ``"alternative"`` weight set (:mod:`losses.dped`).
        loss_weights: :class:`DPEDLossWeights` overriding the preset per term (0 = off).
        texture_warmup: iterations at the start during which the texture term is left out of the generator loss
            (the discriminator still trains; the generator step skips its forward through D); official 0 (the
            author suggests 1–2K iterations when training is unstable, #17).
        vgg_weights: VGG-19 weight file for the official content network (default: ``$DARKROOM_VGG19`` or the torch
            hub cache, see :mod:`losses.vgg`); needed only when the content weight is ≠ 0, and only for ``fit``.
        lr_g, lr_d: Adam learning rates (official 5e-4 both; betas 0.9/0.999, ε 1e-8 = TF defaults).
        lr_schedule: ``"constant"`` (official) or ``"cosine"``: both learning rates decay to 0 over
            ``trainer.max_steps`` iterations (the ablation ``experiments/dped/ablations/cosine_lr.yaml``; the demo uses
            it so that a short run's last iterate does not fluctuate).
        pretrained: an official TF checkpoint prefix (``…/iphone_orig``) or a Darkroom ``.ckpt`` to start from.
        log_images: patches in the validation/test grid (phone | DPED | DSLR); 0 = none.
    """

    paper = "dped"
    monitor = ("val/psnr", "max")

    networks = ("generator", "discriminator")
    sync_gradients_manually = True  # each step updates one of the two networks

    def __init__(
        self,
        generator: DPEDGenerator | None = None,
        discriminator: DPEDDiscriminator | None = None,
        content_network: nn.Module | None = None,
        loss_preset: Literal["official", "alternative"] = "official",
        loss_weights: DPEDLossWeights = DPEDLossWeights(),  # noqa: B008 (immutable use)
        texture_warmup: int = 0,
        vgg_weights: str | None = None,
        lr_g: float = 5e-4,
        lr_d: float = 5e-4,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        pretrained: str | None = None,
        log_images: int = 4,
    ) -> None:
        super().__init__()
        if isinstance(loss_weights, dict):
            loss_weights = DPEDLossWeights(**loss_weights)
        if loss_preset not in ("official", "alternative"):
            raise ValueError(f"loss_preset must be 'official' or 'alternative', got {loss_preset!r}")
        self.generator = build_network(generator, DPEDGenerator)
        self.discriminator = build_network(discriminator, DPEDDiscriminator)
        self.content_network = None if content_network is None else build_network(content_network, nn.Identity)
        if self.content_network is not None:
            self.content_network.requires_grad_(False)
            self.content_network.register_state_dict_post_hook(_drop_vgg_state)
        self.save_hyperparameters()
        self.hparams["loss_weights"] = asdict(loss_weights)
        self.record_networks("generator", "discriminator", "content_network")
        self.automatic_optimization = False
        self._loss_weights = loss_weights
        self.weights: dict[str, float] = DPEDGeneratorLoss.resolve_weights(asdict(loss_weights), loss_preset)
        self.loss: DPEDGeneratorLoss | None = None  # built for fit only (the VGG-19 is not needed to evaluate)
        metrics = MetricCollection({"psnr": DPEDPSNR(), "ms_ssim": DPEDMSSSIM(), "psnr_batch": DPEDBatchPSNR()},
                                   compute_groups=False)
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.test_input_metrics = metrics.clone(prefix="test/input_")
        self.tags = ["dped", loss_preset] + [f"no-{k}" for k, v in self.weights.items() if v == 0]
        if self.content_network is not None and self.weights["content"] != 0:
            self.tags.append(f"content-{type(self.content_network).__name__.lower()}")
        self.register_load_state_dict_post_hook(self._ignore_missing_vgg)
        self.variant = "dped"
        if pretrained:
            self.load_pretrained(pretrained)

    # -- weights ---------------------------------------------------------------------------------
    @staticmethod
    def _ignore_missing_vgg(module: nn.Module, incompatible: Any) -> None:
        incompatible.missing_keys[:] = [k for k in incompatible.missing_keys
                                        if not k.startswith(("loss.vgg.", "content_network."))]

    def build_loss(self) -> DPEDGeneratorLoss:
        """Build the generator objective (and the VGG-19 when the content weight is ≠ 0); called at ``fit``.

        Raises:
            FileNotFoundError: content weight ≠ 0 and no VGG-19 weight file: the message says where to put it.
        """
        if self.loss is None:
            # content_network None: the loss builds the official VGG-19 (from vgg_weights) when the content weight ≠ 0
            self.loss = DPEDGeneratorLoss(weights=asdict(self._loss_weights), preset=self.hparams.loss_preset,
                                          vgg=self.content_network, vgg_weights=self.hparams.vgg_weights)
            if self.loss.vgg is not None and self.loss.vgg is not self.content_network:
                self.loss.vgg.register_state_dict_post_hook(_drop_vgg_state)
            self.loss.to(self.device)
        return self.loss

    def load_official(self, path: Path) -> None:
        """The released generator: an official TF1 checkpoint prefix (``…/iphone_orig``; D is not released)."""
        self.generator.load_state_dict(load_official_dped(path).state_dict())

    @classmethod
    def from_official(cls, prefix: str | Path, **kwargs: Any) -> DPED:
        """A module with the released generator (``…/weights/dped/<phone>_orig``; the discriminator is not released)."""
        return cls(pretrained=str(prefix), **kwargs)

    # -- inference -------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """Enhance N×3×H×W in [0, 1] (any H, W) → N×3×H×W in (−0.08, 1.08), unclipped (clamp to write images)."""
        return self.inference_call(self.generator)(x)  # --run.eval_precision bf16 (lightning_modules.inference)

    inference_not_offered = {
        "channels_last": "measured 1.47× slower for the DPED generator on a CPU (benchmarks/results/inference_options.json)",
        "compile": "the exact tiled instance norm of large photos runs the generator through hooks, which a "
                   "compiled module does not keep"}

    def inference_networks(self) -> list[nn.Module]:
        return [self.generator]

    # -- training --------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.build_loss()

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss_fn = self.build_loss()
        opt_g, opt_d = self.optimizers()
        x, y = batch["input"], batch["target"]
        n = x.shape[0]
        use_texture = self.weights["texture"] != 0
        # during the texture warm-up the generator loss leaves the texture term out (D is not even run on the
        # enhanced patches there); the discriminator still trains
        texture_in_g = use_texture and self.global_step >= self.hparams.texture_warmup
        # generator step (the discriminator's parameters are frozen while toggled)
        self.toggle_optimizer(opt_g)
        enhanced = self.generator(x)
        logits = self.discriminator(enhanced) if texture_in_g else None
        terms = loss_fn(enhanced, y, logits, skip=() if texture_in_g or not use_texture else ("texture",))
        total = terms["total"]
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(total)
        self.sync_gradients(self.generator.parameters())
        opt_g.step()
        self.untoggle_optimizer(opt_g)
        logs = {f"train/loss_{k}": v.detach() for k, v in terms.items() if k != "total"}
        # discriminator step: each sample is the DSLR patch (adv = 1) or the enhanced one (adv = 0), p = 1/2
        if use_texture:
            self.toggle_optimizer(opt_d)
            adv = torch.randint(0, 2, (n,), device=x.device)
            samples = torch.where(adv.view(n, 1, 1, 1).bool(), y, enhanced.detach())
            d_logits = self.discriminator(samples)
            loss_d = discriminator_loss(d_logits, adv)
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(loss_d)
            self.sync_gradients(self.discriminator.parameters())
            self.step_uncounted(opt_d)
            self.untoggle_optimizer(opt_d)
            # argmax class 0 = DSLR ⇔ adv = 1
            logs["train/loss_d"] = loss_d.detach()
            logs["train/d_accuracy"] = (d_logits.argmax(1) == (1 - adv)).float().mean()
        schedulers = self.lr_schedulers()  # manual optimisation: step them once per iteration
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers] if schedulers else []:
            scheduler.step()
        self.log_dict(logs, on_step=True, on_epoch=True, batch_size=n)
        self.log("train/loss", total.detach(), on_step=True, on_epoch=True, prog_bar=True, batch_size=n)
        return total.detach()

    def configure_optimizers(self) -> Any:
        opts = [torch.optim.Adam(self.generator.parameters(), lr=self.hparams.lr_g, betas=(0.9, 0.999), eps=1e-8),
                torch.optim.Adam(self.discriminator.parameters(), lr=self.hparams.lr_d, betas=(0.9, 0.999),
                                 eps=1e-8)]
        if self.hparams.lr_schedule == "constant":
            return opts
        if self.hparams.lr_schedule != "cosine":
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {self.hparams.lr_schedule!r}")
        total = self.trainer.max_steps
        if total is None or total <= 0:
            raise ValueError("lr_schedule='cosine' needs trainer.max_steps > 0")
        return opts, [torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=total) for o in opts]

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, batch: dict, batch_idx: int, stage: Stage) -> None:
        x, y = batch["input"], batch.get("target")
        out = self(x)
        if y is not None:
            metrics = self.val_metrics if stage == "val" else self.test_metrics
            metrics.update(out, y)
            self.log_dict(metrics, on_epoch=True, batch_size=x.shape[0])
            if stage == "test":
                names = list(batch["name"])
                save_samples(self, names, {"input": x, "output": out, "target": y})
                self.test_input_metrics.update(x, y)
                self.log_dict(self.test_input_metrics, on_epoch=True, batch_size=x.shape[0])
                self.per_image.add_metrics(names, self.test_metrics, self.test_input_metrics)
        if batch_idx == 0 and self.hparams.log_images:
            cols = [x[: self.hparams.log_images], out[: self.hparams.log_images]]
            if y is not None:
                cols.append(y[: self.hparams.log_images])
            self.log_examples(stage, cols, ["phone", "DPED", "DSLR"][: len(cols)],
                              list(batch["name"][: self.hparams.log_images]))

    def predict_output(self, batch: dict) -> Tensor:
        """Full-size photos: whole when the photo fits in memory, else exact tiled instance norm (announced;
        :func:`lightning_modules.memory.dped_generate`)."""
        from lightning_modules.memory import dped_generate

        names = batch["name"]
        name = names if isinstance(names, str) else ", ".join(map(str, names))
        with self.inference_autocast():  # --run.eval_precision bf16
            return self.to_fp32(dped_generate(self.generator, batch["input"], name, self.tile_size))
