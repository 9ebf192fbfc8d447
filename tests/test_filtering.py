"""losses.filtering: the depthwise 'valid' filter is bit-identical to the per-map filter it replaced.

Until issue 13 ``filter_valid`` (MEF-SSIM, the fusion metrics' VIF / SSIM) filtered the M maps of …×H×W as M
separate single-channel images (an M×1×H×W batch, 1×1×1×k kernels); now one depthwise conv (``groups=M``) per
pass. ``_filter_valid_per_map`` below is the old code, verbatim. Forward values and input gradients must be
``torch.equal`` — not close — in float32 and float64, for the kernels and shapes the project uses.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import metrics.functional.mef_ssim as mef_ssim_module
from losses.filtering import _filter_valid_conv, filter_valid, gaussian_1d
from losses.mef_ssim import mef_ssim_per_scale


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread (fast on a shared 2-core machine); two threads: test_filter_valid_dispatch_and_empty_batch
    and benchmarks/mef_ssim_speed.py (which checks the identity at 640×480 with each thread count it times)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _filter_valid_per_map(x: Tensor, kernel_1d: Tensor) -> Tensor:
    """The pre-issue-13 conv path of ``filter_valid``: every map its own single-channel image."""
    size = kernel_1d.numel()
    h, w = x.shape[-2:]
    lead = x.shape[:-2]
    y = x.reshape(-1, 1, h, w)
    y = F.conv2d(y, kernel_1d.to(x.dtype).view(1, 1, 1, size))
    y = F.conv2d(y, kernel_1d.to(x.dtype).view(1, 1, size, 1))
    return y.reshape(*lead, h - size + 1, w - size + 1)


def _kernels(dtype: torch.dtype) -> dict[str, Tensor]:
    """The project's windows: MEF-SSIM box and Gaussian 11, fusion SSIM box 7, VIF Gaussians 17/9/5/3."""
    out = {"box11": torch.full((11,), 1.0 / 11, dtype=dtype), "box7": torch.full((7,), 1.0 / 7, dtype=dtype)}
    out["gauss11"] = gaussian_1d(11, 1.5, dtype, torch.device("cpu"))
    for n in (17, 9, 5, 3):
        out[f"gauss{n}"] = gaussian_1d(n, n / 5.0, dtype, torch.device("cpu"))
    return out


def _forward_and_grad(fn, x: Tensor, *args) -> tuple[Tensor, Tensor]:
    x = x.clone().requires_grad_(True)
    out = fn(x, *args)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    (grad,) = torch.autograd.grad(out, x, g)
    return out.detach(), grad


SHAPES = [(1, 9, 64, 80), (16, 5, 64, 64), (3, 4, 40, 33), (2, 1, 20, 20), (7, 13, 17), (23, 19), (2, 3, 2, 24, 30)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_depthwise_conv_is_bit_identical_to_per_map_conv(shape, dtype):
    """Forward always; gradient in float64 and, in float32, for windows of ≤ 13 taps (every float32 caller:
    MEF-SSIM's 11-tap box and Gaussian). See the next test for float32 gradients of longer windows."""
    gen = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, generator=gen, dtype=dtype) * 50 + 100
    for name, k in _kernels(dtype).items():
        if k.numel() > min(shape[-2:]):
            continue
        new, new_grad = _forward_and_grad(_filter_valid_conv, x, k)
        old, old_grad = _forward_and_grad(_filter_valid_per_map, x, k)
        assert new.shape == old.shape, name
        assert torch.equal(new, old), f"{name}: forward differs, max |Δ| {(new - old).abs().max():.3e}"
        if dtype == torch.float64 or k.numel() <= 13:
            assert torch.equal(new_grad, old_grad), (
                f"{name}: gradient differs, max |Δ| {(new_grad - old_grad).abs().max():.3e}"
            )


def test_float32_gradient_of_long_windows_differs_only_in_rounding():
    """oneDNN sums the input gradient of a ≥ 15-tap float32 single-channel conv in another order than the
    depthwise one (measured: 15–21 taps differ, ≤ 13 are identical), so there the gradients agree to float32
    rounding only. No caller is affected: the only such window is VIF's 17-tap Gaussian, run in float64 on
    detached inputs (``metrics.fusion``)."""
    x = torch.randn(16, 5, 64, 64, generator=torch.Generator().manual_seed(3)) * 50 + 100
    k = gaussian_1d(17, 17 / 5.0, torch.float32, torch.device("cpu"))
    new, new_grad = _forward_and_grad(_filter_valid_conv, x, k)
    old, old_grad = _forward_and_grad(_filter_valid_per_map, x, k)
    assert torch.equal(new, old)
    torch.testing.assert_close(new_grad, old_grad, rtol=0, atol=4 * torch.finfo(torch.float32).eps * old_grad.abs().max())


def test_filter_valid_dispatch_and_empty_batch():
    k = gaussian_1d(11, 1.5, torch.float32, torch.device("cpu"))
    x = torch.rand(2, 3, 30, 31, requires_grad=True)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        new, new_grad = _forward_and_grad(filter_valid, x, k)  # float32 on the CPU: the conv path
        old, old_grad = _forward_and_grad(_filter_valid_per_map, x, k)
        assert torch.equal(new, old) and torch.equal(new_grad, old_grad), f"{threads} threads"
    torch.set_num_threads(1)
    x = x.detach()
    x64 = x.double()
    ref = _filter_valid_per_map(x64, k.double())
    torch.testing.assert_close(filter_valid(x64, k.double()), ref, rtol=1e-13, atol=1e-12)  # shifted slices
    empty = torch.rand(0, 3, 30, 31, requires_grad=True)
    out = _filter_valid_conv(empty, k)
    assert out.shape == (0, 3, 20, 21)
    out.sum().backward()
    assert empty.grad is not None and empty.grad.shape == empty.shape


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize(
    "n,k,h,w,levels", [(1, 2, 48, 64, 1), (3, 3, 33, 47, 1), (2, 2, 48, 48, 3), (1, 4, 44, 46, 3)]
)
def test_mef_ssim_with_depthwise_filter_is_bit_identical(monkeypatch, n, k, h, w, levels, dtype):
    """MEF-SSIM (scores and the gradient w.r.t. the fused image) through the conv path, old vs new filter.

    Both variants force the conv path (float64 on a CPU normally takes the shifted-slice path, unchanged), so
    float64 checks what a GPU runs.
    """
    gen = torch.Generator().manual_seed(n * 1000 + k * 100 + h)
    sources = torch.rand(n, k, 1, h, w, generator=gen, dtype=dtype)
    fused = (sources.mean(1) + 0.05 * torch.rand(n, 1, h, w, generator=gen, dtype=dtype)).clamp(0, 1)

    def run(filt) -> tuple[Tensor, Tensor]:
        monkeypatch.setattr(mef_ssim_module, "filter_valid", filt)
        return _forward_and_grad(lambda f: mef_ssim_per_scale(f, sources, levels=levels), fused)

    new, new_grad = run(_filter_valid_conv)
    old, old_grad = run(_filter_valid_per_map)
    assert torch.isfinite(new).all() and torch.isfinite(new_grad).all()
    assert torch.equal(new, old), f"scores differ, max |Δ| {(new - old).abs().max():.3e}"
    assert torch.equal(new_grad, old_grad), f"gradients differ, max |Δ| {(new_grad - old_grad).abs().max():.3e}"
