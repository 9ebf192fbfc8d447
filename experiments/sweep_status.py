"""``sweep_status.json``: one record per local sweep run, merged by run name under the sweep's mutex and written
atomically, so runners sharing a sweep keep each other's records."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from datamodules.atomic_files import atomic_write_text
from experiments.sweep_locks import _mutex


@dataclass
class RunRecord:
    """One local sweep run: its parameters, where it lives, and how it ended."""

    name: str
    params: dict
    run_dir: str
    # finished | failed | skipped (already finished) | running | running elsewhere | interrupted | pending
    status: str = "pending"
    returncode: int | None = None
    wall_seconds: float | None = None
    fit_seconds: float | None = None
    error: str | None = None
    metrics: dict = field(default_factory=dict)
    log: str | None = None
    note: str | None = None  # resumed from step N, took over a stale lock, who runs it elsewhere


_OWN_STATUSES = ("running", "finished", "failed", "interrupted")  # the run's own runner writes these


def _write_status(path: Path, records: list[RunRecord], order: list[str]) -> None:
    """Merge ``records`` into ``sweep_status.json`` by run name (keeping other runners' entries), atomically."""
    with _mutex(path.parent / "locks"):
        try:
            old = [e for e in json.loads(path.read_text()) if isinstance(e, dict) and "name" in e]
        except (OSError, ValueError, TypeError):
            old = []
        entries = {e["name"]: e for e in old}
        for rec in records:
            prev = entries.get(rec.name)
            if (prev is None or rec.status in _OWN_STATUSES
                    or (rec.status == "skipped" and prev.get("status") not in ("finished", "skipped"))):
                entries[rec.name] = asdict(rec)
        names = [n for n in dict.fromkeys(order) if n in entries]  # this sweep's order, then any others
        seen = set(names)
        names += [e["name"] for e in old if e["name"] not in seen]
        atomic_write_text(path, json.dumps([entries[n] for n in names], indent=2))


def read_status(path: Path) -> list[RunRecord]:
    """The records of ``sweep_status.json`` (every runner's), in the sweep's order; ``[]`` when there is none yet."""
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    fields = set(RunRecord.__dataclass_fields__)
    return [RunRecord(**{k: v for k, v in e.items() if k in fields}) for e in entries
            if isinstance(e, dict) and "name" in e]
