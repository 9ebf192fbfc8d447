"""Image-fusion metrics as torchmetrics ``Metric`` classes (the functions are in :mod:`metrics.functional.fusion`).

The torchmetrics split: pure functions in :mod:`metrics.functional.fusion` (implementations and conventions of the
CDDFuse evaluator in :mod:`metrics.functional.fusion_core`; all re-exported here, where earlier code imports them),
and here

* one ``Metric`` per fusion metric (:class:`Entropy`, :class:`StandardDeviation`, :class:`SpatialFrequency`,
  :class:`AverageGradient`, :class:`MutualInformation`, :class:`SumOfCorrelationDifferences`,
  :class:`VisualInformationFidelity`, :class:`Qabf`, :class:`StructuralSimilarity`,
  :class:`CorrelationCoefficient`, :class:`PeakSignalNoiseRatio`, :class:`MeanSquaredError`), each the per-image
  mean of one name of :data:`ALL_METRICS` (``variant``; e.g. ``PeakSignalNoiseRatio("PSNR_255")``);
  :func:`fusion_metric` builds the one of any name;
* :func:`fusion_metric_collection`: a ``MetricCollection`` of those, keyed by lower-case name (default: the
  :data:`DEFAULT_METRICS` of the CDDFuse evaluator);
* :class:`FusionMetrics`: all requested names in one ``Metric`` (one state vector), as before.

The values are the same in all three: every ``update`` runs the same checks and implementations
(:func:`metrics.functional.fusion_core._compute_all`).

Using them from a LightningModule (instead of ``FusionMetrics(names)``)::

    self.test_metrics = fusion_metric_collection(names, prefix="test/")  # keys "test/en", …, "test/qabf"
    self.test_metrics.update(fused_y, y)          # fused N×1×H×W, sources N×K×1×H×W, grey, float in [0, 1]
    self.per_image.add(names, per_image_scores(self.test_metrics))  # {"en": Tensor[N], …}: each last_scores
    if any(m.update_count for m in self.test_metrics.values()):
        self.log_dict({k: v.float() for k, v in self.test_metrics.compute().items()})  # {"test/qabf": 0-d, …}
        self.test_metrics.reset()

Each metric keeps ``last_scores`` (the last batch's N per-image values, float64, detached, as
:class:`metrics.full_reference.PerImageMean`), which :func:`lightning_modules.per_image.per_image_scores` reads
and clears; column names are the collection's keys without the stage (``test/qabf`` → ``qabf``), as the
lower-cased names of :class:`FusionMetrics` were. States ``total`` (float64) and ``count`` are sum-reduced
(DDP-safe). The collection is built with ``compute_groups=False``: torchmetrics would otherwise merge metrics whose
states happen to be equal after the first batch (e.g. ``PSNR`` and ``PSNR_255`` when the fused peak is 255) and
then update only one of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection

from metrics.functional.fusion import (
    average_gradient,
    correlation_coefficient,
    entropy,
    evaluate,
    mean_squared_error,
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
from metrics.functional.fusion_core import (
    ALL_METRICS,
    DEFAULT_METRICS,
    QABF_DA,
    QABF_DG,
    QABF_KA,
    QABF_KG,
    QABF_TA,
    QABF_TG,
    VIF_SIGMA_N_SQ,
    _check_names,
    _compute_all,
    _prepare,
)

__all__ = [
    "ALL_METRICS",
    "DEFAULT_METRICS",
    "QABF_DA",
    "QABF_DG",
    "QABF_KA",
    "QABF_KG",
    "QABF_TA",
    "QABF_TG",
    "VIF_SIGMA_N_SQ",
    "AverageGradient",
    "CorrelationCoefficient",
    "Entropy",
    "FusionMetric",
    "FusionMetrics",
    "MeanSquaredError",
    "MutualInformation",
    "PeakSignalNoiseRatio",
    "Qabf",
    "SpatialFrequency",
    "StandardDeviation",
    "StructuralSimilarity",
    "SumOfCorrelationDifferences",
    "VisualInformationFidelity",
    "average_gradient",
    "correlation_coefficient",
    "entropy",
    "evaluate",
    "fusion_metric",
    "fusion_metric_collection",
    "mean_squared_error",
    "mutual_information",
    "peak_signal_noise_ratio",
    "qabf",
    "read_evaluator_grey",
    "spatial_frequency",
    "standard_deviation",
    "structural_similarity",
    "sum_of_correlation_differences",
    "visual_information_fidelity",
]


def _batch_table(fused: Tensor, sources: Tensor, quantize: bool, names: Sequence[str]) -> Tensor:
    """(N, M) per-image values of a batch, columns in the order of ``names``: the ``update`` of every class here.

    ``fused`` N×1×H×W and ``sources`` N×K×1×H×W, grey, float in [0, 1] (checked by ``_prepare``).
    """
    if not (isinstance(fused, Tensor) and fused.ndim == 4):
        shape = tuple(fused.shape) if isinstance(fused, Tensor) else type(fused).__name__
        raise ValueError(f"`fused` must be a batch N×1×H×W; got {shape}")
    f, s, _ = _prepare(fused, sources, quantize)
    return _compute_all(f, s, names)


# --------------------------------------------------------------------------------------------
# one Metric per fusion metric
# --------------------------------------------------------------------------------------------
class FusionMetric(Metric):
    """Per-image mean of one fusion metric over a test set, correct under DDP; the base of the classes below.

    Args:
        variant: the name of :data:`ALL_METRICS` to compute, one of the class's :attr:`names` (default: the first,
            the CDDFuse evaluator's convention).
        quantize: round 255·x to integer grey levels first (the evaluator scores 8-bit files). EN and MI always
            work on integer levels.
        **kwargs: passed to :class:`torchmetrics.Metric`.

    ``update(fused, sources)``: fused N×1×H×W, sources N×K×1×H×W (grey, float in [0, 1]; sizes may change between
    batches); :attr:`last_scores` then holds the batch's N values (float64, detached). ``compute()``: the mean of
    the per-image values seen so far, a 0-d float64 tensor (NaN before any update).

    Example:
        >>> m = AverageGradient("AG_matlab")  # a subclass: its ``names`` are the variants it computes
        >>> m.update(torch.full((2, 1, 8, 8), 0.5), torch.full((2, 2, 1, 8, 8), 0.5))
        >>> m.last_scores, m.compute()
        (tensor([0., 0.], dtype=torch.float64), tensor(0., dtype=torch.float64))
    """

    is_differentiable = False
    higher_is_better: bool | None = True
    full_state_update = False
    #: The names of :data:`ALL_METRICS` the class computes (``variant``); the first is the default.
    names: ClassVar[tuple[str, ...]] = ()

    total: Tensor
    count: Tensor

    def __init__(self, variant: str | None = None, quantize: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if variant is None:
            variant = self.names[0]
        if variant not in self.names:
            raise ValueError(f"{type(self).__name__}: unknown variant {variant!r}; expected one of {self.names}")
        self.metric_name: str = variant
        self.quantize = quantize
        self.last_scores: Tensor | None = None  # the last batch's per-image values (for per-image results)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, fused: Tensor, sources: Tensor) -> None:
        """Add a batch: fused N×1×H×W, sources N×K×1×H×W, grey, float in [0, 1]."""
        values = _batch_table(fused, sources, self.quantize, (self.metric_name,))[:, 0]
        self.last_scores = values.detach()
        self.total += values.sum().to(self.total.device)
        self.count += values.shape[0]

    def compute(self) -> Tensor:
        """Mean per-image value (0-d float64)."""
        return self.total / self.count

    def extra_repr(self) -> str:
        return f"variant={self.metric_name!r}, quantize={self.quantize}"


class Entropy(FusionMetric):
    """EN (bits, [0, 8]) of the fused image: :func:`entropy`. SOURCE: CDDFuse ``Evaluator.EN``.

    Example:
        >>> a, b = torch.rand(2, 1, 1, 32, 32, generator=torch.Generator().manual_seed(0))  # N = 1
        >>> m = Entropy()
        >>> m.update((a + b) / 2, torch.stack([a, b], 1))
        >>> m.last_scores.shape, m.compute().dtype
        (torch.Size([1]), torch.float64)
    """

    names = ("EN",)
    plot_lower_bound = 0.0
    plot_upper_bound = 8.0


class StandardDeviation(FusionMetric):
    """SD (0–255 scale, [0, 127.5]) of the fused image: :func:`standard_deviation`. SOURCE: CDDFuse ``Evaluator.SD``."""

    names = ("SD",)


class SpatialFrequency(FusionMetric):
    """SF (0–255 scale, ≥ 0) of the fused image: :func:`spatial_frequency`; ``"SF_vifb"``: VIFB's normalisation."""

    names = ("SF", "SF_vifb")


class AverageGradient(FusionMetric):
    """AG (0–255 scale, ≥ 0) of the fused image: :func:`average_gradient`; ``"AG_matlab"``: Tang's normalisation."""

    names = ("AG", "AG_matlab")


class MutualInformation(FusionMetric):
    """MI = Σ_k MI(S_k, F), nats (≥ 0): :func:`mutual_information`; ``"MI_bits"``: in bits."""

    names = ("MI", "MI_bits")


class SumOfCorrelationDifferences(FusionMetric):
    """SCD ([−2, 2], exactly two sources): :func:`sum_of_correlation_differences`. SOURCE: CDDFuse ``Evaluator.SCD``."""

    names = ("SCD",)


class VisualInformationFidelity(FusionMetric):
    """VIF = Σ_k VIFp(S_k, F) (H, W ≥ 41): :func:`visual_information_fidelity`; ``"VIF_tm_sum"``: torchmetrics'
    implementation, ``"VIF_sewar_avg"``: the mean over the sources."""

    names = ("VIF", "VIF_tm_sum", "VIF_sewar_avg")


class Qabf(FusionMetric):
    """Q^AB/F ([0, 1)): :func:`qabf` (Xydeas & Petrović 2000, CDDFuse's quirk). SOURCE: CDDFuse ``Evaluator.Qabf``.

    Example:
        >>> a, b = torch.rand(2, 1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
        >>> m = Qabf()
        >>> m.update(a, torch.stack([a, b], 1))
        >>> 0 < float(m.compute()) < 1
        True
    """

    names = ("Qabf",)
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0


class StructuralSimilarity(FusionMetric):
    """SSIM(F, S_k) summed over the sources: :func:`structural_similarity`. ``"SSIM"``: scikit-image, data range 2
    (what the papers printed); ``"SSIM_dr255"``: range 255; ``"SSIM_uint8_avg"``: rounded, range 255, mean;
    ``"SSIM_tm_avg"``: torchmetrics, mean; ``"SSIM_vifb_sum"``: VIFB's Gaussian 'valid' SSIM, sum.

    Example:
        >>> a = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> m = StructuralSimilarity()
        >>> m.update(a, torch.stack([a, a], 1))
        >>> m.compute()  # summed over the two sources
        tensor(2., dtype=torch.float64)
    """

    names = ("SSIM", "SSIM_dr255", "SSIM_uint8_avg", "SSIM_tm_avg", "SSIM_vifb_sum")


class CorrelationCoefficient(FusionMetric):
    """CC = mean_k corr(S_k, F) ([−1, 1]): :func:`correlation_coefficient`. SOURCE: CDDFuse ``Evaluator.CC``."""

    names = ("CC",)


class PeakSignalNoiseRatio(FusionMetric):
    """PSNR (dB) with the fused image's peak: :func:`peak_signal_noise_ratio`; ``"PSNR_255"``: peak 255,
    ``"PSNR_tang"``: Tang's MATLAB value. Not torchmetrics' PSNR (whose peak is the data range).

    Example:
        >>> m = PeakSignalNoiseRatio("PSNR_255")
        >>> m.update(torch.ones(1, 1, 4, 4), torch.full((1, 2, 1, 4, 4), 0.8))  # MSE 51²
        >>> round(float(m.compute()), 3)
        13.979
    """

    names = ("PSNR", "PSNR_255", "PSNR_tang")


class MeanSquaredError(FusionMetric):
    """MSE = mean_k mean((S_k − F)²) on the 0–255 scale: :func:`mean_squared_error`. Lower is better.

    Example:
        >>> m = MeanSquaredError()
        >>> m.update(torch.ones(1, 1, 4, 4), torch.full((1, 2, 1, 4, 4), 0.8))
        >>> m.compute()
        tensor(2601., dtype=torch.float64)
    """

    names = ("MSE",)
    higher_is_better = False


_CLASSES: tuple[type[FusionMetric], ...] = (
    Entropy, StandardDeviation, SpatialFrequency, AverageGradient, MutualInformation, SumOfCorrelationDifferences,
    VisualInformationFidelity, Qabf, StructuralSimilarity, CorrelationCoefficient, PeakSignalNoiseRatio,
    MeanSquaredError,
)
_CLASS_OF: dict[str, type[FusionMetric]] = {name: cls for cls in _CLASSES for name in cls.names}


def fusion_metric(name: str, quantize: bool = True, **kwargs: Any) -> FusionMetric:
    """The ``Metric`` of one name of :data:`ALL_METRICS` (e.g. ``"Qabf"`` → :class:`Qabf`,
    ``"PSNR_255"`` → ``PeakSignalNoiseRatio("PSNR_255")``); ``kwargs`` go to :class:`torchmetrics.Metric`.

    Example:
        >>> fusion_metric("PSNR_255")
        PeakSignalNoiseRatio(variant='PSNR_255', quantize=True)
    """
    (name,) = _check_names((name,))
    return _CLASS_OF[name](name, quantize=quantize, **kwargs)


def fusion_metric_collection(
    metrics: Sequence[str] = DEFAULT_METRICS,
    quantize: bool = True,
    prefix: str | None = None,
    postfix: str | None = None,
) -> MetricCollection:
    """A ``MetricCollection`` of :func:`fusion_metric` per name, keyed by the lower-cased name (``"qabf"``).

    Args:
        metrics: names from :data:`ALL_METRICS`; default :data:`DEFAULT_METRICS` (CDDFuse's set).
        quantize: passed to every metric (see :class:`FusionMetric`).
        prefix, postfix: of the keys (``prefix="test/"`` → ``"test/qabf"``), as ``MetricCollection``'s.

    Returns:
        The collection, with ``compute_groups=False`` (see the module docstring), its keys in the order of
        ``metrics`` (so are per-image columns; a ``MetricCollection`` built from a dict sorts them).
        ``update(fused, sources)`` updates every metric; ``compute()`` → ``{key: 0-d float64}``.

    Example:
        >>> c = fusion_metric_collection(("EN", "Qabf"), prefix="val/")
        >>> a, b = torch.rand(2, 2, 1, 32, 32, generator=torch.Generator().manual_seed(0))  # N = 2
        >>> c.update((a + b) / 2, torch.stack([a, b], 1))
        >>> sorted(c.compute()), [m.last_scores.shape for m in c.values()]
        (['val/en', 'val/qabf'], [torch.Size([2]), torch.Size([2])])
    """
    first, *rest = _check_names(metrics)
    collection = MetricCollection({first.lower(): fusion_metric(first, quantize)}, prefix=prefix, postfix=postfix,
                                  compute_groups=False)
    for m in rest:  # one at a time: add_metrics sorts the keys of each dict it is given
        collection.add_metrics({m.lower(): fusion_metric(m, quantize)})
    return collection


# --------------------------------------------------------------------------------------------
# all metrics in one Metric
# --------------------------------------------------------------------------------------------
class FusionMetrics(Metric):
    """Per-image means of fusion metrics over a test set, correct under DDP.

    ``update(fused, sources)`` takes a batch, fused N×1×H×W and sources N×K×1×H×W (grey, float in
    [0, 1]; images may differ in size between batches); it adds each image's values to a sum state
    and N to a count, both with ``dist_reduce_fx="sum"``. ``compute()`` returns ``{name: mean}``
    as 0-d float64 tensors. Definitions and conventions: :mod:`metrics.functional.fusion_core`.
    After each ``update``, :attr:`last_scores` is ``{name: Tensor[N]}`` (the batch's per-image values).
    One ``Metric`` per name: :func:`fusion_metric_collection`.

    Args:
        metrics: names from :data:`ALL_METRICS`; default :data:`DEFAULT_METRICS`.
        quantize: round 255·x to integer grey levels first (as the evaluator reading 8-bit files).

    Example:
        >>> m = FusionMetrics(metrics=("EN", "SSIM"))
        >>> a = torch.rand(2, 2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
        >>> m.update(a.mean(1), a)
        >>> sorted(m.compute())
        ['EN', 'SSIM']
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    sums: Tensor
    count: Tensor

    def __init__(self, metrics: Sequence[str] = DEFAULT_METRICS, quantize: bool = True, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.metric_names: tuple[str, ...] = _check_names(metrics)
        self.quantize = quantize
        self.last_scores: dict[str, Tensor] = {}  # the last batch's per-image values (for per-image results)
        self.add_state("sums", default=torch.zeros(len(self.metric_names), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, fused: Tensor, sources: Tensor) -> None:
        table = _batch_table(fused, sources, self.quantize, self.metric_names)
        self.last_scores = {m: table[:, i].detach() for i, m in enumerate(self.metric_names)}
        self.sums += table.sum(dim=0).to(self.sums.device)
        self.count += table.shape[0]

    def compute(self) -> dict[str, Tensor]:
        means = self.sums / self.count
        return {m: means[i] for i, m in enumerate(self.metric_names)}
