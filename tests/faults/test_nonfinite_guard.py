"""NonFiniteGuard: a NaN pixel in one training batch stops the run (or is skipped) before it changes the weights.

Real modules (Zero-DCE: automatic optimisation with gradient clipping and Adam weight decay; DPED: manual GAN
optimisation; ReFusion: manual, with a meta phase outside Lightning's hooks) on tiny in-memory data whose batch 1
has a NaN pixel. Batches are ``{"input"/"sources": …, "name": list[str]}`` as in the Darkroom data modules.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, Dataset

from experiments.nonfinite_guard import NonFiniteGuard, NonFiniteLossError
from lightning_modules.dped import DPED, DPEDDiscriminator, DPEDGenerator
from lightning_modules.refusion import ReFusion
from lightning_modules.zero_dce import ZeroDCE
from networks.zero_dce import DCENet

BS = 2


class Items(Dataset):
    """``n`` random samples ``{key: tensor, "name": "img<i>"}``; samples in ``bad`` get one NaN pixel."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], n: int, bad: tuple[int, ...] = (),
                 keep: tuple[int, ...] | None = None, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for i in range(n):
            item = {k: torch.rand(shape, generator=g) * 0.4 + 0.05 for k, shape in shapes.items()}
            if i in bad:
                next(iter(item.values())).view(-1)[5] = float("nan")
            item["name"] = f"img{i}"
            self.items.append(item)
        if keep is not None:
            self.items = [self.items[i] for i in keep]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def _loader(ds: Dataset) -> DataLoader:
    return DataLoader(ds, batch_size=BS, shuffle=False, num_workers=0)


class Record(Callback):
    """Copies of the parameters after every training batch (runs after the guard's on_train_batch_end)."""

    def __init__(self) -> None:
        self.after: dict[int, dict[str, torch.Tensor]] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.after[trainer.global_step] = {n: p.detach().clone() for n, p in pl_module.named_parameters()}


def _trainer(callbacks: list, **kw) -> Trainer:
    kw.setdefault("max_epochs", 1)
    kw.setdefault("enable_checkpointing", any(isinstance(c, ModelCheckpoint) for c in callbacks))
    return Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                   num_sanity_val_steps=0, limit_val_batches=0, callbacks=callbacks, **kw)


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
        assert torch.isfinite(a[k]).all(), k


def _zero_dce() -> ZeroDCE:
    torch.manual_seed(0)
    return ZeroDCE(net=DCENet(n_filters=8), log_images=0)


ZDCE_SHAPES = {"input": (3, 32, 32)}


# -- Zero-DCE: automatic optimisation ------------------------------------------------------------


class SaveEveryBatch(Callback):
    """A plain callback (not a ``Checkpoint``, so Lightning does not move it last) saving at every batch end."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        trainer.save_checkpoint(self.path / f"plain-{trainer.global_step}.ckpt")


def test_stop_raises_naming_step_terms_files_and_keeps_last_good_state(tmp_path: Path) -> None:
    model = _zero_dce()
    record = Record()
    ckpt = ModelCheckpoint(dirpath=tmp_path, filename="{step}", every_n_train_steps=1, save_top_k=-1)
    # the guard listed after a batch-end saver: it moves itself first, so nothing is saved after the bad batch
    trainer = _trainer([SaveEveryBatch(tmp_path), record, NonFiniteGuard("stop"), ckpt], gradient_clip_val=0.1)
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit(model, _loader(Items(ZDCE_SHAPES, 6, bad=(3,))))  # batch 1 = img2, img3
    err = info.value
    first = str(err).splitlines()[0]
    assert "global step 1" in first and "epoch 0" in first and "batch 1" in first
    assert "train/loss_exp=nan" in first and "train/loss=nan" in first
    assert "['img2', 'img3']" in first
    assert (err.step, err.epoch, err.batch_idx, err.names) == (1, 0, 1, ["img2", "img3"])
    assert {"train/loss", "train/loss_spa", "train/loss_exp", "train/loss_col", "train/loss_tv"} <= set(err.terms)
    # the weights are those after the last good step, and Adam's state did not advance
    _assert_same(_params(model), record.after[1])
    opt = trainer.optimizers[0]
    assert all(int(opt.state[p]["step"]) == 1 for p in model.net.parameters())
    assert all(torch.isfinite(s).all() for st in opt.state.values() for s in st.values())
    # the checkpoint written after step 1 is the newest on disk, intact and finite
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["plain-1.ckpt", "step=1.ckpt"]
    state = torch.load(tmp_path / "step=1.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    _assert_same({k: v for k, v in state.items() if k in record.after[1]}, record.after[1])


def test_skip_trains_to_the_end_equal_to_a_run_without_the_bad_batches(caplog: pytest.LogCaptureFixture) -> None:
    bad = (2, 7)  # batches 1 and 3 of 5
    guard, record = NonFiniteGuard("skip"), Record()
    model = _zero_dce()
    trainer = _trainer([guard, record], gradient_clip_val=0.1)
    with caplog.at_level(logging.WARNING, logger="experiments.nonfinite_guard"):
        trainer.fit(model, _loader(Items(ZDCE_SHAPES, 10, bad=bad)))
    assert trainer.global_step == 5  # a skipped batch still counts as a step
    assert guard.nonfinite_skipped == 2 and guard.state_dict()["nonfinite_skipped"] == 2
    assert float(trainer.callback_metrics["train/nonfinite_skipped"]) == 2
    _assert_same(record.after[2], record.after[1])  # the bad batch changed nothing
    lines = [r.getMessage() for r in caplog.records if r.name == "experiments.nonfinite_guard"]
    assert len(lines) == 2 and all("\n" not in m for m in lines)
    assert "global step 1" in lines[0] and "train/loss=nan" in lines[0] and "['img2', 'img3']" in lines[0]
    assert "global step 3" in lines[1] and "['img6', 'img7']" in lines[1]
    # the same as training on the good batches only (Adam: no step count, moments or weight decay for the skips)
    reference = _zero_dce()
    _trainer([], gradient_clip_val=0.1).fit(reference, _loader(Items(ZDCE_SHAPES, 10, keep=(0, 1, 4, 5, 8, 9))))
    _assert_same(_params(model), _params(reference))


def test_skip_counter_survives_resume_and_limit_stops(tmp_path: Path) -> None:
    data = _loader(Items(ZDCE_SHAPES, 4, bad=(2,)))
    trainer = _trainer([NonFiniteGuard("skip")])
    trainer.fit(_zero_dce(), data)
    trainer.save_checkpoint(tmp_path / "epoch0.ckpt")
    assert torch.load(tmp_path / "epoch0.ckpt", weights_only=False)["callbacks"]["NonFiniteGuard"] == {
        "nonfinite_skipped": 1, "consecutive_skipped": 1}  # the bad batch was the epoch's last
    resumed = NonFiniteGuard("skip")
    _trainer([resumed], max_epochs=2).fit(_zero_dce(), data, ckpt_path=tmp_path / "epoch0.ckpt")
    assert resumed.nonfinite_skipped == 2
    # more than max_skips skipped batches: stop, as "stop" would
    limited = NonFiniteGuard("skip", max_skips=1)
    with pytest.raises(NonFiniteLossError, match=r"max_skips=1"):
        _trainer([limited], max_epochs=2).fit(_zero_dce(), data)
    assert limited.nonfinite_skipped == 2


def test_nonfinite_gradients_with_a_finite_loss_are_caught() -> None:
    """An inf gradient (here: injected by a hook after backward) is caught at the optimiser step."""

    class Poison(Callback):
        def on_after_backward(self, trainer, pl_module) -> None:
            if trainer.global_step == 1:
                pl_module.net.e_conv3.weight.grad[0, 0, 0, 0] = float("inf")

    model, record = _zero_dce(), Record()
    trainer = _trainer([Poison(), NonFiniteGuard("stop"), record])
    with pytest.raises(NonFiniteLossError, match=r"non-finite gradients in 1 parameter\(s\) \(net\.e_conv3\.weight\)"):
        trainer.fit(model, _loader(Items(ZDCE_SHAPES, 6)))
    _assert_same(_params(model), record.after[1])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="action"):
        NonFiniteGuard("ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_skips"):
        NonFiniteGuard("skip", max_skips=-1)


# -- DPED: manual optimisation (generator + discriminator Adam steps) ------------------------------

DPED_SHAPES = {"input": (3, 100, 100), "target": (3, 100, 100)}


def _dped() -> DPED:
    torch.manual_seed(0)
    return DPED(generator=DPEDGenerator(channels=8), discriminator=DPEDDiscriminator(width=0.125),
                loss_weights={"content": 0.0}, log_images=0)


@pytest.mark.parametrize("action", ["stop", "skip"])
def test_dped_manual_optimisation(action: str) -> None:
    model, record, guard = _dped(), Record(), NonFiniteGuard(action)
    trainer = _trainer([guard, record])
    data = _loader(Items(DPED_SHAPES, 6, bad=(2,)))
    if action == "stop":
        with pytest.raises(NonFiniteLossError, match=r"global step 1 .*train/loss=nan.*\['img2', 'img3'\]"):
            trainer.fit(model, data)
        _assert_same(_params(model), record.after[1])
    else:
        trainer.fit(model, data)
        assert guard.nonfinite_skipped == 1 and trainer.global_step == 3
        _assert_same(record.after[2], record.after[1])  # neither G nor D moved on the bad batch
        assert all(torch.isfinite(p).all() for p in model.parameters())
    opt_g, opt_d = (o.optimizer if hasattr(o, "optimizer") else o for o in trainer.optimizers)
    expected = 1 if action == "stop" else 2  # Adam steps of G and of D: the bad batch's are not counted
    assert {int(s["step"]) for s in opt_g.state.values()} == {expected}
    assert {int(s["step"]) for s in opt_d.state.values()} == {expected}


# -- ReFusion: fusion phase (hooks) and meta phase (updates outside Lightning's hooks) -------------

RF_SHAPES = {"sources": (2, 1, 16, 16)}


def _refusion(meta: bool) -> ReFusion:
    torch.manual_seed(0)
    return ReFusion(task="mfif", meta=meta, meta_steps=1, meta_accumulation=1, lr=1e-3, log_images=False)


def test_refusion_fusion_phase_skips() -> None:
    model, record, guard = _refusion(meta=False), Record(), NonFiniteGuard("skip")
    trainer = _trainer([guard, record], max_epochs=2)  # epoch 0 = (empty) meta phase, epoch 1 = fusion phase
    trainer.fit(model, _loader(Items(RF_SHAPES, 4, bad=(3,))))
    assert guard.nonfinite_skipped == 1 and trainer.global_step == 2
    _assert_same(record.after[2], record.after[1])


def test_refusion_meta_phase_stops_even_when_skipping() -> None:
    """The meta phase updates P outside Lightning's hooks: the guard sees the NaN only at batch end, so it stops."""
    model = _refusion(meta=True)
    with pytest.raises(NonFiniteLossError, match=r"(?s)global step 0 .*train/meta_inner_fusion_loss=nan.*"
                                                 r"outside Lightning's backward/optimizer-step hooks"):
        _trainer([NonFiniteGuard("skip")], max_epochs=2).fit(model, _loader(Items(RF_SHAPES, 4, bad=(0,))))


# -- BatchNorm statistics, a batch without names ---------------------------------------------------


class TinyBN(LightningModule):
    """conv → BatchNorm → mean; batches are plain tensors (no ``name``)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self.bn(self.conv(batch)).pow(2).mean()
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)


def test_skip_restores_batchnorm_statistics(caplog: pytest.LogCaptureFixture) -> None:
    class Buffers(Callback):
        def __init__(self) -> None:
            self.after: dict[int, dict[str, torch.Tensor]] = {}

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.after[batch_idx] = {k: v.clone() for k, v in pl_module.state_dict().items()}

    torch.manual_seed(0)
    data = torch.rand(6, 3, 8, 8)
    data[3, 0, 0, 0] = float("nan")
    record, guard = Buffers(), NonFiniteGuard("skip")
    with caplog.at_level(logging.WARNING, logger="experiments.nonfinite_guard"):
        _trainer([guard, record]).fit(TinyBN(), DataLoader(data, batch_size=BS))
    assert guard.nonfinite_skipped == 1
    _assert_same(record.after[1], record.after[0])  # weights, running_mean/var and num_batches_tracked
    assert not torch.equal(record.after[2]["bn.running_mean"], record.after[1]["bn.running_mean"])
    assert "files unknown" in caplog.records[-1].getMessage()
