"""DCE-Net / Zero-DCE++ networks: structure, official weights vs reference outputs, curve invariants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from datamodules.image_io import load_tensor, quantize
from lightning_modules.zero_dce import (
    DCENet,
    DCENetPP,
    apply_curves,
    crop_to_multiple,
    load_official_weights,
)

ZERO_DCE = "weights/zero_dce/Epoch99.pth"
ZERO_DCE_PP = "weights/zero_dce_pp/Epoch99.pth"
LIME6 = "lowlight/test/LIME/6.bmp"


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize(
    ("ds", "shared", "expected"),
    [(False, False, 79_416), (True, False, 11_926), (False, True, 67_299), (True, True, 10_561)],
)
def test_parameter_counts_match_tpami_table4(ds: bool, shared: bool, expected: int) -> None:
    assert n_params(DCENet(depthwise_separable=ds, shared_map=shared)) == expected


def test_dcenetpp_defaults_and_official_key_names() -> None:
    net = DCENetPP(scale_factor=12)
    assert n_params(net) == 10_561 and net.scale_factor == 12.0
    sd = net.state_dict()
    assert len(sd) == 28
    assert sd["e_conv5.depth_conv.weight"].shape == (64, 1, 3, 3)
    assert sd["e_conv7.point_conv.weight"].shape == (3, 64, 1, 1)
    sd = DCENet().state_dict()
    assert sorted(sd) == sorted(f"e_conv{i}.{p}" for i in range(1, 8) for p in ("weight", "bias"))
    assert sd["e_conv7.weight"].shape == (24, 64, 3, 3)


def test_init_official_vs_default() -> None:
    torch.manual_seed(0)
    official = DCENet(init="official")
    std = torch.cat([m.weight.flatten() for m in official.modules() if isinstance(m, torch.nn.Conv2d)]).std()
    assert abs(std.item() - 0.02) < 1e-3
    default = DCENetPP()  # kaiming-uniform, fan_in 9 for the depthwise conv → std ≈ 0.19
    assert default.e_conv1.depth_conv.weight.std().item() > 0.1


def test_layer_generalisation_and_bad_layer_counts() -> None:
    net3 = DCENet(n_layers=3, n_iterations=16)
    assert net3.e_conv3.in_channels == 64 and net3.e_conv3.out_channels == 48
    assert n_params(net3) == (3 * 9 * 32 + 32) + (32 * 9 * 32 + 32) + (64 * 9 * 48 + 48)
    net5 = DCENet(n_layers=5, n_filters=8, n_iterations=1)
    assert [net5.e_conv4.in_channels, net5.e_conv5.in_channels, net5.e_conv5.out_channels] == [16, 16, 3]
    y, a = net5(torch.rand(1, 3, 8, 8))
    assert y.shape == (1, 3, 8, 8) and a.shape == (1, 3, 8, 8)
    for bad in (2, 6, 1):
        with pytest.raises(ValueError, match="n_layers"):
            DCENet(n_layers=bad)
    with pytest.raises(ValueError, match="sign"):
        DCENet(sign="up")


def test_forward_shapes_and_bad_input() -> None:
    x = torch.rand(2, 3, 12, 12)
    y, a = DCENet(n_filters=4)(x)
    assert y.shape == x.shape and a.shape == (2, 24, 12, 12)
    assert a.abs().max() <= 1
    y, a = DCENetPP(n_filters=4, scale_factor=3)(x)
    assert y.shape == x.shape and a.shape == (2, 3, 12, 12)
    with pytest.raises(ValueError, match="N×3×H×W"):
        DCENet(n_filters=4)(torch.rand(2, 1, 12, 12))
    with pytest.raises(ValueError, match="crop_to_multiple"):
        DCENetPP(n_filters=4, scale_factor=5)(torch.rand(1, 3, 12, 12))


def test_downscale_semantics_match_official_code() -> None:
    torch.manual_seed(0)
    net = DCENetPP(n_filters=4, scale_factor=4).eval()
    full = DCENetPP(n_filters=4, scale_factor=1).eval()
    full.load_state_dict(net.state_dict())
    x = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        _, maps = net(x)
        small = F.interpolate(x, scale_factor=1 / 4, mode="bilinear", align_corners=False)
        _, small_maps = full(small)
        expected = F.interpolate(small_maps, size=(16, 24), mode="bilinear", align_corners=True)
    assert small_maps.shape[-2:] == (4, 6)
    torch.testing.assert_close(maps, expected, rtol=0, atol=0)


def test_crop_to_multiple_keeps_top_left() -> None:
    x = torch.arange(2 * 326 * 326.0).view(1, 2, 326, 326)
    c = crop_to_multiple(x, 12)
    assert c.shape == (1, 2, 324, 324)
    assert torch.equal(c, x[..., :324, :324])
    assert crop_to_multiple(x, 1).shape == x.shape
    with pytest.raises(ValueError, match="positive integer"):
        crop_to_multiple(x, 2.5)
    with pytest.raises(ValueError, match="smaller"):
        crop_to_multiple(torch.rand(3, 5, 5), 12)


def test_apply_curves_identity_formula_and_range() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 5, 7)
    for channels in (3, 24):
        zero = torch.zeros(2, channels, 5, 7)
        for sign in ("code", "paper"):
            assert torch.equal(apply_curves(x, zero, 8, sign), x)
    a = torch.rand(2, 24, 5, 7) * 2 - 1
    y = apply_curves(x, a, 8)
    ref = x.clone()
    for n in range(8):
        an = a[:, 3 * n : 3 * n + 3]
        ref = ref + an * (ref * ref - ref)
    torch.testing.assert_close(y, ref)
    assert y.min() >= 0 and y.max() <= 1
    torch.testing.assert_close(apply_curves(x, -a, 8, "paper"), y)
    shared = a[:, :3]
    torch.testing.assert_close(apply_curves(x, shared, 8), apply_curves(x, shared.repeat(1, 8, 1, 1), 8))
    with pytest.raises(ValueError, match="curve_maps"):
        apply_curves(x, torch.zeros(2, 6, 5, 7), 8)
    with pytest.raises(ValueError, match="sign"):
        apply_curves(x, shared, 8, sign="plus")


@pytest.mark.parametrize("cls", [DCENet, DCENetPP])
def test_zero_last_layer_is_identity(cls: type[DCENet]) -> None:
    net = cls(n_filters=4, scale_factor=2)
    last = net.e_conv7.point_conv if net.depthwise_separable else net.e_conv7
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    x = torch.rand(1, 3, 8, 8)
    y, a = net(x)
    assert torch.equal(a, torch.zeros_like(a))
    assert torch.equal(y, x)


def test_official_zero_dce_matches_reference_output(shared) -> None:
    net = load_official_weights(shared(ZERO_DCE))
    x = load_tensor(shared(LIME6))[None]
    with torch.no_grad():
        y, a = net(x)
    ref = np.load(shared("reference/zero_dce/LIME/6_float32.npz"))["enhanced"]
    out = y[0].permute(1, 2, 0).numpy()
    assert out.shape == ref.shape == (326, 326, 3)
    assert np.abs(out - ref).max() <= 1e-4
    png = np.asarray(Image.open(shared("reference/zero_dce/LIME/6.png")).convert("RGB"))
    assert (quantize(y[0]) != png).mean() <= 1e-4  # measured: 0 differing values
    # digest §6: A ∈ [−0.331955, −0.070920] on this image (the weights brighten with negative A)
    assert a.shape == (1, 24, 326, 326)
    assert a.min().item() == pytest.approx(-0.331955, abs=1e-5)
    assert a.max().item() == pytest.approx(-0.070920, abs=1e-5)


def test_official_zero_dce_pp_sf12_matches_reference_output(shared) -> None:
    net = load_official_weights(shared(ZERO_DCE_PP), "zero_dce_pp", scale_factor=12)
    x = crop_to_multiple(load_tensor(shared(LIME6))[None], 12)
    with torch.no_grad():
        y, a = net(x)
    ref = np.load(shared("reference/zero_dce_pp_sf12/LIME/6_float32.npz"))["enhanced"]
    out = y[0].permute(1, 2, 0).numpy()
    assert out.shape == ref.shape == (324, 324, 3)
    assert np.abs(out - ref).max() <= 1e-4
    png = np.asarray(Image.open(shared("reference/zero_dce_pp_sf12/LIME/6.png")).convert("RGB"))
    assert (quantize(y[0]) != png).mean() <= 1e-4  # measured: 0 differing values
    assert a.shape == (1, 3, 324, 324)
    assert a.min().item() == pytest.approx(-0.334226, abs=1e-5)


def test_paper_sign_with_official_weights_darkens(shared) -> None:
    official = load_official_weights(shared(ZERO_DCE))
    paper = DCENet(sign="paper").eval()
    paper.load_state_dict(official.state_dict())
    x = load_tensor(shared(LIME6))[None, :, :64, :64]
    with torch.no_grad():
        brighter, _ = official(x)
        darker, _ = paper(x)
    assert brighter.mean() > x.mean() + 0.05
    assert darker.mean() < x.mean()


def test_load_official_weights_errors(tmp_path, shared) -> None:
    with pytest.raises(FileNotFoundError, match="Zero-DCE_code/snapshots/Epoch99.pth"):
        load_official_weights(tmp_path / "missing.pth")
    with pytest.raises(FileNotFoundError, match="snapshots_Zero_DCE\\+\\+"):
        load_official_weights(tmp_path / "missing.pth", "zero_dce_pp")
    with pytest.raises(ValueError, match="variant"):
        load_official_weights(tmp_path / "missing.pth", "zero_dce_plus")
    bad = tmp_path / "list.pth"
    torch.save([1, 2], bad)
    with pytest.raises(ValueError, match="state dict"):
        load_official_weights(bad)
    with pytest.raises(ValueError, match=r"looks like the official Zero-DCE\+\+ weights\), but Zero-DCE expects"):
        load_official_weights(shared(ZERO_DCE_PP), "zero_dce")
