"""DeepFuse network, official-weights loader, colour helpers and exposure-fusion baselines."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from lightning_modules.deepfuse import (
    DeepFuseNet,
    fuse_chroma,
    fuse_rgb,
    load_official_deepfuse,
    minmax_normalize,
    rgb_to_ycbcr,
    select_extreme_exposures,
    stretch_contrast,
    ycbcr_to_rgb,
)
from lightning_modules.fusion_baselines import Mertens, PixelMax, PixelMean, stack_sources

WEIGHTS = "weights/deepfuse/DF_model_Epoch99.npz"
PAIR = "exposure_stacks_official_deepfuse/input_test_pairs/forth4.png"
REFERENCE = "reference/deepfuse_official/forth4.png"
RF = 13  # receptive-field radius of the official net: 1 + 2 + 3 + 2 + 2 + 3


def _official_pair(shared) -> tuple[torch.Tensor, np.ndarray]:
    """README procedure: cv2.imread (BGR), planes 0 (B = G = dark Y) and 2 (R = bright Y), float32 0–255."""
    img = cv2.imread(str(shared(PAIR))).astype(np.float32)
    ref = cv2.imread(str(shared(REFERENCE)), cv2.IMREAD_UNCHANGED).astype(np.int64)
    x = torch.from_numpy(np.stack([img[..., 0], img[..., 2]]))[None, :, None]  # 1×2×1×H×W
    return x, ref


def _bytescale(f: np.ndarray) -> np.ndarray:
    """scipy.misc.imsave of the min–max output: floor(255·f + 0.5) with f already in [0, 1]."""
    return np.floor(255.0 * f + 0.5).astype(np.int64)


def test_official_weights_reproduce_reference_crop(shared) -> None:
    """Fast check on an interior crop: exact conv outputs there; only the global min/max is fitted."""
    net = load_official_deepfuse(shared(WEIGHTS), normalize_output=False)
    x, ref = _official_pair(shared)
    r0, c0, size = 300, 500, 128
    crop = x[..., r0 - RF : r0 + size + RF, c0 - RF : c0 + size + RF] / 255.0  # [0, 1] convention
    with torch.inference_mode():
        raw = net(crop)[0, 0, RF:-RF, RF:-RF].double().numpy().ravel()
    target = ref[r0 : r0 + size, c0 : c0 + size].ravel()
    a, b = np.polyfit(raw, target, 1)  # ref ≈ 255·(raw − min)/(max − min): affine in raw
    diff = np.abs(np.floor(a * raw + b + 0.5) - target)
    assert a > 0
    assert diff.max() <= 1
    assert (diff == 0).mean() > 0.99


@pytest.mark.slow
def test_official_weights_reproduce_reference_full(shared) -> None:
    """Full 1200×800 image, inputs on our [0, 1] scale (positive homogeneity makes it the same model)."""
    net = load_official_deepfuse(shared(WEIGHTS))
    x, ref = _official_pair(shared)
    with torch.inference_mode():
        fused = net(x / 255.0)[0, 0].numpy()
    assert fused.shape == ref.shape
    diff = np.abs(_bytescale(fused) - ref)
    exact = (diff == 0).mean()
    print(f"forth4: max |diff| = {diff.max()} grey level(s), exact pixels {100 * exact:.3f} %")
    assert diff.max() <= 1
    assert exact > 0.999


def test_parameter_counts_and_tied_layers() -> None:
    official = DeepFuseNet()
    assert sum(p.numel() for p in official.parameters()) == 316_976
    assert all(not isinstance(m, torch.nn.Conv2d) or m.bias is None for m in official.modules())
    assert sum(p.numel() for p in DeepFuseNet("paper").parameters()) == 88_961
    with pytest.raises(ValueError, match="architecture"):
        DeepFuseNet("resnet")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_norm"):
        DeepFuseNet("official", batch_norm=True)


def test_official_net_is_positively_homogeneous() -> None:
    """No bias + LeakyReLU: net(a·x) = a·net(x), so the 0–255 and [0, 1] scales give the same fusion."""
    torch.manual_seed(0)
    net = DeepFuseNet(normalize_output=False).eval()
    x = torch.rand(1, 2, 1, 20, 20)
    with torch.no_grad():
        y1, y255 = net(x), net(255.0 * x)
    torch.testing.assert_close(y255, 255.0 * y1, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(minmax_normalize(y255), minmax_normalize(y1), rtol=0, atol=1e-5)


@pytest.mark.parametrize("architecture", ["official", "paper"])
def test_three_exposures_and_order_invariance(architecture: str) -> None:
    torch.manual_seed(0)
    net = DeepFuseNet(architecture).eval()  # type: ignore[arg-type]
    x = torch.rand(2, 3, 1, 24, 20)
    with torch.no_grad():
        y = net(x)
        y_perm = net(x[:, [2, 0, 1]])
        y_list = net([x[:, 1], x[:, 2], x[:, 0]])
    assert y.shape == (2, 1, 24, 20)
    assert y.amin() >= 0 and y.amax() <= 1
    assert torch.allclose(y.flatten(1).amin(1), torch.zeros(2)) and torch.allclose(y.flatten(1).amax(1), torch.ones(2))
    torch.testing.assert_close(y_perm, y, rtol=0, atol=1e-5)
    torch.testing.assert_close(y_list, y, rtol=0, atol=1e-5)


def test_bad_inputs_raise() -> None:
    net = DeepFuseNet()
    with pytest.raises(ValueError, match="at least 2"):
        net(torch.rand(1, 1, 1, 8, 8))  # K = 1
    with pytest.raises(ValueError, match="same shape"):
        net([torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9)])
    with pytest.raises(ValueError, match="N×K×C×H×W"):
        net(torch.rand(1, 2, 8, 8))
    with pytest.raises(ValueError, match="C = 1"):
        net(torch.rand(1, 2, 3, 8, 8))
    with pytest.raises(ValueError, match="at least 2"):
        PixelMean()([torch.rand(1, 3, 8, 8)])
    with pytest.raises(ValueError, match="same shape"):
        fuse_chroma(torch.rand(1, 2, 1, 4, 4), torch.rand(1, 2, 1, 4, 5))
    with pytest.raises(ValueError, match="C = 3"):
        fuse_rgb(net, torch.rand(1, 2, 1, 8, 8))


def test_loader_errors(tmp_path) -> None:
    missing = tmp_path / "DF_model_Epoch99.npz"
    with pytest.raises(FileNotFoundError, match="KRamPrabhakar/DeepFuse") as err:
        load_official_deepfuse(missing)
    assert "DF_model_Epoch99.npz" in str(err.value)
    bad = tmp_path / "bad.npz"
    np.savez(bad, *[np.zeros((2, 2, 3, 3), np.float32)] * 6)
    with pytest.raises(ValueError, match="arr_0 has shape"):
        load_official_deepfuse(bad)


def test_fuse_chroma_by_hand() -> None:
    # 0–255 numbers with τ = 128: pixel 0: [200, 100] → weights [72, 28] → (200·72 + 100·28)/100 = 172
    # pixel 1: both neutral (0/0) → τ;  pixel 2: [128, 50] → only the second counts → 50
    cb = torch.tensor([[[200.0, 128.0, 128.0]], [[100.0, 128.0, 50.0]]]).view(1, 2, 1, 1, 3)
    cr = torch.tensor([[[60.0, 128.0, 255.0]], [[60.0, 128.0, 0.0]]]).view(1, 2, 1, 1, 3)
    cb_f, cr_f = fuse_chroma(cb, cr, tau=128.0)
    assert cb_f.shape == (1, 1, 1, 3)
    torch.testing.assert_close(cb_f.flatten(), torch.tensor([172.0, 128.0, 50.0]))
    # cr pixel 2: [255, 0] → weights [127, 128] → (255·127)/255 = 127
    torch.testing.assert_close(cr_f.flatten(), torch.tensor([60.0, 128.0, 127.0]))
    # [0, 1] scale, τ = 0.5: [0.7, 0.4] → (0.7·0.2 + 0.4·0.1)/0.3 = 0.6
    c = torch.tensor([0.7, 0.4]).view(1, 2, 1)
    torch.testing.assert_close(fuse_chroma(c, c, tau=0.5)[0], torch.tensor([[0.6]]))


def test_studio_ycbcr_matches_matlab_rgb2ycbcr() -> None:
    rgb = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0]]).view(3, 1, 4)
    matlab = torch.tensor(  # MATLAB rgb2ycbcr of red, green, blue, white (0–255)
        [[81.481, 144.553, 40.966, 235.0], [90.203, 53.797, 240.0, 128.0], [240.0, 34.214, 109.786, 128.0]]
    ).view(3, 1, 4)
    ycc = rgb_to_ycbcr(rgb) * 255.0
    torch.testing.assert_close(ycc, matlab, rtol=0, atol=0.1)  # kornia rounds chroma coefficients
    torch.manual_seed(0)
    x = torch.rand(2, 3, 5, 5)
    for r in ("studio", "full"):
        torch.testing.assert_close(ycbcr_to_rgb(rgb_to_ycbcr(x, r), r), x, rtol=0, atol=2e-3)


def test_stretch_contrast_refuses_non_finite_luminance() -> None:
    y = torch.rand(1, 1, 8, 8)
    y[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN/inf values .* float16's 65504"):
        stretch_contrast(y)


def test_stretch_contrast_matches_imadjust_rule() -> None:
    y = (torch.arange(100, dtype=torch.float32) / 255.0).view(1, 1, 10, 10)
    # CDF after level k is (k + 1)/100: low = first CDF > 0.01 → 1; high = first CDF ≥ 0.99 → 98
    expected = ((y * 255.0 - 1.0) / 97.0).clamp(0, 1)
    torch.testing.assert_close(stretch_contrast(y), expected)
    flat = torch.full((1, 1, 4, 4), 0.5)
    torch.testing.assert_close(stretch_contrast(flat), torch.full_like(flat, 128 / 255))


@pytest.mark.parametrize("luma", ["official", "minmax", "raw"])
def test_fuse_rgb_shapes_ranges_and_chroma(luma: str) -> None:
    torch.manual_seed(0)
    net = DeepFuseNet().eval()
    src = torch.rand(2, 3, 3, 16, 16) * 0.8 + 0.1
    with torch.no_grad():
        out = fuse_rgb(net, src, luma=luma)  # type: ignore[arg-type]
        same = fuse_rgb(net, src[:, :1].expand(-1, 2, -1, -1, -1), luma=luma)  # type: ignore[arg-type]
    assert out.shape == (2, 3, 16, 16)
    assert out.amin() >= 0 and out.amax() <= 1 and torch.isfinite(out).all()
    # identical exposures: the fused chroma is the input chroma (where the RGB result was not clipped)
    cb_f, cr_f = fuse_chroma(*(rgb_to_ycbcr(src[:, :1].expand(-1, 2, -1, -1, -1))[:, :, i : i + 1] for i in (1, 2)))
    torch.testing.assert_close(torch.cat([cb_f, cr_f], 1), rgb_to_ycbcr(src[:, 0])[:, 1:], rtol=0, atol=1e-6)
    inside = ((ycbcr_to_rgb(rgb_to_ycbcr(same)) > 0.01) & (ycbcr_to_rgb(rgb_to_ycbcr(same)) < 0.99)).all(1)
    if luma != "raw":
        assert inside.float().mean() > 0.2
    got = rgb_to_ycbcr(same)[:, 1:]
    want = rgb_to_ycbcr(src[:, 0])[:, 1:]
    mask = inside.unsqueeze(1).expand_as(got)
    torch.testing.assert_close(got[mask], want[mask], rtol=0, atol=3e-3)


def test_select_extreme_exposures() -> None:
    levels = torch.tensor([0.5, 0.1, 0.9, 0.3])
    x = levels.view(1, 4, 1, 1, 1).expand(1, 4, 3, 4, 4)
    out = select_extreme_exposures(x)
    assert out.shape == (1, 2, 3, 4, 4)
    torch.testing.assert_close(out[0, :, 0, 0, 0], torch.tensor([0.1, 0.9]))


def test_pixel_baselines() -> None:
    x = torch.rand(2, 3, 3, 5, 5)
    torch.testing.assert_close(PixelMean()(x), x.mean(1))
    torch.testing.assert_close(PixelMax()(list(x.unbind(1))), x.amax(1))
    assert stack_sources(x) is x


@pytest.mark.parametrize(
    ("weights", "reference"),
    [((1.0, 1.0, 1.0), "VenicePAIR_mertens_cv_w111.png"), ((1.0, 1.0, 0.0), "VenicePAIR_mertens_cv_default.png")],
)
def test_mertens_matches_opencv_reference(shared, weights: tuple[float, float, float], reference: str) -> None:
    def rgb(rel: str) -> torch.Tensor:
        img = cv2.imread(str(shared(rel)), cv2.IMREAD_COLOR)[..., ::-1]
        return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255.0

    under, over = rgb("exposure_stacks/Venice/venice_under.png"), rgb("exposure_stacks/Venice/venice_over.png")
    ref = rgb(f"reference/mef_ssim/fused/{reference}")
    src = torch.stack([under, over])[None].requires_grad_(True)
    fused = Mertens(*weights)(src)
    assert fused.shape == (1, 3, *under.shape[1:]) and not fused.requires_grad
    diff = (torch.round(fused[0] * 255.0) - torch.round(ref * 255.0)).abs()
    print(f"Mertens{weights} vs {reference}: max |diff| = {diff.max().item():.0f} grey level(s)")
    assert diff.max() <= 3
    # grey sources go through the same path and come back with one channel
    grey = Mertens(*weights)(src.detach()[:, :, :1, :32, :32])
    assert grey.shape == (1, 1, 32, 32) and 0 <= grey.amin() and grey.amax() <= 1


def test_positive_output_init_starts_positive_and_differs_only_in_the_last_layer() -> None:
    """The ablation's init: the same Glorot draw, the last convolution's weights non-negative, so the raw output is
    positive where the official init's output sits below zero (and passes 1 % of the gradient)."""
    x = torch.rand(2, 2, 1, 24, 24, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    official = DeepFuseNet(normalize_output=False)
    torch.manual_seed(0)
    positive = DeepFuseNet(normalize_output=False, init="positive_output")
    a, b = official.state_dict(), positive.state_dict()
    last = [k for k in a if k.startswith("post.")][-1]
    assert all(torch.equal(a[k], b[k]) for k in a if k != last) and torch.equal(a[last].abs(), b[last])
    assert (positive(x) > 0).all() and (official(x) < 0).float().mean() > 0.5
    with pytest.raises(ValueError, match="init must be"):
        DeepFuseNet(init="kaiming")
