"""Fusion metrics (metrics/fusion.py, metrics/functional/fusion*.py): reference values of the CDDFuse evaluator, closed forms, Metric, errors."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
import torch
from torchmetrics.functional.clustering import mutual_info_score
from torchmetrics.functional.image import visual_information_fidelity as tm_vif

from metrics.fusion import (
    ALL_METRICS,
    DEFAULT_METRICS,
    QABF_DA,
    QABF_KA,
    QABF_TA,
    QABF_TG,
    FusionMetrics,
    average_gradient,
    correlation_coefficient,
    entropy,
    evaluate,
    mutual_information,
    peak_signal_noise_ratio,
    qabf,
    read_evaluator_grey,
    spatial_frequency,
    standard_deviation,
    structural_similarity,
    sum_of_correlation_differences,
    visual_information_fidelity,
)

JSON = "reference/fusion_metrics/fusion_metrics_shared.json"
#: (pair, fused) rows of the reference JSON.
ROWS = [(p, f) for p in ("TNO_05", "MFIF_5", "MRI_PET_14") for f in ("mean", "max", "refusion")]
ROWS.insert(3, ("TNO_05", "seafusion"))
#: torchmetrics-based variants: slow (full 2-D float64 convolutions), checked on one small row only.
TM_KEYS = ("SSIM_tm_avg", "VIF_tm_sum")
#: JSON key → our name (``SSIM`` is the skimage data_range = 2 convention the papers printed).
KEY = {"SSIM_dr2": "SSIM"}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """The metrics are memory-bound elementwise kernels: one thread is faster on a shared 2-core box."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _row(shared, pair: str, fused: str) -> dict:
    entries = json.loads(Path(shared(JSON)).read_text())["entries"]
    found = [e for e in entries if e["pair"] == pair and e["fused"] == fused]
    assert len(found) == 1, f"row {pair}/{fused} not found once in {JSON}"
    return found[0]


@cache
def _images(fused: str, a: str, b: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused 1×H×W and sources 2×H×W in [0, 1], read with the evaluator's grey rule."""
    f = read_evaluator_grey(fused)
    return f, torch.cat([read_evaluator_grey(a), read_evaluator_grey(b)])


def _load(shared, row: dict) -> tuple[torch.Tensor, torch.Tensor]:
    return _images(str(shared(row["fused_image"])), str(shared(row["A"])), str(shared(row["B"])))


def _compare(values: dict[str, float], ours: dict[str, float]) -> list[str]:
    bad = []
    for key, ref in values.items():
        got = ours[KEY.get(key, key)]
        if not math.isclose(got, ref, rel_tol=1e-4, abs_tol=1e-8):
            bad.append(f"{key}: ours {got!r} vs reference {ref!r}")
    return bad


# ------------------------------------------------------------------------------------------------
# reference values (CDDFuse utils/Evaluator.py and literature variants)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("pair", "fused"), ROWS, ids=[f"{p}-{f}" for p, f in ROWS])
def test_reference_values(shared, pair: str, fused: str) -> None:
    row = _row(shared, pair, fused)
    f, s = _load(shared, row)
    assert tuple(f.shape[-2:]) == tuple(row["shape_hw"])
    keys = [k for k in row["values"] if k not in TM_KEYS]
    unknown = [k for k in keys if KEY.get(k, k) not in ALL_METRICS]
    assert not unknown, f"reference keys without an implementation: {unknown}"
    ours = evaluate(f, s, metrics=[KEY.get(k, k) for k in keys])
    bad = _compare({k: row["values"][k] for k in keys}, ours)
    assert not bad, f"{pair}/{fused}:\n" + "\n".join(bad)


def test_reference_values_torchmetrics_variants(shared) -> None:
    row = _row(shared, "MRI_PET_14", "refusion")
    f, s = _load(shared, row)
    ours = evaluate(f, s, metrics=TM_KEYS)
    bad = _compare({k: row["values"][k] for k in TM_KEYS}, ours)
    assert not bad, "\n".join(bad)


def test_functional_api_matches_reference_and_evaluate(shared) -> None:
    """The per-metric functions and their convention arguments give the same numbers as ``evaluate``."""
    row = _row(shared, "TNO_05", "refusion")
    f, s = _load(shared, row)
    v = row["values"]
    pairs = {
        "EN": entropy(f),
        "SD": standard_deviation(f),
        "SF": spatial_frequency(f),
        "SF_vifb": spatial_frequency(f, normalisation="vifb"),
        "AG": average_gradient(f),
        "AG_matlab": average_gradient(f, normalisation="matlab"),
        "MI": mutual_information(f, s),
        "MI_bits": mutual_information(f, list(s), bits=True),
        "SCD": sum_of_correlation_differences(f, s),
        "VIF": visual_information_fidelity(f, s),
        "VIF_sewar_avg": visual_information_fidelity(f, s, reduction="mean"),
        "Qabf": qabf(f, s),
        "SSIM_dr2": structural_similarity(f, s),
        "SSIM_dr255": structural_similarity(f, s, data_range=255.0),
        "SSIM_vifb_sum": structural_similarity(f, s, window="vifb"),
        "CC": correlation_coefficient(f, s),
        "PSNR": peak_signal_noise_ratio(f, s),
        "PSNR_255": peak_signal_noise_ratio(f, s, peak="255"),
        "PSNR_tang": peak_signal_noise_ratio(f, s, peak="tang"),
    }
    for t in pairs.values():
        assert t.ndim == 0 and t.dtype == torch.float64
    bad = _compare({k: v[k] for k in pairs}, {KEY.get(k, k): float(t) for k, t in pairs.items()})
    assert not bad, "\n".join(bad)


# ------------------------------------------------------------------------------------------------
# closed forms and invariants
# ------------------------------------------------------------------------------------------------
def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    """Random image(s) on integer grey levels / 255."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=g).float() / 255


def test_constant_image_has_zero_entropy_sf_ag() -> None:
    c = torch.full((1, 40, 50), 0.3)
    assert entropy(c) == 0
    assert spatial_frequency(c) == 0 and spatial_frequency(c, normalisation="vifb") == 0
    assert average_gradient(c) == 0 and standard_deviation(c) == 0


def test_two_level_image_entropy_and_sd_closed_form() -> None:
    img = torch.full((32, 32), 51 / 255)  # levels 51 and 153, 1/4 of the pixels at 153
    img[:8] = 153 / 255
    assert float(entropy(img)) == pytest.approx(-(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75)), abs=1e-12)
    assert float(standard_deviation(img)) == pytest.approx(102 * math.sqrt(0.25 * 0.75), abs=1e-9)


def test_sf_and_ag_of_stripes_and_ramp() -> None:
    stripes = torch.zeros(20, 30)
    stripes[:, 1::2] = 1.0  # every horizontal difference is ±255, no vertical one
    assert float(spatial_frequency(stripes)) == pytest.approx(255.0, abs=1e-9)
    ramp = torch.arange(30.0).expand(20, 30) / 255  # one grey level per column: G_x = 1, G_y = 0
    assert float(average_gradient(ramp)) == pytest.approx(math.sqrt(0.5), abs=1e-9)
    assert float(average_gradient(ramp, normalisation="matlab")) == pytest.approx(
        math.sqrt(0.5) * 20 * 30 / (19 * 29), abs=1e-9
    )


@pytest.mark.filterwarnings("ignore:Sparse invariant checks")
def test_mi_of_image_with_itself_is_its_entropy_and_matches_torchmetrics() -> None:
    a, b = _rand(2, 48, 48, seed=1)
    a = torch.round(a * 16) / 16  # fewer levels: a well-filled joint histogram
    en_nats = float(entropy(a)) * math.log(2)
    assert float(mutual_information(a, [a])) == pytest.approx(en_nats, rel=1e-12)
    assert float(mutual_information(a, [a, a], bits=True)) == pytest.approx(2 * float(entropy(a)), rel=1e-12)
    levels = lambda x: torch.round(x * 255).long().flatten()  # noqa: E731
    expected = float(mutual_info_score(levels(a), levels(b)))
    assert float(mutual_information(a, [b])) == pytest.approx(expected, rel=1e-6)  # torchmetrics: float32


def test_cc_ssim_vif_of_image_with_itself() -> None:
    a = _rand(48, 48, seed=2)
    assert float(correlation_coefficient(a, [a, a])) == pytest.approx(1.0, abs=1e-12)
    assert float(correlation_coefficient(1 - a, [a])) == pytest.approx(-1.0, abs=1e-12)
    for dr in (2.0, 255.0):  # each source term is 1, summed over the two sources
        assert float(structural_similarity(a, [a, a], data_range=dr)) == pytest.approx(2.0, abs=1e-12)
    assert float(visual_information_fidelity(a, [a, a])) == pytest.approx(2.0, abs=1e-9)  # σ_v² floored at eps


def test_qabf_of_a_copied_source_hits_the_ceiling() -> None:
    """F = A: G_AF = g_F (quirk; ≥ 1 on integer images) so Q_g ≈ Tg, A_AF = 1 so Q_a = Ta/(1 + e^{ka(1 − Da)})."""
    a = _rand(40, 40, seed=3)
    ceiling = QABF_TG * QABF_TA / (1 + math.exp(QABF_KA * (1 - QABF_DA)))
    assert float(qabf(a, [a, a])) == pytest.approx(ceiling, abs=1e-3)
    b = _rand(40, 40, seed=4)
    # black fused image (no edge even with zero padding): G = 0 → Q_g = Tg/(1 + e^{−kg·Dg}) ≈ 5.5e-4
    assert 0 < float(qabf(torch.zeros_like(a), [a, b])) < QABF_TG / (1 + math.exp(7.5))
    assert float(qabf((a + b) / 2, [a, b])) < ceiling


def test_vif_matches_torchmetrics_and_scd_is_symmetric() -> None:
    a, b = _rand(2, 64, 64, seed=5)
    f = torch.round((a + b) / 2 * 255) / 255
    expected = sum(
        float(tm_vif(255 * f.double()[None, None], 255 * s.double()[None, None], sigma_n_sq=2.0)) for s in (a, b)
    )
    assert float(visual_information_fidelity(f, [a, b])) == pytest.approx(expected, rel=1e-7)
    assert float(sum_of_correlation_differences(f, [a, b])) == pytest.approx(
        float(sum_of_correlation_differences(f, [b, a])), rel=1e-12
    )


def test_quantize_scores_the_8bit_image() -> None:
    a, b = _rand(2, 48, 48, seed=6)
    f = torch.rand(48, 48, generator=torch.Generator().manual_seed(7))
    q = torch.round(f * 255) / 255
    assert evaluate(f, [a, b]) == pytest.approx(evaluate(q, [a, b]), rel=1e-9)
    raw = evaluate(f, [a, b], metrics=("SD", "SF"), quantize=False)
    assert raw["SD"] == pytest.approx(float((255 * f.double()).std(correction=0)), rel=1e-9)


# ------------------------------------------------------------------------------------------------
# torchmetrics Metric
# ------------------------------------------------------------------------------------------------
def test_fusion_metric_accumulates_per_image_means() -> None:
    batches = []
    for seed, hw in ((10, 48), (11, 56)):  # batches of different image sizes
        s = _rand(3, 2, 1, hw, hw, seed=seed)
        batches.append((torch.round(s.mean(1) * 255) / 255, s))
    metric = FusionMetrics()
    per_image: list[dict[str, float]] = []
    for f, s in batches:
        metric.update(f, s)
        per_image += [evaluate(f[i], s[i, :, 0]) for i in range(f.shape[0])]
    out = metric.compute()
    assert list(out) == list(DEFAULT_METRICS)
    for m in DEFAULT_METRICS:
        assert float(out[m]) == pytest.approx(sum(r[m] for r in per_image) / len(per_image), rel=1e-10)
    # batched functional call = per-image values
    f, s = batches[0]
    assert torch.allclose(entropy(f), torch.tensor([r["EN"] for r in per_image[:3]], dtype=torch.float64))
    # DDP: states are summed across processes; two halves merged give the whole
    assert all(metric._reductions[k] is not None for k in ("sums", "count"))
    part1, part2 = FusionMetrics(), FusionMetrics()
    part1.update(*batches[0])
    part2.update(*batches[1])
    part1.merge_state(part2)
    for m in DEFAULT_METRICS:
        assert float(part1.compute()[m]) == pytest.approx(float(out[m]), rel=1e-12)


def test_one_metric_per_name_equals_fusion_metrics_and_keeps_per_image_values() -> None:
    """The per-metric classes (one per name of ALL_METRICS) give FusionMetrics' values, per image and mean; the
    collection's per-image columns are the lower-cased names, as FusionMetrics' were."""
    from lightning_modules.per_image import per_image_scores
    from metrics.fusion import FusionMetric, MeanSquaredError, Qabf, fusion_metric, fusion_metric_collection

    assert {fusion_metric(m).metric_name for m in ALL_METRICS} == set(ALL_METRICS)
    assert {cls for cls in (type(fusion_metric(m)) for m in ALL_METRICS)} == set(FusionMetric.__subclasses__())
    assert isinstance(fusion_metric("Qabf"), Qabf) and not MeanSquaredError.higher_is_better
    batches = []
    for seed, hw in ((12, 48), (13, 44)):
        s = _rand(2, 2, 1, hw, hw, seed=seed)
        batches.append(((s.mean(1) + 0.02).clamp(0, 1), s))
    whole, collection = FusionMetrics(ALL_METRICS), fusion_metric_collection(ALL_METRICS, prefix="test/")
    assert list(fusion_metric_collection()) == [m.lower() for m in DEFAULT_METRICS]
    for f, s in batches:
        whole.update(f, s)
        collection.update(f, s)
        rows = per_image_scores(collection, "mean_")
        assert rows.keys() == {f"mean_{m.lower()}" for m in ALL_METRICS}
        for m in ALL_METRICS:
            assert torch.equal(rows[f"mean_{m.lower()}"], whole.last_scores[m]), m
        assert per_image_scores(collection) == {}  # reading consumes the values
    means = collection.compute()
    for m, v in whole.compute().items():
        assert v.dtype == means[f"test/{m.lower()}"].dtype == torch.float64
        assert torch.equal(v, means[f"test/{m.lower()}"]), m
    assert all(m.update_count == 2 for m in collection.values())
    collection.reset()
    assert all(int(m.count) == 0 for m in collection.values())


def test_collection_does_not_merge_metrics_with_equal_first_states() -> None:
    """PSNR (peak = max of the fused image) and PSNR_255 agree while the fused peak is 255: torchmetrics' compute
    groups would merge them after that first batch and then update only one (the factory turns them off)."""
    from metrics.fusion import fusion_metric_collection

    s = _rand(1, 2, 1, 48, 48, seed=14)
    f = s.mean(1)
    f[..., 0, 0] = 1.0  # peak 255
    collection = fusion_metric_collection(("PSNR", "PSNR_255"))
    collection.update(f, s)
    assert torch.equal(collection["psnr"].total, collection["psnr_255"].total)
    collection.update(f * 0.5, s)  # peak 127.5: the two now differ
    out = collection.compute()
    assert float(out["psnr"]) != pytest.approx(float(out["psnr_255"]), abs=1e-3)


def test_per_metric_class_errors() -> None:
    from metrics.fusion import PeakSignalNoiseRatio, fusion_metric

    with pytest.raises(ValueError, match="unknown variant 'SSIM'"):
        PeakSignalNoiseRatio("SSIM")
    with pytest.raises(ValueError, match="unknown names"):
        fusion_metric("Qab")
    with pytest.raises(ValueError, match="N×1×H×W"):
        PeakSignalNoiseRatio().update(torch.rand(32, 32), torch.rand(2, 32, 32))


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fused", "sources", "match"),
    [
        (torch.rand(1, 32, 32), torch.rand(2, 32, 30), "same size"),
        (torch.rand(3, 32, 32), torch.rand(2, 32, 32), "fused"),  # RGB, not grey
        (torch.rand(2, 1, 32, 32), torch.rand(2, 2, 32, 32), r"N×K×1×H×W"),
        (torch.rand(2, 1, 32, 32), torch.rand(3, 2, 1, 32, 32), "same N"),
        (torch.rand(32, 32) * 255, torch.rand(2, 32, 32), r"\[0, 1\]"),
        (torch.randint(0, 255, (32, 32)), torch.rand(2, 32, 32), "float"),
        (torch.rand(32, 32), [torch.rand(32, 32), torch.rand(3, 32, 32)], r"sources\[1\]"),
        (torch.rand(32, 32), [], "empty"),
    ],
)
def test_bad_input_raises(fused, sources, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        evaluate(fused, sources)


def test_metric_specific_errors(tmp_path: Path) -> None:
    a, b, c = _rand(3, 32, 32, seed=8)
    with pytest.raises(ValueError, match="two sources"):
        sum_of_correlation_differences(a, [a, b, c])
    with pytest.raises(ValueError, match="41×41"):
        visual_information_fidelity(a, [a, b])
    with pytest.raises(ValueError, match="unknown names"):
        evaluate(a, [a, b], metrics=("EN", "Qab"))
    with pytest.raises(ValueError, match="N×1×H×W"):
        FusionMetrics().update(a, torch.stack([a, b]))
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_evaluator_grey(tmp_path / "missing.png")
