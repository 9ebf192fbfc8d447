"""``predict`` never destroys input: :class:`experiments.prediction_writer.ImageWriter` refuses to write into
an input folder, over an existing file (unless told to), or two predictions to one file; writes are atomic.

Most tests drive the writer directly with a stand-in trainer (a real ``SICEDataModule`` on a few synthetic
photos); the last two go through ``darkroom predict`` and need the writer wired into
``experiments/lightning_cli.py`` with ``--run.overwrite``.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import run_args
from PIL import Image

from datamodules import image_io
from datamodules.image_io import quantize
from datamodules.sice import SICEDataModule
from experiments.prediction_writer import ImageWriter, OutputExistsError, UnsafeOutputError

REPO = Path(__file__).resolve().parents[2]


def photos(folder: Path, names: tuple[str, ...] = ("a.png", "b.jpg")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 90, (5, 7, 3), dtype=np.uint8)).save(folder / name)
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def trainer_for(predict_root: Path | None, dataset=None) -> SimpleNamespace:
    """A stand-in for the Trainer: what ImageWriter reads (datamodule, predict_dataloaders, strategy)."""
    if predict_root is None:
        return SimpleNamespace(datamodule=None, predict_dataloaders=[SimpleNamespace(dataset=dataset)])
    dm = SICEDataModule(predict_root=str(predict_root), num_workers=0)
    dm.setup("predict")
    return SimpleNamespace(datamodule=dm, predict_dataloaders=[SimpleNamespace(dataset=dm.predict_set)])


def predict(writer: ImageWriter, trainer: SimpleNamespace, value: float = 0.5) -> None:
    """What Lightning does: on_predict_start, then one write per batch of 1 (output = a flat grey image)."""
    writer.on_predict_start(trainer, None)
    dataset = trainer.predict_dataloaders[0].dataset
    for i in range(len(dataset)):
        item = dataset[i]
        out = torch.full_like(item["input"], value)[None]
        writer.write_on_batch_end(trainer, None, {"output": out, "name": [item["name"]]}, None, None, i, 0)


def test_writes_full_resolution_pngs(tmp_path):
    src = photos(tmp_path / "photos")
    writer = ImageWriter(tmp_path / "out")
    predict(writer, trainer_for(src), value=0.3)
    assert sorted(p.name for p in writer.written) == ["a.png", "b.png"]
    got = np.asarray(Image.open(tmp_path / "out" / "a.png"))
    assert got.shape == (5, 7, 3) and (got == quantize(torch.full((3, 5, 7), 0.3))).all()
    assert sorted(os.listdir(tmp_path / "out")) == ["a.png", "b.png"]  # no temporary files left


@pytest.mark.parametrize("where", ["same", "inside", "symlink"])
def test_refuses_an_output_folder_in_the_input_folder(tmp_path, where):
    src = photos(tmp_path / "photos")
    before = snapshot(src)
    out = {"same": src, "inside": src / "enhanced" / "deeper"}.get(where, tmp_path / "link")
    if where == "symlink":
        out.symlink_to(src, target_is_directory=True)
    writer = ImageWriter(out, overwrite=True)  # overwrite does not make it safe
    with pytest.raises(UnsafeOutputError, match="input folder data.predict_root") as err:
        predict(writer, trainer_for(src))
    assert str(out) in str(err.value) and str(src.resolve()) in str(err.value)
    assert "\n" not in str(err.value)
    assert snapshot(src) == before and writer.written == []
    assert not (src / "enhanced").exists()


def test_refuses_output_inside_any_configured_root(tmp_path):
    src = photos(tmp_path / "photos")
    train = tmp_path / "train"
    train.mkdir()
    dm = SICEDataModule(train_root=str(train), predict_root=str(src), num_workers=0)
    dm.setup("predict")
    trainer = SimpleNamespace(datamodule=dm, predict_dataloaders=[SimpleNamespace(dataset=dm.predict_set)])
    with pytest.raises(UnsafeOutputError, match="data.train_root"):
        ImageWriter(train / "preds").on_predict_start(trainer, None)


def test_refuses_output_file_that_is_an_input_through_a_symlink(tmp_path):
    out = tmp_path / "out"
    photos(out, ("x.png",))
    src = tmp_path / "photos"
    src.mkdir()
    (src / "x.png").symlink_to(out / "x.png")  # predicting x writes out/x.png: the input itself
    before = snapshot(out)
    with pytest.raises(UnsafeOutputError, match=str(out.resolve())):
        predict(ImageWriter(out, overwrite=True), trainer_for(src))
    assert snapshot(out) == before


def test_never_overwrites_without_overwrite_true(tmp_path):
    src = photos(tmp_path / "photos")
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.png").write_bytes(b"an earlier result")
    with pytest.raises(OutputExistsError, match=r"b\.png already exists.*--run\.overwrite true"):
        predict(ImageWriter(out), trainer_for(src))
    assert sorted(os.listdir(out)) == ["b.png"]  # checked before anything was written: no a.png either
    assert (out / "b.png").read_bytes() == b"an earlier result"

    writer = ImageWriter(out, overwrite=True)
    predict(writer, trainer_for(src))
    assert sorted(os.listdir(out)) == ["a.png", "b.png"]
    assert Image.open(out / "b.png").size == (7, 5)


def test_two_inputs_with_one_output_name_are_an_error(tmp_path):
    # The SICE loader names a.jpg / a.PNG apart (a_jpg, a_PNG): both are written.
    src = photos(tmp_path / "photos", ("a.jpg", "a.PNG"))
    writer = ImageWriter(tmp_path / "out")
    predict(writer, trainer_for(src))
    assert sorted(p.name for p in writer.written) == ["a_PNG.png", "a_jpg.png"]

    # A dataset whose names collide (case-insensitively) is refused before the first batch.
    files = [src / "a.jpg", src / "a.PNG"]
    dataset = SimpleNamespace(names=["a", "A"], files=files)
    with pytest.raises(UnsafeOutputError, match="same output file"):
        ImageWriter(tmp_path / "out2").on_predict_start(trainer_for(None, dataset), None)
    assert not (tmp_path / "out2").exists()


def test_unknown_dataset_is_checked_per_batch(tmp_path):
    out = tmp_path / "out"
    trainer = trainer_for(None, dataset=[1, 2, 3])  # names not known up front
    writer = ImageWriter(out)
    writer.on_predict_start(trainer, None)
    img = torch.rand(2, 3, 4, 4)
    with pytest.raises(UnsafeOutputError, match="same output file"):
        writer.write_on_batch_end(trainer, None, {"output": img, "name": ["a", "a"]}, None, None, 0, 0)
    assert not out.exists()
    writer.write_on_batch_end(trainer, None, {"output": img, "name": ["a", "b"]}, None, None, 0, 0)
    with pytest.raises(UnsafeOutputError, match="same output file"):
        writer.write_on_batch_end(trainer, None, {"output": img, "name": ["c", "B"]}, None, None, 1, 0)
    assert sorted(os.listdir(out)) == ["a.png", "b.png"]
    with pytest.raises(UnsafeOutputError, match="not a plain file name"):
        writer.write_on_batch_end(trainer, None, {"output": img[:1], "name": ["../escape"]}, None, None, 2, 0)
    (out / "d.png").write_bytes(b"x")
    with pytest.raises(OutputExistsError, match=r"d\.png"):
        writer.write_on_batch_end(trainer, None, {"output": img[:1], "name": ["d"]}, None, None, 3, 0)
    assert (out / "d.png").read_bytes() == b"x"


def test_a_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "out" / "a.png"
    image_io.write_image(target, torch.zeros(3, 4, 4))
    before = target.read_bytes()

    def broken_save(self, fp, format=None, **params):  # noqa: A002 - Pillow's signature
        if hasattr(fp, "write"):
            fp.write(b"\x89PNG half")
        else:
            Path(fp).write_bytes(b"\x89PNG half")
        raise OSError("No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="No space left"):
        image_io.write_image(target, torch.ones(3, 4, 4))
    assert target.read_bytes() == before
    assert os.listdir(target.parent) == ["a.png"]


# ------------------------------------------------------------------------------------- through the CLI
def _predict_cli(folder: Path, out: Path, tmp_path: Path, *extra: str):
    from experiments.cli import cli_main

    return cli_main(["predict", "-c", str(REPO / "experiments" / "zero_dce" / "paper.yaml"),
                     "--data.init_args.predict_root", str(folder), "--data.init_args.num_workers", "0",
                     "--run.output_dir", str(out), *run_args(tmp_path), *extra])


def test_cli_predict_refuses_to_write_into_its_input_folder(tmp_path):
    """Needs lightning_cli.py to use experiments.prediction_writer.ImageWriter."""
    src = photos(tmp_path / "photos", ("photo.png",))
    before = snapshot(src)
    with pytest.raises(UnsafeOutputError, match="input folder"):
        _predict_cli(src, src, tmp_path)
    assert snapshot(src) == before


def test_cli_predict_overwrites_only_with_run_overwrite(tmp_path):
    """Needs lightning_cli.py to pass ``overwrite=run.overwrite`` and define ``--run.overwrite``."""
    src = photos(tmp_path / "photos", ("photo.png",))
    out = tmp_path / "enhanced"
    _predict_cli(src, out, tmp_path)
    assert os.listdir(out) == ["photo.png"]
    (out / "photo.png").write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="--run.overwrite true"):
        _predict_cli(src, out, tmp_path)
    assert (out / "photo.png").read_bytes() == b"keep me"
    _predict_cli(src, out, tmp_path, "--run.overwrite", "true")
    assert Image.open(out / "photo.png").size == (7, 5)
