"""``darkroom reproduce``: train with a paper's recipe on real data, then measure the distance to the official model.

One command, three steps, each resumable (run it again and it continues where it stopped):

1. **train** with ``experiments/<paper>/paper.yaml`` + ``reproduce.yaml`` (the recipe plus the budget's deviations)
   into ``<out>/runs/<paper>/train``, keeping every epoch's checkpoint;
2. **evaluate** the official model and every epoch of ours on the same real test photos through the same
   ``darkroom test`` loop: unpaired, the no-reference metrics of each (NIQE, LOE, brightness); and paired, ours
   against the official model's outputs as labels (PSNR / SSIM to the official model);
3. **report** (:mod:`experiments.reproduce_report`): ``<out>/report.md`` (a table per epoch and per photo),
   ``learning_curve.png`` (PSNR to the official model per epoch) and ``grid.png`` (input | ours | official).

Supported (:data:`RECIPES`): Zero-DCE (``zero_dce``), Zero-DCE++ (``zero_dce_pp``), DeepFuse (``deepfuse``), ReFusion
IVIF (``refusion_ivif``) and DPED iPhone (``dped_iphone``). Examples::

    # the official 2002 training images and 17 test photos
    darkroom reproduce zero_dce --data ../shared/data/lowlight/train --test ../shared/data/lowlight/test \\
        --reference ../shared/data/weights/zero_dce/Epoch99.pth --out repro/zero_dce
    # 5 real exposure stacks for training; 2 held out plus DeepFuse's own 3 test stacks
    darkroom reproduce deepfuse --data ../shared/data/exposure_stacks --holdout Seq_21 Venice \\
        --test ../shared/data/exposure_stacks_official_deepfuse/input_color_images \\
        --reference ../shared/data/weights/deepfuse/DF_model_Epoch99.npz --out repro/deepfuse
    # a GPU user's MSRS ({train,test}/{ir,vi}) and DPED (iphone/{training_data,test_data}) downloads
    darkroom reproduce refusion_ivif --data data/MSRS --reference ReFusion_IVIF.pth
    darkroom reproduce dped_iphone --data data/dped --reference weights/dped/iphone_orig
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from datamodules.image_io import check_image_header, list_images_recursive, load_tensor, write_image
from experiments.callbacks import NonFiniteMetricError

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


@dataclass(frozen=True)
class Recipe:
    """What ``darkroom reproduce NAME`` runs: ``experiments/<folder>/<recipe>`` + ``<overlay>``, and how it is scored.

    Attributes:
        train_option: the data option that ``--data`` fills (``train_root``; ``root`` for a dataset root that
            holds its own test split, MSRS ``{train,test}`` or DPED ``<phone>/{training_data,test_data}``).
        test_option: the data option that ``--test`` fills; ``None`` when the data root holds the test split.
        to_official: enhancement without labels: also score ours against the official model's outputs (PSNR / SSIM).
        scenes: ``--data`` is one folder per scene; ``--holdout`` scenes (and ``--test`` scenes) become the test set.
        metrics: the report's columns, ``results.json`` keys of the recipe's own ``darkroom test``.
        baselines: ``(metric prefix, name)`` of training-free methods the test scores on the same images.
        curve: the learning curve's metric (higher is better).
    """

    folder: str
    recipe: str
    overlay: str
    train_option: str = "train_root"
    test_option: str | None = "test_root"
    to_official: bool = False
    scenes: bool = False
    metrics: tuple[str, ...] = ()
    baselines: tuple[tuple[str, str], ...] = ()
    curve: str = "psnr"


_FUSION_METRICS = ("en", "sd", "sf", "ag", "mi", "scd", "vif", "qabf", "ssim")

#: ``darkroom reproduce`` name → its :class:`Recipe`.
RECIPES: dict[str, Recipe] = {
    "zero_dce": Recipe("zero_dce", "paper.yaml", "reproduce.yaml", to_official=True,
                       metrics=("niqe", "loe", "brightness")),
    "zero_dce_pp": Recipe("zero_dce", "paper_pp.yaml", "reproduce_pp.yaml", to_official=True,
                          metrics=("niqe", "loe", "brightness")),
    "deepfuse": Recipe("deepfuse", "paper.yaml", "reproduce.yaml", scenes=True, metrics=("mef_ssim", "ms_mef_ssim"),
                       baselines=(("mertens_", "Mertens (1, 1, 1)"), ("mean_", "exposure mean")), curve="mef_ssim"),
    "refusion_ivif": Recipe("refusion", "ivif.yaml", "reproduce.yaml", train_option="root",
                            metrics=_FUSION_METRICS, baselines=(("mean_", "pixel mean"), ("max_", "pixel max")),
                            curve="qabf"),
    "dped_iphone": Recipe("dped", "iphone.yaml", "reproduce.yaml", train_option="root", test_option=None,
                          metrics=("psnr", "ms_ssim"), baselines=(("input_", "phone input"),), curve="psnr"),
}


def _configs(paper: str) -> list[str]:
    r = RECIPES[paper]
    return ["-c", str(EXPERIMENTS / r.folder / r.recipe), "-c", str(EXPERIMENTS / r.folder / r.overlay)]


def train(paper: str, data: Path, runs: Path, epochs: int | None, extra: list[str]) -> Path:
    """Step 1: fit (resuming from ``last.ckpt`` when a previous call stopped); returns the checkpoint folder."""
    ckpt_dir = runs / paper / "train" / "checkpoints"  # runs/<name>/: the run group is the reproduce name
    args = ["fit", *_configs(paper), f"--data.init_args.{RECIPES[paper].train_option}", str(data),
            "--run.root", str(runs), "--run.name", "train", "--run.group", paper]
    if epochs is not None:
        args += ["--trainer.max_epochs", str(epochs)]
    if (ckpt_dir / "last.ckpt").is_file():
        args += ["--ckpt_path", str(ckpt_dir / "last.ckpt")]
    _cli(args + list(extra))
    return ckpt_dir


def split_scenes(data: Path, holdout: list[str], tests: list[Path], out: Path) -> tuple[Path, Path]:
    """A scene-folder dataset split by name, as two folders of symbolic links (nothing is copied):
    ``<out>/train/<scene>`` for every scene of ``data`` not in ``holdout``, and ``<out>/test/<scene>`` for the
    held-out ones plus every scene folder of each ``tests`` root. Rebuilt on every call, so it follows the arguments.

    Raises:
        SystemExit: a held-out name that is not a scene of ``data``, a test scene name given twice, or an empty split.
    """
    scenes = {p.name: p for p in sorted(data.iterdir()) if p.is_dir() and not p.name.startswith(".")}
    missing = sorted(set(holdout) - set(scenes))
    if missing:
        raise SystemExit(f"darkroom reproduce: --holdout {' '.join(missing)}: no such scene folder in {data} "
                         f"(scenes: {', '.join(scenes) or 'none'})")
    test_scenes = {name: scenes[name] for name in holdout}
    for root in tests:
        for p in sorted(root.iterdir()):
            if p.is_dir() and not p.name.startswith("."):
                if p.name in test_scenes:
                    raise SystemExit(f"darkroom reproduce: test scene {p.name!r} found twice ({test_scenes[p.name]}, "
                                     f"{p}); rename one")
                test_scenes[p.name] = p
    train_scenes = {n: p for n, p in scenes.items() if n not in holdout}
    for what, chosen in (("training", train_scenes), ("test", test_scenes)):
        if not chosen:
            raise SystemExit(f"darkroom reproduce: no {what} scene left (data {data}, --holdout {holdout})")
    folders = []
    for split, chosen in (("train", train_scenes), ("test", test_scenes)):
        folder = out / split
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for name, path in chosen.items():
            (folder / name).symlink_to(path.resolve(), target_is_directory=True)
        folders.append(folder)
    return folders[0], folders[1]


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


def model_options(extra: list[str]) -> list[str]:
    """The ``--model.…`` options (with their values) among ``extra``: a test must build the network it loads the
    trained weights into, so an architecture override given for training reaches every evaluation too.

    Example:
        >>> model_options(["--trainer.max_steps", "2", "--model.init_args.lr", "1e-4", "--model.init_args.x=1"])
        ['--model.init_args.lr', '1e-4', '--model.init_args.x=1']
    """
    chosen, i = [], 0
    while i < len(extra):
        token = extra[i]
        takes_value = "=" not in token and i + 1 < len(extra) and not extra[i + 1].startswith("--")
        if token.startswith("--model."):
            chosen += extra[i:i + 1 + takes_value]
        i += 1 + takes_value
    return chosen


def _test(paper: str, name: str, runs: Path, test_root: Path | None, weights: list[str], paired: bool,
          tags: list[str], data_root: Path | None = None, extra: tuple[str, ...] = (), step: str = "") -> Path:
    """One ``darkroom test`` into ``runs/<paper>/<name>`` (skipped when its ``results.json`` exists). ``tags`` go to
    ``run.tags``: the ``results.yaml`` reproduction rows select runs by them. ``test_root`` fills the recipe's
    test option; a recipe without one (the test split inside the data root) gets ``data_root`` instead. ``step``:
    "i/n" for the progress line."""
    run_dir = runs / paper / name
    label = f"darkroom reproduce: evaluation {step + ' ' if step else ''}{name}"
    if (run_dir / "results.json").is_file():
        print(f"{label}: done already ({run_dir / 'results.json'})", flush=True)
    else:
        print(label, flush=True)
        recipe = RECIPES[paper]
        if recipe.test_option is not None:
            data = [f"--data.init_args.{recipe.test_option}", str(test_root)]
        else:
            data = [f"--data.init_args.{recipe.train_option}", str(data_root)]
        if paired:  # one photo per "sequence", at native size: every photo is compared with the official output
            data += ["--data.init_args.low_per_sequence", "all", "--data.init_args.eval_size", "null"]
        try:
            _cli(["test", *_configs(paper), *data, *extra, *weights, "--run.root", str(runs), "--run.name", name,
                  "--run.group", paper, "--run.wandb", "false", "--run.tags", json.dumps(["reproduction", *tags])])
        except NonFiniteMetricError as error:  # an early epoch may score undefined: recorded as null, shown as –
            print(f"darkroom reproduce: {error}")
    return run_dir / "results.json"


def evaluate(paper: str, test: Path | None, labels: Path | None, reference: Path, ckpt_dir: Path, runs: Path,
             data_root: Path | None = None, extra: list[str] | None = None) -> list[Evaluation]:
    """Step 2: the official model on the test set, then every kept epoch on it (and, for an enhancement recipe,
    against the official model's outputs as labels). ``extra``: ``--model.…`` options for our epochs' tests."""
    epochs = epoch_checkpoints(ckpt_dir)
    total = 1 + len(epochs) * (2 if labels is not None else 1)
    steps = (f"{i}/{total}" for i in range(1, total + 1))
    official = Evaluation("official", None, _test(paper, "eval-official-photos", runs, test,
                                                  ["--model.init_args.pretrained", str(reference)], False,
                                                  ["official"], data_root, step=next(steps)), None)
    ours_options = tuple(model_options(extra or []))
    evaluations = [official]
    for epoch, ckpt in epochs:
        # the weights as ``pretrained`` (a --ckpt_path would send the test into the training run's directory)
        weights = ["--model.init_args.pretrained", str(ckpt)]
        evaluations.append(Evaluation(
            f"ours, epoch {epoch}", epoch,
            _test(paper, f"eval-epoch{epoch:04d}-photos", runs, test, weights, False, ["ours", f"epoch-{epoch}"],
                  data_root, ours_options, step=next(steps)),
            _test(paper, f"eval-epoch{epoch:04d}-to-official", runs, labels, weights, True,
                  ["to-official", f"epoch-{epoch}"], extra=ours_options, step=next(steps))
            if labels is not None else None))
    return evaluations


def _exists(path: Path) -> bool:
    """A file or folder, or a TensorFlow checkpoint prefix (DPED's ``iphone_orig`` names ``iphone_orig.index``)."""
    return path.exists() or path.with_name(path.name + ".index").is_file()


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(prog="darkroom reproduce", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paper", choices=sorted(RECIPES), help="the paper (and variant or task) to reproduce")
    p.add_argument("--data", type=Path, required=True,
                   help="training data: the recipe's train_root (Zero-DCE, DeepFuse: scene folders) or dataset "
                        "root (ReFusion: MSRS {train,test}/{ir,vi}; DPED: <root>/iphone/{training_data,test_data})")
    p.add_argument("--test", type=Path, action="append", default=None,
                   help="real test images: a folder (Zero-DCE: photos, sub-folders allowed; DeepFuse: scene "
                        "folders, may repeat); default for ReFusion <data>/test, for DPED <data>/iphone/test_data")
    p.add_argument("--holdout", nargs="+", default=[], metavar="SCENE",
                   help="DeepFuse: scene folders of --data kept out of training and added to the test set")
    p.add_argument("--reference", type=Path, required=True, help="the official weight file")
    p.add_argument("--out", type=Path, default=Path("reproduction"), help="working folder (default ./reproduction)")
    p.add_argument("--epochs", type=int, default=None, help="override reproduce.yaml's epoch budget")
    p.add_argument("--skip-train", action="store_true", help="evaluate and report the checkpoints already there")
    args, extra = p.parse_known_args(argv)
    recipe = RECIPES[args.paper]
    for path in [args.data, args.reference, *(args.test or [])]:
        if not _exists(path):
            what = "data" if path == args.data else "reference" if path == args.reference else "test"
            p.error(f"--{what} {path}: not found")
    if args.holdout and not recipe.scenes:
        p.error(f"--holdout: only for scene-folder recipes ({', '.join(n for n, r in RECIPES.items() if r.scenes)})")
    if recipe.test_option is None and args.test:
        p.error(f"--test: {args.paper} tests on the test split inside --data")
    if recipe.to_official and (not args.test or len(args.test) != 1):
        p.error(f"--test: {args.paper} needs exactly one folder of test photos")
    if recipe.scenes and not (args.test or args.holdout):
        p.error("--test or --holdout: a scene-folder recipe needs test scenes")
    return args, extra


def main(argv: list[str]) -> None:
    """Console entry of ``darkroom reproduce``; ``argv`` after the subcommand. Unknown ``--…`` arguments go to
    ``darkroom fit`` (e.g. ``--trainer.max_steps 2``); the model's (``--model.…``) also to our epochs' tests
    (:func:`model_options`), never to the official model's."""
    from experiments.reproduce_report import write_report

    args, extra = parse(argv)
    recipe = RECIPES[args.paper]
    out = args.out.expanduser().resolve()
    runs = out / "runs"
    ckpt_dir = runs / args.paper / "train" / "checkpoints"
    data = args.data.resolve()
    tests = [t.resolve() for t in args.test or []]
    if recipe.scenes:
        data, test = split_scenes(data, args.holdout, tests, out / "data")
    elif recipe.test_option is None:
        test = None
    else:
        test = tests[0] if tests else data / "test"
    if not args.skip_train:
        train(args.paper, data, runs, args.epochs, extra)
    if not epoch_checkpoints(ckpt_dir):
        raise SystemExit(f"darkroom reproduce: no epoch checkpoint in {ckpt_dir} (train first)")
    reference = args.reference.expanduser().absolute()
    labels = (official_labels(args.paper, test, reference, out / "official_labels", runs)
              if recipe.to_official else None)
    evaluations = evaluate(args.paper, test, labels, reference, ckpt_dir, runs, data, extra)
    report = write_report(out, args.paper, evaluations, {
        "data": str(args.data), "test": " + ".join(str(t) for t in args.test or []) or "the data root's test split",
        "holdout": " ".join(args.holdout), "reference": str(args.reference)}, recipe)
    print(f"darkroom reproduce: {report}")
    print(json.dumps({"report": str(report)}))
