"""The local sweep runner under crashes and concurrency: ``kill -9``, two runners, stale locks, failing runs.

The runs are a fake "training" script (no torch import, about a second each): it writes ``last.ckpt`` every
step (copies of real ``torch.save`` files made here), then ``results.json``, and logs each start to
``trains.jsonl`` so the tests can count how often, from where and how concurrently each run trained.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml

from datamodules.atomic_files import proc_stat
from experiments import sweep

REPO = Path(__file__).resolve().parents[2]

FAKE_TRAIN = textwrap.dedent('''
    import json, os, shutil, subprocess, sys, time
    from pathlib import Path

    args = sys.argv[1:]

    def opt(name, default=None):
        for i, a in enumerate(args):
            if a == name:
                return args[i + 1]
            if a.startswith(name + "="):
                return a.split("=", 1)[1]
        return default

    def alive(pid):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X")

    run = Path(opt("--run.root")) / "fake" / opt("--run.name")
    ckpts = run / "checkpoints"
    ckpts.mkdir(parents=True, exist_ok=True)
    marker = run / "training.pid"  # a second process training this run at the same time sees the first
    concurrent = marker.exists() and alive(int(marker.read_text() or 0))
    marker.write_text(str(os.getpid()))
    helper = None
    if opt("--helper") == "true":  # a child of the training process, like a DDP rank
        helper = subprocess.Popen([sys.executable, "-S", "-c", "import time; time.sleep(60)"])
    ckpt_path = opt("--ckpt_path")
    step = int((ckpts / "last.step").read_text()) if ckpt_path else 0
    with open(opt("--trainlog"), "a") as log:
        log.write(json.dumps({"name": run.name, "pid": os.getpid(), "helper": helper and helper.pid,
                              "ckpt_path": ckpt_path, "from_step": step, "concurrent": concurrent}) + "\\n")
    if opt("--fail") == "true":
        print("Traceback (most recent call last):\\nValueError: boom, as the test asked", file=sys.stderr)
        sys.exit(1)
    steps, dt = int(opt("--steps", 4)), float(opt("--dt", 0.2))
    templates = Path(opt("--templates"))
    while step < steps:
        time.sleep(dt)
        step += 1
        shutil.copy(templates / f"step_{step}.ckpt", ckpts / "last.ckpt.tmp")
        os.replace(ckpts / "last.ckpt.tmp", ckpts / "last.ckpt")
        (ckpts / "last.step").write_text(str(step))
    (run / "results.json").write_text(json.dumps({"metrics": {"psnr": 20.0 + step}, "fit_seconds": steps * dt}))
    marker.unlink()  # (a helper is left running: the sweep runner kills what is left of a run's processes)
''')


def _alive(pid: int) -> bool:
    stat = proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X", "x")


@pytest.fixture
def fake(tmp_path):
    """A sweep over the fake training script: ``make(values, **params) -> (yaml path, extra args)``."""
    templates = tmp_path / "templates"
    templates.mkdir()
    for k in range(1, 9):
        torch.save({"global_step": k, "state_dict": {"w": torch.full((2,), float(k))}}, templates / f"step_{k}.ckpt")
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    trainlog = tmp_path / "trains.jsonl"

    def make(params: dict, steps: int = 4, dt: float = 0.2, helper: bool = False):
        cfg = {"method": "grid", "parameters": params, "command": [sys.executable, str(script), "${args}"]}
        path = tmp_path / "sweep.yaml"
        path.write_text(yaml.safe_dump(cfg))
        extra = ["--templates", str(templates), "--trainlog", str(trainlog), "--steps", str(steps), "--dt", str(dt)]
        return path, extra + (["--helper", "true"] if helper else [])

    make.trainlog = trainlog
    make.trains = lambda: [json.loads(line) for line in trainlog.read_text().splitlines()] if trainlog.exists() else []
    return make


def _runner(path: Path, out: Path, extra: list[str], log: Path) -> subprocess.Popen:
    code = "import sys; from experiments import sweep; sweep.main(sys.argv[1:])"
    return subprocess.Popen([sys.executable, "-c", code, str(path), "--local", "--out", str(out), "--", *extra],
                            cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _names(path: Path) -> list[str]:
    return [sweep.run_name(p) for p in sweep.expand(sweep.load_sweep(path))]


def test_kill_9_of_the_runner_kills_the_run_and_a_rerun_resumes_it(fake, tmp_path):
    path, slow = fake({"x": {"values": [1, 2]}}, steps=6, dt=0.5, helper=True)  # 2 s left when killed
    _, extra = fake({"x": {"values": [1, 2]}}, steps=6, dt=0.05, helper=True)
    first, second = _names(path)
    out = tmp_path / "out"
    runner = _runner(path, out, slow, tmp_path / "runner1.log")
    step_file = out / "fake" / first / "checkpoints" / "last.step"
    deadline = time.monotonic() + 20
    while not (step_file.exists() and int(step_file.read_text() or 0) >= 2):
        assert runner.poll() is None and time.monotonic() < deadline, (tmp_path / "runner1.log").read_text()
        time.sleep(0.05)
    lock = json.loads((out / "locks" / f"{first}.lock").read_text())
    trains = fake.trains()
    assert [t["name"] for t in trains] == [first]
    doomed = [trains[0]["pid"], trains[0]["helper"], lock["child_pid"]]  # training, its child, the guard
    assert all(_alive(pid) for pid in doomed)

    runner.send_signal(signal.SIGKILL)
    runner.wait()
    t0 = time.monotonic()
    while any(_alive(pid) for pid in doomed) and time.monotonic() - t0 < 1.5:
        time.sleep(0.02)
    assert not any(_alive(pid) for pid in doomed), f"still alive {time.monotonic() - t0:.1f} s after kill -9"
    assert not (out / "fake" / first / "results.json").exists()

    rerun = subprocess.run([sys.executable, "-c", "import sys; from experiments import sweep; sweep.main(sys.argv[1:])",
                            str(path), "--local", "--out", str(out), "--", *extra],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "took over the stale lock" in rerun.stdout and "resuming from step" in rerun.stdout
    trains = fake.trains()
    assert [t["name"] for t in trains] == [first, first, second]
    assert trains[1]["ckpt_path"] == str(out / "fake" / first / "checkpoints" / "last.ckpt")
    assert trains[1]["from_step"] >= 2 and trains[2]["ckpt_path"] is None
    assert not any(t["concurrent"] for t in trains)
    assert not any(_alive(t["helper"]) for t in trains)  # the rerun cleaned up its runs' leftovers
    assert all((out / "fake" / n / "results.json").exists() for n in (first, second))
    assert not list((out / "locks").glob("*.lock"))
    status = json.loads((out / "sweep_status.json").read_text())
    assert [(s["name"], s["status"]) for s in status] == [(first, "finished"), (second, "finished")]


def test_two_runners_on_one_sweep_train_every_run_exactly_once(fake, tmp_path):
    path, extra = fake({"x": {"values": [1, 2, 3, 4]}}, steps=4, dt=0.2)
    names = _names(path)
    out = tmp_path / "out"
    logs = [tmp_path / "runner_a.log", tmp_path / "runner_b.log"]
    runners = [_runner(path, out, extra, log) for log in logs]
    for r in runners:
        assert r.wait(timeout=60) == 0
    outputs = [log.read_text() for log in logs]
    trains = fake.trains()
    assert sorted(t["name"] for t in trains) == sorted(names), outputs  # each run once, none lost
    assert not any(t["concurrent"] for t in trains)
    assert all((out / "fake" / n / "results.json").exists() for n in names)
    elsewhere, trained_by = 0, [0, 0]
    for name in names:  # the runner that did not train a run says so: running elsewhere, or already finished
        trained = [f"{name}: finished in" in o for o in outputs]
        assert sum(trained) == 1, outputs
        trained_by[trained.index(True)] += 1
        other = outputs[trained.index(False)]
        assert f"running elsewhere: {name}" in other or f"{name}: already finished" in other, other
        elsewhere += f"running elsewhere: {name}" in other
    assert all("0 failed" in o for o in outputs)
    assert elsewhere >= 1 or 0 in trained_by  # runners that overlapped met each other's locks
    status = json.loads((out / "sweep_status.json").read_text())  # merged, not clobbered
    assert [(s["name"], s["status"]) for s in status] == [(n, "finished") for n in names]
    assert not list((out / "locks").glob("*.lock"))


def _lock_of(pid: int, start: int | None) -> dict:
    return {"pid": pid, "start": start, **sweep._machine(), "since": "2000-01-01T00:00:00"}


@pytest.mark.parametrize("kind", ["dead pid", "reused pid", "live runner"])
def test_stale_lock_is_taken_over_and_a_live_one_is_respected(fake, tmp_path, capsys, kind):
    path, extra = fake({"x": {"values": [1]}}, steps=2, dt=0.05)
    (name,) = _names(path)
    out = tmp_path / "out"
    (out / "locks").mkdir(parents=True)
    holder = None
    if kind == "dead pid":
        gone = subprocess.Popen([sys.executable, "-S", "-c", "pass"])
        gone.wait()
        info = _lock_of(gone.pid, None)
    elif kind == "reused pid":  # a live pid, but not the process that wrote the lock (other start time)
        info = _lock_of(os.getpid(), sweep._process_start(os.getpid()) - 1)
    else:
        holder = subprocess.Popen([sys.executable, "-S", "-c", "import time; time.sleep(30)"])
        info = _lock_of(holder.pid, sweep._process_start(holder.pid))
    lock = out / "locks" / f"{name}.lock"
    lock.write_text(json.dumps(info))
    try:
        (rec,) = sweep.run_local(sweep.load_sweep(path), out, extra)
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
    text = capsys.readouterr().out
    if kind == "live runner":
        assert rec.status == "running elsewhere" and f"pid {holder.pid}" in rec.note
        assert f"running elsewhere: {name}" in text and "0 failed" in text
        assert json.loads(lock.read_text()) == info and not fake.trains()
    else:
        assert "took over the stale lock" in text and rec.status == "finished"
        assert not lock.exists() and len(fake.trains()) == 1


def test_failing_run_makes_the_sweep_exit_nonzero_and_the_summary_names_it(fake, tmp_path, capsys):
    path, extra = fake({"fail": {"values": [True, False]}}, steps=1, dt=0.05)
    bad, good = _names(path)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        sweep.main([str(path), "--local", "--out", str(out), "--", *extra])
    assert exit_info.value.code == 1
    text = capsys.readouterr().out
    summary = text[text.index("[sweep] 1/2 runs finished, 1 failed"):]
    assert f"failed: {bad}: exit code 1: ValueError: boom, as the test asked; log: {out / 'logs' / bad}.log" in summary
    assert good not in summary
    status = {s["name"]: s for s in json.loads((out / "sweep_status.json").read_text())}
    assert status[bad]["status"] == "failed" and status[good]["status"] == "finished"


def test_unreadable_last_ckpt_is_moved_aside_and_the_run_starts_fresh(fake, tmp_path, capsys):
    path, extra = fake({"x": {"values": [1]}}, steps=2, dt=0.05)
    (name,) = _names(path)
    out = tmp_path / "out"
    ckpts = out / "fake" / name / "checkpoints"
    ckpts.mkdir(parents=True)
    (ckpts / "last.ckpt").write_bytes((fake.trainlog.parent / "templates" / "step_3.ckpt").read_bytes()[:200])
    (rec,) = sweep.run_local(sweep.load_sweep(path), out, extra)
    assert rec.status == "finished"
    assert "last.ckpt is unreadable" in capsys.readouterr().out
    assert len(list(ckpts.glob("last.ckpt.unreadable-*"))) == 1
    (train,) = fake.trains()
    assert train["ckpt_path"] is None and train["from_step"] == 0


def test_sigterm_stops_the_run_group_records_it_interrupted_and_frees_the_lock(fake, tmp_path):
    path, extra = fake({"x": {"values": [1, 2]}}, steps=8, dt=0.5, helper=True)
    first, second = _names(path)
    out = tmp_path / "out"
    log = tmp_path / "runner.log"
    runner = _runner(path, out, extra, log)
    deadline = time.monotonic() + 20
    while not fake.trains() or not (out / "fake" / first / "checkpoints" / "last.step").exists():
        assert runner.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(timeout=15) == 128 + signal.SIGTERM
    (train,) = fake.trains()  # the second run was not started
    assert not _alive(train["pid"]) and not _alive(train["helper"])
    assert "interrupted: " + first in log.read_text()
    status = json.loads((out / "sweep_status.json").read_text())
    assert [(s["name"], s["status"]) for s in status] == [(first, "interrupted")]
    assert not list((out / "locks").glob("*.lock"))
