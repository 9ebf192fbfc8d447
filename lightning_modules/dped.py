"""DPED (Ignatov et al., ICCV 2017): phone photo → DSLR-quality photo.

Networks exactly as the official code (aiff22/DPED @ ebb0131, file ``models.py``), which produced the released
weights; see ``../shared/papers/dped.md`` §2:

* :class:`DPEDGenerator` — ``models.resnet``: conv 9×9 → 4 residual blocks (conv-IN-ReLU twice, ReLU before
  the skip-add) → two conv 3×3 + ReLU → conv 9×9 → ``tanh(x)·0.58 + 0.5`` (range (−0.08, 1.08), no clipping).
  Fully convolutional: any H×W.
* :class:`DPEDDiscriminator` — ``models.adversarial``: grayscale 100×100 patch → 5 convs (LeakyReLU(0.2) then
  instance norm) → fc 1024 → 2 logits (class 0 = DSLR, class 1 = enhanced). Returns logits; the softmax is
  in :mod:`losses.dped`.
* :func:`load_official_dped` — maps the released TF1 checkpoints (``models_orig/<phone>_orig``) onto
  :class:`DPEDGenerator`, read with the TensorFlow-free :mod:`lightning_modules.tf_checkpoint`.
* :class:`DPED` — the LightningModule: GAN training with manual optimisation (one generator and one
  discriminator update per iteration, official losses of :mod:`losses.dped`), evaluation with the official
  script's PSNR and MS-SSIM (:mod:`metrics.dped`) on 100×100 test patches, full-size predict.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torchmetrics import MetricCollection

from lightning_modules.checkpoints import load_checkpoint_file
from lightning_modules.image_grid import finish_samples, log_grid, save_samples
from lightning_modules.inference import FastInference
from lightning_modules.per_image import PerImageRows
from lightning_modules.tf_checkpoint import checkpoint_files, load_tf_checkpoint
from losses.dped import ALTERNATIVE_WEIGHTS, OFFICIAL_WEIGHTS, DPEDGeneratorLoss, discriminator_loss
from losses.vgg import VGG19Features
from metrics.dped import DPEDMSSSIM, DPEDPSNR, DPEDBatchPSNR

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

OFFICIAL_DPED_SOURCE = (
    "https://github.com/aiff22/DPED (commit ebb01315, folder models_orig/: "
    "{iphone,sony,blackberry}_orig.index and .data-00000-of-00001)"
)

# tf.image.rgb_to_grayscale weights (tensorflow/python/ops/image_ops_impl.py).
_TF_GRAY = (0.2989, 0.5870, 0.1140)


def _init_official(module: nn.Module) -> None:
    """Official init: weights ``tf.truncated_normal(stddev=0.01)`` (truncated at 2σ), biases 0.01."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-0.02, b=0.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0.01)
        elif isinstance(m, nn.InstanceNorm2d) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _instance_norm(channels: int, eps: float) -> nn.InstanceNorm2d:
    """``models._instance_norm``: per sample and channel over H, W, biased variance, affine, no running stats."""
    return nn.InstanceNorm2d(channels, eps=eps, affine=True, track_running_stats=False)


class _ResidualBlock(nn.Module):
    """out = ReLU(IN(conv(ReLU(IN(conv(x)))))) + x — ReLU before the add, nothing after it (official)."""

    def __init__(self, channels: int, eps: float) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm_a = _instance_norm(channels, eps)
        self.conv_b = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm_b = _instance_norm(channels, eps)

    def forward(self, x: Tensor) -> Tensor:
        a = F.relu(self.norm_a(self.conv_a(x)))
        return F.relu(self.norm_b(self.conv_b(a))) + x


class DPEDGenerator(nn.Module):
    """DPED image-enhancement generator (official ``models.resnet``).

    Args:
        n_blocks: residual blocks (official 4 → 12 conv layers).
        channels: feature channels (official 64).
        eps: instance-norm ε (official 1e-3, biased variance).
        init: ``"official"`` (truncated normal σ 0.01, biases 0.01) or ``"pytorch"`` (PyTorch's default
            Kaiming-uniform conv init: the output depends on the input from the first step, so short CPU runs
            learn much faster; a demo deviation).

    Shapes:
        input N×3×H×W RGB in [0, 1] (any H, W); output N×3×H×W in (−0.08, 1.08), unclipped.

    With the defaults it has 401,475 parameters (= the released checkpoints). Convolutions are stride 1 with
    TF 'SAME' padding, which for odd kernels is exactly zero padding k//2.
    """

    def __init__(self, n_blocks: int = 4, channels: int = 64, eps: float = 1e-3,
                 init: Literal["official", "pytorch"] = "official") -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, channels, 9, padding=4)
        self.blocks = nn.ModuleList(_ResidualBlock(channels, eps) for _ in range(n_blocks))
        self.conv_mid1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_mid2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_out = nn.Conv2d(channels, 3, 9, padding=4)
        if init == "official":
            _init_official(self)
        elif init != "pytorch":
            raise ValueError(f"init must be 'official' or 'pytorch', got {init!r}")

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"DPEDGenerator expects N×3×H×W RGB images, got shape {tuple(x.shape)}")
        h = F.relu(self.conv_in(x))
        for block in self.blocks:
            h = block(h)
        h = F.relu(self.conv_mid1(h))
        h = F.relu(self.conv_mid2(h))
        return torch.tanh(self.conv_out(h)) * 0.58 + 0.5


def rgb_to_grayscale_tf(x: Tensor) -> Tensor:
    """TF ``rgb_to_grayscale``: N×3×H×W → N×1×H×W with weights (0.2989, 0.5870, 0.1140)."""
    w = x.new_tensor(_TF_GRAY).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def tf_same_pad(x: Tensor, kernel: int, stride: int) -> Tensor:
    """Zero-pad N×C×H×W like TF 'SAME': total ``max((⌈n/s⌉−1)·s + k − n, 0)``, the extra pixel bottom/right."""
    pads: list[int] = []
    for n in (x.shape[-1], x.shape[-2]):  # F.pad order: (left, right, top, bottom)
        total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class _DiscConv(nn.Module):
    """``models._conv_layer``: conv (TF SAME) + bias → LeakyReLU(0.2) → optional instance norm."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, norm: bool, eps: float) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride)
        self.norm = _instance_norm(c_out, eps) if norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(tf_same_pad(x, self.kernel, self.stride))
        return self.norm(F.leaky_relu(x, 0.2))


class DPEDDiscriminator(nn.Module):
    """DPED texture discriminator (official ``models.adversarial``; not released).

    Args:
        in_size: patch side (official 100); the fc layer is sized for it.
        grayscale: official True — RGB input is converted with TF's ``rgb_to_grayscale`` weights
            (N×1 input is taken as already grey); False gives a 3-channel first conv (variant).
        eps: instance-norm ε (official 1e-3).
        width: multiplier of every layer's width (conv 48/128/192/192/128, fc 1024; official 1.0). Smaller values
            are for CPU demos and tests only.

    Shapes:
        input N×3×S×S (or N×1×S×S when ``grayscale``), S = ``in_size``, values in [0, 1];
        output N×2 **logits** (class 0 = DSLR, class 1 = enhanced); softmax in the loss.

    7,361,122 parameters with the defaults. TF 'SAME' padding is applied explicitly (for the 11×11 stride-4
    conv1 at 100 px: 3 top/left, 4 bottom/right), and the conv5 map is flattened in TF's H, W, C order.
    """

    def __init__(self, in_size: int = 100, grayscale: bool = True, eps: float = 1e-3, width: float = 1.0) -> None:
        super().__init__()
        self.in_size, self.grayscale = in_size, grayscale

        def w(n: int) -> int:
            return max(1, round(n * width))

        spec = [  # (c_in, c_out, kernel, stride, instance norm)
            (1 if grayscale else 3, w(48), 11, 4, False),
            (w(48), w(128), 5, 2, True),
            (w(128), w(192), 3, 1, True),
            (w(192), w(192), 3, 1, True),
            (w(192), w(128), 3, 2, True),
        ]
        self.convs = nn.Sequential(*(_DiscConv(*s, eps=eps) for s in spec))
        side = in_size
        for _, _, _, stride, _ in spec:
            side = math.ceil(side / stride)
        self.fc = nn.Linear(w(128) * side * side, w(1024))
        self.out = nn.Linear(w(1024), 2)
        _init_official(self)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[-2:] != (self.in_size, self.in_size):
            raise ValueError(
                f"DPEDDiscriminator expects N×C×{self.in_size}×{self.in_size} patches, got {tuple(x.shape)}"
            )
        if self.grayscale and x.shape[1] == 3:
            x = rgb_to_grayscale_tf(x)
        expected = 1 if self.grayscale else 3
        if x.shape[1] != expected:
            raise ValueError(f"DPEDDiscriminator expects {expected} channel(s), got {x.shape[1]}")
        h = self.convs(x).permute(0, 2, 3, 1).flatten(1)  # NHWC flatten, as TF
        h = F.leaky_relu(self.fc(h), 0.2)
        return self.out(h)


def _official_state_dict(tensors: dict[str, np.ndarray], n_blocks: int = 4) -> dict[str, Tensor]:
    """Map ``generator/W1..W12, b1..b12, Variable…`` onto :class:`DPEDGenerator` parameter names."""

    def conv(i: int) -> tuple[Tensor, Tensor]:
        w = torch.from_numpy(tensors[f"generator/W{i}"]).permute(3, 2, 0, 1).contiguous()  # HWIO → OIHW
        return w, torch.from_numpy(tensors[f"generator/b{i}"])

    def var(j: int) -> Tensor:
        return torch.from_numpy(tensors["generator/Variable" if j == 0 else f"generator/Variable_{j}"])

    sd: dict[str, Tensor] = {}
    sd["conv_in.weight"], sd["conv_in.bias"] = conv(1)
    # k-th normalised conv = W(k+2); its IN shift = Variable_{2k}, scale = Variable_{2k+1} (creation order)
    for k in range(2 * n_blocks):
        blk, part = divmod(k, 2)
        ab = "ab"[part]
        sd[f"blocks.{blk}.conv_{ab}.weight"], sd[f"blocks.{blk}.conv_{ab}.bias"] = conv(k + 2)
        sd[f"blocks.{blk}.norm_{ab}.bias"] = var(2 * k)
        sd[f"blocks.{blk}.norm_{ab}.weight"] = var(2 * k + 1)
    n = 2 * n_blocks + 2
    sd["conv_mid1.weight"], sd["conv_mid1.bias"] = conv(n)
    sd["conv_mid2.weight"], sd["conv_mid2.bias"] = conv(n + 1)
    sd["conv_out.weight"], sd["conv_out.bias"] = conv(n + 2)
    return sd


def load_official_dped(prefix: str | Path) -> DPEDGenerator:
    """Build a :class:`DPEDGenerator` with the released official weights (no TensorFlow needed).

    Args:
        prefix: checkpoint prefix, e.g. ``…/weights/dped/iphone_orig`` (also ``sony_orig``,
            ``blackberry_orig``), or the path of its ``.index`` file.

    Returns:
        the generator in eval mode (instance norm has no running statistics, so eval = train behaviour).

    Raises:
        FileNotFoundError: ``<prefix>.index`` or ``<prefix>.data-00000-of-00001`` is missing; the message says
            where the files come from.
    """
    files = checkpoint_files(prefix)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"DPED checkpoint file(s) not found: {', '.join(missing)}. Put the official TF1 checkpoint there: "
            f"{OFFICIAL_DPED_SOURCE}. Weights are never downloaded at run time."
        )
    tensors = load_tf_checkpoint(prefix)
    with torch.device("meta"):  # skip the random init: every parameter is overwritten
        model = DPEDGenerator()
    model.load_state_dict(_official_state_dict(tensors), strict=True, assign=True)
    return model.eval()


# ---- LightningModule ----
#
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


class DPED(FastInference, LightningModule):
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
        n_blocks, channels, eps: generator (:class:`DPEDGenerator`; official 4 / 64 / 1e-3).
        generator_init: ``"official"`` or ``"pytorch"`` (:class:`DPEDGenerator`; the latter for short CPU demos).
        patch_size: discriminator input side (official 100; its fc layer is sized for it).
        disc_grayscale: discriminator on TF-grayscale input (official True).
        disc_width: discriminator width multiplier (official 1.0; :class:`DPEDDiscriminator`); < 1 for CPU demos
            and tests only.
        loss_preset: ``"official"`` or ``"alternative"`` weight set (:mod:`losses.dped`).
        loss_weights: :class:`DPEDLossWeights` overriding the preset per term (0 = off).
        texture_warmup: iterations at the start during which the texture term is left out of the generator loss
            (the discriminator still trains; the generator step skips its forward through D); official 0 (the author suggests 1–2K iterations when training is unstable, #17).
        vgg_weights: VGG-19 weight file for the content loss (default: ``$DARKROOM_VGG19`` or the torch hub
            cache, see :mod:`losses.vgg`); needed only when the content weight is ≠ 0, and only for ``fit``.
        vgg_pretrained: False = a randomly initialised VGG-19 (smoke tests and speed measurements only).
        content_features: ``"vgg19"`` (official: relu5_4 of VGG-19) or ``"pixel"``: φ = identity, so the content
            term is the per-pixel MSE on [0, 1] — the loss DPED's perceptual content term replaces (the paper's
            SRCNN-style baseline). A stand-in for runs without VGG-19 weights (the CPU demo); its scale is not the
            VGG term's, so set ``loss_weights.content`` explicitly with it.
        lr_g, lr_d: Adam learning rates (official 5e-4 both; betas 0.9/0.999, ε 1e-8 = TF defaults).
        lr_schedule: ``"constant"`` (official) or ``"cosine"``: both learning rates decay to 0 over
            ``trainer.max_steps`` iterations (for short demo runs, whose last iterate otherwise fluctuates).
        pretrained: an official TF checkpoint prefix (``…/iphone_orig``) or a Darkroom ``.ckpt`` to start from.
        log_images: patches in the validation/test grid (phone | DPED | DSLR); 0 = none.
    """

    paper = "dped"
    monitor = ("val/psnr", "max")

    def __init__(
        self,
        n_blocks: int = 4,
        channels: int = 64,
        eps: float = 1e-3,
        generator_init: Literal["official", "pytorch"] = "official",
        patch_size: int = 100,
        disc_grayscale: bool = True,
        disc_width: float = 1.0,
        loss_preset: Literal["official", "alternative"] = "official",
        loss_weights: DPEDLossWeights = DPEDLossWeights(),  # noqa: B008 (immutable use)
        texture_warmup: int = 0,
        vgg_weights: str | None = None,
        vgg_pretrained: bool = True,
        content_features: Literal["vgg19", "pixel"] = "vgg19",
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
        if content_features not in ("vgg19", "pixel"):
            raise ValueError(f"content_features must be 'vgg19' or 'pixel', got {content_features!r}")
        self.save_hyperparameters()
        self.hparams["loss_weights"] = asdict(loss_weights)
        self.automatic_optimization = False
        preset = OFFICIAL_WEIGHTS if loss_preset == "official" else ALTERNATIVE_WEIGHTS
        self.weights: dict[str, float] = {
            k: float(preset[k] if v is None else v) for k, v in asdict(loss_weights).items()
        }
        self.generator = DPEDGenerator(n_blocks=n_blocks, channels=channels, eps=eps, init=generator_init)
        self.discriminator = DPEDDiscriminator(in_size=patch_size, grayscale=disc_grayscale, eps=eps,
                                               width=disc_width)
        self.loss: DPEDGeneratorLoss | None = None  # built for fit only (the VGG-19 is not needed to evaluate)
        metrics = MetricCollection({"psnr": DPEDPSNR(), "ms_ssim": DPEDMSSSIM(), "psnr_batch": DPEDBatchPSNR()},
                                   compute_groups=False)
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.test_input_metrics = metrics.clone(prefix="test/input_")
        self.tags = ["dped", loss_preset] + [f"no-{k}" for k, v in self.weights.items() if v == 0]
        if content_features != "vgg19" and self.weights["content"] != 0:
            self.tags.append(f"content-{content_features}")
        self.register_load_state_dict_post_hook(self._ignore_missing_vgg)
        self.variant = "dped"
        self.per_image = PerImageRows()
        if pretrained:
            self.load_pretrained(pretrained)

    # -- weights ---------------------------------------------------------------------------------
    @staticmethod
    def _ignore_missing_vgg(module: nn.Module, incompatible: Any) -> None:
        incompatible.missing_keys[:] = [k for k in incompatible.missing_keys if not k.startswith("loss.vgg.")]

    def build_loss(self) -> DPEDGeneratorLoss:
        """Build the generator objective (and the VGG-19 when the content weight is ≠ 0); called at ``fit``.

        Raises:
            FileNotFoundError: content weight ≠ 0 and no VGG-19 weight file: the message says where to put it.
        """
        if self.loss is None:
            vgg = None
            if self.weights["content"] != 0 and self.hparams.content_features == "pixel":
                vgg = nn.Identity()
            elif self.weights["content"] != 0:
                vgg = VGG19Features("relu5_4", weights=self.hparams.vgg_weights,
                                    pretrained=self.hparams.vgg_pretrained)
                vgg.register_state_dict_post_hook(_drop_vgg_state)
            self.loss = DPEDGeneratorLoss(weights=self.weights, vgg=vgg).to(self.device)
        return self.loss

    def load_pretrained(self, path: str | Path) -> None:
        """Load generator weights: a Darkroom ``.ckpt`` or an official TF1 checkpoint prefix (``…/iphone_orig``)."""
        path = Path(path)
        if path.suffix == ".ckpt":
            if not path.is_file():
                raise FileNotFoundError(f"{path}: checkpoint not found")
            state = load_checkpoint_file(path)["state_dict"]
            for name in ("generator", "discriminator"):
                sub = {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")}
                if sub:
                    getattr(self, name).load_state_dict(sub)
            return
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
            strategy = self.trainer.strategy if self._trainer is not None else None
            ddp_kwargs = getattr(strategy, "_ddp_kwargs", None)
            if isinstance(ddp_kwargs, dict):
                # The toggled network gets no gradient in the other network's step: DDP must not wait for it.
                ddp_kwargs.setdefault("find_unused_parameters", True)

    def _step_uncounted(self, opt: Any) -> None:
        """``opt.step()`` without advancing ``trainer.global_step`` (so that it counts iterations)."""
        hooks = getattr(opt, "_on_before_step", None), getattr(opt, "_on_after_step", None)
        if hooks[0] is None or hooks[1] is None:
            opt.step()
            return
        opt._on_before_step = opt._on_after_step = lambda: None
        try:
            opt.step()
        finally:
            opt._on_before_step, opt._on_after_step = hooks

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
            self._step_uncounted(opt_d)
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
    def _evaluate(self, batch: dict, batch_idx: int, stage: str) -> Tensor:
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
            path = log_grid(self, f"{stage}/examples", cols, ["phone", "DPED", "DSLR"][: len(cols)],
                            row_names=list(batch["name"][: self.hparams.log_images]))
            if path is not None:
                self.last_grid_path = path
        return out

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def on_test_epoch_start(self) -> None:
        self.per_image.reset()

    def on_test_epoch_end(self) -> None:
        finish_samples(self)

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        """Full-size photos → ``{"output": clamped to [0, 1], "name"}`` (written as PNG by the command): whole when
        the photo fits in memory, else exact tiled instance norm (announced; :func:`lightning_modules.memory.dped_generate`)."""
        from lightning_modules.memory import dped_generate
        from lightning_modules.tiling import DEFAULT_TILE_SIZE

        names = batch["name"]
        name = names if isinstance(names, str) else ", ".join(map(str, names))
        with self.inference_autocast():  # --run.eval_precision bf16
            out = self.to_fp32(dped_generate(self.generator, batch["input"], name,
                                             getattr(self, "tile_size", DEFAULT_TILE_SIZE)))
        return {"output": out.clamp_(0, 1), "name": names}
