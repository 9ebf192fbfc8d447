"""Zero-DCE losses: official values on real data, paper forms by hand, switches, gradients, bad input."""

from __future__ import annotations

import json

import pytest
import torch

import losses.zero_dce as zl
from datamodules.image_io import load_tensor
from lightning_modules.zero_dce import DCENet, load_official_weights
from losses.zero_dce import (
    OFFICIAL_WEIGHTS_ZERO_DCE,
    OFFICIAL_WEIGHTS_ZERO_DCE_PP,
    ColorConstancyLoss,
    ExposureControlLoss,
    IlluminationSmoothnessLoss,
    SpatialConsistencyLoss,
    ZeroDCELoss,
    color_constancy,
    exposure_control,
    illumination_smoothness,
    spatial_consistency,
)

REF_KEYS = {
    "spa": "L_spa_mean",
    "exp": "L_exp_mean",
    "col": "L_color_mean",
    "tv": "L_TV_raw",
    "total": "total",
}


def _check_reference(shared, key: str, variant: str, size: int, weights: dict[str, float]) -> None:
    ref = json.loads(shared("reference/zero_dce/loss_reference.json").read_text())[key]
    x = torch.stack([load_tensor(shared(f"lowlight/train/{i}.jpg"), size=(size, size)) for i in (1, 10, 100)])
    net = load_official_weights(shared(f"weights/{variant}/Epoch99.pth"), variant)
    with torch.no_grad():
        y, a = net(x)
        out = ZeroDCELoss(weights=weights)(y, x, a)
    assert x.mean().item() == pytest.approx(ref["input_mean"], rel=1e-6)
    assert a.mean().item() == pytest.approx(ref["A_mean"], rel=1e-5)
    for ours, theirs in REF_KEYS.items():
        assert out[ours].item() == pytest.approx(ref[theirs], rel=1e-5), ours


def test_official_losses_zero_dce_256(shared) -> None:
    _check_reference(shared, "zerodce_256", "zero_dce", 256, OFFICIAL_WEIGHTS_ZERO_DCE)


@pytest.mark.slow
def test_official_losses_zero_dce_pp_512(shared) -> None:
    _check_reference(shared, "zerodcepp_512_sf1", "zero_dce_pp", 512, OFFICIAL_WEIGHTS_ZERO_DCE_PP)


# ---- hand computations on tiny tensors ---------------------------------------------------


def _cells(x: torch.Tensor, k: int) -> torch.Tensor:
    """Channel-mean then k×k block means, by explicit loops (1×3×H×W → H/k×W/k)."""
    g = x[0].mean(0)
    rows, cols = g.shape[0] // k, g.shape[1] // k
    return torch.tensor(
        [[g[r * k : r * k + k, c * k : c * k + k].mean().item() for c in range(cols)] for r in range(rows)]
    )


def _spa_by_hand(y: torch.Tensor, x: torch.Tensor, form: str) -> float:
    vy, vx = _cells(y, 4), _cells(x, 4)
    rows, cols = vy.shape
    total = 0.0
    for r in range(rows):
        for c in range(cols):
            for dr, dc in ((0, -1), (0, 1), (-1, 0), (1, 0)):
                rr, cc = r + dr, c + dc
                inside = 0 <= rr < rows and 0 <= cc < cols
                if form == "official":  # zero padding: outside neighbours have value 0
                    jy = vy[rr, cc].item() if inside else 0.0
                    jx = vx[rr, cc].item() if inside else 0.0
                    total += ((vx[r, c].item() - jx) - (vy[r, c].item() - jy)) ** 2
                elif inside:
                    total += (
                        abs(vy[r, c].item() - vy[rr, cc].item()) - abs(vx[r, c].item() - vx[rr, cc].item())
                    ) ** 2
    return total / (rows * cols)


def test_spatial_consistency_by_hand() -> None:
    torch.manual_seed(1)
    x, y = torch.rand(1, 3, 12, 8), torch.rand(1, 3, 12, 8)
    official = spatial_consistency(y, x).item()
    paper = spatial_consistency(y, x, "paper").item()
    assert official == pytest.approx(_spa_by_hand(y, x, "official"), rel=1e-5)
    assert paper == pytest.approx(_spa_by_hand(y, x, "paper"), rel=1e-5)
    assert official != pytest.approx(paper, rel=1e-3)
    assert spatial_consistency(x, y).item() == pytest.approx(official, rel=1e-6)  # symmetric
    assert spatial_consistency(x, x).item() == 0.0
    assert SpatialConsistencyLoss(loss_weight=3.0)(y, x).item() == pytest.approx(3 * official, rel=1e-6)


def test_exposure_control_by_hand() -> None:
    torch.manual_seed(2)
    y = torch.rand(1, 3, 8, 12)
    cells = _cells(y, 4)
    official = exposure_control(y, patch_size=4, well_exposed=0.5).item()
    paper = exposure_control(y, patch_size=4, well_exposed=0.5, form="paper").item()
    assert official == pytest.approx(((cells - 0.5) ** 2).mean().item(), rel=1e-5)
    assert paper == pytest.approx((cells - 0.5).abs().mean().item(), rel=1e-5)
    assert official != pytest.approx(paper, rel=1e-3)
    assert exposure_control(torch.full((2, 3, 32, 32), 0.6)).item() == pytest.approx(0.0, abs=1e-12)
    loss = ExposureControlLoss(loss_weight=10.0, patch_size=4, well_exposed=0.5)
    assert loss(y).item() == pytest.approx(10 * official, rel=1e-6)


def test_color_constancy_by_hand() -> None:
    y = torch.zeros(2, 3, 4, 4)
    y[0, 0], y[0, 1], y[0, 2] = 0.9, 0.5, 0.2  # J = (0.9, 0.5, 0.2)
    y[1] = 0.3  # grey: loss 0
    drg, drb, dgb = 0.4**2, 0.7**2, 0.3**2
    official = color_constancy(y).item()
    paper = color_constancy(y, "paper").item()
    assert official == pytest.approx((drg**2 + drb**2 + dgb**2) ** 0.5 / 2, rel=1e-5)
    assert paper == pytest.approx((drg + drb + dgb) / 2, rel=1e-5)
    assert ColorConstancyLoss(loss_weight=5.0, form="paper")(y).item() == pytest.approx(5 * paper, rel=1e-6)


def test_color_constancy_grey_image_has_finite_gradient() -> None:
    y = torch.full((1, 3, 4, 4), 0.4, requires_grad=True)
    color_constancy(y).backward()
    assert torch.isfinite(y.grad).all()


def test_illumination_smoothness_by_hand() -> None:
    torch.manual_seed(3)
    a = torch.rand(2, 6, 4, 5) * 2 - 1
    b, c, h, w = a.shape
    dy = sum(
        (a[i, k, r + 1, q] - a[i, k, r, q]) ** 2
        for i in range(b)
        for k in range(c)
        for r in range(h - 1)
        for q in range(w)
    )
    dx = sum(
        (a[i, k, r, q + 1] - a[i, k, r, q]) ** 2
        for i in range(b)
        for k in range(c)
        for r in range(h)
        for q in range(w - 1)
    )
    official = illumination_smoothness(a).item()
    assert official == pytest.approx((2 * (dy / ((h - 1) * w) + dx / (h * (w - 1))) / b).item(), rel=1e-5)
    per_image = []
    for i in range(b):
        maps = []
        for n in range(c // 3):
            chans = 0.0
            for k in range(3 * n, 3 * n + 3):
                px = [
                    (abs(a[i, k, r, q + 1] - a[i, k, r, q]) + abs(a[i, k, r + 1, q] - a[i, k, r, q])) ** 2
                    for r in range(h - 1)
                    for q in range(w - 1)
                ]
                chans += sum(px).item() / len(px)
            maps.append(chans)
        per_image.append(sum(maps) / len(maps))
    paper = illumination_smoothness(a, "paper").item()
    assert paper == pytest.approx(sum(per_image) / b, rel=1e-5)
    assert official != pytest.approx(paper, rel=1e-3)
    assert illumination_smoothness(torch.full((1, 3, 4, 4), -0.2)).item() == 0.0
    assert IlluminationSmoothnessLoss(200.0)(a).item() == pytest.approx(200 * official, rel=1e-6)


# ---- combined loss --------------------------------------------------------------------------


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(4)
    x = torch.rand(2, 3, 32, 32) * 0.3
    a = torch.rand(2, 24, 32, 32) * -0.3
    from lightning_modules.zero_dce import apply_curves

    return apply_curves(x, a, 8), x, a


def test_combined_loss_total_and_switches(monkeypatch) -> None:
    y, x, a = _batch()
    out = ZeroDCELoss()(y, x, a)
    assert set(out) == {"spa", "exp", "col", "tv", "total"}
    expected = out["spa"] + 10 * out["exp"] + 5 * out["col"] + 200 * out["tv"]
    assert out["total"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert out["col"].item() == pytest.approx(color_constancy(y).item(), rel=1e-6)

    def boom(*args, **kwargs):
        raise AssertionError("a switched-off term was computed")

    monkeypatch.setattr(zl, "color_constancy", boom)
    monkeypatch.setattr(zl, "illumination_smoothness", boom)
    off = ZeroDCELoss(weights={"col": 0, "tv": 0})(y, x, a)
    assert set(off) == {"spa", "exp", "total"}
    assert off["total"].item() == pytest.approx((out["spa"] + 10 * out["exp"]).item(), rel=1e-6)


def test_combined_loss_forms_and_bad_arguments() -> None:
    y, x, a = _batch()
    paper = ZeroDCELoss(weights={"tv": 20, "col": 0.5, "exp": 1}, forms="paper")
    assert paper.forms == dict.fromkeys(("spa", "exp", "col", "tv"), "paper")
    out = paper(y, x, a)
    assert out["exp"].item() == pytest.approx(exposure_control(y, form="paper").item(), rel=1e-6)
    mixed = ZeroDCELoss(forms={"tv": "paper"})
    assert mixed.forms["tv"] == "paper" and mixed.forms["spa"] == "official"
    with pytest.raises(ValueError, match="unknown term 'color'"):
        ZeroDCELoss(weights={"color": 1})
    with pytest.raises(ValueError, match="≥ 0"):
        ZeroDCELoss(weights={"tv": -1})
    with pytest.raises(ValueError, match="all weights are 0"):
        ZeroDCELoss(weights=dict.fromkeys(("spa", "exp", "col", "tv"), 0))
    with pytest.raises(ValueError, match="form"):
        ZeroDCELoss(forms={"spa": "l1"})
    with pytest.raises(ValueError, match="form"):
        ColorConstancyLoss(form="l2")


def test_kernels_are_non_persistent_buffers() -> None:
    loss = SpatialConsistencyLoss()
    assert "kernel" in dict(loss.named_buffers()) and loss.state_dict() == {}
    assert not list(loss.parameters())
    assert ZeroDCELoss().state_dict() == {}
    assert loss.double().kernel.dtype == torch.float64
    y, x, _ = _batch()
    assert loss(y.double(), x.double()).dtype == torch.float32


def test_fp32_under_autocast() -> None:
    y, x, a = _batch()
    ref = ZeroDCELoss()(y.bfloat16().float(), x.bfloat16().float(), a.bfloat16().float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ZeroDCELoss()(y.bfloat16(), x.bfloat16(), a.bfloat16())
    for k, v in out.items():
        assert v.dtype == torch.float32, k
        assert v.item() == pytest.approx(ref[k].item(), rel=1e-5), k


def test_gradients_reach_every_parameter_through_every_term() -> None:
    torch.manual_seed(5)
    net = DCENet(n_filters=4)
    x = torch.rand(2, 3, 16, 16) * 0.3
    for term in ("spa", "exp", "col", "tv"):
        net.zero_grad()
        y, a = net(x)
        weights = {k: float(k == term) for k in ("spa", "exp", "col", "tv")}
        ZeroDCELoss(weights=weights)(y, x, a)["total"].backward()
        for name, p in net.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), (term, name)
        assert net.e_conv1.weight.grad.abs().sum() > 0, term
        assert net.e_conv7.weight.grad.abs().sum() > 0, term


def test_bad_input_raises_clear_errors() -> None:
    y = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match=r"exposure_control\(enhanced\).*N×3×H×W"):
        exposure_control(torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError, match=r"color_constancy\(enhanced\)"):
        color_constancy(torch.rand(1, 4, 16, 16))
    with pytest.raises(ValueError, match=r"spatial_consistency\(original\)"):
        spatial_consistency(y, torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError, match="same shape"):
        spatial_consistency(y, torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="multiple of 3"):
        illumination_smoothness(torch.rand(1, 4, 8, 8))
    with pytest.raises(ValueError, match="smaller than the 16×16"):
        exposure_control(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="unknown form"):
        color_constancy(y, form="paper2")
    with pytest.raises(TypeError, match="torch.Tensor"):
        color_constancy(y.numpy())


def test_combined_loss_owns_the_official_weights_per_variant() -> None:
    """ZeroDCELoss is the one home of the defaults: None (or a missing key) = the variant's official weight."""
    assert ZeroDCELoss.official_weights() == OFFICIAL_WEIGHTS_ZERO_DCE
    assert ZeroDCELoss.official_weights("zero_dce_pp") == OFFICIAL_WEIGHTS_ZERO_DCE_PP
    assert ZeroDCELoss(variant="zero_dce_pp").weights == OFFICIAL_WEIGHTS_ZERO_DCE_PP
    pp = ZeroDCELoss(variant="zero_dce_pp", weights={"spa": None, "exp": None, "col": 2.0, "tv": None})
    assert pp.weights == {"spa": 1.0, "exp": 10.0, "col": 2.0, "tv": 1600.0}
    assert ZeroDCELoss(weights={"tv": None}).weights["tv"] == 200.0
    assert ZeroDCELoss.resolve_weights({"tv": None}, "zero_dce_pp") == OFFICIAL_WEIGHTS_ZERO_DCE_PP
    with pytest.raises(ValueError, match="unknown variant 'zero_dce_plus'"):
        ZeroDCELoss(variant="zero_dce_plus")
    y, x, a = _batch()
    out = pp(y, x, a[:, :3])
    expected = out["spa"] + 10 * out["exp"] + 2 * out["col"] + 1600 * out["tv"]
    assert out["total"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_combined_loss_is_built_from_the_term_modules() -> None:
    loss = ZeroDCELoss(forms={"exp": "paper"}, well_exposed=0.5)
    assert isinstance(loss.terms["spa"], SpatialConsistencyLoss) and isinstance(loss.terms["tv"], IlluminationSmoothnessLoss)
    assert {k: m.loss_weight for k, m in loss.terms.items()} == dict.fromkeys(("spa", "exp", "col", "tv"), 1.0)
    assert loss.terms["exp"].form == "paper" and loss.terms["exp"].well_exposed == 0.5
