"""Exact tiled inference (lightning_modules/tiling.py): tiled == whole image to float precision, for Zero-DCE,
Zero-DCE++ (two passes at scale 12), the DPED generator (instance norm, multi-pass) and DeepFuse (global min–max)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.tiling import (
    dce_enhance,
    receptive_radius,
    tile_grid,
    tiled_apply,
    tiled_instance_norm,
    upsample_bilinear_region,
    use_tiles,
)
from lightning_modules.zero_dce import DCENet, ZeroDCE

TOL = 1e-6  # fp32, max abs difference


def _model(variant: str, scale: float) -> ZeroDCE:
    torch.manual_seed(0)
    model = ZeroDCE(variant=variant, eval_scale_factor=scale).eval()
    for m in model.net.modules():  # PyTorch default init: larger curve maps than N(0, 0.02), a harder test
        if isinstance(m, nn.Conv2d):
            m.reset_parameters()
    return model


def test_tile_grid_covers_the_image_once():
    cover = torch.zeros(37, 50, dtype=torch.int64)
    for rows, cols in tile_grid(37, 50, 16):
        cover[rows, cols] += 1
    assert torch.equal(cover, torch.ones_like(cover))
    assert len(list(tile_grid(37, 50, 16))) == 3 * 4


def test_receptive_radius():
    assert receptive_radius(DCENet()) == 7  # 7 sequential 3×3 convs: 15-pixel receptive field
    assert receptive_radius(DCENet(depthwise_separable=True, shared_map=True)) == 7  # depthwise 3×3 + pointwise 1×1
    assert receptive_radius(DCENet(n_layers=3)) == 3
    with pytest.raises(ValueError, match="stride-1"):
        receptive_radius(nn.Conv2d(3, 3, 3, stride=2, padding=1))


@pytest.mark.parametrize("variant", ["zero_dce", "zero_dce_pp"])
@pytest.mark.parametrize("tile", [16, 45, 64])
def test_zero_dce_tiled_equals_whole(variant, tile):
    model = _model(variant, 1.0)
    x = torch.rand(1, 3, 97, 131)  # odd sizes; no tile size divides them
    with torch.no_grad():
        whole = model.enhance(x, tile_size=None)
        tiled = model.enhance(x, tile_size=tile)
    assert tiled.shape == whole.shape == x.shape
    assert (tiled - whole).abs().max().item() <= TOL


@pytest.mark.parametrize("variant", ["zero_dce", "zero_dce_pp"])
@pytest.mark.parametrize("fit", ["crop", "pad"])
@pytest.mark.parametrize("tile", [16, 50])
def test_zero_dce_pp_scale_12_two_pass_equals_whole(variant, fit, tile):
    model = _model(variant, 12.0)
    x = torch.rand(1, 3, 12 * 9 + 5, 12 * 13 + 7)  # not a multiple of 12: cropped or padded
    with torch.no_grad():
        whole = model.enhance(x, tile_size=None, fit=fit)
        tiled = model.enhance(x, tile_size=tile, fit=fit)
    expected = (12 * 9, 12 * 13) if fit == "crop" else x.shape[-2:]
    assert tiled.shape[-2:] == whole.shape[-2:] == expected
    assert (tiled - whole).abs().max().item() <= TOL


def test_zero_dce_pp_maps_net_itself_tiled_when_large():
    """At 48 MP the 1/12 image (333k pixels) is itself tiled; here: a 1/12 image of 30×40 with 8-pixel tiles."""
    net = _model("zero_dce_pp", 12.0).net
    x = torch.rand(1, 3, 360, 480)
    with torch.no_grad():
        net.scale_factor = 12.0
        whole = net(x)[0]
        net.scale_factor = 1.0
        tiled = dce_enhance(net, x, 12.0, 8)
    assert net.scale_factor == 1.0  # restored
    assert (tiled - whole).abs().max().item() <= TOL


def test_upsample_region_is_the_region_of_the_full_upsampling():
    small = torch.rand(2, 3, 11, 17)
    full = F.interpolate(small, scale_factor=12, mode="bilinear", align_corners=True)
    for rows, cols in [(slice(0, 132), slice(0, 204)), (slice(5, 61), slice(100, 203)), (slice(131, 132), slice(0, 1))]:
        region = upsample_bilinear_region(small, tuple(full.shape[-2:]), rows, cols)
        assert (region - full[..., rows, cols]).abs().max().item() <= 1e-6


def test_auto_tiles_above_four_tiles_of_pixels():
    model = _model("zero_dce", 1.0)
    calls = []
    model.net.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape[-2:])))
    model.tile_size = 32
    assert not use_tiles(64, 64, 32) and use_tiles(65, 64, 32) and not use_tiles(10**5, 10**5, None)
    with torch.no_grad():
        small = model(torch.rand(1, 3, 64, 64))  # 4 tiles of pixels: whole image
        assert calls == [(64, 64)]
        calls.clear()
        big = model(torch.rand(1, 3, 70, 90))  # tiled: 3×3 tiles, each grown by the 7-pixel halo
        assert len(calls) == 9 and max(calls) <= (32 + 14, 32 + 14)
        model.tile_size = None
        calls.clear()
        model(torch.rand(1, 3, 70, 90))
        assert calls == [(70, 90)]
    assert small.shape == (1, 3, 64, 64) and big.shape == (1, 3, 70, 90)


def test_tiled_apply_several_inputs_and_shape_errors():
    conv = nn.Conv2d(6, 2, 5, padding=2)
    a, b = torch.rand(1, 3, 40, 33), torch.rand(1, 3, 40, 33)
    with torch.no_grad():
        whole = conv(torch.cat([a, b], 1))
        tiled = tiled_apply(lambda u, v: conv(torch.cat([u, v], 1)), (a, b), 2, 7)
    assert (tiled - whole).abs().max().item() <= TOL
    with pytest.raises(ValueError, match="keep the spatial size"):
        tiled_apply(lambda t: t[..., 1:, :], a, 1, 8)
    with pytest.raises(ValueError, match="different sizes"):
        tiled_apply(lambda u, v: u, (a, b[..., 1:]), 1, 8)


def test_dped_generator_instance_norm_multi_pass_equals_whole():
    from lightning_modules.dped import DPEDGenerator

    torch.manual_seed(0)
    net = DPEDGenerator(n_blocks=2, channels=8, init="pytorch").eval()
    for m in net.modules():  # non-trivial affine parameters
        if isinstance(m, nn.InstanceNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
    x = torch.rand(1, 3, 61, 75)
    with torch.no_grad():
        whole = net(x)
        tiled = tiled_instance_norm(net, x, 24)
    assert (tiled - whole).abs().max().item() <= 1e-5  # float64 statistics vs torch's float32 ones
    assert all("forward" not in m.__dict__ for m in net.modules())  # the norms are restored


@pytest.mark.parametrize("luma", ["official", "minmax"])
def test_deepfuse_two_pass_equals_whole(luma):
    from lightning_modules.deepfuse import DeepFuse, DeepFuseNet
    from lightning_modules.memory import deepfuse_fuse

    assert receptive_radius(DeepFuseNet()) == 13  # 3×3, 5×5, 7×7, 5×5, 5×5, 7×7
    torch.manual_seed(0)
    model = DeepFuse(luma=luma).eval()
    sources = torch.rand(1, 2, 3, 83, 101)
    with torch.no_grad():
        whole = model(sources)
        tiled = deepfuse_fuse(model, sources, 32)  # convs tile by tile, then the global min–max
        model.tile_size = 20  # predict_step: tiled above 4 tiles of pixels
        pred = model.predict_step({"sources": sources, "name": ["s"]}, 0)["output"]
    assert (tiled - whole).abs().max().item() <= TOL
    assert (pred - whole.clamp(0, 1)).abs().max().item() <= TOL
    assert model.net.normalize_output  # restored after the raw-output pass


def test_dped_predict_tiles_when_the_photo_does_not_fit(monkeypatch, capsys):
    from lightning_modules import memory
    from lightning_modules.dped import DPED, DPEDGenerator

    torch.manual_seed(0)
    model = DPED(generator=DPEDGenerator(n_blocks=1, channels=8, init="pytorch")).eval()
    x = torch.rand(1, 3, 50, 70)
    with torch.no_grad():
        whole = model(x).clamp(0, 1)
        assert torch.equal(model.predict_step({"input": x, "name": ["p"]}, 0)["output"], whole)  # fits: whole
        monkeypatch.setattr(memory, "available_bytes", lambda device=None: 10**6)  # 1 MB "available"
        model.tile_size = 32
        tiled = model.predict_step({"input": x, "name": ["p"]}, 0)["output"]
        assert "p: DPED on the whole 70×50 image needs about" in capsys.readouterr().err
        assert (tiled - whole).abs().max().item() <= 1e-5
        model.tile_size = None  # tiling off: refused before it runs, naming the memory
        with pytest.raises(memory.NotEnoughMemoryError, match=r"p: DPED on the whole 70×50 image .* needs about .*"
                                                              r"--run.tile_size 512"):
            model.predict_step({"input": x, "name": ["p"]}, 0)


def test_refusion_refuses_a_pair_that_does_not_fit(monkeypatch):
    from lightning_modules import memory

    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 2 * 2**30)
    memory.refusion_check(torch.zeros(1, 2, 3, 480, 640), ["small"])  # 0.9 GB: runs
    with pytest.raises(memory.NotEnoughMemoryError) as err:
        memory.refusion_check(torch.zeros(1, 2, 1, 3000, 4000), ["big"])
    msg = str(err.value)
    assert msg.startswith("big: ReFusion on the whole 4000×3000 image (12.0 MP) needs about 32.2 GB (2880 bytes per")
    assert "2.0 GB is available" in msg and "resize it to at most 0.7 MP" in msg and "at least 36 GB" in msg
    assert "\n" not in msg


def test_flushing_subnormal_official_weights_keeps_the_output(shared):
    from datamodules.image_io import load_tensor
    from lightning_modules.tiling import flush_subnormal_
    from lightning_modules.zero_dce import load_official_weights

    net = load_official_weights(shared("weights/zero_dce/Epoch99.pth"))
    x = load_tensor(shared("lowlight/test/LIME/6.bmp"))[None, :, :48, :64]
    with torch.no_grad():
        before = net(x)[0]
        assert flush_subnormal_(net) == 19266  # of 79,416 released values (CPU convs ~20× slower with them)
        after = net(x)[0]
    assert (before - after).abs().max().item() <= 1e-7  # measured: 0 (bit-identical)
    assert flush_subnormal_(net) == 0


def test_zero_dce_predict_whole_image_refused_before_it_runs(monkeypatch):
    from lightning_modules import memory

    model = _model("zero_dce", 1.0)
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 10**5)
    x = torch.rand(1, 3, 30, 40)
    with torch.no_grad():
        model.tile_size = 8  # tiled: runs in any memory
        out = model.predict_step({"input": x, "name": ["DICM/01"]}, 0)
        assert out["output"].shape == x.shape and out["notes"] == [""]
        model.tile_size = None
        with pytest.raises(memory.NotEnoughMemoryError, match=r"^DICM/01: Zero-DCE on the whole 40×30 image .*"
                                                              r"needs about .*--run.tile_size 512"):
            model.predict_step({"input": x, "name": ["DICM/01"]}, 0)
