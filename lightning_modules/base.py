"""The contract every Darkroom LightningModule keeps, and the plumbing written once: :class:`DarkroomModule`.

A paper's module declares its ``paper``, its monitored validation metric and the names of its networks, and
implements the parts that are the paper's: ``training_step``, :meth:`~DarkroomModule.evaluate` (one batch of
validation or test), :meth:`~DarkroomModule.predict_output` and :meth:`~DarkroomModule.load_official`. This class
does the rest once: validation/test dispatch, per-image rows and saved samples, the before/after grid, predict's
output dict, ``load_pretrained`` (a Darkroom ``.ckpt`` or the paper's official file), the optimiser step that does
not advance ``trainer.global_step``, and gradient averaging for manual optimisation under DDP. The ``darkroom``
command and the results writer read these attributes; they never sniff argument names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.distributed as dist
from lightning.pytorch import LightningModule
from lightning.pytorch.core.optimizer import LightningOptimizer, do_nothing_closure
from torch import Tensor, nn

from lightning_modules.checkpoints import checkpoint_state
from lightning_modules.image_grid import finish_samples, log_grid
from lightning_modules.inference import FastInference
from lightning_modules.per_image import PerImageRows
from lightning_modules.tiling import DEFAULT_TILE_SIZE
from networks.layers import Network, network_spec
from networks.weight_files import OFFICIAL_WEIGHTS, WeightFile, check_weights

Stage = Literal["val", "test"]


class DarkroomModule(FastInference, LightningModule):
    """Base of the four papers' LightningModules.

    Class attributes a subclass sets:

    * ``paper``: the paper's key (``zero_dce``, ``deepfuse``, ``dped``, ``refusion``): the W&B group, the results'
      ``paper`` and the ``experiments/<paper>/`` folder.
    * ``monitor``: ``(metric, "max" | "min")``, the validation metric the best checkpoint is chosen by.
    * ``networks``: attribute names of the module's networks; :meth:`load_pretrained` reads them from a ``.ckpt``.
    * ``sync_gradients_manually``: manual optimisation whose steps update disjoint parameter sets (a GAN's two
      networks, ReFusion's phases). Under DDP the reducer is then switched off before every batch and the module
      averages the gradients it applies with :meth:`sync_gradients`, so no step waits for parameters it does not use.

    Instance attributes the results read: ``tags`` (W&B tags), ``variant``, ``metric_variants`` (test column →
    definition), ``per_image`` (:class:`~lightning_modules.per_image.PerImageRows`), ``last_grid_path``, ``pretrained_path``, and
    ``tile_size`` (predict: exact tiled inference above 4 tiles of pixels; set by ``--run.tile_size``).
    """

    paper: ClassVar[str]
    monitor: ClassVar[tuple[str, Literal["max", "min"]]]
    networks: ClassVar[tuple[str, ...]]
    sync_gradients_manually: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.variant: str | None = None
        self.metric_variants: dict[str, str] = {}
        self.per_image = PerImageRows()
        self.last_grid_path: Path | None = None
        self.tile_size: int | None = DEFAULT_TILE_SIZE
        #: the weight file :meth:`load_pretrained` last read (recorded in ``results.json``)
        self.pretrained_path: str | None = None

    def record_networks(self, *names: str) -> None:
        """Replace the networks ``names`` in ``hparams`` by the ``class_path`` / ``init_args`` that rebuild them
        (:func:`~networks.layers.network_spec`; call after ``save_hyperparameters``), so that a checkpoint stays
        weights-only and says which networks it holds. An optional network that is ``None`` stays ``None``; a module
        that does not record its arguments (not a :class:`~networks.layers.Network`, e.g. a stateless stand-in given
        in Python) is recorded as ``None``, unless the config gave it as ``class_path`` / ``init_args``."""
        for name in names:
            net, given = getattr(self, name), self.hparams.get(name)
            if isinstance(net, Network):
                self.hparams[name] = network_spec(net)
            elif not isinstance(given, Mapping):  # a config's class_path/init_args (the CLI's) is kept as given
                self.hparams[name] = None

    # -- weights ---------------------------------------------------------------------------------
    def load_official(self, path: Path) -> None:
        """Load the paper's released weight file into its network(s)."""
        raise NotImplementedError

    def load_pretrained(self, path: str | Path) -> None:
        """Load a Darkroom ``.ckpt`` (every network of :attr:`networks` the file holds) or the official weights.

        The file is inspected first (:func:`networks.weight_files.check_weights`): another paper's weights, another
        format or a truncated official file is refused in one line before anything is loaded. A Lightning checkpoint
        of this paper is read as a ``.ckpt`` whatever its suffix.

        Raises:
            FileNotFoundError: no file at ``path``.
            :class:`~lightning_modules.checkpoints.CheckpointError` (= :class:`~networks.weight_files.WeightFileError`):
                a file that is not this paper's official weights nor a Darkroom ``.ckpt`` of it, or a hostile,
                truncated or corrupt file.
            KeyError: a ``.ckpt`` with none of this module's networks.
        """
        path = Path(path)
        self.pretrained_path = str(path)
        found = self._check_weights(path)
        as_ckpt = found is not None and found.kind == "lightning" and (found.identity or "").startswith("darkroom:")
        if path.suffix != ".ckpt" and not as_ckpt:
            self.load_official(path)
            return
        state = checkpoint_state(path, tuple(f"{name}." for name in self.networks), strip=False)
        for name in self.networks:
            sub = {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")}
            if sub:
                getattr(self, name).load_state_dict(sub)

    def _check_weights(self, path: Path) -> WeightFile | None:
        """:func:`~networks.weight_files.check_weights` against this module's official file (the variant's, for
        Zero-DCE++) or a Darkroom ``.ckpt``; a ``.ckpt`` that does not open is left to the checkpoint reader, whose
        message names the file and why."""
        expected = self.variant if self.variant in OFFICIAL_WEIGHTS else self.paper
        if expected not in OFFICIAL_WEIGHTS:
            return None
        also = ("torch", "truncated/corrupt") if path.suffix == ".ckpt" else ()
        return check_weights(path, expected, darkroom_ckpt=True, also_accept=also)

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, batch: dict, batch_idx: int, stage: Stage) -> None:
        """One validation or test batch: update and log the metrics; at test also per-image rows and samples."""
        raise NotImplementedError

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.evaluate(batch, batch_idx, "test")

    def on_test_epoch_start(self) -> None:
        self.per_image.reset()

    def on_test_epoch_end(self) -> None:
        finish_samples(self)

    def log_examples(self, stage: str, columns: list[Tensor], captions: list[str], names: list[str]) -> None:
        """The before/after grid of ``stage`` (one column per tensor N×C×H×W, one row per sample, captioned),
        logged to every logger that takes images and saved as PNG (:func:`~lightning_modules.image_grid.log_grid`)."""
        path = log_grid(self, f"{stage}/examples", columns, captions, row_names=names)
        if path is not None:
            self.last_grid_path = path

    # -- predict ---------------------------------------------------------------------------------
    def predict_output(self, batch: dict) -> Tensor | tuple[Tensor, list[str]]:
        """The output images N×C×H×W of a predict batch (full size), optionally with one note per image."""
        raise NotImplementedError

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        """``{"output": N×C×H×W clamped to [0, 1], "name", "notes"}``; the command writes each output as PNG and
        prints its note."""
        out = self.predict_output(batch)
        out, notes = out if isinstance(out, tuple) else (out, [""] * out.shape[0])
        return {"output": out.clamp_(0, 1), "name": batch["name"], "notes": notes}

    # -- manual optimisation ---------------------------------------------------------------------
    def step_uncounted(self, optimizer: LightningOptimizer) -> None:
        """One step of ``optimizer`` that does not advance ``trainer.global_step``.

        With two optimiser steps per iteration (a GAN's discriminator, ReFusion's loss-proposal net) the second is
        taken with this, so that ``global_step`` and ``max_steps`` count iterations. It goes through the strategy and
        its precision plugin as ``LightningOptimizer.step`` does (the 16-mixed grad scaler's unscale/skip, the
        ``on_before_optimizer_step`` hooks, gradient clipping), leaving out only the step counter.
        """
        self.trainer.strategy.optimizer_step(optimizer.optimizer, do_nothing_closure)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
        if self.sync_gradients_manually:
            model = self.trainer.strategy.model
            if isinstance(model, nn.parallel.DistributedDataParallel):
                # Lightning's DDPStrategy re-enables the reducer after every manual-optimisation step, so switch it
                # off before each DDP forward; the applied gradients are averaged in sync_gradients
                model.require_backward_grad_sync = False
        return None

    def sync_gradients(self, params: Iterable[nn.Parameter]) -> None:
        """Average ``.grad`` of ``params`` over DDP ranks (one flat all-reduce); no-op on one process."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()
