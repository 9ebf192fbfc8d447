"""Every benchmark's ``--quick`` mode runs and writes the shared result layout (benchmarks/harness.py).

Each test runs one benchmark in a subprocess under the caching allocator (``python -m experiments.allocator exec
--``, as ``benchmarks/run_all.sh`` does) with ``--out`` in ``tmp_path``, and checks the JSON: ``environment`` with the
allocator and the thread count, the load before and after, and for every comparison the min and median ms of each
variant and the ratios to the named baseline (the network benchmarks: also the distance from the FLOP limit). The
figures themselves are not checked (quick sizes, a shared machine). Benchmarks that use ../shared/data fall back to
synthetic inputs and random weights; those that need NIQE's model file skip without it. All of them: about 5
minutes on 2 cores; by default only the light ones (about 1 minute; :data:`HEAVY`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, require_niqe_model

#: the heavier quick runs (each 15–100 s on 2 cores: several fresh processes, or whole Trainer.test loops) run
#: only with DARKROOM_BENCH_SMOKE=1 (as `benchmarks/run_all.sh --quick` runs all of them), to keep the suite short
HEAVY = {"zero_dce_speed", "zero_dce_pp_speed", "dped_speed", "refusion_speed", "niqe_speed", "test_speed"}
RUN_HEAVY = os.environ.get("DARKROOM_BENCH_SMOKE") == "1"

# id: (script, extra arguments, is a network benchmark (FLOP limits), needs NIQE's model file)
BENCHMARKS: dict[str, tuple[str, list[str], bool, bool]] = {
    "zero_dce_speed": ("zero_dce_speed.py", [], True, False),
    "zero_dce_pp_speed": ("zero_dce_speed.py", ["--variant", "zero_dce_pp"], True, False),
    "deepfuse_speed": ("deepfuse_speed.py", [], True, False),
    "dped_speed": ("dped_speed.py", [], True, False),
    "refusion_speed": ("refusion_speed.py", [], True, False),
    "mef_ssim_speed": ("mef_ssim_speed.py", [], False, False),
    "niqe_speed": ("niqe_speed.py", [], False, True),
    "fusion_metrics_speed": ("fusion_metrics_speed.py", [], False, False),
    "dped_alignment_speed": ("dped_alignment_speed.py", [], False, False),
    "test_speed": ("test_speed.py", [], False, True),  # Zero-DCE's unpaired test step computes NIQE
    "workflow_speed": ("workflow_speed.py", [], False, False),
    "predict_memory": ("predict_memory.py", [], False, False),
    "allocator_speed": ("allocator_speed.py", [], False, False),
}


def _env() -> dict[str, str]:
    return {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "NO_ALBUMENTATIONS_UPDATE": "1",
            "PYTHONUNBUFFERED": "1"}


def run_quick(script: str, args: list[str], out: Path) -> dict[str, Any]:
    """``benchmarks/<script> --quick <args> --out <out>`` under the caching allocator; the JSON it wrote."""
    cmd = [sys.executable, "-m", "experiments.allocator", "exec", "--", sys.executable,
           str(REPO / "benchmarks" / script), "--quick", *args, "--out", str(out)]
    done = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, f"{script} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    assert out.is_file(), f"{script} wrote no {out}:\n{done.stdout[-2000:]}"
    return json.loads(out.read_text())


def _is_load(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 3 and all(isinstance(v, (int, float)) for v in value)


def check_layout(data: dict[str, Any], name: str, network: bool) -> None:
    """The harness layout (benchmarks/harness.py docstring) with figures in every comparison."""
    assert data["benchmark"] == ("zero_dce_speed" if name == "zero_dce_pp_speed" else name)
    env = data["environment"]
    assert isinstance(env["allocator"], str) and env["allocator"]
    assert isinstance(env["threads"], int) and env["threads"] >= 1
    assert _is_load(data["load"]["before"]) and _is_load(data["load"]["after"])
    assert data["quick"] is True
    comparisons = data["comparisons"]
    assert comparisons, "no comparison"
    for key, group in comparisons.items():
        results, ratios, base = group["results"], group["ratios"], group["baseline"]
        assert results and base in results, (key, base, list(results))
        assert set(ratios) == set(results), key
        for variant, r in results.items():
            assert 0 < r["min_ms"] <= r["median_ms"], (key, variant, r)
            assert r["runs_ms"], (key, variant)
            assert ratios[variant]["min"] > 0 and ratios[variant]["median"] > 0, (key, variant)
        assert ratios[base] == {"min": 1.0, "median": 1.0}, key
        if network:
            limits = [r["flop_limit"] for r in results.values() if "flop_limit" in r]
            assert limits, f"{key}: no FLOP limit"
            for lim in limits:
                assert lim["gflop"] > 0 and lim["peak_gflops"] > 0 and lim["limit_ms"] > 0 and lim["ratio"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_quick_mode_writes_the_harness_layout(name: str, tmp_path: Path) -> None:
    if name in HEAVY and not RUN_HEAVY:
        pytest.skip(f"{name}: heavy quick run; DARKROOM_BENCH_SMOKE=1 or `benchmarks/run_all.sh --quick` runs it")
    script, args, network, needs_niqe = BENCHMARKS[name]
    if needs_niqe:
        require_niqe_model()
    data = run_quick(script, args, tmp_path / f"{name}.json")
    check_layout(data, name, network)
    if name == "dped_speed":
        assert 0 < data["loader"]["min_ms"] <= data["loader"]["median_ms"]
    if name == "zero_dce_pp_speed":  # the Zero-DCE++ test setting, even in --quick
        assert data["settings"]["infer_hw"] == [900, 1200]
        assert "scale_factor 12" in data["comparisons"]["inference"]["what"]
    if name == "zero_dce_speed":  # no torch.compile in --quick; each precision × layout in one interleave
        assert set(data["comparisons"]["inference"]["results"]) == {
            "32-true", "32-true+channels_last", "bf16-mixed", "bf16-mixed+channels_last"}
        bf16 = data["comparisons"]["inference"]["results"]["bf16-mixed"]["flop_limit"]
        assert bf16["dtype"] == "torch.bfloat16"


def test_run_all_refuses_a_busy_machine(tmp_path: Path) -> None:
    """One line on stderr and exit 1 when the 1-minute load is above the limit; nothing runs."""
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "run_all.sh")], cwd=tmp_path,
                          env={**_env(), "MAX_LOAD": "-1"}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and "--force" in done.stderr
    assert "==" not in done.stdout


def test_run_all_rejects_an_unknown_name() -> None:
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "run_all.sh"), "--quick", "--only", "nope"],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "zero_dce_speed" in done.stderr
