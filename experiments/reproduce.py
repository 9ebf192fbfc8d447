"""``darkroom reproduce``: train with a paper's recipe on real data, then measure the distance to the official model.

One command, three steps, each resumable (run it again and it continues where it stopped):

1. **train** with ``experiments/<paper>/paper.yaml`` + ``reproduce.yaml`` (the recipe plus the budget's deviations)
   into ``<out>/runs/<paper>/train``, keeping every epoch's checkpoint;
2. **evaluate** the official model and every epoch of ours on the same real test photos through the same
   ``darkroom test`` loop: unpaired, the no-reference metrics of each (NIQE, LOE, brightness); and paired, ours
   against the official model's outputs as labels (PSNR / SSIM to the official model);
3. **report** (:mod:`experiments.reproduce_report`): ``<out>/report.md`` (a table per epoch and per photo),
   ``learning_curve.png`` (PSNR to the official model per epoch) and ``grid.png`` (input | ours | official).

Supported: Zero-DCE (``zero_dce``) and Zero-DCE++ (``zero_dce_pp``). Example (the official 2002 training images and 17 test photos)::

    darkroom reproduce zero_dce --data ../shared/data/lowlight/train --test ../shared/data/lowlight/test \\
        --reference ../shared/data/weights/zero_dce/Epoch99.pth --out repro/zero_dce
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from datamodules.image_io import check_image_header, list_images_recursive, load_tensor, write_image

EXPERIMENTS = Path(__file__).resolve().parent


@dataclass
class Evaluation:
    """Where one model's two test runs wrote their results (``results.json`` in each run directory)."""

    label: str
    epoch: int | None
    photos: Path
    to_official: Path | None


def _cli(args: list[str]):
    from experiments.cli import cli_main

    return cli_main(args)


#: ``darkroom reproduce`` name → (the experiments folder, the recipe, its budget overlay).
RECIPES: dict[str, tuple[str, str, str]] = {
    "zero_dce": ("zero_dce", "paper.yaml", "reproduce.yaml"),
    "zero_dce_pp": ("zero_dce", "paper_pp.yaml", "reproduce_pp.yaml"),
}


def _configs(paper: str) -> list[str]:
    folder, recipe, overlay = RECIPES[paper]
    return ["-c", str(EXPERIMENTS / folder / recipe), "-c", str(EXPERIMENTS / folder / overlay)]


def train(paper: str, data: Path, runs: Path, epochs: int | None, extra: list[str]) -> Path:
    """Step 1: fit (resuming from ``last.ckpt`` when a previous call stopped); returns the checkpoint folder."""
    ckpt_dir = runs / paper / "train" / "checkpoints"  # runs/<name>/: the run group is the reproduce name
    args = ["fit", *_configs(paper), "--data.init_args.train_root", str(data), "--run.root", str(runs),
            "--run.name", "train", "--run.group", paper]
    if epochs is not None:
        args += ["--trainer.max_epochs", str(epochs)]
    if (ckpt_dir / "last.ckpt").is_file():
        args += ["--ckpt_path", str(ckpt_dir / "last.ckpt")]
    _cli(args + list(extra))
    return ckpt_dir


def epoch_checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """``(epoch, path)`` of the kept ``epoch=NNNN.ckpt`` files, in epoch order."""
    found = []
    for path in ckpt_dir.glob("epoch=*.ckpt"):
        number = path.stem.split("=", 1)[1]
        if number.isdigit():
            found.append((int(number), path))
    return sorted(found)


def official_labels(paper: str, test: Path, reference: Path, out: Path, runs: Path) -> Path:
    """The official model's outputs on the test photos, laid out as labels: ``<out>/<id>/<id>.<ext>`` (the photo)
    and ``<out>/Label/<id>.png`` (the official output), the SICE Part2 layout that ``darkroom test`` pairs."""
    if (out / "Label").is_dir():  # complete: the layout is built aside and renamed into place
        return out
    predictions = runs / paper / "official-predict" / "predictions"
    _cli(["predict", *_configs(paper), "--model.init_args.pretrained", str(reference),
          "--data.init_args.predict_root", str(test), "--run.root", str(runs), "--run.name", "official-predict",
          "--run.group", paper, "--run.output_dir", str(predictions), "--run.overwrite", "true",
          "--run.wandb", "false"])
    building = out.with_name(out.name + ".partial")
    shutil.rmtree(building, ignore_errors=True)
    (building / "Label").mkdir(parents=True)
    for photo, name in list_images_recursive(test):
        ident = name.replace("/", "_")
        (building / ident).mkdir()
        label = building / "Label" / f"{ident}.png"
        shutil.copy2(predictions / f"{name}.png", label)
        w, h = check_image_header(label)
        if check_image_header(photo) == (w, h):
            shutil.copy2(photo, building / ident / f"{ident}{photo.suffix.lower()}")
        else:  # the official test cropped it (Zero-DCE++: to a multiple of its scale factor, top-left): so does ours
            write_image(building / ident / f"{ident}.png", load_tensor(photo)[:, :h, :w])
    shutil.rmtree(out, ignore_errors=True)
    building.rename(out)
    return out


def _test(paper: str, name: str, runs: Path, test_root: Path, weights: list[str], paired: bool,
          tags: list[str]) -> Path:
    """One ``darkroom test`` into ``runs/<paper>/<name>`` (skipped when its ``results.json`` exists). ``tags`` go to
    ``run.tags``: ``experiments/zero_dce/results.yaml``'s reproduction rows select runs by them."""
    run_dir = runs / paper / name
    if not (run_dir / "results.json").is_file():
        data = ["--data.init_args.test_root", str(test_root)]
        if paired:  # one photo per "sequence", at native size: every photo is compared with the official output
            data += ["--data.init_args.low_per_sequence", "all", "--data.init_args.eval_size", "null"]
        _cli(["test", *_configs(paper), *data, *weights, "--run.root", str(runs), "--run.name", name,
              "--run.group", paper, "--run.wandb", "false", "--run.tags", json.dumps(["reproduction", *tags])])
    return run_dir / "results.json"


def evaluate(paper: str, test: Path, labels: Path, reference: Path, ckpt_dir: Path, runs: Path) -> list[Evaluation]:
    """Step 2: the official model on the photos, then every kept epoch on the photos and against the labels."""
    official = Evaluation("official", None, _test(paper, "eval-official-photos", runs, test,
                                                  ["--model.init_args.pretrained", str(reference)], False,
                                                  ["official"]), None)
    evaluations = [official]
    for epoch, ckpt in epoch_checkpoints(ckpt_dir):
        # the weights as ``pretrained`` (a --ckpt_path would send the test into the training run's directory)
        weights = ["--model.init_args.pretrained", str(ckpt)]
        evaluations.append(Evaluation(
            f"ours, epoch {epoch}", epoch,
            _test(paper, f"eval-epoch{epoch:04d}-photos", runs, test, weights, False, ["ours", f"epoch-{epoch}"]),
            _test(paper, f"eval-epoch{epoch:04d}-to-official", runs, labels, weights, True,
                  ["to-official", f"epoch-{epoch}"])))
    return evaluations


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(prog="darkroom reproduce", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paper", choices=sorted(RECIPES), help="the paper (and variant) to reproduce")
    p.add_argument("--data", type=Path, required=True, help="training images (the recipe's train_root)")
    p.add_argument("--test", type=Path, required=True, help="real test photos (a folder, sub-folders allowed)")
    p.add_argument("--reference", type=Path, required=True, help="the official weight file")
    p.add_argument("--out", type=Path, default=Path("reproduction"), help="working folder (default ./reproduction)")
    p.add_argument("--epochs", type=int, default=None, help="override reproduce.yaml's epoch budget")
    p.add_argument("--skip-train", action="store_true", help="evaluate and report the checkpoints already there")
    args, extra = p.parse_known_args(argv)
    for what in ("data", "test", "reference"):
        path = getattr(args, what)
        if not path.exists():
            p.error(f"--{what} {path}: not found")
    return args, extra


def main(argv: list[str]) -> None:
    """Console entry of ``darkroom reproduce``; ``argv`` after the subcommand. Unknown ``--…`` arguments go to
    ``darkroom fit`` (e.g. ``--trainer.max_steps 2``)."""
    from experiments.reproduce_report import write_report

    args, extra = parse(argv)
    out = args.out.expanduser().resolve()
    runs = out / "runs"
    ckpt_dir = runs / args.paper / "train" / "checkpoints"
    if not args.skip_train:
        train(args.paper, args.data.resolve(), runs, args.epochs, extra)
    if not epoch_checkpoints(ckpt_dir):
        raise SystemExit(f"darkroom reproduce: no epoch checkpoint in {ckpt_dir} (train first)")
    labels = official_labels(args.paper, args.test.resolve(), args.reference.resolve(), out / "official_labels", runs)
    evaluations = evaluate(args.paper, args.test.resolve(), labels, args.reference.resolve(), ckpt_dir, runs)
    report = write_report(out, args.paper, evaluations, {"data": str(args.data), "test": str(args.test),
                                                        "reference": str(args.reference)})
    print(f"darkroom reproduce: {report}")
    print(json.dumps({"report": str(report)}))
