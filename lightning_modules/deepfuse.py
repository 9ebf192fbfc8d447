"""DeepFuse (Prabhakar, Srikar & Babu, ICCV 2017): unsupervised deep exposure fusion.

A CNN fuses the **luminance** (Y) of an exposure stack; chrominance is fused by a fixed per-pixel
rule; the network is trained to maximise MEF-SSIM (``losses``). This file holds the networks and the
fusion helpers; the ``DeepFuse`` LightningModule follows at the end of the file.

SOURCES: official repository KRamPrabhakar/DeepFuse (commit 2a776ba, Theano/Lasagne, inference only):
``main.py`` (architecture, min–max output), ``getres.py`` (weights loading, ``scipy.misc.imsave``),
``Gen_Result.m`` (colour pipeline); ``../shared/papers/deepfuse.md`` (digest). The paper's body
could not be retrieved: the "paper" architecture is the variant of the third-party port
SunnerLi/DeepFuse.pytorch and is **unverified** against the paper.

Scales. The official code feeds raw Y on the 0–255 scale (MATLAB ``rgb2ycbcr``, studio range
16–235) and min–max normalises the output to [0, 255]. Darkroom feeds Y in [0, 1] (the same studio
range divided by 255: [16/255, 235/255]) and min–max normalises to [0, 1]. For the official
architecture this is the *same* model: it has no bias and LeakyReLU is positively homogeneous,
so ``net(a·x) = a·net(x)`` for every a > 0, and min–max normalisation removes ``a``. (For the same
reason summing or averaging the K branch features gives the same normalised output.) The "paper"
variant has biases, so there the scale matters; it maps [0, 1] to [−1, 1] internally, as that port does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torchmetrics import MetricCollection

from imaging.colour import STUDIO_C, STUDIO_Y, YCbCrRange, minmax_normalize, rgb_to_ycbcr, ycbcr_to_rgb
from lightning_modules.base import DarkroomModule, Stage
from lightning_modules.fusion_baselines import Mertens, PixelMean, stack_sources
from lightning_modules.image_grid import save_samples, side_by_side
from losses.mef_ssim import MEFSSIMLoss, mef_ssim
from metrics.mef_ssim import MEFSSIM
from networks.deepfuse import OFFICIAL_WEIGHTS_SOURCE, DeepFuseNet, load_official_deepfuse
from networks.layers import build_network

__all__ = [
    "OFFICIAL_WEIGHTS_SOURCE",
    "DeepFuse",
    "DeepFuseNet",
    "fuse_chroma",
    "fuse_rgb",
    "load_official_deepfuse",
    "minmax_normalize",
    "rgb_to_ycbcr",
    "select_extreme_exposures",
    "stretch_contrast",
    "ycbcr_to_rgb",
]


def _fuse_plane(c: Tensor, tau: float) -> Tensor:
    w = (c - tau).abs()
    den = w.sum(dim=1)
    fused = (c * w).sum(dim=1) / torch.where(den > 0, den, torch.ones_like(den))
    return torch.where(den > 0, fused, torch.full_like(fused, tau))


def fuse_chroma(cb: Tensor, cr: Tensor, tau: float = 128.0 / 255.0) -> tuple[Tensor, Tensor]:
    """Official per-pixel chroma fusion: ``C_f = Σ_k C_k·|C_k − τ| / Σ_k |C_k − τ|``.

    Each exposure's chroma is weighted by its distance from neutral grey τ, per pixel and per
    plane; where every exposure is exactly neutral (0/0) the result is τ. SOURCE: official
    ``Gen_Result.m`` (τ = 128 on 0–255 → 128/255 here, studio range; use τ = 0.5 for kornia's
    full-range YCbCr).

    Shapes:
        cb, cr: N×K×… (dim 1 = exposures, e.g. N×K×1×H×W), same shape → (cb_f, cr_f) each N×….

    Raises:
        ValueError: shapes differ or fewer than 3 dims.
    """
    if cb.shape != cr.shape:
        raise ValueError(f"cb and cr must have the same shape, got {tuple(cb.shape)} and {tuple(cr.shape)}")
    if cb.dim() < 3:
        raise ValueError(f"cb/cr must be N×K×… (dim 1 = exposures), got shape {tuple(cb.shape)}")
    return _fuse_plane(cb, tau), _fuse_plane(cr, tau)


def stretch_contrast(y: Tensor, tol: tuple[float, float] = (0.01, 0.99)) -> Tensor:
    """MATLAB ``imadjust(I)`` with its default ``stretchlim(I)`` limits, per image.

    The image is first quantised to 8 bits (the official pipeline reads the saved uint8 PNG); with
    the 256-level histogram, ``low`` = first level whose CDF exceeds ``tol[0]``, ``high`` = first level
    whose CDF reaches ``tol[1]`` (low = high → [0, 1]); output ``clip((I − low)/(high − low), 0, 1)``.
    SOURCE: official ``Gen_Result.m`` (``J = imadjust(im2double(fused_l))``). Not differentiable.

    Shapes: N×1×H×W in [0, 1] → N×1×H×W in [0, 1].
    """
    if not torch.isfinite(y).all():  # NaN would become an out-of-range histogram index below
        raise ValueError("stretch_contrast: the fused luminance has NaN/inf values (a DeepFuse network output that "
                         "overflowed? the official weights' raw outputs reach ~2e6, above float16's 65504: use "
                         "32-true or bf16-mixed, not 16-mixed)")
    n = y.shape[0]
    levels = torch.clamp(y.detach().flatten(1) * 255.0 + 0.5, 0, 255).long()
    hist = torch.zeros(n, 256, dtype=torch.float64, device=y.device).scatter_add_(
        1, levels, torch.ones_like(levels, dtype=torch.float64)
    )
    cdf = hist.cumsum(1) / hist.sum(1, keepdim=True)
    low = (cdf > tol[0]).double().argmax(1)
    high = (cdf >= tol[1]).double().argmax(1)
    flat = low == high
    low = torch.where(flat, torch.zeros_like(low), low).to(y.dtype) / 255.0
    high = torch.where(flat, torch.full_like(high, 255), high).to(y.dtype) / 255.0
    q = levels.view_as(y).to(y.dtype) / 255.0
    shape = (n,) + (1,) * (y.dim() - 1)
    return ((q - low.view(shape)) / (high - low).view(shape)).clamp(0.0, 1.0)


def fuse_rgb(
    net: nn.Module,
    sources: Tensor | Sequence[Tensor],
    *,
    ycbcr: YCbCrRange = "studio",
    tau: float | None = None,
    luma: Literal["official", "minmax", "raw"] = "official",
) -> Tensor:
    """Fuse an RGB exposure stack: Y by ``net``, Cb/Cr by :func:`fuse_chroma`, back to RGB.

    SOURCE: official ``Gen_Input.m`` / ``Gen_Result.m`` (MATLAB ``rgb2ycbcr`` = ``ycbcr="studio"``).
    ``luma`` decides how the net's output becomes the fused Y:

    * ``"official"``: min–max to [0, 1], quantise to 8 bits (the saved PNG), MATLAB ``imadjust``
      (:func:`stretch_contrast`), then map into the Y range (studio: ``16 + 219·J``). Not differentiable.
    * ``"minmax"``: min–max to [0, 1], then into the Y range.
    * ``"raw"``: the net's output is used as Y as it is (a net trained to output Y directly).

    Unlike ``Gen_Result.m`` the YCbCr image is not rounded to uint8 before conversion to RGB.

    Args:
        net: maps N×K×1×H×W luminance to N×1×H×W (e.g. :class:`DeepFuseNet`).
        sources: N×K×3×H×W RGB in [0, 1], K ≥ 2 (or a sequence of K tensors N×3×H×W).
        ycbcr: ``"studio"`` (official) or ``"full"`` (kornia / JPEG range).
        tau: neutral chroma; default 128/255 (studio) or 0.5 (full).

    Returns:
        N×3×H×W RGB clamped to [0, 1].
    """
    sources = stack_sources(sources, channels=3)
    if luma not in ("official", "minmax", "raw"):
        raise ValueError(f"luma must be 'official', 'minmax' or 'raw', got {luma!r}")
    if tau is None:
        tau = STUDIO_C[0] if ycbcr == "studio" else 0.5
    ycc = rgb_to_ycbcr(sources, ycbcr)  # N×K×3×H×W
    y = net(ycc[:, :, :1])
    if luma != "raw":
        j = minmax_normalize(y)
        if luma == "official":
            j = stretch_contrast(j)
        offset, gain = STUDIO_Y if ycbcr == "studio" else (0.0, 1.0)
        y = offset + gain * j
    cb, cr = fuse_chroma(ycc[:, :, 1:2], ycc[:, :, 2:3], tau)
    return ycbcr_to_rgb(torch.cat([y, cb, cr], dim=1), ycbcr).clamp(0.0, 1.0)


def select_extreme_exposures(sources: Tensor | Sequence[Tensor]) -> Tensor:
    """Keep the darkest and the brightest source (by mean intensity) of each stack.

    For fusing K > 2 exposures with the pair-trained official model (an option, ours; the paper's
    rule for stacks was not found). File names do not give exposure order, so the mean decides.

    Shapes: N×K×C×H×W → N×2×C×H×W (darkest first).
    """
    sources = stack_sources(sources)
    means = sources.flatten(2).mean(dim=2)  # N×K
    idx = torch.stack([means.argmin(dim=1), means.argmax(dim=1)], dim=1)  # N×2
    idx = idx.view(*idx.shape, 1, 1, 1).expand(-1, -1, *sources.shape[2:])
    return sources.gather(1, idx)


# ---- LightningModule ----


class DeepFuse(DarkroomModule):
    """DeepFuse: unsupervised exposure fusion, the luminance CNN trained on 1 − MEF-SSIM.

    ``forward(sources)`` fuses an RGB stack: Y (studio range, MATLAB ``rgb2ycbcr``/255) through
    :class:`DeepFuseNet`, Cb/Cr by the official per-pixel rule (:func:`fuse_chroma`), back to RGB
    (:func:`fuse_rgb`). Training sees only the Y planes of the sources (no ground truth).

    Training loss on Y (``loss``):

    * ``"mef_ssim"`` (default): ``loss_weight · (1 − MEF-SSIM(ŷ, {y_k}))`` with ŷ the net's output
      min–max normalised to [0, 1] (official ``main.py`` remnants normalise before the loss; the exact
      unreleased ``mef_ssim_loss_wo_wmap`` is not found, so ``1 − Q`` is ours; the remnants scale by 100:
      ``loss_weight=100``). ``multiscale_loss`` uses the 3-scale oQ instead of Q.
    * ``"l1"`` / ``"mse"`` (the paper's loss comparison, digest §2.3; its target is **not found**). Ours:
      without ground truth the target is ``pixel_target`` = ``"mean"`` (per-pixel mean of the sources' Y)
      or ``"mertens"`` (Y of Mertens (1, 1, 1) fusion of the RGB sources), min–max normalised per image
      like ŷ, so both live on [0, 1].

    Validation/test log MEF-SSIM (single scale ``mef_ssim``, and 3-scale ``ms_mef_ssim`` for images whose
    sides are ≥ 44) of the fused image's Y against the sources' Y (all exposures of the batch), and the
    same metrics for two training-free baselines on the same batch: per-pixel mean of the exposures
    (``mean_*``) and Mertens with weights (1, 1, 1) (``mertens_*``). Metrics are torchmetrics states
    (synced under DDP); the loss runs in fp32 with autocast disabled (``losses.mef_ssim``).

    Args:
        net: the luminance CNN, :class:`~networks.deepfuse.DeepFuseNet` (its ``architecture``: ``"official"``, the
            released model, or ``"paper"``, the unverified port variant; LeakyReLU ``negative_slope``, official
            0.01; ``batch_norm`` in the paper variant). ``None`` = the released architecture. Its output is
            min–max normalised (``normalize_output=True``), which the loss and the fusion rule expect.
        loss: ``"mef_ssim"`` | ``"l1"`` | ``"mse"``.
        multiscale_loss: 3-scale MEF-SSIM in the loss.
        loss_weight: multiplier of the loss (official remnants: 100; ours 1).
        pixel_target: target of the ℓ1/MSE losses, ``"mean"`` or ``"mertens"`` (ours, see above).
        luma: how the net's output becomes the fused Y at inference (see :func:`fuse_rgb`): ``"official"``
            (min–max, 8-bit, MATLAB ``imadjust``, ``Gen_Result.m``) or ``"minmax"``.
        eval_exposures: how a K > 2 stack is fused at val/test/predict: ``"all"`` (the K tied-branch
            features summed; ours, the paper's rule is not found) or ``"extreme_pair"`` (darkest + brightest
            only). MEF-SSIM is always scored against every exposure of the batch.
        lr, betas: Adam, official 1e-3 / (0.9, 0.999).
        pretrained: ``DF_model_Epoch99.npz`` (official weights) or a Darkroom ``.ckpt`` to start from.
        log_images: how many samples go into the val/test grids (sources | DeepFuse | Mertens); 0 = none.
    """

    paper = "deepfuse"
    monitor = ("val/mef_ssim", "max")
    networks = ("net",)

    def __init__(
        self,
        net: DeepFuseNet | None = None,
        loss: Literal["mef_ssim", "l1", "mse"] = "mef_ssim",
        multiscale_loss: bool = False,
        loss_weight: float = 1.0,
        pixel_target: Literal["mean", "mertens"] = "mean",
        luma: Literal["official", "minmax"] = "official",
        eval_exposures: Literal["all", "extreme_pair"] = "all",
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        pretrained: str | None = None,
        log_images: int = 2,
    ) -> None:
        super().__init__()
        if loss not in ("mef_ssim", "l1", "mse"):
            raise ValueError(f"loss must be 'mef_ssim', 'l1' or 'mse', got {loss!r}")
        if pixel_target not in ("mean", "mertens"):
            raise ValueError(f"pixel_target must be 'mean' or 'mertens', got {pixel_target!r}")
        if luma not in ("official", "minmax"):
            raise ValueError(f"luma must be 'official' or 'minmax', got {luma!r}")
        if eval_exposures not in ("all", "extreme_pair"):
            raise ValueError(f"eval_exposures must be 'all' or 'extreme_pair', got {eval_exposures!r}")
        self.net = build_network(net, DeepFuseNet)
        if not self.net.normalize_output:
            raise ValueError("DeepFuse: the net must min–max normalise its output (normalize_output=True): the "
                             "MEF-SSIM loss and the fusion rule take a fused Y in [0, 1]")
        self.save_hyperparameters()
        self.record_networks("net")
        architecture = self.net.architecture
        self.mef_loss = MEFSSIMLoss(multiscale=multiscale_loss, loss_weight=loss_weight)
        self.mean_baseline = PixelMean()
        self.mertens = Mertens(1.0, 1.0, 1.0)
        self.methods = ("", "mean_", "mertens_")  # DeepFuse, per-pixel mean, Mertens (1, 1, 1)
        self.val_metrics = nn.ModuleDict({m or "deepfuse": self._metrics(f"val/{m}") for m in self.methods})
        self.test_metrics = nn.ModuleDict({m or "deepfuse": self._metrics(f"test/{m}") for m in self.methods})
        self.tags = [architecture, f"loss-{loss}" + ("-ms" if multiscale_loss and loss == "mef_ssim" else "")]
        self.variant = architecture
        if pretrained:
            self.load_pretrained(pretrained)

    @staticmethod
    def _metrics(prefix: str) -> MetricCollection:
        return MetricCollection({"mef_ssim": MEFSSIM(), "ms_mef_ssim": MEFSSIM(multiscale=True)},
                                prefix=prefix, compute_groups=False)

    # -- weights ---------------------------------------------------------------------------------
    def load_official(self, path: Path) -> None:
        """The official ``DF_model_Epoch99.npz`` (released architecture only)."""
        if self.net.architecture != "official":
            raise ValueError(f"{path}: the official weights fit architecture='official' only, "
                             f"not {self.net.architecture!r}")
        self.net.load_state_dict(load_official_deepfuse(path).state_dict())

    @classmethod
    def from_official(cls, path: str | Path, **kwargs: Any) -> DeepFuse:
        """The released ``DF_model_Epoch99.npz`` in a ready module (official architecture)."""
        return cls(net=DeepFuseNet("official"), pretrained=str(path), **kwargs)

    # -- inference -------------------------------------------------------------------------------
    def forward(self, sources: Tensor) -> Tensor:
        """Fuse RGB stacks N×K×3×H×W in [0, 1] (K ≥ 2) → fused RGB N×3×H×W in [0, 1]."""
        sources = stack_sources(sources, channels=3)
        if self.hparams.eval_exposures == "extreme_pair" and sources.shape[1] > 2:
            sources = select_extreme_exposures(sources)
        # --run.channels_last (lightning_modules.inference)
        return fuse_rgb(self.inference_call(self.net), sources, ycbcr="studio", luma=self.hparams.luma)

    inference_not_offered = {
        "compile": "DeepFuse is five convolutions with nothing between them to fuse",
        "bf16": "measured 28 dB PSNR to fp32 on a real pair: the official luma rule's contrast stretch amplifies "
                "bf16 rounding (tests/test_inference_options.py)"}

    def inference_networks(self) -> list[nn.Module]:
        return [self.net]

    # -- steps -----------------------------------------------------------------------------------
    def _pixel_target(self, sources: Tensor, y: Tensor) -> Tensor:
        if self.hparams.pixel_target == "mertens":
            return rgb_to_ycbcr(self.mertens(sources))[:, :1]
        return y.mean(dim=1)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        sources = stack_sources(batch["sources"], channels=3)
        y = rgb_to_ycbcr(sources)[:, :, :1]  # N×K×1×h×w, studio-range Y / 255
        fused = self.net(y)  # N×1×h×w, min–max normalised to [0, 1]
        if self.hparams.loss == "mef_ssim":
            loss = self.mef_loss(fused, y)
        else:
            target = minmax_normalize(self._pixel_target(sources, y).detach().float())
            diff = fused.float() - target
            loss = self.hparams.loss_weight * (diff.abs().mean() if self.hparams.loss == "l1" else diff.pow(2).mean())
        n = sources.shape[0]
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=n)
        if self.hparams.loss != "mef_ssim":  # the objective DeepFuse is about, for comparison
            with torch.no_grad():
                self.log("train/mef_ssim", mef_ssim(fused.detach(), y).mean(), on_step=True, on_epoch=True,
                         batch_size=n)
        return loss

    def evaluate(self, batch: dict, batch_idx: int, stage: Stage) -> None:
        sources = stack_sources(batch["sources"], channels=3)
        fused = self(sources)
        outputs = {"": fused, "mean_": self.mean_baseline(sources), "mertens_": self.mertens(sources)}
        y_sources = rgb_to_ycbcr(sources)[:, :, :1].float()
        multiscale = min(sources.shape[-2:]) >= 44  # 3 scales of 11×11 windows (mef_ms_ssim.m)
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        for method, image in outputs.items():
            collection = metrics[method or "deepfuse"]
            y_fused = rgb_to_ycbcr(image.float())[:, :1]
            collection["mef_ssim"].update(y_fused, y_sources)
            if multiscale:
                collection["ms_mef_ssim"].update(y_fused, y_sources)
            self.log_dict(collection, on_epoch=True, batch_size=sources.shape[0])
        if stage == "test":
            names = list(batch["name"])
            self.per_image.add_metrics(names, *metrics.values())
            save_samples(self, names, {"input": side_by_side(sources), "output": fused})
        if batch_idx == 0 and self.hparams.log_images:
            k = self.hparams.log_images
            cols = [sources[:k, i] for i in range(sources.shape[1])] + [fused[:k], outputs["mertens_"][:k]]
            captions = [f"exposure {i + 1}" for i in range(sources.shape[1])] + ["DeepFuse", "Mertens"]
            self.log_examples(stage, cols, captions, list(batch["name"][:k]))

    def predict_output(self, batch: dict) -> Tensor:
        """Fuse full-size stacks; above 4 tiles of pixels in the exact two-pass tiled form (the convolutions tile by
        tile, then the global min–max: :func:`lightning_modules.memory.deepfuse_fuse`, same output)."""
        from lightning_modules.memory import deepfuse_fuse, deepfuse_tile_size

        sources = batch["sources"]
        return deepfuse_fuse(self, sources, deepfuse_tile_size(self, sources))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.net.parameters(), lr=self.hparams.lr, betas=tuple(self.hparams.betas))
