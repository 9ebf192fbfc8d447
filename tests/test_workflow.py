"""The researcher's workflow: sweep expansion and local runs, paper tables, HTML comparison, W&B offline files."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from experiments import compare, sweep, table
from experiments.demos import demo_configs

REPO = Path(__file__).resolve().parents[1]
SWEEPS = sorted(REPO.glob("experiments/*/sweeps/*.yaml"))


# -- sweep expansion ------------------------------------------------------------------------------------------

def test_grid_counts_and_nested_keys():
    cfg = {"method": "grid", "parameters": {
        "model.init_args.loss_weights.tv": {"values": [0, 200]},
        "model": {"parameters": {"init_args": {"parameters": {"lr": {"values": [1e-4, 1e-3, 1e-2]}}}}},
        "data.init_args.batch_size": {"value": 8}}}
    runs = sweep.expand(cfg)
    assert len(runs) == 2 * 3 * 1
    assert {tuple(sorted(r)) for r in runs} == {("data.init_args.batch_size", "model.init_args.loss_weights.tv",
                                                 "model.init_args.lr")}
    assert sorted({r["model.init_args.lr"] for r in runs}) == [1e-4, 1e-3, 1e-2]
    assert sweep.run_arguments({"model.init_args.loss_weights.tv": 0}) == ["--model.init_args.loss_weights.tv=0"]
    assert sweep.run_arguments({"a": [1, 2], "b": True}) == ["--a=[1, 2]", "--b=true"]


def test_random_counts_distributions_and_bounds():
    cfg = {"method": "random", "run_cap": 7, "parameters": {
        "lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-2},
        "n": {"distribution": "int_uniform", "min": 2, "max": 5},
        "q": {"distribution": "q_uniform", "min": 0, "max": 10, "q": 2},
        "c": {"values": ["a", "b"]}}}
    runs = sweep.expand(cfg)
    assert len(runs) == 7
    assert len(sweep.expand(cfg, count=25)) == 25
    for r in sweep.expand(cfg, count=200, seed=1):
        assert 1e-5 <= r["lr"] <= 1e-2 and r["n"] in {2, 3, 4, 5} and r["q"] % 2 == 0 and r["c"] in {"a", "b"}
    assert sweep.expand(cfg, seed=3) == sweep.expand(cfg, seed=3)
    assert sweep.sample_parameter("x", {"distribution": "log_uniform", "min": 0, "max": 1}, random.Random(0)) >= 1


def test_bad_sweep_configs_are_named(tmp_path):
    with pytest.raises(sweep.SweepConfigError, match="grid search needs"):
        sweep.expand({"method": "grid", "parameters": {"lr": {"distribution": "uniform", "min": 0, "max": 1}}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: annealing\nparameters: {a: {value: 1}}\n")
    with pytest.raises(sweep.SweepConfigError, match="method must be"):
        sweep.load_sweep(bad)


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_every_sweep_yaml_expands_to_darkroom_fit(path):
    cfg = sweep.load_sweep(path)
    runs = sweep.expand(cfg, count=3)
    assert runs
    cmd = sweep.build_command(cfg, runs[0])
    n = len(sweep.DARKROOM_COMMAND)
    assert cmd[:n + 1] == [*sweep.DARKROOM_COMMAND, "fit"] and cmd[n - 2:n] == ["-m", "experiments.cli"]
    for config in [c for i, c in enumerate(cmd) if cmd[i - 1] == "-c"]:
        assert (REPO / config).is_file(), config


@pytest.mark.skipif(sys.version_info < (3, 11), reason="python -P (the working folder off sys.path) is 3.11+")
def test_a_users_metrics_module_in_the_working_folder_does_not_shadow_the_suite(tmp_path):
    """A sweep run started in a folder holding the user's own ``metrics.py`` still imports the suite's metrics."""
    (tmp_path / "metrics.py").write_text("raise ImportError('the user module shadowed the suite')\n")
    config = REPO / "experiments" / "zero_dce" / "paper.yaml"  # resolving its model class imports metrics
    done = subprocess.run([*sweep.DARKROOM_COMMAND, "fit", "-c", str(config), "--print_config"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "DARKROOM_ALLOCATOR": "system"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "class_path: lightning_modules.zero_dce.ZeroDCE" in done.stdout


# -- local sweep runs -----------------------------------------------------------------------------------------

def test_crashed_run_does_not_stop_sweep_and_rerun_skips_finished(sice_root, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = {"method": "grid", "parameters": {"model.init_args.net.init_args.n_layers": {"values": [4, 3]}},  # 4 is invalid
           "command": ["${env}", "darkroom", "fit", *demo_configs("zero_dce"), "${args}"]}
    extra = ["--data.init_args.train_root", str(sice_root / "Dataset_Part1"),
             "--data.init_args.test_root", str(sice_root / "Dataset_Part2"),
             "--data.init_args.image_size", "32", "--data.init_args.batch_size", "2",
             "--data.init_args.num_workers", "0", "--data.init_args.eval_size", "null",
             "--trainer.max_steps", "1", "--trainer.enable_progress_bar", "false"]
    out = tmp_path / "sweep"
    records = sweep.run_local(cfg, out, extra)
    assert [r.status for r in records] == ["failed", "finished"]
    assert "n_layers" in records[0].error or "exit code" in records[0].error
    status = json.loads((out / "sweep_status.json").read_text())
    assert [s["status"] for s in status] == ["failed", "finished"]
    results = json.loads((Path(records[1].run_dir) / "results.json").read_text())
    assert results["config"]["model"]["init_args"]["net"]["init_args"]["n_layers"] == 3 and "psnr" in results["metrics"]
    again = sweep.run_local(cfg, out, extra)
    assert [r.status for r in again] == ["failed", "skipped"]


def test_sweep_runs_from_any_folder_with_configs_beside_the_sweep_or_in_the_suite(tmp_path, monkeypatch, capsys):
    """Config paths resolve beside the sweep file, then in the suite; never in the working folder."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    (elsewhere / "experiments" / "zero_dce").mkdir(parents=True)  # a decoy in the working folder: never used
    (elsewhere / "experiments" / "zero_dce" / "paper.yaml").write_text("trainer: {max_steps: 1}\n")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "overlay.yaml").write_text("trainer: {max_steps: 3}\n")
    (mine / "s.yaml").write_text(yaml.safe_dump({
        "method": "grid", "parameters": {"model.init_args.lr": {"values": [1e-4, 1e-3, 1e-2]}},
        "command": ["${env}", "darkroom", "fit", "-c", "experiments/zero_dce/paper.yaml", "--config=overlay.yaml",
                    "${args}"]}))
    sweep.main([str(mine / "s.yaml"), "--local", "--dry-run", "--count", "2", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert "the first 2 of 3 combinations" in out and out.count("[sweep ") == 2
    assert f"-c {REPO / 'experiments' / 'zero_dce' / 'paper.yaml'}" in out and f"--config={mine / 'overlay.yaml'}" in out
    (mine / "s.yaml").write_text((mine / "s.yaml").read_text().replace("overlay.yaml", "missing.yaml"))
    with pytest.raises(SystemExit, match="config 'missing.yaml': not found beside the sweep file or in the suite"):
        sweep.main([str(mine / "s.yaml"), "--local", "--dry-run", "--out", str(tmp_path / "out")])


def test_sweep_stops_when_its_first_runs_cannot_start(tmp_path, monkeypatch, capsys):
    """Runs that fail the same way before training (here a config typo) stop the sweep after two, and the status file
    holds the error line itself, not the tail of the usage listing."""
    monkeypatch.chdir(tmp_path)
    cfg = {"method": "grid", "parameters": {"model.init_args.lr": {"values": [1e-4, 1e-3, 1e-2, 1e-1]}},
           "command": ["${env}", "darkroom", "fit", "-c", "experiments/zero_dce/paper.yaml",
                       "--model.init_args.bogus_option=1", "${args}"]}
    records = sweep.run_local(cfg, tmp_path / "sweep", [])
    assert [r.status for r in records] == ["failed", "failed"]
    printed = capsys.readouterr().out
    assert "stopping: the first 2 runs failed before training with the same error" in printed
    status = json.loads((tmp_path / "sweep" / "sweep_status.json").read_text())
    assert len(status) == 2
    first_line = status[0]["error"].splitlines()[0]
    assert first_line.startswith("exit code 2: ") and "error: Parser key \"model\": Option 'bogus_option' is not" \
        in first_line


# -- tables ---------------------------------------------------------------------------------------------------

def _fake_result(root: Path, name: str, init_args: dict, metrics: dict, when: str) -> None:
    run = root / "zero_dce" / name
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({
        "paper": "zero_dce", "metrics": metrics, "time": when, "run_dir": str(run), "git_commit": "abc123",
        "checkpoint": str(run / "checkpoints" / "last.ckpt"), "dataset_root": {"test_root": "/data/Part2"},
        "dataset": {"name": "sice_part2", "named_by": "count", "count": 767, "paper_count": 767,
                    "count_matches_paper": True, "unit": "pairs", "root": "/data/Part2", "sha256": "0" * 64,
                    "protocol": {"pairs": "low_per_sequence=half", "resize": [1200, 900], "resample": "bicubic"}},
        "variant": init_args.get("variant"), "training": {"steps": 100, "epochs": None},
        "config": {"model": {"class_path": "lightning_modules.zero_dce.ZeroDCE", "init_args": init_args},
                   "data": {"init_args": {"test_root": "/data/Part2"}}}}))


def test_table_fills_rows_from_results_and_marks_missing(tmp_path):
    arch = {"n_layers": 7, "n_filters": 32, "n_iterations": 8}
    base = {"variant": "zero_dce", "net": {"init_args": arch}, "loss_form": "official",
            "exposure_level": 0.6, "loss_weights": {"spa": 1.0, "exp": 10.0, "col": 5.0, "tv": 200.0}}
    _fake_result(tmp_path, "old", base, {"psnr": 15.0, "ssim": 0.5, "mae": 110.0, "input_psnr": 10.0}, "2026-01-01")
    _fake_result(tmp_path, "new", base, {"psnr": 16.0, "ssim": 0.55, "mae": 100.0, "input_psnr": 10.5,
                                         "input_ssim": 0.3, "input_mae": 200.0}, "2026-02-01")
    _fake_result(tmp_path, "small", {**base, "net": {"init_args": {**arch, "n_layers": 3}}}, {"psnr": 14.0, "ssim": 0.5, "mae": 120.0}, "2026-02-02")
    runs = table.load_runs(tmp_path)
    spec = table.load_paper_results("zero_dce")
    main = next(t for t in spec["tables"] if t["name"] == "table2_full_reference")
    rows = {r.method: r for r in table.fill_table(main, "zero_dce", runs)}
    assert rows["Zero-DCE"].ours["psnr"] == 16.0 and rows["Zero-DCE"].n_runs == 2  # most recent of two
    assert rows["Zero-DCE"].provenance["commit"] == "abc123"
    assert rows["input (no enhancement)"].ours["psnr"] == 10.5
    assert rows["Zero-DCE++"].run is None
    md = table.render(main, list(rows.values()))
    assert "| Zero-DCE | 16.570 | 16.000 | -0.570 |" in md
    assert "no run" in md and "not reproduced here" in md  # ++ has a match but no run; SRIE has no match
    size = next(t for t in spec["tables"] if t["name"] == "network_size_ablation")
    size_rows = {r.method: r for r in table.fill_table(size, "zero_dce", runs)}
    assert size_rows["3-32-8"].ours["psnr"] == 14.0 and size_rows["7-16-8"].run is None
    csv_text = table.render(size, list(size_rows.values()), "csv")
    assert csv_text.splitlines()[1].startswith("3-32-8,14.500,14.000,-0.500")
    assert r"\begin{tabular}" in table.render(size, list(size_rows.values()), "latex")


# -- comparison report ----------------------------------------------------------------------------------------

def _fake_run(root: Path, name: str, value: float, seed: int) -> Path:
    run = root / name
    (run / "logs" / "fit_0").mkdir(parents=True)
    with (run / "logs" / "fit_0" / "metrics.csv").open("w") as f:
        f.write("epoch,step,train/loss_step,val/psnr\n")
        for s in range(0, 50, 10):
            f.write(f"0,{s},{value + 1 / (s + 1):.4f},\n")
        f.write(f"0,49,,{value * 10:.3f}\n")
    (run / "results.json").write_text(json.dumps({
        "paper": "zero_dce", "metrics": {"psnr": value * 10, "ssim": value},
        "config": {"model": {"init_args": {"lr": value, "variant": "zero_dce"}}}}))
    rng = np.random.default_rng(seed)
    for column in ("input", "output", "target"):
        (run / "samples" / column).mkdir(parents=True)
        for n in ("a", "b"):
            Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(run / "samples" / column / f"{n}.png")
    return run


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_compare_report_contents(tmp_path):
    runs = [_fake_run(tmp_path, "run_a", 0.5, 0), _fake_run(tmp_path, "run_b", 0.7, 1)]
    page = compare.build_report(runs)
    assert page.count("<img ") == 2 * 4  # 2 images × (input, run_a, run_b, reference)
    assert "model.init_args.lr" in page and "model.init_args.variant" not in page.split("Config differences")[1]
    assert page.count("<polyline") == 2 and "train/loss_step" in page
    assert "http" not in page.replace("http-equiv", "")  # self-contained


def test_compare_renders_in_headless_chromium(tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium not installed (Debian package `chromium`; .ci/run installs it)")
    runs = [_fake_run(tmp_path, "run_a", 0.5, 0), _fake_run(tmp_path, "run_b", 0.7, 1)]
    report = tmp_path / "report.html"
    report.write_text(compare.build_report(runs))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([browser, *flags, "--dump-dom", report.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    assert 'data-images-loaded="8/8"' in dom
    assert 'data-metric-rows="2"' in dom
    shot = tmp_path / "report.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1200,1400", report.as_uri()],
                   capture_output=True, timeout=120)
    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert img.shape == (1400, 1200) and img.std() > 5  # something was drawn, not a blank page
    out = REPO / "benchmarks" / "results"
    if out.is_dir():
        shutil.copy(shot, tmp_path / "kept.png")


# -- W&B offline files ----------------------------------------------------------------------------------------

def test_wandb_offline_run_holds_logged_metrics(sice_root, tmp_path):
    from experiments.cli import cli_main

    cli_main(["fit", *demo_configs("zero_dce"),
              "--data.init_args.train_root", str(sice_root / "Dataset_Part1"),
              "--data.init_args.image_size", "32", "--data.init_args.batch_size", "2",
              "--data.init_args.num_workers", "0", "--trainer.max_steps", "3", "--trainer.log_every_n_steps", "1",
              "--trainer.enable_progress_bar", "false", "--run.root", str(tmp_path), "--run.name", "wb",
              "--run.tags", "[probe]"])
    from wandb_records import history, read_records

    files = list((tmp_path / "zero_dce" / "wb" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1
    for _ in range(50):  # the W&B service may still be flushing the file when finish() returns
        records = read_records(files[0])
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            break
        time.sleep(0.2)
    rows = history(records)
    run_meta = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    losses = [h["train/loss_step"] for h in rows if "train/loss_step" in h]
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert run_meta.run_group == "zero_dce" and run_meta.job_type == "fit" and "probe" in list(run_meta.tags)
    config = {item.key or "/".join(item.nested_key): item.value_json for item in run_meta.config.update}
    assert "model" in config and "ZeroDCE" in config["model"]


def test_sweep_yaml_files_are_wandb_syntax():
    for path in SWEEPS:
        cfg = yaml.safe_load(path.read_text())
        assert cfg["method"] in ("grid", "random", "bayes")
        assert "${args}" in cfg["command"]
        assert "--run.test_after_fit=true" in cfg["command"], f"{path}: sweep runs must test their best checkpoint"


@pytest.mark.parametrize("paper", sorted(p.parent.name for p in REPO.glob("experiments/*/results.yaml")))
def test_every_paper_table_renders_without_runs(paper, tmp_path):
    for fmt in ("markdown", "csv", "latex"):
        text = table.render_all(paper, [], fmt)
        assert text.strip()
    spec = table.load_paper_results(paper)
    for t in spec["tables"]:
        for row in t.get("rows", []):
            assert "method" in row, f"{paper}/{t['name']}: a row without a method"


@pytest.mark.parametrize("paper", ["zero_dce", "zero_dce_pp", "deepfuse", "dped", "refusion"])
def test_darkroom_help_lists_the_papers_own_arguments(paper, capsys):
    """``darkroom help PAPER``: the model's and the data's arguments with the recipe's values, the unset roots marked,
    and an example; no Trainer option."""
    import doctest

    from experiments import paper_help

    paper_help.main([paper])
    out = capsys.readouterr().out
    cfg = yaml.safe_load((REPO / "experiments" / paper_help.PAPERS[paper][0] / paper_help.PAPERS[paper][1]).read_text())
    assert f"model: {cfg['model']['class_path']}" in out and f"data: {cfg['data']['class_path']}" in out
    assert "[required" in out and "example:\n  darkroom fit -c experiments/" in out
    assert "accumulate_grad_batches" not in out and len(out.splitlines()) < 80
    assert doctest.testmod(paper_help).failed == 0


def test_darkroom_help_overview_comes_before_any_heavy_import():
    """The first line of ``darkroom --help`` needs no torch, Lightning or OpenCV import (it printed after 2 s of them)."""
    code = ("import sys; import experiments.cli as cli; cli.main([]); "
            "print(sorted(m for m in ('torch', 'lightning', 'cv2') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("darkroom: fit | validate | test | predict") and done.stdout.rstrip().endswith("[]")


def test_darkroom_help_prints_the_overview_once():
    """The console command re-executes itself with the caching allocator; the overview is printed by the first
    process only (it was printed twice, above the LightningCLI usage)."""
    exe = Path(sys.executable).with_name("darkroom")
    if not exe.is_file():
        pytest.skip(f"no console script beside {sys.executable} (the package is not installed in this environment)")
    done = subprocess.run([str(exe), "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("darkroom: fit | validate | test | predict") == 1
    assert "usage: darkroom" in done.stdout


def test_environment_set_restores_set_and_unset_variables(monkeypatch: pytest.MonkeyPatch):
    from experiments.env import environment_set

    monkeypatch.setenv("DARKROOM_T_A", "before")
    monkeypatch.delenv("DARKROOM_T_B", raising=False)
    with pytest.raises(RuntimeError), environment_set(DARKROOM_T_A=None, DARKROOM_T_B="1"):
        assert "DARKROOM_T_A" not in os.environ and os.environ["DARKROOM_T_B"] == "1"
        raise RuntimeError  # restored on the way out of an error too
    assert os.environ["DARKROOM_T_A"] == "before" and "DARKROOM_T_B" not in os.environ
