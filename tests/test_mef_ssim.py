"""MEF-SSIM (losses/mef_ssim.py, metrics/mef_ssim.py) against the reference values and a naive oracle."""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from losses.mef_ssim import MEFSSIMLoss, mef_ssim, mef_ssim_per_scale
from metrics.mef_ssim import MEFSSIM

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mef_ssim_naive import mef_ms_ssim_naive, mef_ssim_naive  # noqa: E402

REFERENCE_JSON = "reference/mef_ssim/mef_ssim_shared.json"
RGB2GRAY = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])  # MATLAB rgb2gray
FORTH4_PAIR = "exposure_stacks_official_deepfuse/input_test_pairs/forth4.png"


# --------------------------------------------------------------------------------------------
# helpers


def structured_stack(n: int, k: int, h: int, w: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """N×K×1×H×W exposures of a smooth random scene through a clipping camera: has flat (saturated) areas."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, h // 4 + 1, w // 4 + 1, generator=g, dtype=torch.float64)
    scene = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    scene = scene + 0.05 * torch.rand(n, 1, h, w, generator=g, dtype=torch.float64)
    gains = 2.0 ** torch.linspace(-2.0, 2.0, k, dtype=torch.float64)
    stack = (scene[:, None] * gains.view(1, k, 1, 1, 1) * 1.5).clamp(0, 1)
    return stack.to(dtype)


def to_numpy_stack(stack: torch.Tensor, fused: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """One image of a torch stack ([0,1]) → the reference's H×W×K and H×W arrays on 0–255."""
    return (stack[0, :, 0].permute(1, 2, 0).double().numpy() * 255.0, fused[0, 0].double().numpy() * 255.0)


@cache
def _gray(path: str) -> np.ndarray:
    """The JSON's procedure: Pillow .convert('RGB') → round(MATLAB rgb2gray) (half away from 0) → float64."""
    from PIL import Image

    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    g = rgb @ RGB2GRAY
    return np.sign(g) * np.floor(np.abs(g) + 0.5)


@cache
def _planes(path: str) -> tuple[np.ndarray, np.ndarray]:
    """forth4: the R (Y of EV+) and G (Y of EV−) planes as stored, uint8 → float64."""
    from PIL import Image

    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    return rgb[..., 0], rgb[..., 1]


def _entries() -> list[dict]:
    from conftest import SHARED

    path = SHARED / REFERENCE_JSON
    if not path.exists():
        return []
    return json.loads(path.read_text())["entries"]


def _load_row(entry: dict, shared) -> tuple[torch.Tensor, torch.Tensor]:
    """(fused 1×1×H×W, sources 1×K×1×H×W), float64 on 0–255, built as the JSON row prescribes."""
    if entry["scene"] == "forth4":
        bright, dark = _planes(str(shared(FORTH4_PAIR)))
        exposures = [dark, bright]
    else:
        exposures = [_gray(str(shared(p))) for p in entry["stack"]]
    stack = np.stack(exposures, 0)
    kind = entry["fused"]["kind"]
    if kind in ("fMean", "mean_Y"):
        fused = stack.mean(0)  # float64, not rounded
    elif entry["grayscale"].startswith("none"):
        from PIL import Image

        fused = np.asarray(Image.open(shared(entry["fused"]["image"])), dtype=np.float64)  # used as stored
    else:
        fused = _gray(str(shared(entry["fused"]["image"])))
    assert fused.shape == stack.shape[1:]
    return torch.from_numpy(fused)[None, None], torch.from_numpy(stack)[None, :, None]


def _row_ids(scene_filter) -> list:
    rows = [e for e in _entries() if scene_filter(e["scene"])]
    if not rows:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"shared data not found: {REFERENCE_JSON}"))]
    return [pytest.param(e, id=e["id"]) for e in rows]


def _check_row(entry: dict, shared, dtype: torch.dtype, tol: float) -> None:
    fused, sources = _load_row(entry, shared)
    fused, sources = fused.to(dtype), sources.to(dtype)
    q = mef_ssim_per_scale(fused, sources, levels=3, data_range=255.0)[0]
    expected = torch.tensor([entry["q_scale1"], entry["q_scale2"], entry["q_scale3"]], dtype=torch.float64)
    assert q.dtype == dtype
    torch.testing.assert_close(q.double(), expected, atol=tol, rtol=0)
    weights = torch.tensor([0.0448, 0.2856, 0.3001], dtype=torch.float64)
    o_q = torch.prod(q.double() ** (weights / weights.sum()))
    assert abs(float(o_q) - entry["mef_ms_ssim"]) < tol


# --------------------------------------------------------------------------------------------
# reference values (Kede Ma's .m run in Octave / its NumPy transcription)


@pytest.mark.parametrize("entry", _row_ids(lambda s: s != "forth4"))
def test_reference_rows_venice(entry, shared):
    """Venice rows (512×341, 3-exposure stack and the MEFB pair): all 3 scales and oQ, float64."""
    _check_row(entry, shared, torch.float64, 1e-6)
    if entry["id"] == "mefdb/Venice/f_mertens_cv_default":
        _check_row(entry, shared, torch.float32, 1e-4)  # float32 (the training precision) on one row


@pytest.mark.slow
def test_reference_rows_forth4(shared):
    """DeepFuse's forth4 Y pair (1200×800): released output and mean of the Ys, float64 and float32."""
    rows = [e for e in _entries() if e["scene"] == "forth4"]
    if not rows:
        pytest.skip(f"shared data not found: {REFERENCE_JSON}")
    assert len(rows) == 2
    for entry in rows:
        _check_row(entry, shared, torch.float64, 1e-6)
        _check_row(entry, shared, torch.float32, 1e-4)


def test_public_functions_on_reference_row(shared):
    """mef_ssim (single / multi) and the [0, 1] input path equal the JSON's q_scale1 / mef_ms_ssim."""
    rows = [e for e in _entries() if e["id"].startswith("mefb_pair") and e["fused"]["kind"] == "fMean"]
    if not rows:
        pytest.skip(f"shared data not found: {REFERENCE_JSON}")
    fused, sources = _load_row(rows[0], shared)
    single = mef_ssim(fused / 255.0, sources / 255.0)
    multi = mef_ssim(fused / 255.0, sources / 255.0, multiscale=True)
    assert single.shape == multi.shape == (1,)
    assert abs(float(single) - rows[0]["q_scale1"]) < 1e-6
    assert abs(float(multi) - rows[0]["mef_ms_ssim"]) < 1e-6


# --------------------------------------------------------------------------------------------
# naive per-patch oracle


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_naive_oracle_single_scale(seed):
    stack = structured_stack(1, 3, 24, 24, seed=seed)
    g = torch.Generator().manual_seed(100 + seed)
    candidates = {
        "mean": stack.mean(1),
        "noisy": (stack.mean(1) + 0.1 * torch.randn(1, 1, 24, 24, generator=g, dtype=torch.float64)).clamp(0, 1),
        "random": torch.rand(1, 1, 24, 24, generator=g, dtype=torch.float64),
    }
    flat = stack[0, :, 0].unfold(-2, 11, 1).unfold(-2, 11, 1).flatten(-2).std(-1) == 0
    assert flat.any(), "the test stack should contain flat (saturated) windows"
    for name, fused in candidates.items():
        expected = mef_ssim_naive(*to_numpy_stack(stack, fused))
        ours64 = float(mef_ssim(fused, stack))
        ours32 = float(mef_ssim(fused.float(), stack.float()))
        assert abs(ours64 - expected) < 1e-9, name
        assert abs(ours32 - expected) < 1e-5, name


def test_matches_naive_oracle_degenerate_stacks():
    """A constant exposure, a constant fused image, and a fully flat stack (the reference's 0/0 cases)."""
    stack = structured_stack(1, 2, 16, 17, seed=3)
    const = torch.full_like(stack[:, :1], 0.7)
    cases = {
        "constant exposure": (torch.cat([stack[:, :1], const], 1), stack.mean(1)),
        "constant fused": (stack, torch.full_like(stack[:, 0], 0.3)),
        "all flat": (torch.cat([const, 0.5 * const], 1), torch.full_like(stack[:, 0], 0.5)),
    }
    for name, (src, fused) in cases.items():
        expected = mef_ssim_naive(*to_numpy_stack(src, fused))
        assert abs(float(mef_ssim(fused, src)) - expected) < 1e-9, name
        assert abs(float(mef_ssim(fused.float(), src.float())) - expected) < 1e-5, name


def test_matches_naive_oracle_multiscale_odd_size():
    """3 scales on a 45×46 stack: exercises the symmetric padding of odd sizes between scales."""
    stack = structured_stack(1, 2, 45, 46, seed=4)
    fused = (0.6 * stack[:, 0] + 0.4 * stack[:, 1]) ** 0.9
    expected_oq, expected_q = mef_ms_ssim_naive(*to_numpy_stack(stack, fused))
    q = mef_ssim_per_scale(fused, stack, levels=3)[0]
    torch.testing.assert_close(q, torch.tensor(expected_q, dtype=torch.float64), atol=1e-9, rtol=0)
    assert abs(float(mef_ssim(fused, stack, multiscale=True)) - expected_oq) < 1e-9
    assert abs(float(mef_ssim(fused.float(), stack.float(), multiscale=True)) - expected_oq) < 1e-5


# --------------------------------------------------------------------------------------------
# invariants


def test_picking_one_source_scores_below_one_and_identity_scores_one():
    g = torch.Generator().manual_seed(5)
    ramp = torch.linspace(0, 1, 32, dtype=torch.float64).expand(2, 1, 1, 32, 32)
    scene = 0.8 * ramp + 0.2 * torch.rand(2, 1, 1, 32, 32, generator=g, dtype=torch.float64)
    # each exposure resolves one third of the scene's range and is saturated or black elsewhere
    banded = torch.cat([(3 * scene - band).clamp(0, 1) for band in range(3)], 1)
    for k in range(3):
        assert (mef_ssim(banded[:, k], banded) < 0.9).all()
    assert (mef_ssim(banded.mean(1), banded) > 0.6).all()  # (sanity: the banding is not degenerate)
    single = structured_stack(2, 3, 32, 32, seed=5)[:, 1:2]  # includes saturated (flat) windows
    same = single.expand(-1, 3, -1, -1, -1)
    torch.testing.assert_close(mef_ssim(single[:, 0], same), torch.ones(2, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(
        mef_ssim(single[:, 0], same, multiscale=False), mef_ssim(single[:, 0], same[:, :2]), atol=1e-9, rtol=0
    )


def test_invariant_to_exposure_order():
    stack = structured_stack(2, 4, 48, 48, seed=6)
    fused = stack.mean(1) ** 0.8
    perm = torch.tensor([2, 0, 3, 1])
    for multiscale in (False, True):
        a = mef_ssim(fused, stack, multiscale=multiscale)
        b = mef_ssim(fused, stack[:, perm], multiscale=multiscale)
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    a32 = mef_ssim(fused.float(), stack.float())
    b32 = mef_ssim(fused.float(), stack[:, perm].float())
    torch.testing.assert_close(a32, b32, atol=1e-5, rtol=0)


def test_batch_entries_are_independent():
    stack = structured_stack(3, 2, 20, 22, seed=7)
    fused = stack.mean(1)
    batched = mef_ssim(fused, stack)
    singles = torch.cat([mef_ssim(fused[i : i + 1], stack[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, singles, atol=1e-12, rtol=0)


def test_data_range_rescales_inputs():
    stack = structured_stack(1, 2, 20, 20, seed=8)
    fused = stack.max(1).values
    torch.testing.assert_close(mef_ssim(fused, stack), mef_ssim(fused * 255, stack * 255, data_range=255.0))


# --------------------------------------------------------------------------------------------
# gradients and precision


def test_gradients_finite_on_flat_regions():
    stack = structured_stack(2, 3, 24, 24, seed=9, dtype=torch.float32)
    stack[:, :, :, :12, :12] = 1.0  # a saturated block in every exposure
    stack[:, 0, :, 12:, :] = 0.0  # a black half in the darkest one
    fused = stack.mean(1).clone()
    fused[:, :, :12, :12] = 0.8  # flat fused region
    fused.requires_grad_(True)
    sources = stack.clone().requires_grad_(True)
    for multiscale, size in ((False, 24), (True, 44)):
        f = F.interpolate(fused, size=(size, size)) if multiscale else fused
        s = F.interpolate(sources.flatten(1, 2), size=(size, size)).unflatten(1, (3, 1)) if multiscale else sources
        loss = MEFSSIMLoss(multiscale=multiscale)(f, s)
        fused.grad = sources.grad = None
        loss.backward()
        assert torch.isfinite(loss)
        assert torch.isfinite(fused.grad).all() and torch.isfinite(sources.grad).all()
        assert fused.grad.abs().sum() > 0


def test_gradcheck_float64():
    stack = structured_stack(1, 2, 13, 12, seed=10) * 0.6 + 0.2  # no clipping: smooth everywhere
    stack = stack + 0.05 * torch.rand(stack.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    fused = stack.mean(1).requires_grad_(True)
    sources = stack.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda f, s: mef_ssim(f, s), (fused, sources), eps=1e-6, atol=1e-5, fast_mode=True
    )


def test_autocast_and_bf16_inputs():
    stack = structured_stack(2, 2, 24, 24, seed=11, dtype=torch.float32)
    fused = (stack.mean(1) + 0.02).clamp(0, 1)
    ref = mef_ssim(fused, stack)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = mef_ssim(fused, stack)
    assert under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast, ref, atol=1e-6, rtol=0)
    bf16 = mef_ssim(fused.bfloat16(), stack.bfloat16())
    assert bf16.dtype == torch.float32 and torch.isfinite(bf16).all()
    torch.testing.assert_close(bf16, ref, atol=1e-2, rtol=0)


# --------------------------------------------------------------------------------------------
# loss module and metric


def test_loss_reductions_and_weight():
    stack = structured_stack(3, 2, 16, 16, seed=12, dtype=torch.float32)
    fused = stack[:, 0]
    scores = mef_ssim(fused, stack)
    torch.testing.assert_close(MEFSSIMLoss(reduction="none")(fused, stack), 1 - scores)
    torch.testing.assert_close(MEFSSIMLoss()(fused, stack), (1 - scores).mean())
    torch.testing.assert_close(MEFSSIMLoss(reduction="sum", loss_weight=2.0)(fused, stack), 2 * (1 - scores).sum())
    with pytest.raises(ValueError, match="reduction"):
        MEFSSIMLoss(reduction="avg")


def test_loss_optimisation_improves_score():
    stack = structured_stack(1, 2, 16, 16, seed=13, dtype=torch.float32)
    fused = torch.full_like(stack[:, 0], 0.5).requires_grad_(True)  # a flat start
    opt = torch.optim.Adam([fused], lr=0.02)
    loss_fn = MEFSSIMLoss()
    start = float(mef_ssim(fused.detach(), stack))
    for _ in range(15):
        opt.zero_grad()
        loss_fn(fused, stack).backward()
        opt.step()
    assert float(mef_ssim(fused.detach(), stack)) > start + 0.3


@pytest.mark.parametrize("multiscale", [False, True])
def test_metric_equals_mean_of_functional_scores(multiscale):
    size = 44 if multiscale else 20
    batches = [structured_stack(n, 2, size, size, seed=20 + n, dtype=torch.float32) for n in (2, 3)]
    metric = MEFSSIM(multiscale=multiscale)
    scores = []
    for stack in batches:
        fused = stack.mean(1)
        metric.update(fused, stack)
        scores.append(mef_ssim(fused, stack, multiscale=multiscale))
    expected = torch.cat(scores).mean()
    torch.testing.assert_close(metric.compute(), expected, atol=1e-6, rtol=0)
    assert metric._reductions["score_sum"] is not None and metric._defaults.keys() == {"score_sum", "count"}
    metric.reset()
    assert metric.count == 0


# --------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    ("fused_shape", "sources_shape", "kwargs", "match"),
    [
        ((1, 3, 16, 16), (1, 2, 1, 16, 16), {}, "fused: expected a grey batch"),
        ((1, 16, 16), (1, 2, 1, 16, 16), {}, "fused: expected a grey batch"),
        ((1, 1, 16, 16), (1, 2, 16, 16), {}, "sources: expected grey exposure stacks"),
        ((1, 1, 16, 16), (1, 2, 3, 16, 16), {}, "sources: expected grey exposure stacks"),
        ((1, 1, 16, 16), (1, 1, 1, 16, 16), {}, "K ≥ 2"),
        ((2, 1, 16, 16), (1, 2, 1, 16, 16), {}, "batch size"),
        ((1, 1, 16, 16), (1, 2, 1, 16, 18), {}, "spatial size"),
        ((1, 1, 10, 16), (1, 2, 1, 10, 16), {}, "H and W ≥ 11"),
        ((1, 1, 43, 60), (1, 2, 1, 43, 60), {"multiscale": True}, "H and W ≥ 44"),
        ((1, 1, 16, 16), (1, 2, 1, 16, 16), {"data_range": 0.0}, "data_range"),
    ],
)
def test_bad_input_raises(fused_shape, sources_shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        mef_ssim(torch.rand(fused_shape), torch.rand(sources_shape), **kwargs)


def test_non_tensor_and_integer_input_raise():
    with pytest.raises(TypeError, match="fused"):
        mef_ssim(np.zeros((1, 1, 16, 16)), torch.rand(1, 2, 1, 16, 16))
    with pytest.raises(TypeError, match="floating-point"):
        mef_ssim(torch.zeros(1, 1, 16, 16, dtype=torch.uint8), torch.rand(1, 2, 1, 16, 16))
