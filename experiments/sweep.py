"""``darkroom sweep FILE``: W&B sweeps, registered with a server or run locally from the same YAML.

The YAML is a standard W&B sweep definition (``method``, ``metric``, ``parameters``, ``command``;
https://docs.wandb.ai/guides/sweeps/define-sweep-configuration). Its ``command`` runs
``darkroom fit`` with the sweep's arguments, so ``wandb sweep FILE`` + ``wandb agent ID`` work on any
number of machines (each agent one process, or one DDP job)::

    darkroom sweep experiments/zero_dce/sweeps/loss_ablation.yaml           # register (W&B configured)
    darkroom sweep experiments/zero_dce/sweeps/loss_ablation.yaml --local   # expand and run here
    darkroom sweep FILE --local --dry-run                                   # list the runs only
    darkroom sweep FILE --local -- --trainer.max_steps 50                   # extra args for every run

``--local`` expands ``grid`` (every combination of ``values``/``value``) and ``random`` (``--count``
draws, default ``run_cap`` or 10; the W&B distributions ``uniform``, ``int_uniform``, ``q_uniform``,
``log_uniform``, ``log_uniform_values``, ``q_log_uniform_values``, ``normal``, ``q_normal``,
``log_normal``, ``categorical``). Nested parameters (``parameters: {model: {parameters: …}}``) and
dotted names (``model.init_args.loss_weights.tv``) both become ``--model.init_args.loss_weights.tv=V``.
Each run gets its own directory ``<out>/<paper>/<run name>/`` (the name derives from its parameters),
runs in its own process with a progress line, tests its best checkpoint (``--run.test_after_fit``)
and writes ``results.json``; its output goes to ``<out>/logs/<run name>.log``.

What the local runner guarantees (Linux; the lock and status parts on any POSIX system):

* **A run never outlives the runner.** Each run is started through a tiny guard process (``_GUARD``)
  that leads a new process group; the training process and whatever it starts (Lightning's DDP
  ranks, data-loader workers) stay in that group. The guard asks the kernel for
  ``prctl(PR_SET_PDEATHSIG, SIGHUP)``, so when the runner dies, even by ``kill -9``, the guard is
  signalled at once and SIGKILLs its whole group (it also polls ``getppid()`` twice a second, which
  covers a runner that died before the prctl and systems without it). The training process gets
  ``PR_SET_PDEATHSIG=SIGKILL`` in a ``preexec_fn``, so it dies even if the guard itself is killed.
  PDEATHSIG applies to one process only and a rank-0 killed by SIGKILL cannot stop its DDP
  ranks (Lightning's ``_ChildProcessObserver`` is a thread of rank 0), which is why the group is
  killed as a whole. W&B's ``wandb-core`` starts its own session and quits by itself when its
  parent is gone. SIGINT/SIGTERM/SIGHUP to the runner send SIGTERM to the run's group (Lightning
  stops cleanly), then SIGKILL after ``_KILL_GRACE_S``; the run is recorded as ``interrupted`` and
  the runner exits (``KeyboardInterrupt``, or exit code 128 + signal). Whatever is left in a run's
  group when the run ends is SIGKILLed. ``--timeout`` stops the group the same way.
* **One runner per run.** Before starting a run the runner takes ``<out>/locks/<run name>.lock``
  (created with ``O_CREAT|O_EXCL``; it holds the runner's pid, host, boot id, pid namespace,
  process start time and, once started, the guard's pid and start time). A second runner on the same
  sweep skips runs locked by a live runner and takes the next; its summary lists them as
  ``running elsewhere`` (neither failed nor finished). A lock is stale, and taken over with a
  printed note, when neither its runner nor its guard is alive (same machine: the pid is gone, a
  zombie, or now a different process as its start time in ``/proc/<pid>/stat`` shows, or the machine
  rebooted); a lock from another host or pid namespace is stale when its heartbeat (the runner
  touches it every ``_HEARTBEAT_S``) is older than ``_FOREIGN_LOCK_STALE_S``. Taking, checking,
  taking over and releasing a lock are serialised by ``flock`` on ``<out>/locks/.mutex`` (the
  kernel drops it if a runner dies). The lock is removed when the run ends (finished, failed or
  interrupted); a runner re-checks ``results.json`` after taking a lock, so a run finished
  meanwhile by another runner is not trained again.
* **Half-finished runs resume.** A run whose directory has ``checkpoints/last.ckpt`` but no
  ``results.json`` is started with ``--ckpt_path <that last.ckpt>`` (the progress line says
  ``resuming from step N``). The step is read with the project's checkpoint reader
  (``lightning_modules.checkpoints``, ``weights_only=True``); a ``last.ckpt`` it rejects (torn, corrupt,
  not a Lightning checkpoint, pickled code) is renamed aside to ``last.ckpt.unreadable-<time>``, never
  deleted, and the run starts fresh.
* **Failures are visible.** Every run is recorded, a failed one with its exit code, its error line and
  the tail of its log; the closing summary names each failed run with its log and error line, and
  ``darkroom sweep --local`` exits with status 1 when any run failed (``run_local`` itself returns
  the records). Re-running the sweep skips finished runs and retries failed ones.
* **sweep_status.json is never torn and never clobbered.** It is rewritten after every change through
  a temporary file in the same folder and ``os.replace``; under the same ``flock`` the runner reads
  the current file and merges its own runs into it by run name, so runners sharing a sweep keep
  each other's records (a run's own runner is authoritative for its entry).
"""
from __future__ import annotations

import argparse
from pathlib import Path

# This module is the command and the W&B registration; the parts live beside it and are re-exported here:
# sweep_config (the YAML, expansion, each run's command and name), sweep_local (the local runner), sweep_processes
# (identity, the guard, signals), sweep_locks (run locks, the mutex), sweep_status (the status file).
from experiments.sweep_config import (  # noqa: F401  (re-exported)
    _DISTRIBUTIONS,
    DARKROOM_COMMAND,
    SweepConfigError,
    _grid_values,
    build_command,
    expand,
    flatten_parameters,
    format_value,
    load_sweep,
    run_arguments,
    run_name,
    sample_parameter,
)
from experiments.sweep_local import (  # noqa: F401  (re-exported)
    _checkpoint_step,
    _error_line,
    _find_run_dir,
    _finished,
    _resume_point,
    _summary,
    _wait,
    run_local,
)
from experiments.sweep_locks import (  # noqa: F401  (re-exported)
    _FOREIGN_LOCK_STALE_S,
    _HEARTBEAT_S,
    _UNREADABLE_LOCK_STALE_S,
    _describe_owner,
    _mutex,
    _RunLock,
    _stale_reason,
    fcntl,
)
from experiments.sweep_processes import (  # noqa: F401  (re-exported)
    _GUARD,
    _KILL_GRACE_S,
    _killpg,
    _machine,
    _process_start,
    _read_text,
    _spawn,
    _Stop,
)
from experiments.sweep_status import _OWN_STATUSES, RunRecord, _write_status  # noqa: F401  (re-exported)


def register(cfg: dict, project: str, entity: str | None) -> str:
    """Register the sweep with the W&B server; returns its id (needs ``wandb login``)."""
    from experiments.env import wandb_configured

    if not wandb_configured():
        raise SystemExit("darkroom sweep: W&B is not configured (run `wandb login` or set WANDB_API_KEY); "
                         "use --local to run the sweep here without a server")
    import wandb

    clean = {k: v for k, v in cfg.items() if k != "darkroom"}
    return wandb.sweep(clean, project=project, entity=entity)


def main(argv: list[str] | None = None) -> None:
    argv = list(argv or [])
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    parser = argparse.ArgumentParser(prog="darkroom sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path, help="sweep YAML (W&B syntax)")
    parser.add_argument("--local", action="store_true", help="expand and run here, without a W&B server")
    parser.add_argument("--out", type=Path, default=None, help="local: sweep folder (default runs/sweeps/<name>)")
    parser.add_argument("--count", type=int, default=None,
                        help="local: number of runs (random: draws; grid: the first COUNT combinations)")
    parser.add_argument("--seed", type=int, default=0, help="local random search: sampling seed")
    parser.add_argument("--dry-run", action="store_true", help="local: print the runs without running them")
    parser.add_argument("--timeout", type=float, default=None, help="local: seconds per run before it counts as failed")
    parser.add_argument("--project", default="darkroom")
    parser.add_argument("--entity", default=None)
    args = parser.parse_args(argv)
    try:
        _run(args, extra)
    except (SweepConfigError, FileNotFoundError) as err:
        raise SystemExit(f"darkroom sweep: {err}") from None


def _run(args: argparse.Namespace, extra: list[str]) -> None:
    cfg = load_sweep(args.file)
    if args.local:
        if cfg["method"] == "bayes":
            print("[sweep] bayes search needs the W&B server; running it locally as random search")
            cfg = {**cfg, "method": "random"}
        out = args.out or Path("runs") / "sweeps" / args.file.stem
        records = run_local(cfg, out, extra, count=args.count, seed=args.seed, dry_run=args.dry_run,
                            timeout=args.timeout, sweep_file=args.file)
        if any(r.status == "failed" for r in records):
            raise SystemExit(1)
    else:
        sweep_id = register(cfg, args.project, args.entity)
        print(f"registered sweep {sweep_id}; start agents with: wandb agent {args.entity + '/' if args.entity else ''}"
              f"{args.project}/{sweep_id}")
