"""Stop (or skip) a training batch whose loss or gradients are NaN/inf, before it changes the weights.

Without it a NaN pixel in one training image trains every later step on a NaN loss, the command exits 0,
the checkpoints hold NaN weights and the test writes ``"psnr": NaN``. :class:`NonFiniteGuard` is a Lightning
callback for all four modules (automatic optimisation: Zero-DCE, DeepFuse; manual: DPED's GAN step, ReFusion's
fusion phase); ``darkroom fit --run.on_nonfinite stop|skip`` adds it.

**What it guarantees.** For every update that goes through Lightning's optimiser machinery (the automatic loop,
or ``self.manual_backward`` + ``optimizer.step()`` of the LightningOptimizers in manual optimisation):

* a batch whose loss (any tensor passed to backward) or whose gradients (in any optimiser's parameters) are not
  finite changes neither the parameters nor the optimiser state: its gradients are dropped (``p.grad = None``)
  before ``optimizer.step`` reads them, and ``torch.optim`` optimisers (Adam, AdamW, SGD, …) skip a parameter
  without a gradient entirely — no update, no weight decay, no moment update, no step count. Persistent buffers
  (BatchNorm running statistics) that the bad batch's forward pass changed are restored from a copy taken at
  ``on_train_batch_start``. Once one value of a batch is bad, every later optimiser step of that batch is dropped
  too (DPED: the discriminator step after a NaN generator loss);
* ``action="stop"``: :class:`NonFiniteLossError` is raised from ``on_train_batch_end``, i.e. before any
  :class:`~lightning.pytorch.callbacks.ModelCheckpoint` of that batch runs (Lightning moves checkpoint callbacks
  to the end of the callback list: ``trainer/connectors/callback_connector.py::_reorder_callbacks``). The
  exception propagates out of ``Trainer.fit`` (``trainer/call.py::_call_and_handle_interrupt`` re-raises after the
  ``on_exception`` hooks; no checkpoint is written on an exception unless an ``OnExceptionCheckpoint`` or a
  ``ModelCheckpoint(save_on_exception=True)`` is present — the Darkroom CLI adds neither), so the command exits
  non-zero and the newest checkpoint on disk is the last good state;
* ``action="skip"``: the batch is skipped as above, one warning line (step, terms, file names) goes to the
  ``experiments.nonfinite_guard`` logger, the counter ``nonfinite_skipped`` is logged every step as
  ``train/nonfinite_skipped`` and kept in :meth:`state_dict` (it survives ``--ckpt_path`` resume). After more than
  ``max_skips`` skipped batches in all, or more than ``max_consecutive_skips`` in a row, it stops as ``"stop"``.
  A skipped batch still counts as a step: ``trainer.global_step`` and step-interval LR schedules advance
  (Lightning calls ``optimizer.step`` with no gradients); the optimiser's own step count does not.

**Not covered: updates outside Lightning's hooks.** A module that calls ``loss.backward()`` and updates parameters
itself (ReFusion's meta phase: ``.backward()`` on the meta loss, then ``normalised_gradient_update_`` or the raw
``opt_p.optimizer.step()``) never calls ``on_before_backward`` / ``on_before_optimizer_step``. For these the guard
still checks the loss ``training_step`` returns at ``on_train_batch_end`` and then always **stops** (whatever the
action: the update may already have happened), saying so and naming any parameters that are now non-finite;
nothing is saved after that batch.

**The error message** (first line): ``non-finite training loss at global step 7 (epoch 0, batch 7):
train/loss_exp=nan, train/loss=nan; files ['a_1', 'b_3']``. The terms are the values ``self.log``-ged during
*this* step (``self.log_dict({f"train/loss_{k}": …})`` of each module) that are not finite, read from the
trainer's result collection at ``on_train_batch_end`` (when every term of the step, DPED's included, has been
logged); a value is "of this step" when its cached tensor was replaced since ``on_train_batch_start``.
When no logged value is bad: ``total loss=nan`` (the tensor passed to backward) or ``non-finite gradients in
N parameters (names…)``. File names: ``batch["name"]`` (a list of str in every Darkroom data module), else
``unknown``.

**Hook call order** (Lightning 2.6.x sources under ``lightning/pytorch``), per training batch:

1. ``on_train_batch_start(batch, batch_idx)`` — ``loops/training_epoch_loop.py::_TrainingEpochLoop.advance``,
   callbacks before the LightningModule's hook, before ``training_step``;
2. ``on_before_backward(loss)`` — ``plugins/precision/precision.py::Precision.pre_backward``, from
   ``strategies/strategy.py::Strategy.backward``, which the automatic loop's backward closure
   (``loops/optimization/automatic.py::_make_backward_fn``) and ``LightningModule.manual_backward``
   (``core/module.py``) both call; under 16-bit AMP it receives the *scaled* loss (finite iff the loss is);
3. ``on_before_optimizer_step(optimizer)`` — ``Precision._after_closure``, called by ``Precision._wrap_closure``
   *inside* ``optimizer.step(closure)`` right after the closure (forward + backward) and before gradient clipping
   and the parameter update; reached from ``core/optimizer.py::LightningOptimizer.step`` →
   ``Strategy.optimizer_step``, so also for manual ``opt.step()``; under AMP
   (``plugins/precision/amp.py::MixedPrecision.optimizer_step``) after ``scaler.unscale_``;
4. ``on_train_batch_end(outputs, batch, batch_idx)`` — ``_TrainingEpochLoop.advance``, after the step and the
   step-interval LR schedulers, before ``update_train_step_metrics`` sends the step's values to the loggers.

**Callback order.** At ``setup("fit")`` the guard moves itself to the front of ``trainer.callbacks``, so that its
``on_train_batch_end`` (which raises) runs before any other callback's: plain callbacks that save at batch end
(e.g. a ``last.ckpt`` writer that is not a :class:`~lightning.pytorch.callbacks.Checkpoint` subclass, which
Lightning would not move behind the guard) then never save the state after a bad batch, and the skip counter in a
checkpoint written at that batch end already counts the batch.

**Costs.** One host sync per backward (the loss check), one per optimiser step (all gradients checked with
``torch.isfinite``, stacked into one flag), one at batch end, and a copy of the persistent buffers per batch
(none in Zero-DCE, DPED, ReFusion; BatchNorm statistics in DeepFuse's ``batch_norm=True`` variant).

**Mixed precision.** Under ``16-mixed`` the GradScaler already skips steps with inf/NaN gradients (and lowers its
scale): that is normal during its calibration, so gradients are not checked there; losses still are.

**DDP.** Each rank checks its own batch. Gradients are all-reduced during backward, so a NaN on one rank makes
every rank's gradients NaN and every rank drops the step (or stops) via the gradient check; only the rank that
had the bad batch can name its files.

**Gradient accumulation.** A bad micro-batch also drops the gradients accumulated so far in its window.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any, Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor

__all__ = ["NonFiniteGuard", "NonFiniteLossError"]

log = logging.getLogger(__name__)

Action = Literal["stop", "skip"]
ACTIONS: tuple[str, ...] = ("stop", "skip")
_MAX_LISTED = 6  # parameter names / terms listed in a message


class NonFiniteLossError(RuntimeError):
    """A training loss or gradient was NaN/inf (or too many batches were skipped for it).

    Attributes: ``step`` (global step of the bad batch, i.e. the number of optimiser steps before it), ``epoch``,
    ``batch_idx``, ``terms`` (``{logged name: value}`` of the non-finite values of that step; empty if none were
    logged), ``names`` (the batch's file names, ``[]`` if unknown) and ``skipped`` (batches skipped so far).
    """

    def __init__(self, message: str, *, step: int, epoch: int, batch_idx: int, terms: dict[str, float],
                 names: list[str], skipped: int = 0) -> None:
        super().__init__(message)
        self.step, self.epoch, self.batch_idx = step, epoch, batch_idx
        self.terms, self.names, self.skipped = dict(terms), list(names), skipped


def _is_finite(t: Tensor) -> bool:
    return bool(torch.isfinite(t.detach()).all())


def _fmt(value: float) -> str:
    return str(value) if not math.isfinite(value) else f"{value:.4g}"


def _batch_names(batch: Any) -> list[str]:
    if isinstance(batch, dict) and "name" in batch:
        names = batch["name"]
        if isinstance(names, str):
            return [names]
        if isinstance(names, (list, tuple)):
            return [str(n) for n in names]
        return [str(names)]
    return []


def _step_loss(outputs: Any) -> Tensor | None:
    """The loss ``training_step`` returned (``outputs`` of ``on_train_batch_end``), if it is a tensor."""
    if isinstance(outputs, Tensor):
        return outputs
    if isinstance(outputs, dict) and isinstance(outputs.get("loss"), Tensor):
        return outputs["loss"]
    return None


class NonFiniteGuard(Callback):
    """Detect a NaN/inf training loss or gradient before the optimiser applies it; stop or skip the batch.

    See the module docstring for the guarantees, the message format and the hook order it relies on.

    Args:
        action: ``"stop"`` (default): raise :class:`NonFiniteLossError` at the first bad batch (the command exits
            non-zero; weights, optimiser state and the checkpoints on disk are those of the last good step).
            ``"skip"``: leave the bad batch out (no update), warn, count it in ``train/nonfinite_skipped``.
        max_skips: with ``"skip"``, stop when more than this many batches were skipped in all (across resumes;
            ``None`` = no limit). Default 100.
        max_consecutive_skips: with ``"skip"``, stop when more than this many batches in a row were skipped — a
            model that produces NaN on every batch will not recover by skipping (``None`` = no limit). Default 10.
        check_gradients: also check the gradients at every optimiser step (default True; off under a GradScaler,
            which handles inf gradients itself).
        restore_buffers: restore the persistent buffers (BatchNorm running statistics) of a bad batch.
    """

    def __init__(self, action: Action = "stop", max_skips: int | None = 100,
                 max_consecutive_skips: int | None = 10, check_gradients: bool = True,
                 restore_buffers: bool = True) -> None:
        if action not in ACTIONS:
            raise ValueError(f"NonFiniteGuard: action must be one of {ACTIONS}, got {action!r}")
        for name, value in (("max_skips", max_skips), ("max_consecutive_skips", max_consecutive_skips)):
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"NonFiniteGuard: {name} must be an integer ≥ 0 or None, got {value!r}")
        self.action = action
        self.max_skips = max_skips
        self.max_consecutive_skips = max_consecutive_skips
        self.check_gradients = check_gradients
        self.restore_buffers = restore_buffers
        self.nonfinite_skipped = 0
        self.consecutive_skipped = 0
        self._reset_batch(None, -1, 0)
        self._param_names: dict[int, str] = {}

    # -- state (saved in checkpoints) -------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"nonfinite_skipped": self.nonfinite_skipped, "consecutive_skipped": self.consecutive_skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.nonfinite_skipped = int(state_dict.get("nonfinite_skipped", 0))
        self.consecutive_skipped = int(state_dict.get("consecutive_skipped", 0))

    # -- per-batch bookkeeping --------------------------------------------------------------------
    def _reset_batch(self, batch: Any, batch_idx: int, step: int) -> None:
        self._batch = batch
        self._batch_idx = batch_idx
        self._step = step
        self._loss_reasons: list[str] = []  # non-finite tensors passed to backward
        self._grad_reasons: list[str] = []  # optimiser steps with non-finite gradients
        self._n_backward = 0
        self._logged_before: dict[str, Any] = {}
        self._buffers: list[tuple[Tensor, Tensor]] = []

    @property
    def _bad(self) -> bool:
        return bool(self._loss_reasons or self._grad_reasons)

    @staticmethod
    def _persistent_buffers(module: torch.nn.Module) -> Iterable[Tensor]:
        for mod in module.modules():
            skip = getattr(mod, "_non_persistent_buffers_set", set())
            for name, buf in mod._buffers.items():
                if buf is not None and name not in skip:
                    yield buf

    @staticmethod
    def _result_items(trainer: Trainer) -> list[tuple[str, Any]]:
        results = getattr(trainer, "_results", None)  # lightning's _ResultCollection (a dict of _ResultMetric)
        if results is None:
            return []
        try:
            return list(results.items())
        except Exception:  # pragma: no cover - a future Lightning layout
            return []

    def _param_name(self, pl_module: LightningModule, p: Tensor) -> str:
        if not self._param_names:
            self._param_names = {id(q): n for n, q in pl_module.named_parameters()}
        return self._param_names.get(id(p), f"<parameter {tuple(p.shape)}>")

    # -- hooks ------------------------------------------------------------------------------------
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Move this callback to the front of ``trainer.callbacks`` (see "Callback order" in the module docstring)."""
        callbacks = trainer.callbacks
        if stage == "fit" and self in callbacks and callbacks[0] is not self:
            # in place: Lightning iterates this very list; moving an earlier element to the front keeps the
            # elements after it where they were, so the ongoing ``setup`` round still calls each callback once
            callbacks.remove(self)
            callbacks.insert(0, self)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._param_names = {}

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._reset_batch(batch, batch_idx, trainer.global_step)
        self._logged_before = {key: getattr(rm, "_forward_cache", None) for key, rm in self._result_items(trainer)}
        if self.restore_buffers:
            with torch.no_grad():
                self._buffers = [(b, b.detach().clone()) for b in self._persistent_buffers(pl_module)]

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: Tensor) -> None:
        self._n_backward += 1
        if not _is_finite(loss):
            value = float(loss.detach().float().flatten()[0]) if loss.numel() else float("nan")
            self._loss_reasons.append(f"total loss={_fmt(value)}"
                                      + (f" (backward #{self._n_backward} of the step)" if self._n_backward > 1
                                         else ""))

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        if not self._bad and self.check_gradients and scaler is None:
            grads = [(p, p.grad) for p in params if p.grad is not None]
            if grads and not bool(torch.stack([torch.isfinite(g).all() for _, g in grads]).all()):
                bad = [self._param_name(pl_module, p) for p, g in grads if not _is_finite(g)]
                listed = ", ".join(bad[:_MAX_LISTED]) + (", …" if len(bad) > _MAX_LISTED else "")
                self._grad_reasons.append(f"non-finite gradients in {len(bad)} parameter(s) ({listed})")
        if self._bad:
            for p in params:  # torch.optim skips parameters without a gradient: no update, no state change
                p.grad = None

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        late = False
        if not self._bad:
            loss = _step_loss(outputs)
            if loss is not None and not _is_finite(loss):
                late = True  # no backward / optimizer-step hook saw it: updated outside Lightning's hooks?
                self._loss_reasons.append(f"training_step returned loss={_fmt(float(loss.detach().float()))}")
        try:
            if self._bad:
                self._handle_bad(trainer, pl_module, batch, late)
            else:
                self.consecutive_skipped = 0
        finally:
            self._batch, self._buffers = None, []  # do not keep the batch / buffer copies alive past the step
        if self.action == "skip":
            pl_module.log("train/nonfinite_skipped", float(self.nonfinite_skipped), on_step=True, on_epoch=False,
                          logger=bool(trainer.loggers), prog_bar=False)

    # -- reporting --------------------------------------------------------------------------------
    def _fresh_terms(self, trainer: Trainer) -> dict[str, float]:
        """Non-finite ``train/…`` values logged during this step (``{name: value}``)."""
        terms: dict[str, float] = {}
        for key, rm in self._result_items(trainer):
            cache = getattr(rm, "_forward_cache", None)
            if not isinstance(cache, Tensor) or cache is self._logged_before.get(key):
                continue  # not logged (on step) during this batch
            name = getattr(getattr(rm, "meta", None), "name", key)
            if not str(name).startswith("train/") or name == "train/nonfinite_skipped" or cache.numel() != 1:
                continue
            value = float(cache.detach().float())
            if not math.isfinite(value):
                terms[name] = value
        return terms

    def _handle_bad(self, trainer: Trainer, pl_module: LightningModule, batch: Any, late: bool) -> None:
        with torch.no_grad():
            for buf, saved in self._buffers:
                buf.copy_(saved)
        for p in pl_module.parameters():  # also drops a gradient-accumulation window's partial sums
            p.grad = None
        terms = self._fresh_terms(trainer)
        names = _batch_names(batch if batch is not None else self._batch)
        what = ", ".join(f"{k}={_fmt(v)}" for k, v in terms.items()) or "; ".join(
            self._loss_reasons + self._grad_reasons)
        extra = "; ".join(self._grad_reasons) if terms and self._grad_reasons and not self._loss_reasons else ""
        kind = "training loss" if (terms or self._loss_reasons) else "gradients"
        where = f"global step {self._step} (epoch {trainer.current_epoch}, batch {self._batch_idx})"
        files = f"files {names}" if names else "files unknown (the batch has no 'name')"
        head = f"non-finite {kind} at {where}: {what}{'; ' + extra if extra else ''}; {files}"
        info = dict(step=self._step, epoch=trainer.current_epoch, batch_idx=self._batch_idx, terms=terms,
                    names=names)

        if late:
            broken = [n for n, p in pl_module.named_parameters() if not _is_finite(p)]
            state = (f"parameters now non-finite: {', '.join(broken[:_MAX_LISTED])}"
                     f"{', …' if len(broken) > _MAX_LISTED else ''}" if broken
                     else "no parameter is non-finite yet")
            raise NonFiniteLossError(
                f"{head}\nSeen only after the training step: {type(pl_module).__name__} updated its weights (or "
                f"will, from this step's values) outside Lightning's backward/optimizer-step hooks, so the batch "
                f"could not be skipped ({state}). Nothing was saved after this batch: the newest checkpoint on "
                f"disk (if any) is the last good state.", skipped=self.nonfinite_skipped, **info)
        if self.action == "stop":
            raise NonFiniteLossError(
                f"{head}\nThe weights and optimizer state were not updated by this batch, and nothing was saved "
                f"after it: the newest checkpoint on disk (if any) is the last good state. Check these files for NaN/inf "
                f"values, or rerun with --run.on_nonfinite skip to leave such batches out.",
                skipped=self.nonfinite_skipped, **info)

        self.nonfinite_skipped += 1
        self.consecutive_skipped += 1
        limit = ""
        if self.max_skips is not None and self.nonfinite_skipped > self.max_skips:
            limit = f"{self.nonfinite_skipped} batches skipped in all (max_skips={self.max_skips})"
        elif self.max_consecutive_skips is not None and self.consecutive_skipped > self.max_consecutive_skips:
            limit = (f"{self.consecutive_skipped} batches in a row skipped "
                     f"(max_consecutive_skips={self.max_consecutive_skips})")
        if limit:
            raise NonFiniteLossError(
                f"{head}\nStopping: {limit}. The weights and optimizer state were not updated by the skipped "
                f"batches; the newest checkpoint on disk (if any) is the last good state.",
                skipped=self.nonfinite_skipped, **info)
        log.warning("skipped batch (no update): %s [%d skipped so far]", head, self.nonfinite_skipped)
