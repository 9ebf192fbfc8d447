"""Device-agnostic code, proven without a GPU (issue 13, part 5).

Every network, loss and metric class runs

* on PyTorch's ``meta`` device (inputs, parameters and buffers there): a tensor created on the CPU by mistake
  inside — ``torch.tensor(...)`` / ``torch.arange(...)`` without ``device=``, ``.numpy()``, ``.item()`` — then
  fails with a device mismatch or "cannot copy out of meta tensor", and every output and gradient must be on
  ``meta``. Meta follows CUDA's rules: 0-d CPU tensors and CPU index tensors mix with device tensors, and a CPU
  tensor moved with ``.to(x.device)`` is fine (a host-to-device copy, not a bug). Where an op has no meta
  kernel, or a metric needs the data on the host by design, the case is marked ``xfail(strict=True)`` with the
  op named (so it is noticed when it starts to pass);
* on the CPU under ``torch.autocast("cpu", dtype=torch.bfloat16)`` and ``torch.float16`` (what Lightning's
  ``bf16-mixed`` / ``16-mixed`` precision does in training and validation steps), with finite outputs and
  gradients; the losses and metrics, which compute in float32 / float64 whatever the autocast, must moreover
  give exactly their float32 values.

Sizes are small (32×32 / 48×48 on meta, 16×16 / 8×8 under autocast, where float16 convolutions are slow on a
CPU; NIQE needs two 96×96 blocks: 96×192); one torch thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from conftest import require_niqe_model
from torch import Tensor, nn

import metrics.fusion as fusion
from lightning_modules.deepfuse import DeepFuseNet
from lightning_modules.dped import DPEDDiscriminator, DPEDGenerator
from lightning_modules.refusion import FusionNet, LossProposalNet, ReconstructionNet
from lightning_modules.zero_dce import DCENet, DCENetPP
from losses import dped as dped_losses
from losses import refusion as refusion_losses
from losses import zero_dce as zero_dce_losses
from losses.mef_ssim import MEFSSIMLoss
from losses.vgg import VGG19Features
from metrics.dped import DPEDMSSSIM, DPEDPSNR, DPEDBatchPSNR
from metrics.full_reference import MAE, PSNR, SSIM, VARIANTS
from metrics.fusion import ALL_METRICS, FusionMetrics, Qabf, fusion_metric_collection
from metrics.mef_ssim import MEFSSIM
from metrics.no_reference import LOE, NIQE, ColourCast, MeanBrightness

META = torch.device("meta")
CPU = torch.device("cpu")
AUTOCAST_DTYPES = pytest.mark.parametrize("amp_dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one torch thread (on a shared 2-core machine two threads mostly wait for each other)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _rand(device: torch.device, *shape: int, grad: bool = False, seed: int = 0) -> Tensor:
    """Uniform [0, 1) on ``device`` (seeded on the CPU; meta tensors have no values)."""
    if device.type == "meta":
        t = torch.empty(shape, device=META)
    else:
        t = torch.rand(shape, generator=torch.Generator().manual_seed(seed + sum(shape)))
    return t.requires_grad_(grad)


def _tensors(obj: Any) -> list[Tensor]:
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors(v)]
    if isinstance(obj, (tuple, list)):
        return [t for v in obj for t in _tensors(v)]
    return []


def _scalar(outputs: list[Tensor]) -> Tensor:
    return sum(o.float().sum() for o in outputs if o.is_floating_point())


def _assert_on(device: torch.device, tensors: list[Tensor], what: str) -> None:
    assert tensors, f"{what}: no tensors"
    wrong = [(i, t.device) for i, t in enumerate(tensors) if t.device.type != device.type]
    assert not wrong, f"{what}: tensors on the wrong device (index, device): {wrong}"


def _assert_finite(tensors: list[Tensor], what: str) -> None:
    assert tensors, f"{what}: no tensors"
    for i, t in enumerate(tensors):
        if t.is_floating_point():
            assert torch.isfinite(t).all(), f"{what}[{i}]: not finite ({t.dtype}): {t.flatten()[:8]}"


# --------------------------------------------------------------------------------------------------------------
# networks: factory, and inputs on a device
# --------------------------------------------------------------------------------------------------------------
def _image(c: int, *lead: int, side: int | None = None) -> Callable[[torch.device, int], tuple[Tensor, ...]]:
    """Inputs N×…×c×S×S: S = ``side``, or given per test (32 on meta, smaller under autocast: float16
    convolutions have no fast CPU kernel)."""
    return lambda d, size: (_rand(d, 2, *lead, c, side or size, side or size, grad=True),)


NETWORKS: dict[str, tuple[Callable[[int], nn.Module], Callable[[torch.device, int], tuple[Tensor, ...]]]] = {
    "DCENet": (lambda s: DCENet(), _image(3)),
    "DCENet-paper-sign": (lambda s: DCENet(sign="paper"), _image(3)),
    "DCENetPP": (lambda s: DCENetPP(), _image(3)),
    "DCENetPP-scale4": (lambda s: DCENetPP(scale_factor=4), _image(3)),
    "DeepFuseNet": (lambda s: DeepFuseNet(), _image(1, 2)),
    "DeepFuseNet-paper-bn": (lambda s: DeepFuseNet("paper", batch_norm=True), _image(1, 3)),
    "DeepFuseNet-raw": (lambda s: DeepFuseNet(normalize_output=False), _image(1, 2)),
    "DPEDGenerator": (lambda s: DPEDGenerator(n_blocks=2, channels=16), _image(3)),  # official: 4 blocks, 64
    # 32 px: instance norm needs > 1 pixel after the strides 4, 2, 1, 1, 2
    "DPEDDiscriminator": (lambda s: DPEDDiscriminator(in_size=32, width=0.25), _image(3, side=32)),
    "DPEDDiscriminator-rgb": (
        lambda s: DPEDDiscriminator(in_size=32, grayscale=False, width=0.25),
        _image(3, side=32),
    ),
    "FusionNet": (lambda s: FusionNet(), _image(2)),
    "FusionNet-checkpointed": (lambda s: FusionNet(gradient_checkpointing=True), _image(1, 2)),
    "LossProposalNet": (lambda s: LossProposalNet(), _image(2)),
    "LossProposalNet-intensity-equivariant": (
        lambda s: LossProposalNet(gradient_input="intensity", order_equivariant=True),
        _image(2),
    ),
    "ReconstructionNet": (lambda s: ReconstructionNet(), _image(1)),
}
#: spatial side under CPU autocast (float16 convolutions have no fast CPU kernel: keep them tiny)
AUTOCAST_SIZE = {torch.bfloat16: 16, torch.float16: 8}


@pytest.mark.parametrize("name", list(NETWORKS))
def test_network_forward_backward_on_meta(name):
    make, inputs = NETWORKS[name]
    net = make(32).to(META)
    args = inputs(META, 32)
    outputs = _tensors(net(*args))
    _assert_on(META, outputs, f"{name} outputs")
    _scalar(outputs).backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None] + [a.grad for a in args if a.grad is not None]
    _assert_on(META, grads, f"{name} gradients")


def test_refusion_meta_iteration_on_meta():
    """The whole second-order step (inner update, meta loss, backward, P's normalised update) stays on meta."""
    from lightning_modules.refusion import inner_update, meta_loss, normalised_gradient_update_

    torch.manual_seed(0)
    f, r, p = (cls().to(META) for cls in (FusionNet, ReconstructionNet, LossProposalNet))
    x1, x2 = (torch.rand(2, 2, 1, 32, 32, device=META) for _ in range(2))
    step = inner_update(f, r, p, x1, 1e-4)
    loss = meta_loss(f, r, x2, step)
    _assert_on(META, [loss], "meta loss")
    loss.backward()
    grads = [q.grad for q in p.parameters() if q.grad is not None]
    assert grads
    _assert_on(META, grads, "P's meta-gradient")
    _assert_on(META, [normalised_gradient_update_(p.parameters(), 1e-4)], "g_max")
    for q in p.parameters():
        q.grad = None
    _assert_on(META, [normalised_gradient_update_(p.parameters(), 1e-4)], "g_max without gradients")


@AUTOCAST_DTYPES
@pytest.mark.parametrize("name", list(NETWORKS))
def test_network_under_cpu_autocast_is_finite(name, amp_dtype):
    make, inputs = NETWORKS[name]
    size = AUTOCAST_SIZE[amp_dtype]
    torch.manual_seed(0)
    net = make(size)
    args = inputs(CPU, size)
    with torch.autocast("cpu", dtype=amp_dtype):
        outputs = _tensors(net(*args))
    _assert_finite(outputs, f"{name} outputs")
    (_scalar(outputs) / sum(o.numel() for o in outputs)).backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None] + [a.grad for a in args if a.grad is not None]
    _assert_finite(grads, f"{name} gradients")


# --------------------------------------------------------------------------------------------------------------
# losses: a callable (module moved to the device, or a function), and its inputs on a device
# --------------------------------------------------------------------------------------------------------------
def _pair(d: torch.device) -> tuple[Tensor, Tensor]:
    return _rand(d, 2, 3, 32, 32, grad=True, seed=1), _rand(d, 2, 3, 32, 32, seed=2)


def _zero_dce_all(d: torch.device) -> tuple[Tensor, ...]:
    return (*_pair(d), _rand(d, 2, 24, 32, 32, grad=True, seed=3))


def _fusion_inputs(d: torch.device) -> tuple[Tensor, ...]:
    w = _rand(d, 2, 2, 1, 32, 32, seed=4).softmax(1).detach().requires_grad_(True)
    return _rand(d, 2, 1, 32, 32, grad=True, seed=5), _rand(d, 2, 2, 1, 32, 32, seed=6), w, w


def _exposures(d: torch.device, h: int, k: int, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """(sources N×K×1×h×h, fused N×1×h×h): exposures of one random scene and their mean plus a little noise (a
    fused image unrelated to its sources can give a negative MEF-SSIM scale, hence NaN multi-scale scores)."""
    scene = _rand(d, 2, 1, 1, h, h, seed=7)
    sources = (scene * torch.linspace(0.5, 1.5, k, device=d).view(1, k, 1, 1, 1)).clamp(0, 1)
    fused = (sources.mean(1) + 0.05 * _rand(d, 2, 1, h, h, seed=8)).clamp(0, 1)
    return sources.to(dtype), fused.to(dtype)


def _mef_inputs(h: int, k: int = 2, dtype: torch.dtype = torch.float32) -> Callable[[torch.device], tuple]:
    def make(d: torch.device) -> tuple[Tensor, Tensor]:
        sources, fused = _exposures(d, h, k, dtype)
        return fused.requires_grad_(True), sources

    return make


def _small_vgg() -> VGG19Features:
    torch.manual_seed(0)
    return VGG19Features("relu2_2", pretrained=False)


Z = zero_dce_losses
LOSSES: dict[str, tuple[Callable[[], Callable[..., Any]], Callable[[torch.device], tuple]]] = {
    # Zero-DCE
    "zero_dce.SpatialConsistencyLoss": (Z.SpatialConsistencyLoss, _pair),
    "zero_dce.SpatialConsistencyLoss-paper": (lambda: Z.SpatialConsistencyLoss(form="paper"), _pair),
    "zero_dce.spatial_consistency-no-kernel": (lambda: Z.spatial_consistency, _pair),
    "zero_dce.ExposureControlLoss": (Z.ExposureControlLoss, lambda d: _pair(d)[:1]),
    "zero_dce.ExposureControlLoss-paper": (lambda: Z.ExposureControlLoss(form="paper"), lambda d: _pair(d)[:1]),
    "zero_dce.ColorConstancyLoss": (Z.ColorConstancyLoss, lambda d: _pair(d)[:1]),
    "zero_dce.ColorConstancyLoss-paper": (lambda: Z.ColorConstancyLoss(form="paper"), lambda d: _pair(d)[:1]),
    "zero_dce.IlluminationSmoothnessLoss": (Z.IlluminationSmoothnessLoss, lambda d: _zero_dce_all(d)[2:]),
    "zero_dce.IlluminationSmoothnessLoss-paper": (
        lambda: Z.IlluminationSmoothnessLoss(form="paper"),
        lambda d: _zero_dce_all(d)[2:],
    ),
    "zero_dce.ZeroDCELoss": (Z.ZeroDCELoss, _zero_dce_all),
    "zero_dce.ZeroDCELoss-paper": (lambda: Z.ZeroDCELoss(weights=Z.PAPER_WEIGHTS, forms="paper"), _zero_dce_all),
    # MEF-SSIM (DeepFuse)
    "mef_ssim.MEFSSIMLoss": (MEFSSIMLoss, _mef_inputs(32)),
    "mef_ssim.MEFSSIMLoss-K3-multiscale": (lambda: MEFSSIMLoss(multiscale=True), _mef_inputs(48, k=3)),
    "mef_ssim.MEFSSIMLoss-float64": (MEFSSIMLoss, _mef_inputs(32, dtype=torch.float64)),
    # DPED
    "dped.ColorLoss": (dped_losses.ColorLoss, _pair),
    "dped.color_loss-2d-kernel": (
        lambda: lambda e, t: dped_losses.color_loss(e, t, dped_losses.gauss_kernel_official().to(e.device)),
        _pair,
    ),
    "dped.TVLoss": (dped_losses.TVLoss, lambda d: _pair(d)[:1]),
    "dped.TextureLoss": (dped_losses.TextureLoss, lambda d: (_rand(d, 4, 2, grad=True),)),
    "dped.DiscriminatorLoss": (dped_losses.DiscriminatorLoss, lambda d: (_rand(d, 4, 2, grad=True), _rand(d, 4))),
    "dped.DiscriminatorLoss-Nx2-targets": (
        dped_losses.DiscriminatorLoss,
        lambda d: (_rand(d, 4, 2, grad=True), _rand(d, 4, 2)),
    ),
    "dped.ContentLoss-random-vgg": (lambda: dped_losses.ContentLoss(vgg=_small_vgg()), _pair),
    "dped.DPEDGeneratorLoss-random-vgg": (
        lambda: dped_losses.DPEDGeneratorLoss(vgg=_small_vgg()),
        lambda d: (*_pair(d), _rand(d, 2, 2, grad=True)),
    ),
    # ReFusion
    "refusion.ReFusionFusionLoss": (refusion_losses.ReFusionFusionLoss, _fusion_inputs),
    "refusion.refusion_fusion_loss-paper-weights": (
        lambda: lambda *a: refusion_losses.refusion_fusion_loss(*a, squared_weights=False),
        _fusion_inputs,
    ),
    "refusion.ReFusionReconstructionLoss": (
        refusion_losses.ReFusionReconstructionLoss,
        lambda d: (_rand(d, 2, 2, 1, 32, 32, grad=True), _rand(d, 2, 2, 1, 32, 32, seed=9)),
    ),
    "refusion.refusion_reconstruction_loss-mean": (
        lambda: lambda *a: refusion_losses.refusion_reconstruction_loss(*a, source_reduction="mean"),
        lambda d: (_rand(d, 2, 2, 1, 32, 32, grad=True), _rand(d, 2, 2, 1, 32, 32, seed=9)),
    ),
    "refusion.sobel_gradient": (lambda: refusion_losses.sobel_gradient, lambda d: (_rand(d, 2, 2, 1, 32, 32, grad=True),)),
}


def _make_loss(name: str, device: torch.device) -> Callable[..., Any]:
    fn = LOSSES[name][0]()
    return fn.to(device) if isinstance(fn, nn.Module) else fn


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_forward_backward_on_meta(name):
    fn = _make_loss(name, META)
    args = LOSSES[name][1](META)
    outputs = _tensors(fn(*args))
    _assert_on(META, outputs, f"{name} outputs")
    _scalar(outputs).backward()
    grads = [a.grad for a in args if a.grad is not None]
    _assert_on(META, grads, f"{name} input gradients")


@AUTOCAST_DTYPES
@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_under_cpu_autocast_is_finite(name, amp_dtype):
    fn = _make_loss(name, CPU)
    args = LOSSES[name][1](CPU)
    with torch.autocast("cpu", dtype=amp_dtype):
        outputs = _tensors(fn(*args))
    _assert_finite(outputs, f"{name} outputs")
    _scalar(outputs).backward()
    _assert_finite([a.grad for a in args if a.grad is not None], f"{name} input gradients")


#: follow autocast by design (a layer of LossProposalNet as well as a part of the losses)
_FOLLOWS_AUTOCAST = {"refusion.sobel_gradient"}


def _loss_outputs_and_grads(name: str, amp_dtype: torch.dtype | None) -> tuple[list[Tensor], list[Tensor]]:
    fn = _make_loss(name, CPU)
    args = LOSSES[name][1](CPU)
    with torch.autocast("cpu", dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
        outputs = _tensors(fn(*args))
    _scalar(outputs).backward()
    return outputs, [a.grad for a in args if a.grad is not None]


@AUTOCAST_DTYPES
@pytest.mark.parametrize("name", [n for n in LOSSES if n not in _FOLLOWS_AUTOCAST])
def test_loss_under_cpu_autocast_equals_float32(name, amp_dtype):
    """Every loss disables autocast and computes in float32: on float32 inputs its value and input gradients
    under autocast are exactly those without (before issue 13 the ReFusion losses ran their Sobel convolutions
    in bfloat16 / float16: gradients up to ~50% off on random inputs)."""
    ref_out, ref_grads = _loss_outputs_and_grads(name, None)
    out, grads = _loss_outputs_and_grads(name, amp_dtype)
    assert all(o.dtype in (torch.float32, torch.float64) for o in out), [o.dtype for o in out]
    for a, b in zip(out + grads, ref_out + ref_grads, strict=True):
        assert torch.equal(a, b), f"{name}: differs under autocast, max |Δ| {(a - b).abs().max():.3e}"


# --------------------------------------------------------------------------------------------------------------
# metrics: a torchmetrics Metric, and update() inputs on a device
# --------------------------------------------------------------------------------------------------------------
def _rgb_pair(d: torch.device) -> tuple[Tensor, Tensor]:
    return _rand(d, 2, 3, 32, 32, seed=10), _rand(d, 2, 3, 32, 32, seed=11)


def _grey_fusion(h: int, k: int = 2) -> Callable[[torch.device], tuple[Tensor, Tensor]]:
    return lambda d: _exposures(d, h, k)[::-1]


_NIQE_META = pytest.mark.xfail(
    strict=True,
    raises=(RuntimeError, NotImplementedError),
    reason="NIQE reads host values by design: metrics/niqe.py:286 `[float(v) for v in g]` (Tensor.item on "
    "the window taps), metrics/niqe.py:220 `counts.cpu().numpy()` (NumPy pairwise-summation plan)",
)
_FUSION_META = pytest.mark.xfail(
    strict=True,
    raises=(RuntimeError, NotImplementedError),
    reason="metrics/functional/fusion_core.py:85 `_check_float`: float(x.amax()) (Tensor.item, by design: refuses 0–255 input); "
    "the metric bodies: see test_fusion_metric_core_on_meta",
)

METRICS: dict[str, tuple[Callable[[], Any], Callable[[torch.device], tuple[Tensor, ...]]]] = {
    **{f"PSNR-{v}": (lambda v=v: PSNR(v), _rgb_pair) for v in (None, *VARIANTS)},
    **{f"SSIM-{v}": (lambda v=v: SSIM(v), _rgb_pair) for v in (None, *VARIANTS)},
    "MAE": (MAE, _rgb_pair),
    "MEFSSIM": (MEFSSIM, _grey_fusion(32)),
    "MEFSSIM-multiscale-K3": (lambda: MEFSSIM(multiscale=True), _grey_fusion(48, k=3)),
    "FusionMetrics": (FusionMetrics, _grey_fusion(48)),
    "FusionMetrics-all-unquantised": (lambda: FusionMetrics(ALL_METRICS, quantize=False), _grey_fusion(48)),
    "fusion.Qabf": (Qabf, _grey_fusion(48)),
    "fusion_metric_collection": (fusion_metric_collection, _grey_fusion(48)),
    "DPEDPSNR": (DPEDPSNR, _rgb_pair),
    "DPEDMSSSIM": (DPEDMSSSIM, _rgb_pair),
    "DPEDBatchPSNR": (DPEDBatchPSNR, _rgb_pair),
    "NIQE": (NIQE, lambda d: (_rand(d, 1, 3, 96, 192, seed=14),)),
    "LOE": (LOE, lambda d: (_rand(d, 1, 3, 64, 64, seed=15), _rand(d, 1, 3, 64, 64, seed=16))),
    "MeanBrightness": (MeanBrightness, lambda d: (_rgb_pair(d)[0],)),
    "ColourCast": (ColourCast, lambda d: (_rgb_pair(d)[0],)),
}
META_XFAIL = {"NIQE": _NIQE_META, "FusionMetrics": _FUSION_META, "FusionMetrics-all-unquantised": _FUSION_META,
              "fusion.Qabf": _FUSION_META, "fusion_metric_collection": _FUSION_META}


def _run_metric(name: str, device: torch.device, amp_dtype: torch.dtype | None = None) -> tuple[Any, list[Tensor]]:
    if name == "NIQE":
        require_niqe_model()
    make, inputs = METRICS[name]
    metric = make().to(device)
    args = inputs(device)
    with torch.autocast("cpu", dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
        metric.update(*args)
        return metric, _tensors(metric.compute())


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=META_XFAIL[n]) if n in META_XFAIL else n for n in METRICS]
)
def test_metric_update_compute_on_meta(name):
    metric, outputs = _run_metric(name, META)
    _assert_on(META, outputs, f"{name} compute()")
    _assert_on(META, _tensors(metric.metric_state), f"{name} states")
    last = getattr(metric, "last_scores", None)
    if last is not None:
        _assert_on(META, _tensors(last), f"{name} last_scores")


@AUTOCAST_DTYPES
@pytest.mark.parametrize("name", list(METRICS))
def test_metric_under_cpu_autocast_is_finite(name, amp_dtype):
    _, outputs = _run_metric(name, CPU, amp_dtype)
    _assert_finite(outputs, f"{name} compute()")


@AUTOCAST_DTYPES
@pytest.mark.parametrize(
    "name", list(METRICS)
)
def test_metric_under_cpu_autocast_equals_float32(name, amp_dtype):
    """A metric's value must not depend on the caller's autocast (Lightning runs validation steps under it)."""
    _, ref = _run_metric(name, CPU)
    _, out = _run_metric(name, CPU, amp_dtype)
    for a, b in zip(out, ref, strict=True):
        assert torch.equal(a, b) or (a.isnan().all() and b.isnan().all()), f"{name}: {a} under autocast, {b} without"


_NO_META_KERNEL = {
    "EN": "aten::bincount (grey-level histogram; no meta kernel)",
    "MI": "aten::bincount (joint histogram; no meta kernel)",
    "MI_bits": "aten::bincount (joint histogram; no meta kernel)",
    "VIF_tm_sum": "torchmetrics visual_information_fidelity: boolean-mask assignment → aten::nonzero (no meta kernel)",
}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, raises=NotImplementedError, reason=_NO_META_KERNEL[n]))
        if n in _NO_META_KERNEL
        else n
        for n in ALL_METRICS
    ],
)
def test_fusion_metric_core_on_meta(name):
    """The body of each fusion metric (0–255 float64 tensors, past the host-side input check) on meta."""
    f = torch.empty(2, 48, 48, dtype=torch.float64, device=META)
    s = torch.empty(2, 2, 48, 48, dtype=torch.float64, device=META)
    out = fusion._compute_all(f, s, (name,))
    assert out.device.type == "meta" and out.shape == (2, 1)
