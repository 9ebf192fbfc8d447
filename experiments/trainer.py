"""The Trainer behind ``darkroom fit|validate|test|predict``: Lightning's, with its batch-count options typed so that
an integer on the command line or in YAML is a count of batches.

Lightning 2.6 annotates ``limit_{train,val,test,predict}_batches`` as ``float | int``,
and jsonargparse tries the types in order, so ``--trainer.limit_val_batches 1`` became ``1.0``: *every* batch
(Lightning reads 0.0–1.0 as a fraction). Here the annotation is ``int | float``: ``1`` is one batch, ``1.0`` (or
``0.25``) a fraction, as Lightning's documentation describes them.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Trainer


class DarkroomTrainer(Trainer):
    """:class:`lightning.pytorch.Trainer` with ``int | float`` batch-count options (module docstring); every other
    argument is Lightning's own."""

    def __init__(
        self,
        *,
        limit_train_batches: int | float | None = None,
        limit_val_batches: int | float | None = None,
        limit_test_batches: int | float | None = None,
        limit_predict_batches: int | float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(limit_train_batches=limit_train_batches, limit_val_batches=limit_val_batches,
                         limit_test_batches=limit_test_batches, limit_predict_batches=limit_predict_batches,
                         **kwargs)
