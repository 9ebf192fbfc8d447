"""ZeroDCE LightningModule: official weights through the module, full-resolution inference, mixed precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datamodules.image_io import load_tensor
from lightning_modules.zero_dce import ZeroDCE, ZeroDCELossWeights, crop_to_multiple


def test_from_official_reproduces_reference(shared):
    x = load_tensor(shared("lowlight/test/LIME/6.bmp"))[None]
    ref = torch.from_numpy(np.load(shared("reference/zero_dce/LIME/6_float32.npz"))["enhanced"]).permute(2, 0, 1)
    model = ZeroDCE.from_official(shared("weights/zero_dce/Epoch99.pth")).eval()
    with torch.no_grad():
        out = model(x)[0]
    assert out.shape == ref.shape
    assert (out - ref).abs().max() <= 1e-4


def test_from_official_pp_reproduces_reference_at_scale_12(shared):
    x = crop_to_multiple(load_tensor(shared("lowlight/test/LIME/6.bmp"))[None], 12)
    ref = np.load(shared("reference/zero_dce_pp_sf12/LIME/6_float32.npz"))["enhanced"]
    model = ZeroDCE.from_official(shared("weights/zero_dce_pp/Epoch99.pth"), variant="zero_dce_pp").eval()
    assert model.eval_scale_factor == 12
    with torch.no_grad():
        out = model(x)[0].permute(1, 2, 0).numpy()
    assert np.abs(out - ref).max() <= 1e-4


def test_enhance_any_size_at_scale_12_keeps_full_resolution():
    model = ZeroDCE(variant="zero_dce_pp", eval_scale_factor=12).eval()
    x = torch.rand(1, 3, 37, 50)
    with torch.no_grad():
        out = model(x)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_zero_weight_switches_term_off_and_paper_weights():
    model = ZeroDCE(loss_weights=ZeroDCELossWeights(tv=0.0))
    x = torch.rand(2, 3, 32, 32) * 0.3
    enhanced, maps = model.net(x)
    terms = model.loss(enhanced, x, maps)
    assert "tv" not in terms and {"spa", "exp", "col"} <= set(terms)
    assert ZeroDCE(variant="zero_dce_pp").loss.weights["tv"] == 1600.0
    assert ZeroDCE().loss.weights == {"spa": 1.0, "exp": 10.0, "col": 5.0, "tv": 200.0}


def test_bf16_autocast_training_step_is_finite_and_flows():
    torch.manual_seed(0)
    model = ZeroDCE()
    x = torch.rand(2, 3, 32, 32) * 0.3
    with torch.autocast("cpu", dtype=torch.bfloat16):
        enhanced, maps = model.net(x)
        loss = model.loss(enhanced, x, maps)["total"]
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_pretrained_missing_file_says_what_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="Epoch99.pth"):
        ZeroDCE(pretrained=str(tmp_path / "missing.pth"))
