"""The LightningCLI behind ``darkroom fit|validate|test|predict`` (see :mod:`experiments.cli`)."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any, Literal, NoReturn

from experiments.env import configure_environment

configure_environment()
warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
warnings.filterwarnings("ignore", message=".*treespec, LeafSpec.*")
warnings.filterwarnings("ignore", message=".*callbacks used to create the checkpoint need to be provided.*")
warnings.filterwarnings("ignore", message=".*Consider setting `persistent_workers=True`.*")
# Darkroom's ResumeState callback positions the sampler itself (experiments/checkpointing.py)
warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch ended.*")
warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
# without validation data Lightning warns about the empty list of val loaders on every run
warnings.filterwarnings("ignore", message=".*Total length of .* across ranks is zero.*")

import torch  # noqa: E402
from lightning.pytorch import Trainer  # noqa: E402

for _name in ("lightning.pytorch", "lightning.fabric"):  # drop Lightning's advertising tips from run output
    for _handler in logging.getLogger(_name).handlers:  # (the handlers exist once lightning is imported)
        _handler.addFilter(lambda record: "💡 Tip" not in record.getMessage())
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI  # noqa: E402

from datamodules.base import DarkroomDataModule  # noqa: E402
from experiments.callbacks import FitTimer, ResultsWriter  # noqa: E402
from experiments.checkpointing import AtomicCheckpointIO, LastCheckpoint, ResumeState  # noqa: E402
from experiments.loggers import make_loggers, new_run_name, run_dir_of_checkpoint, wandb_id  # noqa: E402
from experiments.nonfinite_guard import NonFiniteGuard  # noqa: E402
from experiments.precision import (  # noqa: E402
    MIXED,
    FP32EvalMixedPrecision,
    autocast_device,
    evaluation_precision,
    normalise_precision,
)
from experiments.prediction_writer import ImageWriter  # noqa: E402
from experiments.trainer import DarkroomTrainer  # noqa: E402
from lightning_modules.base import DarkroomModule  # noqa: E402
from lightning_modules.checkpoints import CheckpointError, load_checkpoint_file  # noqa: E402

_RUN_NAME_ENV = "DARKROOM_RUN_NAME"


class DarkroomArgumentParser(LightningArgumentParser):
    """LightningCLI's parser, whose errors are one line (:func:`experiments.errors.config_error_line`: the error, the
    specific cause, the nearest valid option) instead of the usage listing and jsonargparse's nested block;
    ``--debug`` / ``DARKROOM_DEBUG=1`` gives jsonargparse's own output."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        from experiments.errors import DEBUG_ENV, config_error_line

        if os.environ.get(DEBUG_ENV, "") not in ("", "0") or not self.exit_on_error:
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        line = config_error_line(message, parser._option_string_actions)
        prog = " ".join(["darkroom", *parser.prog.replace(" [options]", "").split()[1:]])  # not __main__.py
        sys.stderr.write(f"{prog}: error: {line} (options: darkroom help PAPER, or {prog} --help)\n")
        sys.exit(2)


class DarkroomCLI(LightningCLI):
    """LightningCLI with Darkroom's run directories, loggers and result files.

    Extra arguments (in every subcommand, and in YAML under ``run:``):
    ``--run.name`` (default: ``<model>-<timestamp>``), ``--run.group`` (default: the model's
    ``paper``), ``--run.tags``, ``--run.root`` (default ``runs``), ``--run.wandb`` (default true, except for
    predict, which writes no W&B run unless asked),
    ``--run.output_dir`` (predict: where the PNGs go; default ``<run dir>/predictions``; sub-folders of the input
    folder are mirrored), ``--run.skip_bad`` (predict: skip unreadable files, default false = stop before writing
    anything), ``--run.tile_size`` (predict: exact tiled inference above 4 tiles of pixels, default 512;
    ``null`` = whole images). Predict ends with a summary line and does not keep the predictions in memory
    (``--return_predictions`` defaults to false; the images are on disk).
    A ``--ckpt_path`` inside an existing run directory makes the command work in that run directory
    (resume continues the same W&B run).

    Checkpoints (see :mod:`experiments.checkpointing`): ``checkpoints/last.ckpt`` is the latest state,
    written atomically at every epoch end, at the end of training and every ``--run.checkpoint_every``
    (default ``10min``; ``500`` = every 500 steps); with validation, ``best-step=N.ckpt`` is the best by
    the model's monitored metric. Validation, test and predict run in fp32 under a mixed-precision
    ``--trainer.precision`` (``--run.eval_precision autocast`` opts out; see :mod:`experiments.precision`).
    A ``--ckpt_path`` of another model class than the config's is refused; its hyper-parameters replace
    the config file's values (each change is printed), but arguments typed on the command line win.
    """

    def __init__(self, args: list[str] | None = None, run: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        self._argv = list(sys.argv[1:] if args is None else args)
        self._ckpt_meta: dict[str, Any] = {}
        self.run_dir: Path | None = None
        self.results_writer: ResultsWriter | None = None
        self.image_writer: ImageWriter | None = None
        self._new_run_dir = False
        try:
            super().__init__(
                DarkroomModule,
                DarkroomDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
                trainer_class=DarkroomTrainer,
                parser_class=DarkroomArgumentParser,
                args=args,
                run=run,
                **kwargs,
            )
        except BaseException:
            self._remove_empty_run_dir()
            raise
        if run:
            _finish_wandb()

    def _remove_empty_run_dir(self) -> None:
        """A command that failed leaves no run directory behind when it created one and wrote nothing of value in it
        (no checkpoint, result, prediction or log line of its own; its W&B files go with it)."""
        run_dir = self.run_dir
        if not self._new_run_dir or run_dir is None or not run_dir.is_dir():
            return
        def of_value(path: Path) -> bool:
            if path.name in ("config.yaml", "hparams.yaml", "wandb_id.txt") or "wandb" in path.relative_to(run_dir).parts:
                return False
            if path.suffix == ".csv":  # a CSV log with rows of its own is kept
                with path.open("rb") as f:
                    return sum(1 for _ in f) > 1
            return path.stat().st_size > 0

        if not any(of_value(p) for p in run_dir.rglob("*") if p.is_file()):
            _finish_wandb()
            shutil.rmtree(run_dir, ignore_errors=True)
            try:
                run_dir.parent.rmdir()  # the paper's group folder, when this run was its only one
            except OSError:
                pass

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--run.name", type=str | None, default=None, help="Run name (directory and W&B name).")
        parser.add_argument("--run.group", type=str | None, default=None, help="W&B group; default: the paper.")
        parser.add_argument("--run.tags", type=list[str], default=[], help="W&B tags, e.g. the ablation name.")
        parser.add_argument("--run.root", type=str, default="runs", help="Parent folder of run directories.")
        parser.add_argument("--run.wandb", type=bool | None, default=None,
                            help="Log to Weights & Biases (default: yes for fit, validate and test; no for predict).")
        parser.add_argument("--run.output_dir", type=str | None, default=None,
                            help="predict: folder for the output PNGs (default <run dir>/predictions).")
        parser.add_argument("--run.test_after_fit", type=bool, default=False,
                            help="fit: test the best checkpoint when training ends and write results.json "
                                 "(what sweep runs do).")
        parser.add_argument("--run.checkpoint_every", type=str | None, default="10min",
                            help="fit: also write last.ckpt every N steps ('500') or every period ('10min', "
                                 "'90s', '1h') inside epochs; it is always written at every epoch end.")
        parser.add_argument("--run.keep_epoch_checkpoints", type=bool, default=False,
                            help="fit: also keep every epoch end's state as checkpoints/epoch=NNNN.ckpt (learning "
                                 "curves evaluated afterwards, e.g. by `darkroom reproduce`).")
        parser.add_argument("--run.on_nonfinite", type=Literal["stop", "skip"] | None, default="stop",
                            help="fit: a NaN/inf loss or gradient stops the run (no update, non-zero exit) "
                                 "or skips the batch (counted as train/nonfinite_skipped); null: no guard.")
        parser.add_argument("--run.overwrite", type=bool, default=False,
                            help="predict: replace output files that already exist (default: refuse).")
        parser.add_argument("--run.skip_bad", type=bool, default=False,
                            help="predict: report and skip input files that cannot be decoded (default: stop, "
                                 "naming the file, before writing anything).")
        parser.add_argument("--run.tile_size", type=int | None, default=512,
                            help="predict: tile size of exact tiled inference, used above 4 tiles of pixels "
                                 "(same result, memory of one tile); null = whole images.")
        parser.add_argument("--run.eval_precision", type=Literal["32", "autocast", "bf16"], default="32",
                            help="validation/test/predict: '32' (fp32 networks and metrics, default), 'autocast' "
                                 "(the mixed --trainer.precision's autocast for whole steps) or 'bf16' "
                                 "(test/predict: the networks under bf16 autocast, metrics fp32). Recorded.")
        parser.add_argument("--run.channels_last", type=bool, default=False,
                            help="test/predict: the networks in channels_last (faster convolutions where "
                                 "measured; lightning_modules/inference.py).")
        parser.add_argument("--run.compile", type=bool, default=False,
                            help="test/predict: torch.compile the paper's hot path (the first image pays the "
                                 "compilation; lightning_modules/inference.py).")

    def _configure_inference(self, run: Any) -> dict[str, Any]:
        """Hand test/predict's speed options to the model (:class:`lightning_modules.inference.InferenceOptions`);
        what ``results.json`` records about them."""
        from lightning_modules.inference import InferenceOptions

        options = InferenceOptions(precision="bf16" if run.eval_precision == "bf16" else "32",
                                   channels_last=run.channels_last, compile=run.compile)
        if not options.exact:
            self.model.configure_inference(options)
        return {"inference": options.record()}

    def before_fit(self) -> None:
        """One line for the networks and their parameters, in place of Lightning's 20-line table of every child
        module (metric collections included); ``--trainer.enable_model_summary true`` brings the table back."""
        if not getattr(self, "_one_line_summary", False):
            return
        parts = []
        for name in self.model.networks:
            net = getattr(self.model, name, None)
            if isinstance(net, torch.nn.Module):
                trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
                total = sum(p.numel() for p in net.parameters())
                parts.append(f"{name} {type(net).__name__} {trainable:,} trainable parameters"
                             + (f" (+{total - trainable:,} frozen)" if total > trainable else ""))
        print(f"darkroom: {type(self.model).__name__}: " + "; ".join(parts), flush=True)

    def after_fit(self) -> None:
        if self.config["fit"]["run"].test_after_fit:
            _run_test_after_fit(self)

    def before_predict(self) -> None:
        """The images go to disk: Lightning need not keep every output in memory (``--return_predictions``
        defaults to false here; 100 12-megapixel outputs would be 14 GB)."""
        cfg = self.config_init[self.subcommand]
        if cfg.get("return_predictions") is None:
            cfg["return_predictions"] = False

    def instantiate_classes(self) -> None:
        """As Lightning's, but a checkpoint error inside a model constructor (``pretrained=``) is raised as
        itself, not inside jsonargparse's "Does not validate against any of the Union subtypes"."""
        try:
            super().instantiate_classes()
        except ValueError as err:
            cause = _cause_of_type(err, CheckpointError)
            if cause is None:
                raise
            raise cause from None

    # -- --ckpt_path ----------------------------------------------------------------------------
    def _parse_ckpt_path(self) -> None:
        """Check ``--ckpt_path`` and merge its hyper-parameters into the config (Lightning's rule), except
        that a checkpoint of another model class is an error and command-line ``--model.*`` values win."""
        sub = self.config.get("subcommand")
        if not sub:
            return
        ckpt_path = self.config[sub].get("ckpt_path")
        if not ckpt_path or ckpt_path in ("last", "hpc", "registry") or str(ckpt_path).startswith(("http:", "https:")):
            return
        if not Path(ckpt_path).is_file():
            raise FileNotFoundError(f"{ckpt_path}: --ckpt_path file not found")
        ckpt = load_checkpoint_file(ckpt_path)
        self._ckpt_meta = {"global_step": ckpt.get("global_step"), "epoch": ckpt.get("epoch")}
        hparams = dict(ckpt.get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        ckpt_class = (ckpt.get("darkroom") or {}).get("model_class") or hparams.get("_class_path")
        config_class = self.config[sub].get("model.class_path")
        if ckpt_class and config_class and ckpt_class != config_class:
            raise CheckpointMismatchError(
                f"{ckpt_path}: a checkpoint of {ckpt_class}, but the config's model is {config_class}; "
                "use the config the checkpoint was trained with")
        if not hparams:
            return
        class_path = hparams.pop("_class_path", None)
        model = {"class_path": class_path, "dict_kwargs": hparams} if class_path else hparams
        before = self.config[sub].clone()
        merged = self.parser.parse_object({sub: {"model": model}}, self.config)
        typed = _typed_model_keys(self._argv)
        old, new = _flat(before.get("model.init_args")), _flat(merged[sub].get("model.init_args"))
        for key in sorted(set(old) | set(new)):
            if old.get(key) == new.get(key):
                continue
            dotted = f"model.init_args.{key}"
            if dotted in typed:
                merged[sub][dotted] = before[dotted]
                print(f"darkroom: --{dotted}={old.get(key)!r} (command line) kept over the checkpoint's "
                      f"{new.get(key)!r}", file=sys.stderr)
            else:
                print(f"darkroom: {dotted} = {new.get(key)!r} from the checkpoint (the config said "
                      f"{old.get(key)!r})", file=sys.stderr)
        self.config = merged

    # -- run directory -------------------------------------------------------------------------
    def _resolve_run_dir(self, run: Any, ckpt_path: str | None, group: str) -> Path:
        existing = run_dir_of_checkpoint(ckpt_path) if ckpt_path else None
        if existing is not None:
            return existing
        name = run.name
        if name is None:
            # DDP children re-execute this command: they must land in the parent's run directory.
            inherited = os.environ.get(_RUN_NAME_ENV)
            if inherited and os.environ.get("LOCAL_RANK", "0") != "0":
                name = inherited
            else:
                name = new_run_name(type(self.model).__name__.lower())
        os.environ[_RUN_NAME_ENV] = name
        return Path(run.root) / group / name

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        sub = self.subcommand or "fit"
        cfg = self.config[sub] if self.subcommand else self.config
        run = cfg["run"]
        ckpt_path = cfg.get("ckpt_path")
        group = run.group or self.model.paper
        self.run_dir = self._resolve_run_dir(run, ckpt_path, group)
        self._new_run_dir = not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        config_dict = _namespace_to_dict(cfg)
        use_wandb = run.wandb if run.wandb is not None else sub != "predict"

        trainer_cfg = self._get(self.config_init, "trainer", default={})
        self._one_line_summary = sub == "fit" and trainer_cfg.get("enable_model_summary") is None
        if self._one_line_summary:
            kwargs["enable_model_summary"] = False
        if trainer_cfg.get("logger") in (None, True):
            tags = list(run.tags) + list(self.model.tags)
            kwargs["logger"] = make_loggers(self.run_dir, group=group, name=self.run_dir.name, tags=tags,
                                            job_type=sub, config=config_dict, use_wandb=use_wandb)
        kwargs.setdefault("default_root_dir", str(self.run_dir))

        callbacks = list(trainer_cfg.get("callbacks") or [])
        plugins = list(trainer_cfg.get("plugins") or [])
        if not isinstance(plugins, list):
            plugins = [plugins]
        plugins.append(AtomicCheckpointIO())
        train_precision = normalise_precision(trainer_cfg.get("precision"))
        if train_precision in MIXED and run.eval_precision in ("32", "bf16"):
            plugins.append(FP32EvalMixedPrecision(train_precision, autocast_device(trainer_cfg.get("accelerator"))))
            kwargs["precision"] = None
        elif train_precision not in MIXED and train_precision != "32-true" and sub != "fit":
            print(f"darkroom: evaluating in {train_precision} (the weights themselves are in reduced precision); "
                  "use --trainer.precision 32-true for fp32 metrics", file=sys.stderr)
        kwargs["plugins"] = plugins
        self._precision = {"trainer": train_precision,
                           "evaluation": evaluation_precision(train_precision, run.eval_precision)}
        if sub in ("test", "predict"):
            self._precision.update(self._configure_inference(run))
        elif run.eval_precision == "bf16" or run.channels_last or run.compile:
            raise ValueError("--run.eval_precision bf16, --run.channels_last and --run.compile apply to test and "
                             f"predict, not {sub}")
        if sub == "fit" and run.on_nonfinite:
            callbacks.insert(0, NonFiniteGuard(action=run.on_nonfinite))
        if sub == "fit" and trainer_cfg.get("enable_checkpointing", True) is not False:
            ckpt_dir = self.run_dir / "checkpoints"
            callbacks += [LastCheckpoint(ckpt_dir, every=run.checkpoint_every, keep_epochs=run.keep_epoch_checkpoints),
                          ResumeState(), FitTimer(self.run_dir)]
            monitor, mode = self.model.monitor
            if self.datamodule is not None and self.datamodule.has_validation:
                callbacks.append(ModelCheckpoint(dirpath=str(ckpt_dir), monitor=monitor, mode=mode, save_last=False,
                                                 save_top_k=1, filename="best-{step}"))
            else:
                kwargs["enable_checkpointing"] = False  # no best-by-metric file; Lightning would add its own
        self._config_dict = config_dict
        self._wandb_id = wandb_id(self.run_dir) if use_wandb else None
        if sub == "test":
            self.results_writer = ResultsWriter(self.run_dir, config_dict, ckpt_path, self._wandb_id,
                                                precision=self._precision,
                                                checkpoint_step=self._ckpt_meta.get("global_step"),
                                                checkpoint_epoch=self._ckpt_meta.get("epoch"))
            callbacks.append(self.results_writer)
        if sub == "predict":
            self.image_writer = ImageWriter(run.output_dir or self.run_dir / "predictions", overwrite=run.overwrite)
            callbacks.append(self.image_writer)
            if self.datamodule is not None:
                self.datamodule.predict_skip_bad = run.skip_bad
            self.model.tile_size = run.tile_size
        kwargs["callbacks"] = callbacks
        return super().instantiate_trainer(**kwargs)


def last_checkpoint(trainer: Trainer) -> str | None:
    """The fit's ``last.ckpt`` (its latest state), or None if it wrote none."""
    last = next((cb.path for cb in trainer.callbacks if isinstance(cb, LastCheckpoint)), None)
    return str(last) if last is not None and last.is_file() else None


def best_checkpoint(trainer: Trainer) -> str | None:
    """The fit's best checkpoint by the monitored validation metric, else its ``last.ckpt``."""
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback is not None else ""
    return best or last_checkpoint(trainer)


def _finish_wandb() -> None:
    """Close the W&B run of this command so the next in-process command (demo, sweep) starts its own."""
    import wandb

    if wandb.run is not None:
        wandb.finish()


def _run_test_after_fit(cli: DarkroomCLI) -> None:
    """Test the best (else last) checkpoint of the fit that just ended, in the same process and W&B run."""
    ckpt = best_checkpoint(cli.trainer)
    meta = load_checkpoint_file(ckpt) if ckpt else {}
    cli.results_writer = ResultsWriter(cli.run_dir, cli._config_dict, ckpt, cli._wandb_id,
                                       precision=cli._precision, checkpoint_step=meta.get("global_step"),
                                       checkpoint_epoch=meta.get("epoch"))
    cli.trainer.callbacks.append(cli.results_writer)
    cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt)


class CheckpointMismatchError(ValueError):
    """``--ckpt_path`` holds another LightningModule class than the config's ``model``."""


def _cause_of_type(err: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first exception of type ``kind`` in ``err``'s ``__cause__`` / ``__context__`` chain (``err`` included)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, kind):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _typed_model_keys(argv: list[str]) -> set[str]:
    """Dotted ``model.init_args.*`` keys given on the command line (``--model.init_args.lr=1`` or ``--model.lr 1``)."""
    keys = set()
    for token in argv:
        if not token.startswith("--model."):
            continue
        key = token[2:].split("=", 1)[0]
        if not key.startswith("model.init_args.") and key not in ("model.class_path", "model.help"):
            key = "model.init_args." + key[len("model."):]
        keys.add(key)
    return keys


def _flat(ns: Any, prefix: str = "") -> dict[str, Any]:
    """A (nested) jsonargparse Namespace or dict → ``{"a.b": value}``."""
    if ns is None:
        return {}
    items = ns.items() if isinstance(ns, dict) else vars(ns).items()
    out: dict[str, Any] = {}
    for k, v in items:
        if isinstance(v, dict) or hasattr(v, "__dict__") and type(v).__name__ == "Namespace":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _namespace_to_dict(ns: Any) -> dict:
    try:
        return ns.clone().as_dict()
    except AttributeError:
        return dict(ns)


