"""ReFusion (Bai et al., IJCV 2024): the training system, :class:`ReFusion` (meta phase and fusion phase, evaluation).

The networks F, P, R and the official-weights reader are in :mod:`networks.refusion` (their Restormer blocks in
:mod:`networks.restormer`); the meta-learning step as pure functions in :mod:`lightning_modules.refusion_meta`.
All are re-exported here, where earlier code imports them from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from imaging.colour import minmax_normalize, rgb_to_ycbcr, ycbcr_to_rgb
from lightning_modules.base import DarkroomModule, Stage
from lightning_modules.fusion_baselines import PixelMax, PixelMean
from lightning_modules.image_grid import save_samples, side_by_side
from lightning_modules.refusion_meta import InnerStep, inner_update, meta_loss, normalised_gradient_update_
from losses._amp import autocast_off
from losses.refusion import refusion_fusion_loss, refusion_reconstruction_loss
from metrics.fusion import DEFAULT_METRICS, fusion_metric_collection
from networks.layers import build_network
from networks.refusion import (
    OFFICIAL_REFUSION_SOURCE,
    OFFICIAL_REFUSION_TASKS,
    FusionNet,
    LossProposalNet,
    ReconstructionNet,
    load_official_refusion,
    map_official_refusion_state_dict,
)
from networks.restormer import TransformerBlock, set_gradient_checkpointing

__all__ = [
    "OFFICIAL_REFUSION_SOURCE",
    "OFFICIAL_REFUSION_TASKS",
    "FusionNet",
    "LossProposalNet",
    "ReconstructionNet",
    "TransformerBlock",
    "set_gradient_checkpointing",
    "map_official_refusion_state_dict",
    "load_official_refusion",
    "InnerStep",
    "inner_update",
    "meta_loss",
    "normalised_gradient_update_",
    "ReFusion",
    "fuse_chroma_official",
    "is_grey",
]


def is_grey(rgb: Tensor) -> Tensor:
    """Whether each image is grey: all three channels exactly equal (official ``test.py`` rule).

    Shapes: …×3×H×W → … (bool).
    """
    return ((rgb[..., 0, :, :] == rgb[..., 1, :, :]) & (rgb[..., 1, :, :] == rgb[..., 2, :, :])).flatten(-2).all(-1)


def fuse_chroma_official(c1: Tensor, c2: Tensor, tau: float = 0.5) -> Tensor:
    """Official chroma fusion of two colour sources, on values in [0, 1] that stand for 0–255 codes.

    ``C = (C1·|C1 − τ| + C2·|C2 − τ|)/(|C1 − τ| + |C2 − τ| + 1e-4)`` evaluated on 0–255 values (official
    ``utils.py``), with τ in 0–255 units: the official code's τ = 0.5 (on 0–255 values a magnitude weighting);
    τ = 128 is the intended distance-from-neutral weighting. Shapes: any, equal; returns the same shape in [0, 1].
    """
    a, b = c1 * 255.0, c2 * 255.0
    wa, wb = (a - tau).abs(), (b - tau).abs()
    return (a * wa + b * wb) / (wa + wb + 1e-4) / 255.0


class ReFusion(DarkroomModule):
    """ReFusion (Bai et al., IJCV 2024): image fusion learned from source reconstruction with a meta-learned loss.

    Networks: F = :class:`FusionNet` (the official released module; ``from_official`` loads its weights),
    P = :class:`LossProposalNet`, R = :class:`ReconstructionNet` (not released; inferred, see their docstrings).

    Training (manual optimisation, digest §4). Lightning epochs alternate between the two phases of one official
    epoch, so ``max_epochs`` = 2 × the official epoch count (50 in the training copy → 100):

    * even epochs, **meta phase** (``meta=True``): up to ``2·meta_steps`` batches; an even batch makes the inner step
      (:func:`inner_update`: F' = F − lr·∇L_f with P's maps attached, second order; R' first order; lr = F's current
      learning rate), the next batch the outer step (:func:`meta_loss` of R'(F'(x')) divided by
      ``meta_accumulation``, backward into P); every ``meta_accumulation`` outer steps P is updated
      (``p_update="normalised"``: p ← p − lr·grad/max|grad|, official; ``"adam"``: Adam with ε = 1e-10). The rest of
      the epoch is skipped (the official loop breaks). With ``meta=False`` the meta epochs are skipped entirely.
    * odd epochs, **fusion phase**, a full pass: Adam step of F on L_f with P's maps detached (``meta=False``: fixed
      equal weights w = v = ½, the ablation baseline) and of R on L_r(R(F(x).detach())), in one optimiser step so
      ``trainer.global_step`` counts fusion iterations (meta iterations do not advance it).
    * α1 (gradient-term coefficient) = ``alpha_grad``·(e + 1)/``alpha_ramp_epochs`` at official epoch e (capped at
      ``alpha_grad``; ``None`` = constant); StepLR(``lr_step_epochs``, ``lr_gamma``) per official epoch.
    * ``swap_sources``: each batch is doubled with the sources swapped (F and P see both orders; R's targets stay
      in the given order), as the official code.

    DDP: the DDP reducer is switched off (``require_backward_grad_sync = False``) and the gradients that are applied
    (F and R in the fusion phase, P after the outer backward) are averaged over ranks explicitly, because the
    phases use disjoint parameter sets; the inner gradients stay per rank, as in the official code. Mixed precision:
    the meta step runs in fp32 with autocast off (:func:`inner_update`, :func:`meta_loss`); its backward goes through
    ``manual_backward``, so under 16-mixed it is loss-scaled like every other backward: the ``"adam"`` P update
    unscales through the precision plugin (:meth:`~lightning_modules.base.DarkroomModule.step_uncounted`), and the
    normalised update divides by max|grad|, which cancels the scale.

    Inference (``forward``): sources N×K×C×H×W in [0, 1] (K = 2 in the official order per task, C ∈ {1, 3}) →
    fused N×C×H×W. Colour sources are fused on Y (OpenCV/kornia full-range YCbCr, Y rounded to 8-bit codes as
    OpenCV's uint8 conversion) and recombined with chroma as the official ``test.py``: both grey → grey, one colour →
    its chroma, both colour → :func:`fuse_chroma_official`. The fused Y is min–max normalised per image
    (``normalize_output``, official).

    Validation/test: the fusion metrics (:func:`~metrics.fusion.fusion_metric_collection`, one torchmetrics
    ``Metric`` each, logged by Lightning) on the grey Y of the fused image vs the sources' Y, and
    the same for the pixel-mean and pixel-max baselines on the same batch (``test/mean_*``, ``test/max_*``).
    Keys are lower-case metric names (``val/qabf``).

    Args:
        fusion: F, :class:`~networks.refusion.FusionNet` (``None`` = the released architecture).
        loss_proposal: P, :class:`~networks.refusion.LossProposalNet` (``None`` = the official recipe's: gradient
            input, no order equivariance).
        reconstruction: R, :class:`~networks.refusion.ReconstructionNet` (``None`` = the default one).
        task: ``"ivif"``, ``"mfif"``, ``"meif"`` or ``"mif"`` (tags, and which official checkpoint fits).
        meta: learnable loss via meta-learning (True) or the fixed equal-weight loss (False, ablation baseline).
        meta_steps: meta iterations per (official) epoch; training copy 600, TDFusion 200; paper: not found.
        meta_accumulation: outer steps per P update (training copy: 2; TDFusion: 1).
        p_update: ``"normalised"`` (official) or ``"adam"``.
        p_lr: step size of P's update (``None`` = ``lr``, official: P's normalised step uses F's current learning
            rate); with ``"normalised"`` it follows F's StepLR decay (scaled by F's current/initial lr).
        lr: Adam learning rate of F and R, and the inner / P step size (official 1e-4).
        lr_step_epochs, lr_gamma: StepLR per official epoch (10, 0.1).
        alpha_grad: coefficient of the gradient term; alpha_ramp_epochs: its linear ramp (50; ``None`` = off).
        squared_weights: P's weights enter the loss squared (code) or linearly (paper figure).
        swap_sources: double each batch with swapped sources (official).
        normalize_output: min–max normalise the fused Y at inference (official ``test.py``).
        chroma_tau: τ of :func:`fuse_chroma_official` in 0–255 units (official 0.5; intended 128).
        pretrained: an official ``ReFusion_*.pth`` (into F) or a Darkroom ``.ckpt``.
        metrics: fusion metric names (default: all of :data:`metrics.fusion.DEFAULT_METRICS`).
        log_images: whether to log the source 1 | source 2 | fused | mean grid of the first val/test batch.
        gradient_checkpointing: per-transformer-block gradient checkpointing of F, P and R in training
            (:func:`set_gradient_checkpointing`; same values and gradients): ``"meta"`` (default) in the meta phase
            only, ``"all"`` also in the fusion phase, ``"off"``: the meta phase needs it to fit in memory, the fusion
            phase is faster without (figures: ``experiments/refusion/NOTES.md``).
        meta_gradient: ``"jvp"`` (default) or ``"double_backward"``, see :func:`inner_update` (same values; the
            JVP route keeps no backward graph of F and lets checkpointing apply to the meta step).
    """

    paper = "refusion"
    monitor = ("val/qabf", "max")
    networks = ("fusion", "loss_proposal", "reconstruction")
    sync_gradients_manually = True  # the phases update disjoint parameter sets

    def __init__(
        self,
        fusion: FusionNet | None = None,
        loss_proposal: LossProposalNet | None = None,
        reconstruction: ReconstructionNet | None = None,
        task: Literal["ivif", "mfif", "meif", "mif"] = "ivif",
        meta: bool = True,
        meta_steps: int = 600,
        meta_accumulation: int = 2,
        p_update: Literal["normalised", "adam"] = "normalised",
        lr: float = 1e-4,
        p_lr: float | None = None,
        lr_step_epochs: int = 10,
        lr_gamma: float = 0.1,
        alpha_grad: float = 1.0,
        alpha_ramp_epochs: int | None = 50,
        squared_weights: bool = True,
        swap_sources: bool = True,
        normalize_output: bool = True,
        chroma_tau: float = 0.5,
        pretrained: str | None = None,
        metrics: list[str] | None = None,
        log_images: bool = True,
        gradient_checkpointing: Literal["off", "meta", "all"] = "meta",
        meta_gradient: Literal["jvp", "double_backward"] = "jvp",
    ) -> None:
        super().__init__()
        if task not in ("ivif", "mfif", "meif", "mif"):
            raise ValueError(f"task must be 'ivif', 'mfif', 'meif' or 'mif', got {task!r}")
        if meta_steps < 1 or meta_accumulation < 1:
            raise ValueError(f"meta_steps and meta_accumulation must be ≥ 1, got {meta_steps}, {meta_accumulation}")
        if p_update not in ("normalised", "adam"):
            raise ValueError(f"p_update must be 'normalised' or 'adam', got {p_update!r}")
        if p_lr is not None and p_lr <= 0:
            raise ValueError(f"p_lr must be > 0, got {p_lr}")
        if gradient_checkpointing not in ("off", "meta", "all"):
            raise ValueError(f"gradient_checkpointing must be 'off', 'meta' or 'all', got {gradient_checkpointing!r}")
        if meta_gradient not in ("jvp", "double_backward"):
            raise ValueError(f"meta_gradient must be 'jvp' or 'double_backward', got {meta_gradient!r}")
        self.fusion = build_network(fusion, FusionNet)
        self.loss_proposal = build_network(loss_proposal, LossProposalNet)
        self.reconstruction = build_network(reconstruction, ReconstructionNet)
        self.save_hyperparameters()
        self.record_networks(*self.networks)
        self.automatic_optimization = False
        self.pixel_mean, self.pixel_max = PixelMean(), PixelMax()
        names = tuple(metrics) if metrics else DEFAULT_METRICS
        self.val_metrics = fusion_metric_collection(names, prefix="val/")
        self.test_metrics = fusion_metric_collection(names, prefix="test/")
        self.test_mean_metrics = fusion_metric_collection(names, prefix="test/mean_")
        self.test_max_metrics = fusion_metric_collection(names, prefix="test/max_")
        self.tags = [task, "meta" if meta else "fixed-loss", f"meta_steps={meta_steps}"]
        self._inner: InnerStep | None = None
        self._outer_count = 0
        self.variant = task
        if pretrained:
            self.load_pretrained(pretrained)

    # -- weights ---------------------------------------------------------------------------------
    def load_official(self, path: Path) -> None:
        """The released fusion module ``ReFusion_<TASK>.pth`` into F (P and R are not released)."""
        self.fusion.load_state_dict(load_official_refusion(path).state_dict())

    @classmethod
    def from_official(
        cls, path: str | Path, task: Literal["ivif", "mfif", "meif", "mif"] = "ivif", **kwargs: Any
    ) -> ReFusion:
        """The released fusion module ``ReFusion_<TASK>.pth`` in a ready module (eval mode)."""
        return cls(task=task, pretrained=str(path), **kwargs).eval()

    # -- colour ----------------------------------------------------------------------------------
    @staticmethod
    def luma(sources: Tensor) -> Tensor:
        """Y of N×K×C×H×W sources (C = 1: as is; C = 3: full-range BT.601 Y rounded to 8-bit codes) → N×K×1×H×W."""
        if sources.shape[-3] == 1:
            return sources
        y = rgb_to_ycbcr(sources, "full")[..., :1, :, :]
        return torch.round(y.clamp(0, 1) * 255.0) / 255.0

    def fuse_y(self, y: Tensor, normalize: bool | None = None) -> Tensor:
        """F on Y sources N×2×1×H×W → N×1×H×W, min–max normalised per image when ``normalize`` (default hparam)."""
        fused = self.inference_call(self.fusion, "fusion")(y)  # --run.eval_precision bf16 etc. (.inference)
        return minmax_normalize(fused) if (self.hparams.normalize_output if normalize is None else normalize) else fused

    def inference_networks(self) -> list[nn.Module]:
        return [self.fusion]

    def recombine(self, fused_y: Tensor, sources: Tensor) -> Tensor:
        """Fused Y N×1×H×W + RGB sources N×2×3×H×W → fused RGB N×3×H×W with the official chroma rule."""
        ycc = rgb_to_ycbcr(sources, "full")
        c1, c2 = ycc[:, 0, 1:], ycc[:, 1, 1:]
        grey = is_grey(sources)  # N×2
        g1, g2 = grey[:, 0, None, None, None], grey[:, 1, None, None, None]
        both = fuse_chroma_official(c1, c2, self.hparams.chroma_tau)
        chroma = torch.where(g1 & g2, torch.full_like(c1, 0.5),
                             torch.where(g1, c2, torch.where(g2, c1, both)))
        return ycbcr_to_rgb(torch.cat([fused_y, chroma], dim=1), "full").clamp(0, 1)

    def forward(self, sources: Tensor) -> Tensor:
        """Sources N×2×C×H×W in [0, 1] (C ∈ {1, 3}) → fused N×C×H×W in [0, 1] (Y fused, chroma recombined)."""
        if sources.ndim != 5 or sources.shape[1] != 2 or sources.shape[2] not in (1, 3):
            raise ValueError(f"ReFusion expects sources N×2×C×H×W with C ∈ {{1, 3}}, got {tuple(sources.shape)}")
        fused_y = self.fuse_y(self.luma(sources))
        return fused_y if sources.shape[2] == 1 else self.recombine(fused_y, sources)

    # -- training --------------------------------------------------------------------------------
    @property
    def official_epoch(self) -> int:
        """Index of the official epoch (two Lightning epochs: meta phase, fusion phase)."""
        return self.current_epoch // 2

    @property
    def phase(self) -> str:
        return "meta" if self.current_epoch % 2 == 0 else "fusion"

    def alpha(self) -> float:
        """α1 of the current official epoch (linear ramp of the training copy)."""
        hp = self.hparams
        if hp.alpha_ramp_epochs is None:
            return float(hp.alpha_grad)
        return float(hp.alpha_grad) * min(1.0, (self.official_epoch + 1) / hp.alpha_ramp_epochs)

    def meta_steps_now(self) -> int:
        """Meta iterations of the current official epoch."""
        return self.hparams.meta_steps

    def _train_pair(self, batch: dict) -> tuple[Tensor, Tensor]:
        """(inputs of F and P, targets of R), both N'×2×1×h×w; swapped copies appended when ``swap_sources``."""
        y = self.luma(batch["sources"])
        if not self.hparams.swap_sources:
            return y, y
        return torch.cat([y, y.flip(1)]), torch.cat([y, y])

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
        super().on_train_batch_start(batch, batch_idx)
        if self.phase == "meta" and (not self.hparams.meta or batch_idx >= 2 * self.meta_steps_now()):
            return -1  # end of the meta phase: skip the rest of this epoch
        return None

    def _set_checkpointing(self) -> None:
        """Block checkpointing of F, P, R for the current phase (``gradient_checkpointing``)."""
        mode = self.hparams.gradient_checkpointing
        on = mode == "all" or (mode == "meta" and self.phase == "meta")
        for net in (self.fusion, self.loss_proposal, self.reconstruction):
            set_gradient_checkpointing(net, on)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        x, targets = self._train_pair(batch)
        self._set_checkpointing()
        if self.phase == "meta":
            # fp32 by design (second order): also its backward, which a bf16-mixed step would otherwise run under
            # autocast (with compiled networks: "Input type (BFloat16) and weight type (Float) should be the same")
            with autocast_off(x.device.type):
                return self._meta_step(x, targets, batch_idx)
        return self._fusion_step(x, targets)

    def _meta_step(self, x: Tensor, targets: Tensor, batch_idx: int) -> Tensor:
        opt_fr, opt_p = self.optimizers()
        lr = opt_fr.param_groups[0]["lr"]
        if batch_idx % 2 == 0:  # inner step on the meta-train batch
            self._inner = inner_update(self.fusion, self.reconstruction, self.loss_proposal, x, lr,
                                       reconstruction_targets=targets, alpha_grad=self.alpha(),
                                       squared_weights=self.hparams.squared_weights,
                                       meta_gradient=self.hparams.meta_gradient)
            loss = self._inner.fusion_loss.detach()
            self.log("train/meta_inner_fusion_loss", loss, on_step=True, on_epoch=True, batch_size=x.shape[0])
            return loss
        if self._inner is None:  # an odd batch without its inner step (e.g. resumed mid-epoch)
            return torch.zeros((), device=x.device)
        loss = meta_loss(self.fusion, self.reconstruction, x, self._inner, reconstruction_targets=targets)
        self.manual_backward(loss / self.hparams.meta_accumulation)  # fills P's .grad only
        self._inner = None
        self._outer_count += 1
        if self._outer_count % self.hparams.meta_accumulation == 0:
            params = list(self.loss_proposal.parameters())
            self.sync_gradients(params)
            if self.hparams.p_update == "normalised":
                p_lr = lr if self.hparams.p_lr is None else self.hparams.p_lr * lr / self.hparams.lr
                normalised_gradient_update_(params, p_lr)
            else:
                self.step_uncounted(opt_p)  # meta steps do not advance global_step
            opt_p.zero_grad(set_to_none=True)
        self.log("train/meta_loss", loss.detach(), on_step=True, on_epoch=True, prog_bar=True,
                 batch_size=x.shape[0])
        return loss.detach()

    def _fusion_step(self, x: Tensor, targets: Tensor) -> Tensor:
        opt_fr, _ = self.optimizers()
        if self.hparams.meta:
            self.loss_proposal.eval()
            with torch.no_grad():
                w, v = self.loss_proposal(x)
        else:
            w = v = torch.full_like(x, 0.5)
        fused = self.fusion(x)
        l_f = refusion_fusion_loss(fused, x, w.detach(), v.detach(), alpha_grad=self.alpha(),
                                   squared_weights=self.hparams.squared_weights)
        l_r = refusion_reconstruction_loss(self.reconstruction(fused.detach()), targets)
        opt_fr.zero_grad(set_to_none=True)
        self.manual_backward(l_f + l_r)  # disjoint parameters: F gets ∇L_f, R gets ∇L_r
        self.sync_gradients([*self.fusion.parameters(), *self.reconstruction.parameters()])
        opt_fr.step()
        n = x.shape[0]
        self.log_dict({"train/fusion_loss": l_f.detach(), "train/reconstruction_loss": l_r.detach(),
                       "train/alpha_grad": torch.tensor(self.alpha())}, on_step=True, on_epoch=True, batch_size=n)
        self.log("train/loss", l_f.detach(), on_step=True, on_epoch=True, prog_bar=True, batch_size=n)
        return l_f.detach()

    def on_train_epoch_end(self) -> None:
        if self.phase == "fusion":
            sched_fr, sched_p = self.lr_schedulers()
            sched_fr.step()
            if self.hparams.p_update == "adam":  # the normalised update uses F's learning rate
                sched_p.step()

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, batch: dict, batch_idx: int, stage: Stage) -> None:
        sources = batch["sources"]
        y = self.luma(sources)
        fused_y = self.fuse_y(y)
        n = y.shape[0]
        if stage == "val":
            self.val_metrics.update(fused_y, y)
            self.log_dict(self.val_metrics, on_epoch=True, batch_size=n)
        else:
            for collection, fused in ((self.test_metrics, fused_y), (self.test_mean_metrics, self.pixel_mean(y)),
                                      (self.test_max_metrics, self.pixel_max(y))):
                collection.update(fused, y)
                self.log_dict(collection, on_epoch=True, batch_size=n)
        log_grid_now = batch_idx == 0 and self.hparams.log_images
        if stage == "test" or log_grid_now:
            fused = self.recombine(fused_y, sources) if sources.shape[2] == 3 else fused_y
        if stage == "test":
            names = list(batch["name"])
            self.per_image.add_metrics(names, self.test_metrics, self.test_mean_metrics, self.test_max_metrics)
            save_samples(self, names, {"input": side_by_side(sources), "output": fused})
        if log_grid_now:
            self.log_examples(stage, [sources[:, 0], sources[:, 1], fused, self.pixel_mean(sources)],
                              ["source 1", "source 2", "ReFusion", "pixel mean"], list(batch["name"]))

    def predict_output(self, batch: dict) -> Tensor:
        """A pair that would not fit in memory is refused before it runs, naming the memory it needs
        (:func:`lightning_modules.memory.refusion_check`; channel attention needs the whole image)."""
        from lightning_modules.memory import refusion_check

        names = batch["name"]
        refusion_check(batch["sources"], [names] if isinstance(names, str) else list(names))
        return self(batch["sources"])

    def configure_optimizers(self) -> tuple[list, list]:
        hp = self.hparams
        opt_fr = torch.optim.Adam([*self.fusion.parameters(), *self.reconstruction.parameters()], lr=hp.lr)
        opt_p = torch.optim.Adam(self.loss_proposal.parameters(), lr=hp.lr if hp.p_lr is None else hp.p_lr, eps=1e-10)
        scheds = [torch.optim.lr_scheduler.StepLR(o, step_size=hp.lr_step_epochs, gamma=hp.lr_gamma)
                  for o in (opt_fr, opt_p)]
        return [opt_fr, opt_p], scheds
