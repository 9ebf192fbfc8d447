"""experiments/allocator.py: which allocator a process gets, the off switch, and darkroom's one re-exec."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import allocator
from experiments.allocator import GLIBC_TUNABLES_VALUE, JEMALLOC_CONF, MARKER, SWITCH

REPO = Path(__file__).resolve().parents[1]
OURS = ("LD_PRELOAD", "MALLOC_CONF", "GLIBC_TUNABLES", MARKER, SWITCH, "TCMALLOC_RELEASE_RATE",
        "TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD")
linux_glibc = pytest.mark.skipif(allocator._glibc() is None, reason="needs Linux with glibc")


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without the allocator variables (``make test`` runs the suite under them)."""
    env = {k: v for k, v in os.environ.items() if k not in OURS}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def _fake_libs(tmp_path: Path, *names: str) -> Path:
    for name in names:
        (tmp_path / name).write_bytes(b"\x7fELF fake 5.3.0-0-g" + b"a" * 40 + b"\n")
    return tmp_path


@linux_glibc
def test_jemalloc_preferred_and_configured(tmp_path):
    libs = _fake_libs(tmp_path, "libjemalloc.so.2", "libtcmalloc_minimal.so.4")
    choice = allocator.choose({}, dirs=[libs])
    assert choice.kind == "jemalloc"
    assert choice.env == {"LD_PRELOAD": str(libs / "libjemalloc.so.2"), "MALLOC_CONF": JEMALLOC_CONF}
    assert choice.description.startswith("jemalloc 5.3.0 (LD_PRELOAD=")
    env, description = allocator.allocator_env({"PATH": "/bin"}, dirs=[libs])
    assert env["PATH"] == "/bin" and env["LD_PRELOAD"] == str(libs / "libjemalloc.so.2")
    assert env[MARKER] == "jemalloc" and description == choice.description
    # the user's MALLOC_CONF wins
    assert allocator.choose({"MALLOC_CONF": "narenas:2"}, dirs=[libs]).env["MALLOC_CONF"] == "narenas:2"


@linux_glibc
def test_ld_preload_only_for_an_existing_library(tmp_path):
    choice = allocator.choose({}, dirs=[tmp_path])  # nothing there
    assert "LD_PRELOAD" not in choice.env
    assert choice.kind == "glibc" and choice.env == {"GLIBC_TUNABLES": GLIBC_TUNABLES_VALUE}
    forced = allocator.choose({SWITCH: "jemalloc"}, dirs=[tmp_path])
    assert "LD_PRELOAD" not in forced.env and "not found" in forced.warning
    assert allocator.find_library("jemalloc", [tmp_path / "missing"]) is None


@linux_glibc
def test_forcing_and_switching_off(tmp_path):
    libs = _fake_libs(tmp_path, "libjemalloc.so.2", "libtcmalloc_minimal.so.4")
    tc = allocator.choose({SWITCH: "tcmalloc"}, dirs=[libs])
    assert tc.kind == "tcmalloc" and tc.env["LD_PRELOAD"] == str(libs / "libtcmalloc_minimal.so.4")
    assert tc.env["TCMALLOC_RELEASE_RATE"] == "0"
    assert allocator.choose({SWITCH: "glibc"}, dirs=[libs]).env == {"GLIBC_TUNABLES": GLIBC_TUNABLES_VALUE}
    for off in ("system", "SYSTEM", "off", "0"):
        choice = allocator.choose({SWITCH: off}, dirs=[libs])
        assert choice.kind == "system" and choice.env == {}, off
    env, _ = allocator.allocator_env({SWITCH: "system"}, dirs=[libs])
    assert "LD_PRELOAD" not in env and "GLIBC_TUNABLES" not in env and env[MARKER] == "system"
    bogus = allocator.choose({SWITCH: "bogus"}, dirs=[libs])
    assert bogus.kind == "jemalloc" and "bogus" in bogus.warning


@linux_glibc
def test_user_settings_win(tmp_path):
    libs = _fake_libs(tmp_path, "libjemalloc.so.2")
    preset = allocator.choose({"LD_PRELOAD": "/opt/libasan.so"}, dirs=[libs])
    assert preset.env == {} and "already set" in preset.description
    assert allocator.choose({"LD_PRELOAD": str(libs / "libjemalloc.so.2")}, dirs=[libs]).kind == "jemalloc"
    tunables = allocator.choose({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, dirs=[tmp_path / "none"])
    assert tunables.env == {} and "arena_max=2" in tunables.description


_PROBE = """
import os, sys
print("start", os.getpid(), flush=True)
import experiments.cli as cli
def probe(args):
    maps = open("/proc/self/maps").read()
    print("probe", os.getpid(), args, "libjemalloc" in maps, os.environ.get("DARKROOM_ALLOCATOR_SET"),
          os.environ.get("GLIBC_TUNABLES"), flush=True)
    if args[:1] == ["exit"]:
        raise SystemExit(int(args[1]))
    if args[:1] == ["kill"]:
        os.kill(os.getpid(), 15)
import types
sys.modules["experiments.probe"] = types.SimpleNamespace(main=probe)
cli.EXTRA_COMMANDS["probe"] = "probe"
cli.main()
"""


def _probe(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _PROBE, "probe", *args], env=_clean_env(**env), cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@linux_glibc
def test_reexec_once_keeps_pid_argv_exit_code_and_signals():
    done = _probe("exit", "7")
    assert done.returncode == 7, done.stderr
    lines = done.stdout.splitlines()
    starts = [line for line in lines if line.startswith("start")]
    probes = [line for line in lines if line.startswith("probe")]
    expected = allocator.choose(_clean_env())
    assert len(starts) == (2 if expected.env else 1), done.stdout  # re-executed exactly once (or not at all)
    assert len({line.split()[1] for line in starts + probes}) == 1  # same PID: os.execve, no child process
    assert len(probes) == 1 and "['exit', '7']" in probes[0]
    assert probes[0].split()[-2] == expected.kind
    killed = _probe("kill")
    assert killed.returncode == -signal.SIGTERM, killed.stderr


@linux_glibc
def test_marker_and_off_switch_stop_the_reexec():
    marked = _probe(**{MARKER: "jemalloc"})
    assert marked.returncode == 0, marked.stderr
    assert sum(line.startswith("start") for line in marked.stdout.splitlines()) == 1
    assert "probe" in marked.stdout and " False jemalloc None" in marked.stdout  # untouched: no library, no tunables
    off = _probe(**{SWITCH: "system"})
    assert off.returncode == 0, off.stderr
    assert sum(line.startswith("start") for line in off.stdout.splitlines()) == 1
    assert " False system None" in off.stdout


def test_darkroom_help_reexecs_without_looping():
    done = subprocess.run([sys.executable, "-m", "experiments.cli", "--help"], env=_clean_env(),
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "DARKROOM_ALLOCATOR" in done.stdout and "fit" in done.stdout


@pytest.mark.skipif(allocator.find_library("jemalloc") is None,
                    reason="jemalloc is not installed (Debian: apt-get install libjemalloc2; `make setup` tries)")
def test_jemalloc_is_loaded_with_the_env():
    env, description = allocator.allocator_env(_clean_env())
    assert description.startswith("jemalloc")
    code = ("import torch; from experiments.allocator import current, loaded_libraries; "
            "x = torch.nn.functional.conv2d(torch.rand(1, 3, 64, 64), torch.rand(8, 3, 3, 3)); "
            "print(any('libjemalloc' in p for p in loaded_libraries())); print(current())")
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    found, current = done.stdout.splitlines()[-2:]
    assert found == "True" and current.startswith("jemalloc") and "retain:true" in current
    # and the exec front end used by `make test` / `make bench`
    done = subprocess.run([sys.executable, "-m", "experiments.allocator", "exec", "--", sys.executable, "-c",
                           "from experiments.allocator import current; print(current())"],
                          env=_clean_env(), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("jemalloc"), done.stderr
