"""ReFusion networks, official-weights loader, fusion/reconstruction losses and the functional meta step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from lightning_modules.refusion import (
    FusionNet,
    InnerStep,
    LossProposalNet,
    ReconstructionNet,
    inner_update,
    load_official_refusion,
    map_official_refusion_state_dict,
    meta_loss,
    normalised_gradient_update_,
)
from losses.refusion import (
    ReFusionFusionLoss,
    ReFusionReconstructionLoss,
    fusion_loss_terms,
    refusion_fusion_loss,
    refusion_reconstruction_loss,
    sobel_gradient,
)

TASKS = ("IVIF", "MEIF", "MFIF", "MIF")
TINY = {"dim": 4, "num_blocks": 1, "heads": 2}


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared, busy 2-core CPU two threads only add synchronisation cost (measured:
    the 280×280 forward takes ~1 s with one thread and ~4 s with two under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------------ official outputs
def _official_y(path: Path) -> torch.Tensor:
    """The official test.py input: cv2.imread float32 → BGR2RGB → RGB2YCrCb → Y / 255, as 1×1×H×W."""
    import cv2

    img = cv2.cvtColor(cv2.imread(str(path)).astype("float32"), cv2.COLOR_BGR2RGB)
    y = cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb)[:, :, 0] / 255
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))[None, None]


def _check_reference(shared, pair: str, first: str, second: str, task: str) -> None:
    import cv2

    net = load_official_refusion(shared(f"weights/refusion/ReFusion_{task}.pth"))
    x = torch.cat([_official_y(shared(first)), _official_y(shared(second))], 1)
    with torch.inference_mode():
        fused = net(x)
    f = (fused - fused.min()) / (fused.max() - fused.min())
    ours = np.floor(f.squeeze().double().numpy() * 255 + 0.499999999).astype(np.int64)
    ref = cv2.imread(str(shared(f"reference/refusion_official/{pair}_refusion.png")), cv2.IMREAD_UNCHANGED)
    assert ref.ndim == 2 and ref.shape == ours.shape
    diff = np.abs(ours - ref.astype(np.int64))
    exact = float((diff == 0).mean())
    print(f"{pair}: max |diff| = {diff.max()} grey levels, fraction exact = {exact:.6f}")
    assert diff.max() <= 1
    assert exact >= 0.999


@pytest.mark.parametrize(
    ("pair", "first", "second", "task"),
    [
        ("TNO_05", "fusion/ir_vis/TNO_05_ir.png", "fusion/ir_vis/TNO_05_vi.png", "IVIF"),
        ("MRI_PET_14", "fusion/medical/MRI_PET_14_pet.png", "fusion/medical/MRI_PET_14_mri.png", "MIF"),
    ],
)
def test_official_reference_reproduced(shared, pair: str, first: str, second: str, task: str) -> None:
    _check_reference(shared, pair, first, second, task)


@pytest.mark.slow
def test_official_reference_reproduced_mfif_520(shared) -> None:
    _check_reference(
        shared, "MFIF_5", "fusion/multi_focus/MFIF_5_near.jpg", "fusion/multi_focus/MFIF_5_far.jpg", "MFIF"
    )


# ------------------------------------------------------------------------------------------------ loader
@pytest.mark.parametrize("task", TASKS)
def test_official_checkpoints_load_strictly(shared, task: str) -> None:
    path = shared(f"weights/refusion/ReFusion_{task}.pth")
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert len(raw) == 140
    mapped = map_official_refusion_state_dict(raw)
    assert len(mapped) == 86
    net = load_official_refusion(path)
    assert not net.training
    state = net.state_dict()
    assert set(state) == set(mapped)
    # every official name (alias or not) ends up in the network with the stored values
    for key, value in raw.items():
        ours = key.replace(".conv.weight", ".weight")
        torch.testing.assert_close(state[ours], value, rtol=0, atol=0)


def test_parameter_count_matches_distinct_checkpoint_values(shared) -> None:
    raw = torch.load(shared("weights/refusion/ReFusion_IVIF.pth"), map_location="cpu", weights_only=True)
    distinct = sum(v.numel() for k, v in raw.items() if not k.endswith(".conv.weight"))
    net = FusionNet()
    assert sum(p.numel() for p in net.parameters()) == distinct == 59_856
    assert len(list(net.buffers())) == 0


def test_loader_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"ReFusion_IVIF\.pth.*HaowenBai/ReFusion"):
        load_official_refusion(tmp_path / "ReFusion_IVIF.pth")

    # an official-style file built from a random network: every conv weight stored twice
    official = {}
    for key, value in FusionNet().state_dict().items():
        official[key] = value
        if value.ndim == 4:
            official[key.removesuffix(".weight") + ".conv.weight"] = value
    assert len(official) == 140
    good = tmp_path / "good.pth"
    torch.save(official, good)
    load_official_refusion(good)

    missing = dict(official)
    del missing["FM.temperature1"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(KeyError, match="FM.temperature1"):
        load_official_refusion(tmp_path / "missing.pth")

    extra = dict(official, **{"decoder.0.attn.temperature_meta": torch.ones(8, 1, 1)})
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(KeyError, match="temperature_meta"):
        load_official_refusion(tmp_path / "extra.pth")

    broken = dict(official)
    broken["project_in_1.conv.weight"] = broken["project_in_1.weight"] + 1
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="alias"):
        load_official_refusion(tmp_path / "broken.pth")

    wrong = dict(official)
    wrong["project_out_1.weight"] = wrong["project_out_1.conv.weight"] = torch.zeros(2, 16, 3, 3)
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="wrong shape"):
        load_official_refusion(tmp_path / "wrong.pth")


# ------------------------------------------------------------------------------------------------ networks
def test_fusion_net_any_size_and_layouts() -> None:
    torch.manual_seed(0)
    net = FusionNet(**TINY).eval()
    for h, w in [(7, 5), (1, 1), (3, 10)]:
        x = torch.rand(2, 2, h, w)
        y = net(x)
        assert y.shape == (2, 1, h, w)
        assert torch.all((y > 0) & (y < 1))
        torch.testing.assert_close(net(x.unsqueeze(2)), y)
    # not symmetric: separate encoders per source (official input order matters)
    x = torch.rand(1, 2, 6, 6)
    assert not torch.allclose(net(x), net(x.flip(1)))


def test_proposal_and_reconstruction_nets() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 2, 1, 6, 9)
    for gradient_input in ("gradient", "intensity"):
        w, v = LossProposalNet(**TINY, gradient_input=gradient_input)(x)
        for m in (w, v):
            assert m.shape == (2, 2, 1, 6, 9)
            assert torch.all(m >= 0)
            torch.testing.assert_close(m.sum(1), torch.ones(2, 1, 6, 9))
    with pytest.raises(ValueError, match="gradient_input"):
        LossProposalNet(gradient_input="sobel")
    # the official P is not order-equivariant; the option makes swapped sources get exactly swapped weights
    plain, equi = LossProposalNet(**TINY), LossProposalNet(**TINY, order_equivariant=True)
    equi.load_state_dict(plain.state_dict())
    assert not torch.allclose(plain(x)[0], plain(x.flip(1))[0].flip(1), atol=1e-4)
    for m, m_swapped, m_plain, m_plain_swapped in zip(equi(x), equi(x.flip(1)), plain(x), plain(x.flip(1)), strict=True):
        torch.testing.assert_close(m, m_swapped.flip(1))
        torch.testing.assert_close(m.sum(1), torch.ones(2, 1, 6, 9))
        torch.testing.assert_close(m, 0.5 * (m_plain + m_plain_swapped.flip(1)))
    r = ReconstructionNet(**TINY)(torch.rand(2, 1, 6, 9))
    assert r.shape == (2, 2, 1, 6, 9)
    assert torch.all((r > 0) & (r < 1))


def test_bad_input_raises() -> None:
    net = FusionNet(**TINY)
    for bad in (
        torch.rand(1, 3, 8, 8),
        torch.rand(1, 1, 8, 8),
        torch.rand(1, 3, 1, 8, 8),
        torch.rand(2, 8, 8),
    ):
        with pytest.raises(ValueError, match="K=2"):
            net(bad)
    with pytest.raises(ValueError, match="K=2"):
        LossProposalNet(**TINY)(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="N×1×H×W"):
        ReconstructionNet(**TINY)(torch.rand(1, 2, 8, 8))
    s, w = torch.rand(1, 2, 1, 8, 8), torch.full((1, 2, 1, 8, 8), 0.5)
    with pytest.raises(ValueError, match="does not match"):
        refusion_fusion_loss(torch.rand(1, 1, 8, 7), s, w, w)
    with pytest.raises(ValueError, match="intensity_weights"):
        refusion_fusion_loss(torch.rand(1, 1, 8, 8), s, w[:, :, :, :4], w)
    with pytest.raises(ValueError, match="N×K×C×H×W"):
        refusion_fusion_loss(torch.rand(1, 1, 8, 8), s[:, :, 0], w, w)
    with pytest.raises(ValueError, match="same shape"):
        refusion_reconstruction_loss(torch.rand(1, 2, 1, 8, 7), s)
    with pytest.raises(ValueError, match="N×2×1×H×W"):
        inner_update(net, ReconstructionNet(**TINY), LossProposalNet(**TINY), torch.rand(1, 3, 1, 8, 8), 0.1)


# ------------------------------------------------------------------------------------------------ losses
def _sobel_ref(x: np.ndarray) -> np.ndarray:
    kx = np.array([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    gx = ndimage.correlate(x, kx, mode="constant", cval=0.0)
    gy = ndimage.correlate(x, kx.T, mode="constant", cval=0.0)
    return np.abs(gx) + np.abs(gy)


def test_sobel_gradient_hand_checked() -> None:
    ones = torch.ones(1, 1, 3, 3, dtype=torch.float64)
    # zero padding: corners see 2+1 on two sides → 3+3, edge centres 4, centre 0
    expected = torch.tensor([[6.0, 4, 6], [4, 0, 4], [6, 4, 6]], dtype=torch.float64)
    torch.testing.assert_close(sobel_gradient(ones)[0, 0], expected)
    x = np.random.default_rng(0).random((5, 7))
    torch.testing.assert_close(
        sobel_gradient(torch.from_numpy(x)[None, None])[0, 0], torch.from_numpy(_sobel_ref(x))
    )


def test_fusion_loss_hand_checked() -> None:
    a, b, f = torch.ones(1, 1, 3, 3), torch.zeros(1, 1, 3, 3), torch.full((1, 1, 3, 3), 0.5)
    s = torch.stack([a, b], 1)
    half = torch.full((1, 2, 1, 3, 3), 0.5)
    intensity, gradient = fusion_loss_terms(f, s, half, half)
    # Σ_k 0.5² · 0.5² = 0.125 per pixel; ∇A = G = [6,4,6;4,0,4;6,4,6] (zero padding), ∇B = 0, ∇F = G/2:
    # Σ_k 0.5² · (G/2)² = 0.125·G² per pixel, mean = 0.125·(4·36 + 4·16)/9
    assert intensity.item() == pytest.approx(0.125)
    assert gradient.item() == pytest.approx(0.125 * (4 * 36 + 4 * 16) / 9)
    lin_i, lin_g = fusion_loss_terms(f, s, half, half, squared_weights=False)
    assert lin_i.item() == pytest.approx(0.25) and lin_g.item() == pytest.approx(2 * gradient.item())
    assert refusion_fusion_loss(f, s, half, half, alpha_grad=0.3).item() == pytest.approx(
        0.125 + 0.3 * gradient.item()
    )

    # random case against a per-pixel NumPy reference; weights given per channel (N×K×C×H×W) broadcast the same
    rng = np.random.default_rng(1)
    sa, sb, ff = rng.random((3, 4, 5)), rng.random((3, 4, 5)), rng.random((3, 4, 5))
    wa, va = rng.random((4, 5)), rng.random((4, 5))
    w = np.stack([wa, 1 - wa])[:, None]
    v = np.stack([va, 1 - va])[:, None]
    g = [_sobel_ref(c) for c in ff]
    exp_i = np.mean([wa**2 * (sa[c] - ff[c]) ** 2 + (1 - wa) ** 2 * (sb[c] - ff[c]) ** 2 for c in range(3)])
    exp_g = np.mean(
        [
            va**2 * (_sobel_ref(sa[c]) - g[c]) ** 2 + (1 - va) ** 2 * (_sobel_ref(sb[c]) - g[c]) ** 2
            for c in range(3)
        ]
    )
    t = lambda arr: torch.from_numpy(np.ascontiguousarray(arr))[None]  # noqa: E731
    loss = ReFusionFusionLoss(alpha_grad=2.0)(t(ff), t(np.stack([sa, sb])), t(w), t(v))
    assert loss.item() == pytest.approx(exp_i + 2.0 * exp_g, rel=1e-10)
    per_pixel = refusion_fusion_loss(t(ff), t(np.stack([sa, sb])), t(w), t(v), reduction="none")
    assert per_pixel.shape == (1, 3, 4, 5) and per_pixel.mean().item() == pytest.approx(
        exp_i + exp_g, rel=1e-10
    )


def test_reconstruction_loss_hand_checked() -> None:
    s = torch.zeros(1, 2, 1, 2, 2)
    r = torch.zeros(1, 2, 1, 2, 2)
    r[0, 0, 0, 0, 0] = 0.5  # |error| of A at one pixel
    r[0, 1, 0, 0, 0] = -0.2  # smaller error of B at the same pixel: the max keeps 0.5
    r[0, 1, 0, 1, 1] = 0.1
    grad_err = (sobel_gradient(s) - sobel_gradient(r)).abs().amax(1)
    expected_int = (0.5**2 + 0.1**2) / 4
    loss = refusion_reconstruction_loss(r, s, grad_weight=0.0)
    assert loss.item() == pytest.approx(expected_int)
    full = ReFusionReconstructionLoss()(r, s)
    assert full.item() == pytest.approx(expected_int + grad_err.square().mean().item())
    mean_variant = refusion_reconstruction_loss(r, s, grad_weight=0.0, source_reduction="mean")
    assert mean_variant.item() == pytest.approx(((0.5 + 0.2) / 2) ** 2 / 4 + (0.05**2) / 4)


# ------------------------------------------------------------------------------------------------ meta-learning
def _tiny_nets(dtype: torch.dtype = torch.float32) -> tuple[FusionNet, ReconstructionNet, LossProposalNet]:
    torch.manual_seed(0)
    return (
        FusionNet(**TINY).to(dtype),
        ReconstructionNet(**TINY).to(dtype),
        LossProposalNet(**TINY).to(dtype),
    )


def test_inner_update_is_one_sgd_step_and_leaves_modules_untouched() -> None:
    f_net, r_net, p_net = _tiny_nets()
    x = torch.rand(2, 2, 1, 6, 6)
    before = {k: v.clone() for k, v in f_net.state_dict().items()}
    step = inner_update(f_net, r_net, p_net, x, lr=0.05)
    assert isinstance(step, InnerStep)
    for k, v in f_net.state_dict().items():
        assert torch.equal(v, before[k])
    # reference with plain autograd on the modules
    w, v = p_net(x)
    loss = refusion_fusion_loss(f_net(x), x, w, v)
    grads = torch.autograd.grad(loss, list(f_net.parameters()))
    for (name, p), g in zip(f_net.named_parameters(), grads, strict=True):
        torch.testing.assert_close(step.fusion_params[name], p - 0.05 * g)
    assert step.fusion_params["project_in_1.weight"].requires_grad  # graph kept (second order)
    r_loss = refusion_reconstruction_loss(r_net(f_net(x).detach()), x)
    r_grads = torch.autograd.grad(r_loss, list(r_net.parameters()))
    for (name, p), g in zip(r_net.named_parameters(), r_grads, strict=True):
        torch.testing.assert_close(step.reconstruction_params[name], p - 0.05 * g)
        assert not step.reconstruction_params[name].requires_grad  # first order
    torch.testing.assert_close(step.fusion_loss, loss)


def test_meta_step_updates_loss_proposal_params() -> None:
    f_net, r_net, p_net = _tiny_nets()
    x_train, x_test = torch.rand(2, 2, 1, 6, 6), torch.rand(2, 2, 1, 6, 6)
    p_before = [p.detach().clone() for p in p_net.parameters()]
    step = inner_update(f_net, r_net, p_net, x_train, lr=0.05)
    outer = meta_loss(f_net, r_net, x_test, step)
    outer.backward()
    grads = [p.grad for p in p_net.parameters()]
    assert all(g is not None for g in grads)
    assert sum(g.abs().sum().item() for g in grads) > 0
    assert all(
        q.grad is None for q in [*f_net.parameters(), *r_net.parameters()]
    )  # only P receives the meta-gradient
    g_max = normalised_gradient_update_(p_net.parameters(), lr=1e-3)
    assert g_max > 0
    change = max(
        (p.detach() - q).abs().max().item() for p, q in zip(p_net.parameters(), p_before, strict=True)
    )
    assert change == pytest.approx(1e-3, rel=1e-4)  # the largest gradient entry moves by exactly lr


def test_meta_gradient_matches_finite_differences() -> None:
    f_net, r_net, p_net = _tiny_nets(torch.float64)
    g = torch.Generator().manual_seed(3)
    x_train = torch.rand(1, 2, 1, 4, 4, dtype=torch.float64, generator=g)
    x_test = torch.rand(1, 2, 1, 4, 4, dtype=torch.float64, generator=g)
    names = [n for n, _ in p_net.named_parameters()]
    base = {n: p.detach().clone() for n, p in p_net.named_parameters()}
    lr = 0.5  # large, so that the second-order effect is well above finite-difference noise

    def outer(params: dict[str, torch.Tensor]) -> torch.Tensor:
        step = inner_update(f_net, r_net, p_net, x_train, lr, loss_params=params)
        return meta_loss(f_net, r_net, x_test, step)

    leaves = {n: t.clone().requires_grad_(True) for n, t in base.items()}
    grads = torch.autograd.grad(outer(leaves), [leaves[n] for n in names])
    assert sum(gr.abs().sum().item() for gr in grads) > 0
    eps = 1e-6
    for _ in range(3):
        direction = {n: torch.randn(base[n].shape, dtype=torch.float64, generator=g) for n in names}
        analytic = sum((gr * direction[n]).sum() for gr, n in zip(grads, names, strict=True)).item()
        with torch.no_grad():
            plus = outer({n: base[n] + eps * direction[n] for n in names})
            minus = outer({n: base[n] - eps * direction[n] for n in names})
        numeric = ((plus - minus) / (2 * eps)).item()
        assert numeric == pytest.approx(analytic, rel=1e-5, abs=1e-10)


def test_meta_step_runs_in_fp32_under_autocast() -> None:
    f_net, r_net, p_net = _tiny_nets()
    x = torch.rand(1, 2, 1, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        step = inner_update(f_net, r_net, p_net, x.bfloat16(), lr=0.05)
        outer = meta_loss(f_net, r_net, x.bfloat16(), step)
    assert step.fusion_loss.dtype == torch.float32 and outer.dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in step.fusion_params.values())
    xb = x.bfloat16().float()
    reference = meta_loss(f_net, r_net, xb, inner_update(f_net, r_net, p_net, xb, lr=0.05))
    torch.testing.assert_close(outer, reference)
