"""``darkroom sweep --local``: every expanded run of a sweep, here, one guarded process each; half-finished runs
resume, failures are recorded and summarised (the guarantees are in :mod:`experiments.sweep`'s docstring)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from datamodules.atomic_files import remove_stale_temp_files
from experiments.sweep_config import build_command, expand, run_arguments, run_name
from experiments.sweep_locks import _describe_owner, _RunLock
from experiments.sweep_processes import _KILL_GRACE_S, _killpg, _spawn, _Stop
from experiments.sweep_status import RunRecord, _write_status


def _find_run_dir(out: Path, name: str) -> Path | None:
    found = [p for p in out.glob(f"*/{name}") if p.is_dir()]
    return found[0] if found else None


# -- resuming -------------------------------------------------------------------------------------------------

def _checkpoint_step(path: Path) -> tuple[int | None, str | None]:
    """``(global_step, None)`` for a checkpoint ``darkroom fit --ckpt_path`` can resume from, else ``(None, why)``.

    Read with the project's one checkpoint reader (``weights_only=True``), so a torn, corrupt or pickled-code
    file is judged here exactly as ``darkroom fit`` would judge it.
    """
    from lightning_modules.checkpoints import CheckpointError, load_checkpoint_file

    try:
        ckpt = load_checkpoint_file(path)
    except (CheckpointError, OSError) as err:
        why = str(err).replace(f"{path}: ", "")
        return None, why if len(why) <= 160 else why[:159] + "…"
    step = ckpt.get("global_step")
    return (step if isinstance(step, int) else None), None


def _resume_point(run_dir: Path | None) -> tuple[Path | None, str | None]:
    """The ``last.ckpt`` to resume a half-finished run from (or None) and a note for the progress line."""
    ckpt = run_dir / "checkpoints" / "last.ckpt" if run_dir is not None else None
    if ckpt is None or not ckpt.is_file():
        return None, None
    step, problem = _checkpoint_step(ckpt)
    if problem is not None:
        aside = ckpt.with_name(f"last.ckpt.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
        ckpt.rename(aside)
        return None, f"checkpoints/last.ckpt is unreadable ({problem}); moved to {aside.name}, starting fresh"
    return ckpt, f"resuming from step {step}" if step is not None else "resuming from last.ckpt (step unknown)"


def _error_line(lines: list[str]) -> str:
    """The line of a run's output that says what went wrong: the last exception or ``error:`` line (anywhere in the
    output: a usage listing may follow or precede it), else the last line. A jsonargparse ``error:`` block (a run
    with ``--debug``) is folded into one line by :func:`experiments.errors.config_error_line`, as the command does."""
    from experiments.errors import config_error_line

    pattern = re.compile(r"^([\w.]*(Error|Exception|Interrupt|Exit)\b|(\S+ ?){0,2}error:)", re.IGNORECASE)
    stripped = [ln.rstrip() for ln in lines]
    for i in range(len(stripped) - 1, -1, -1):
        line = stripped[i].strip()
        if not pattern.match(line):
            continue
        if line.lower().endswith(":") and "error:" in line.lower():
            block = []
            for follow in stripped[i + 1:]:
                if follow and not follow[0].isspace():
                    break
                block.append(follow)
            head, _, message = line.partition("error:")
            line = f"{head}error: " + config_error_line("\n".join([message.strip(), *block]))
        return line
    nonempty = [ln.strip() for ln in lines if ln.strip()]
    return nonempty[-1] if nonempty else "(no output)"


#: runs that fail the same way before training, one after another, that stop a sweep (the error is the sweep's)
FAIL_FAST_RUNS = 2


# -- the local runner -----------------------------------------------------------------------------------------

def _wait(proc: subprocess.Popen, lock: _RunLock, stop: _Stop, timeout: float | None) -> tuple[int, str | None]:
    """Wait for a run; ``(returncode, None)``, or ``(returncode, "timed out"|"interrupted")`` if it was stopped."""
    t0, why, term_at = time.monotonic(), None, None
    while True:
        try:
            rc = proc.wait(timeout=1.0)
            return rc, why or ("interrupted" if stop.signum is not None else None)
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        lock.heartbeat()
        if why is None and stop.signum is not None:
            why, term_at = "interrupted", now
            _killpg(proc.pid, signal.SIGTERM)  # again, in case the signal came before the run had started
        elif why is None and timeout is not None and now - t0 > timeout:
            why, term_at = "timed out", now
            _killpg(proc.pid, signal.SIGTERM)
        if term_at is not None and now - term_at > _KILL_GRACE_S:
            _killpg(proc.pid, signal.SIGKILL)


def _finished(run_dir: Path | None) -> bool:
    return run_dir is not None and (run_dir / "results.json").exists()


def _summary(records: list[RunRecord], status_path: Path) -> None:
    done = sum(r.status in ("finished", "skipped") for r in records)
    failed = [r for r in records if r.status == "failed"]
    elsewhere = [r for r in records if r.status == "running elsewhere"]
    interrupted = [r for r in records if r.status == "interrupted"]
    print(f"[sweep] {done}/{len(records)} runs finished, {len(failed)} failed, {len(elsewhere)} running elsewhere"
          + (f", {len(interrupted)} interrupted" if interrupted else "") + f"; status: {status_path}", flush=True)
    for r in failed:
        print(f"[sweep]   failed: {r.name}: {(r.error or '').splitlines()[0] if r.error else '?'}; log: {r.log}")
    for r in elsewhere:
        print(f"[sweep]   running elsewhere: {r.name} ({r.note})")
    for r in interrupted:
        print(f"[sweep]   interrupted: {r.name}; log: {r.log}")
    sys.stdout.flush()


def _never_trained(run_dir: Path | None) -> bool:
    return run_dir is None or not any((run_dir / "checkpoints").glob("*.ckpt"))


def run_local(cfg: dict, out: Path, extra_args: list[str], count: int | None = None, seed: int = 0,
              dry_run: bool = False, timeout: float | None = None, sweep_file: Path | None = None) -> list[RunRecord]:
    """Run every expanded run of ``cfg`` here, one process each. A failed run does not stop the sweep, except that
    when the first :data:`FAIL_FAST_RUNS` runs fail with the same error before training (no checkpoint), the error
    is the sweep's (a bad path, a config typo), so it stops and prints it with the run's log.

    ``sweep_file``: where the config paths of the command are looked up first
    (:func:`~experiments.sweep_config.resolve_config`). Returns one record per run that was looked at (``finished``,
    ``skipped``, ``failed``, ``running elsewhere``). Safe to run several times at once on the same sweep and to kill
    at any moment (see :mod:`experiments.sweep`'s docstring).
    """
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(out)  # status writes of killed runners
    status_path = out / "sweep_status.json"
    locks = out / "locks"
    runs = expand(cfg, count=count, seed=seed)
    if cfg["method"] == "grid" and count is not None:
        print(f"[sweep] grid: the first {len(runs)} of {len(expand(cfg))} combinations (--count {count})", flush=True)
    names = [run_name(p) for p in runs]
    commands = [build_command(cfg, params, sweep_file) for params in runs]  # a missing config fails here, not per run
    records: list[RunRecord] = []
    early_errors: list[str] = []
    with _Stop() as stop:
        for i, (params, name, command) in enumerate(zip(runs, names, commands, strict=True), 1):
            if stop.signum is not None:
                break
            existing = _find_run_dir(out, name)
            log_path = out / "logs" / f"{name}.log"
            rec = RunRecord(name=name, params=params, run_dir=str(existing or out / "<paper>" / name),
                            log=str(log_path))
            records.append(rec)
            prefix = f"[sweep {i}/{len(runs)}] {name}"
            if _finished(existing):
                rec.status = "skipped"
                rec.metrics = json.loads((existing / "results.json").read_text()).get("metrics", {})
                print(f"{prefix}: already finished, skipped", flush=True)
                _write_status(status_path, [rec], names)
                continue
            cmd = command + ["--run.root", str(out), "--run.name", name,
                                                "--run.test_after_fit=true", *extra_args]
            if dry_run:
                last = existing / "checkpoints" / "last.ckpt" if existing is not None else None
                resume = ["--ckpt_path", str(last)] if last is not None and last.is_file() else []
                print(f"{prefix}: {' '.join(cmd + resume)}")
                continue
            lock = _RunLock(locks / f"{name}.lock")
            owner = lock.acquire()
            if owner is not None:
                rec.status, rec.note = "running elsewhere", f"locked by {_describe_owner(owner)}"
                print(f"{prefix}: running elsewhere ({rec.note}), skipped", flush=True)
                _write_status(status_path, [rec], names)
                continue
            try:
                existing = _find_run_dir(out, name)
                if _finished(existing):  # finished by another runner since we looked
                    rec.status, rec.run_dir = "skipped", str(existing)
                    rec.metrics = json.loads((existing / "results.json").read_text()).get("metrics", {})
                    print(f"{prefix}: already finished, skipped", flush=True)
                    continue
                ckpt, resume_note = _resume_point(existing)
                if ckpt is not None:
                    cmd += ["--ckpt_path", str(ckpt)]
                rec.note = "; ".join(n for n in (lock.note, resume_note) if n) or None
                rec.status = "running"
                _write_status(status_path, [rec], names)
                print(f"{prefix}: {resume_note or 'running'} ({', '.join(run_arguments(params))})", flush=True)
                t0 = time.perf_counter()
                log_path.parent.mkdir(parents=True, exist_ok=True)
                with log_path.open("ab") as log:  # earlier attempts stay above this one's output
                    if log.tell():
                        log.write(f"\n==== darkroom sweep: new attempt {time.strftime('%Y-%m-%dT%H:%M:%S')}"
                                  f"{', ' + resume_note if resume_note else ''} ====\n".encode())
                        log.flush()
                    offset = log.tell()
                    proc = _spawn(cmd, log)
                    stop.pgid = proc.pid
                    lock.started(proc)
                    try:
                        rec.returncode, why = _wait(proc, lock, stop, timeout)
                    finally:
                        stop.pgid = None
                        _killpg(proc.pid, signal.SIGKILL)  # whatever of the run is still alive
                rec.wall_seconds = time.perf_counter() - t0
                run_dir = _find_run_dir(out, name)
                rec.run_dir = str(run_dir) if run_dir else rec.run_dir
                with log_path.open("rb") as log:
                    log.seek(offset)
                    output = log.read().decode(errors="replace").strip().splitlines()
                tail = output[-15:]
                if why is None and rec.returncode == 0 and _finished(run_dir):
                    res = json.loads((run_dir / "results.json").read_text())
                    rec.status, rec.metrics, rec.fit_seconds = "finished", res.get("metrics", {}), res.get("fit_seconds")
                    print(f"{prefix}: finished in {rec.wall_seconds:.0f} s", flush=True)
                elif why == "interrupted":
                    rec.status, rec.error = "interrupted", f"interrupted by signal {stop.signum}\n" + "\n".join(tail)
                    print(f"{prefix}: interrupted (signal {stop.signum}); log: {log_path}", flush=True)
                else:
                    rc = rec.returncode
                    reason = (f"timed out after {timeout:g} s" if why == "timed out"
                              else f"killed by signal {-rc}" if rc is not None and rc < 0
                              else f"exit code {rc}" if rc else "exit code 0 but no results.json")
                    line = _error_line(output)
                    rec.status, rec.error = "failed", f"{reason}: {line}\n" + "\n".join(tail)
                    print(f"{prefix}: FAILED ({rec.error.splitlines()[0]}); log: {log_path}; continuing", flush=True)
                    if len(early_errors) == i - 1 and _never_trained(run_dir):
                        early_errors.append(line)
            finally:
                lock.release()
                if rec.status == "running":  # an exception on our side: do not leave "running" behind
                    rec.status = "failed"
                    rec.error = rec.error or "the sweep runner stopped"
                _write_status(status_path, [rec], names)
            if (len(early_errors) == FAIL_FAST_RUNS == i and len(set(early_errors)) == 1 and len(runs) > i):
                print(f"[sweep] stopping: the first {i} runs failed before training with the same error, so the "
                      f"other {len(runs) - i} would too:\n[sweep]   {early_errors[0]}\n[sweep]   log: {log_path}",
                      flush=True)
                break
        if not dry_run:  # (each record was merged into the status file when it was decided)
            _summary(records, status_path)
        if stop.signum is not None:
            stop.exit()
    return records
