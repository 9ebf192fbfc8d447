"""The memory allocator Darkroom runs with: a caching one (jemalloc, else tcmalloc) when the system has it.

Why: glibc's malloc serves every block above its mmap threshold (dynamic, at most 32 MiB on 64-bit) with a fresh
``mmap`` and unmaps it on free, so each forward pass re-faults its full-resolution activations page by page
(Zero-DCE at 1200×900: 1.2 M page faults, ~2 s of a 3.2 s forward on one thread). A caching allocator keeps the
freed memory mapped and hands it out again (see ``benchmarks/allocator_speed.py`` for the figures).

``DARKROOM_ALLOCATOR`` (read by ``darkroom`` at start, by ``make test``/``make bench`` and by
``python -m experiments.allocator exec``):

* ``auto`` (default): jemalloc if installed (Debian ``libjemalloc2``; ``make setup`` installs it when run as
  root with apt), else tcmalloc (``libtcmalloc-minimal4``), else glibc tunables that keep large blocks on the
  heap (:data:`GLIBC_TUNABLES_VALUE`);
* ``jemalloc`` / ``tcmalloc`` / ``glibc``: that one (a library that is not found falls back to ``auto`` with
  a warning);
* ``system`` (also ``off``, ``none``, ``0``): leave the process alone, plain malloc.

jemalloc and tcmalloc are loaded with ``LD_PRELOAD``, which only works at process start, so ``darkroom``
re-executes itself once (same PID, argv, exit code and signals; :func:`reexec`) with the variables set. The
marker :data:`MARKER` stops a second re-exec, and the variables are inherited by every child (sweep runs, DDP
ranks, DataLoader workers). Settings the user made win: an ``LD_PRELOAD`` already set (any value) means no
change; ``MALLOC_CONF`` / ``GLIBC_TUNABLES`` already set are kept.

The trade-off: freed memory is kept for reuse rather than returned to the OS, so a process's resident size
stays near its peak (jemalloc ``retain:true`` with no decay; glibc: no trimming below 4 GiB of free top).

    python -m experiments.allocator                 # what would be used, one line
    python -m experiments.allocator env             # the variables, as shell `export` lines
    python -m experiments.allocator exec -- CMD...  # run CMD with them (make test / make bench)
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

SWITCH = "DARKROOM_ALLOCATOR"
MARKER = "DARKROOM_ALLOCATOR_SET"  # set by reexec()/exec: "this environment has been configured"
OFF = ("system", "off", "none", "0", "false")
KINDS = ("auto", "jemalloc", "tcmalloc", "glibc")

JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1,retain:true"
TCMALLOC_ENV = {
    "TCMALLOC_RELEASE_RATE": "0",  # never hand freed spans back to the OS
    "TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": str(1 << 44),  # no "tcmalloc: large alloc" lines on stderr
}
# mmap only above 1 GiB, and no trimming of the heap top below 4 GiB. glibc 2.36 accepts values above its
# DEFAULT_MMAP_THRESHOLD_MAX (32 MiB on 64-bit, the cap of the *dynamic* threshold); both are needed: the
# threshold alone moves the blocks to the heap, but the default trim threshold (128 KiB) then gives the freed top
# back to the OS and it faults in again (measured: 100 MiB blocks, 25,600 faults per allocation either way).
GLIBC_TUNABLES_VALUE = "glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=4294967296"

LIBRARIES = {
    "jemalloc": ("libjemalloc.so.2", "libjemalloc.so.1", "libjemalloc.so"),
    "tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4", "libtcmalloc_minimal.so", "libtcmalloc.so"),
}


@dataclass(frozen=True)
class Allocator:
    """The allocator chosen for a process: ``kind``, the variables to add and a one-line description."""

    kind: str  # "jemalloc" | "tcmalloc" | "glibc" | "system" | "preset" (LD_PRELOAD set by the user)
    env: dict[str, str] = field(default_factory=dict)
    description: str = ""
    warning: str | None = None


def search_dirs() -> list[Path]:
    """Where the shared libraries are looked for: this Python's and conda's ``lib``, then the system's."""
    arch = f"{platform.machine()}-linux-gnu"
    dirs = [Path(sys.prefix) / "lib", Path(sys.base_prefix) / "lib"]
    if os.environ.get("CONDA_PREFIX"):
        dirs.append(Path(os.environ["CONDA_PREFIX"]) / "lib")
    for root in ("/usr/local/lib", "/usr/lib", "/lib"):
        dirs += [Path(root) / arch, Path(root)]
    dirs += [Path("/usr/lib64"), Path("/lib64")]
    seen: list[Path] = []
    for d in dirs:
        if d not in seen:
            seen.append(d)
    return seen


def find_library(kind: str, dirs: Iterable[Path] | None = None) -> Path | None:
    """The first existing file of ``LIBRARIES[kind]`` in ``dirs`` (default :func:`search_dirs`), else None."""
    for d in search_dirs() if dirs is None else dirs:
        for name in LIBRARIES[kind]:
            path = Path(d) / name
            if path.is_file():
                return path
    return None


def library_version(path: Path | str) -> str | None:
    """The version a jemalloc/tcmalloc library file carries in its strings (``"5.3.0"``), or None."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    m = re.search(rb"(\d+\.\d+\.\d+)-\d+-g[0-9a-f]{40}", data)  # jemalloc's JEMALLOC_VERSION
    if m is None:
        m = re.search(rb"gperftools (\d+\.\d+(?:\.\d+)?)", data)
    return m.group(1).decode() if m else None


def _glibc() -> str | None:
    if not sys.platform.startswith("linux"):
        return None
    name, version = platform.libc_ver()
    return version if name == "glibc" else None


def _preloaded(env: Mapping[str, str]) -> str:
    return env.get("LD_PRELOAD", "").strip()


def choose(environ: Mapping[str, str] | None = None, dirs: Iterable[Path] | None = None) -> Allocator:
    """The allocator for a process started with ``environ`` (default ``os.environ``), per ``DARKROOM_ALLOCATOR``.

    ``env`` holds only the variables to add; it is empty when nothing is to be done (switched off, not Linux,
    ``LD_PRELOAD`` already set).
    """
    env = os.environ if environ is None else environ
    dirs = None if dirs is None else list(dirs)
    glibc = _glibc()
    libc = f"glibc {glibc} malloc" if glibc else "system malloc"
    want = env.get(SWITCH, "auto").strip().lower() or "auto"
    warning = None
    if want in OFF:
        return Allocator("system", {}, f"{libc} ({SWITCH}={env.get(SWITCH)})")
    if want not in KINDS:
        warning = f"{SWITCH}={env.get(SWITCH)!r} is not one of {', '.join(KINDS + ('system',))}; using auto"
        want = "auto"
    if not sys.platform.startswith("linux"):
        return Allocator("system", {}, f"{libc} (caching allocators are only set up on Linux)", warning)
    preset = _preloaded(env)
    if preset:
        lib = next((p for p in re.split(r"[:\s]+", preset) if re.search(r"lib(jemalloc|tcmalloc)", p)), None)
        kind = ("jemalloc" if "jemalloc" in lib else "tcmalloc") if lib else "preset"
        what = describe_library(kind, lib) if lib else libc
        return Allocator(kind, {}, f"{what} (LD_PRELOAD={preset} already set)", warning)
    order = [want] if want in LIBRARIES else (list(LIBRARIES) if want == "auto" else [])
    for kind in order:
        path = find_library(kind, dirs)
        if path is not None:
            add = {"LD_PRELOAD": str(path)}
            if kind == "jemalloc":
                add["MALLOC_CONF"] = env.get("MALLOC_CONF", JEMALLOC_CONF)
            else:
                add.update({k: env.get(k, v) for k, v in TCMALLOC_ENV.items()})
            shown = ", ".join(f"{k}={v}" for k, v in add.items())
            return Allocator(kind, add, f"{describe_library(kind, path)} ({shown})", warning)
    if want in LIBRARIES:
        warning = (f"{SWITCH}={want}: lib{want} not found (Debian: apt-get install "
                   f"{'libjemalloc2' if want == 'jemalloc' else 'libtcmalloc-minimal4'}); using glibc tunables")
    if glibc is None:
        return Allocator("system", {}, f"{libc} (no jemalloc/tcmalloc found)", warning)
    if env.get("GLIBC_TUNABLES"):
        return Allocator("glibc", {}, f"{libc} (GLIBC_TUNABLES={env['GLIBC_TUNABLES']} already set)", warning)
    why = "" if want == "glibc" else "; no jemalloc/tcmalloc found"
    return Allocator("glibc", {"GLIBC_TUNABLES": GLIBC_TUNABLES_VALUE},
                     f"{libc} (GLIBC_TUNABLES={GLIBC_TUNABLES_VALUE}{why})", warning)


def describe_library(kind: str, path: Path | str) -> str:
    """``"jemalloc 5.3.0"`` (the version when the file tells it)."""
    version = library_version(path)
    return f"{kind} {version}" if version else kind


def allocator_env(environ: Mapping[str, str] | None = None,
                  dirs: Iterable[Path] | None = None) -> tuple[dict[str, str], str]:
    """The whole environment to start a process with, and the one-line description of its allocator.

    The environment is ``environ`` (default ``os.environ``) plus the allocator's variables and the
    :data:`MARKER` (so a ``darkroom`` started with it does not re-execute itself).
    """
    base = dict(os.environ if environ is None else environ)
    choice = choose(base, dirs)
    env = {**base, **choice.env, MARKER: choice.kind}
    return env, choice.description


def loaded_libraries() -> list[str]:
    """Paths of the jemalloc/tcmalloc libraries mapped into this process (from ``/proc/self/maps``)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    found: list[str] = []
    for line in maps.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and re.search(r"lib(jemalloc|tcmalloc)[^/]*\.so", parts[5]) and parts[5] not in found:
            found.append(parts[5])
    return found


def current() -> str:
    """What this process actually runs with, one line (what benchmarks record)."""
    for path in loaded_libraries():
        kind = "jemalloc" if "jemalloc" in path else "tcmalloc"
        conf = os.environ.get("MALLOC_CONF") if kind == "jemalloc" else os.environ.get("TCMALLOC_RELEASE_RATE")
        extra = f", {'MALLOC_CONF' if kind == 'jemalloc' else 'TCMALLOC_RELEASE_RATE'}={conf}" if conf else ""
        return f"{describe_library(kind, path)} (loaded: {path}{extra})"
    glibc = _glibc()
    libc = f"glibc {glibc} malloc" if glibc else "system malloc"
    tunables = os.environ.get("GLIBC_TUNABLES")
    return f"{libc} (GLIBC_TUNABLES={tunables})" if tunables else f"{libc} (defaults)"


def reexec() -> None:
    """Re-execute this Python process once with the chosen allocator's variables (``darkroom`` calls it first).

    Nothing happens when the marker is set (already configured, or a child of such a process), when there is
    nothing to set, inside pytest or IPython, or when the command line cannot be replayed (interactive, script on stdin).
    ``os.execve`` keeps the PID, so exit status and signals are those of the new image; argv and Python flags
    come from ``sys.orig_argv``.
    """
    if os.environ.get(MARKER) is not None or any(m in sys.modules for m in ("pytest", "IPython")):
        return  # configured already, or darkroom called from a test or notebook (not our command line)
    choice = choose()
    if choice.warning:
        print(f"darkroom: {choice.warning}", file=sys.stderr)
    os.environ[MARKER] = choice.kind  # decided: children (and a failed exec) do not try again
    if not choice.env:
        return
    orig = list(getattr(sys, "orig_argv", []))
    if len(orig) < 2 or sys.argv[:1] in ([""], ["-"]) or sys.flags.interactive or not sys.executable:
        return
    env = {**os.environ, **choice.env}
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    try:
        os.execve(sys.executable, [sys.executable, *orig[1:]], env)
    except OSError as err:  # keep running with the system allocator
        print(f"darkroom: could not re-execute with {choice.kind} ({err}); using the system allocator",
              file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("describe", "show"):
        choice = choose()
        if choice.warning:
            print(f"warning: {choice.warning}", file=sys.stderr)
        print(choice.description)
        return 0
    if args[0] == "env":
        choice = choose()
        for k, v in {**choice.env, MARKER: choice.kind}.items():
            print(f"export {k}={shlex.quote(v)}")
        return 0
    if args[0] == "exec":
        cmd = args[1:]
        if cmd[:1] == ["--"]:
            cmd = cmd[1:]
        if not cmd:
            print("usage: python -m experiments.allocator exec -- CMD [ARG...]", file=sys.stderr)
            return 2
        if os.environ.get(MARKER) is not None:
            env = dict(os.environ)
        else:
            choice = choose()
            if choice.warning:
                print(f"warning: {choice.warning}", file=sys.stderr)
            env, _ = allocator_env()
        os.execvpe(cmd[0], cmd, env)
    print(__doc__.split("\n\n")[-1].rstrip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
