"""The prepared GPU check (benchmarks/gpu_check.py, issue 13 item 6), tested without a GPU: its ``--dry-run`` (every
stage on tiny sizes, on the CPU) writes the JSON layout the GPU run writes, its parity skips with a reason where the
data is absent, and ``prepare`` builds and checks the payload."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
PAPERS = ("zero_dce", "zero_dce_pp", "deepfuse", "dped", "refusion")
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")


def _run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _explained(case: dict) -> bool:
    """A case is ok with its figure, or says why not (skipped: reason; error: the error)."""
    if case["status"] == "ok":
        return True
    return bool(case.get("reason") if case["status"] == "skipped" else case.get("error"))


@pytest.mark.slow
def test_dry_run_writes_every_case(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    done = _run("--dry-run", "--out", str(out), "--data", str(SHARED), "--zero-dce-recipe", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "gpu_check" and doc["mode"] == "dry-run" and doc["status"] == "complete"
    env = doc["environment"]
    assert env["device"] == "cpu" and env["torch"] and "tf32" in env and "versions" in env

    assert set(doc["fit"]) == set(PAPERS)
    for paper, rec in doc["fit"].items():
        assert rec["data"]["distinct_batches"] >= 1, paper
        for precision in PRECISIONS:
            case = rec[precision]  # eager fits must run: figures, and finite losses and parameters
            assert case["status"] == "ok", (paper, precision, case.get("error") or case.get("reason"))
            assert case["samples_per_s"] > 0 and case["steps_timed"] >= 1, (paper, precision)
            assert case["loss_finite_all_steps"] and case["params_finite"], (paper, precision)
            assert case["precision_plugin"].startswith(("Precision", "FP32EvalMixedPrecision")), case
            compiled = rec[f"{precision}+compile"]  # compiled: ok, skipped (not planned) or a recorded error
            assert _explained(compiled), (paper, precision, compiled)
            if compiled["status"] == "ok":
                assert compiled["samples_per_s"] > 0 and compiled["compile_backend"] == "aot_eager"
        assert rec["16-mixed"]["grad_scaler_scale"] > 0  # float16 with a GradScaler, also on the CPU
        assert rec["32-true+compile"]["status"] == "skipped"  # default plan: bf16-mixed only
    assert doc["fit"]["refusion"]["32-true"]["meta"]["iterations"] >= 1

    assert set(doc["inference"]) == set(PAPERS)
    for paper, rec in doc["inference"].items():
        assert rec["status"] == "ok" and "size_wxh" in rec and "paper_ms" in rec, paper
        assert rec["variants"]["network/32-true"]["status"] == "ok", paper
        for name, variant in rec["variants"].items():
            assert _explained(variant), (paper, name)
            if variant["status"] == "ok":
                assert 0 < variant["min_ms"] <= variant["median_ms"], (paper, name)

    assert set(doc["parity"]) == set(PAPERS)
    have_data = (SHARED / "SHA256SUMS").is_file()
    for paper, rec in doc["parity"].items():
        if have_data:
            assert rec["status"] == "pass", (paper, json.dumps(rec)[:2000])
            for case in rec["cases"].values():
                assert case["test"].startswith("tests/test_") and all(c["ok"] for c in
                                                                      case["modes"]["default"]["checks"].values())
        else:
            assert rec["status"] == "skipped" and "not found" in rec["reason"], (paper, rec)

    recipe = doc["recipe"]
    if (SHARED / "lowlight" / "train").is_dir():
        assert recipe["status"] == "ok" and recipe["params_finite"] and recipe["per_epoch"], recipe
    else:
        assert recipe["status"] == "skipped" and recipe["reason"], recipe


def test_parity_skips_with_a_reason_without_data(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    done = _run("--dry-run", "--out", str(out), "--data", str(tmp_path / "no_data"), "--stages", "parity")
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["payload"]["kind"] == "absent" and doc["payload"]["missing_parity_files"]
    assert set(doc["parity"]) == set(PAPERS)
    for paper, rec in doc["parity"].items():
        assert rec["status"] == "skipped", paper
        assert "data file not found" in rec["reason"] and "prepare" in rec["reason"], rec["reason"]
    assert doc["recipe"]["status"] == "skipped" and "not requested" in doc["recipe"]["reason"]
    assert "fit" not in doc and not doc["errors"]


def _fake_shared(root: Path, corrupt: str | None = None) -> Path:
    """A shared/data stand-in holding every file the payload copies (tiny contents) and their SHA256SUMS."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.pop(0)
    lines = []
    for rel in sorted({r for files in gpu_check.PARITY_FILES.values() for r in files}):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rel.encode())
        digest = hashlib.sha256(rel.encode()).hexdigest()
        lines.append(f"{'0' * 64 if rel == corrupt else digest}  {rel}")
    (root / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return root


def test_prepare_copies_checks_digests_and_counts_the_size(tmp_path: Path) -> None:
    shared = _fake_shared(tmp_path / "shared")
    payload = tmp_path / "payload"
    done = _run("prepare", "--shared", str(shared), "--payload", str(payload), "--no-wheels", timeout=120)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((payload / "MANIFEST.json").read_text())
    assert len(manifest["files"]) == 26
    assert (payload / "weights/zero_dce/Epoch99.pth").read_bytes() == b"weights/zero_dce/Epoch99.pth"
    assert "MiB of 64 MiB" in done.stdout

    bad = _fake_shared(tmp_path / "bad", corrupt="weights/dped/iphone_orig.index")
    done = _run("prepare", "--shared", str(bad), "--payload", str(tmp_path / "p2"), "--no-wheels", timeout=120)
    assert done.returncode == 2 and "differs from SHA256SUMS" in done.stderr
