"""The GPU check's data: ``prepare`` (builds the git-ignored ``gpu_payload/`` from shared/data, digests checked,
64 MiB limit), which data root a run reads, and the payload block of the report."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.gpu.common import (
    LIMIT_BYTES,
    PARITY_FILES,
    PAYLOAD,
    ROOT,
    TRAIN_256,
    WHEEL_PACKAGES,
    WHEELS,
    _say,
)

if TYPE_CHECKING:
    from benchmarks.gpu.run import Run


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _tree_bytes() -> int | None:
    """Bytes of the working tree the device tool sends (tracked + untracked-not-ignored files); None without git."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    total = 0
    for rel in out.decode().split("\0"):
        p = ROOT / rel
        if rel and p.is_file():
            total += p.stat().st_size
    return total


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def prepare(argv: list[str]) -> int:
    """``prepare``: copy what the parity needs from shared/data into ``gpu_payload/`` (digests checked against
    ``SHA256SUMS``), optionally the Zero-DCE training images at 256² JPEG, and kornia's wheels; refuse above 64 MiB."""
    p = argparse.ArgumentParser(prog="gpu_check.py prepare", description=prepare.__doc__)
    p.add_argument("--shared", type=Path,
                   default=Path(os.environ.get("DARKROOM_SHARED_DATA", ROOT.parent / "shared" / "data")))
    p.add_argument("--payload", type=Path, default=PAYLOAD)
    p.add_argument("--train-images", action="store_true",
                   help="also the 2002 Zero-DCE training images, Pillow LANCZOS to 256×256 (the official loader's "
                        "resize), JPEG (for --zero-dce-recipe)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality of the re-encoded training images (90)")
    p.add_argument("--no-wheels", action="store_true", help="do not download kornia's wheels (pip, PyPI)")
    p.add_argument("--python-version", default="3.12", help="the GPU machine's Python (3.12)")
    args = p.parse_args(argv)
    shared, out = args.shared, args.payload
    if not (shared / "SHA256SUMS").is_file():
        print(f"gpu_check prepare: shared data not found: {shared}/SHA256SUMS", file=sys.stderr)
        return 2
    sums = {}
    for line in (shared / "SHA256SUMS").read_text().splitlines():
        if line.strip():
            digest, rel = line.split(maxsplit=1)
            sums[rel.strip().lstrip("*").removeprefix("./")] = digest
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    manifest: dict[str, Any] = {"source": str(shared), "files": {}, "note": "research-only files from shared/data "
                                "(see its README); never commit them", "made": time.strftime("%Y-%m-%dT%H:%M:%S")}
    wanted = sorted({rel for files in PARITY_FILES.values() for rel in files})
    for rel in wanted:
        src = shared / rel
        if not src.is_file():
            print(f"gpu_check prepare: missing {src}", file=sys.stderr)
            return 2
        digest = _sha256(src)
        if rel in sums and sums[rel] != digest:
            print(f"gpu_check prepare: {src}: SHA-256 {digest} differs from SHA256SUMS {sums[rel]}", file=sys.stderr)
            return 2
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        manifest["files"][rel] = digest
    if args.train_images:
        from PIL import Image

        src_dir = shared / "lowlight" / "train"
        files = sorted(src_dir.glob("*.jpg"))
        if not files:
            print(f"gpu_check prepare: no training images in {src_dir}", file=sys.stderr)
            return 2
        dst_dir = out / TRAIN_256
        dst_dir.mkdir()
        for f in files:
            with Image.open(f) as im:
                im.convert("RGB").resize((256, 256), Image.LANCZOS).save(dst_dir / f.name, "JPEG",
                                                                         quality=args.quality)
        manifest["train_images"] = {"folder": TRAIN_256, "count": len(files), "from": str(src_dir),
                                    "resize": "Pillow LANCZOS 512→256 (the official loader's resize)",
                                    "jpeg_quality": args.quality}
    if not args.no_wheels:
        from importlib.metadata import PackageNotFoundError, version

        try:
            pins = [f"{name}=={version(name)}" for name in WHEEL_PACKAGES]
        except PackageNotFoundError as err:
            print(f"gpu_check prepare: {err.name} is not installed here; cannot pin its wheel", file=sys.stderr)
            return 2
        plats = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                 "manylinux1_x86_64"]
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
               args.python_version, "--implementation", "cp", *[a for pl in plats for a in ("--platform", pl)],
               "-d", str(out / WHEELS), *pins]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"gpu_check prepare: pip download failed ({' '.join(pins)}):\n{done.stderr[-2000:]}",
                  file=sys.stderr)
            return 2
        manifest["wheels"] = sorted(p.name for p in (out / WHEELS).glob("*.whl"))
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    payload = _folder_bytes(out)
    tree = _tree_bytes()
    total = payload + (tree or 0)
    mib = 2**20
    print(f"gpu_payload: {payload / mib:.1f} MiB in {out} ({len(manifest['files'])} parity files"
          + (f", {manifest['train_images']['count']} training images" if args.train_images else "")
          + (f", wheels {', '.join(manifest.get('wheels', []))}" if not args.no_wheels else "") + ")")
    print(f"working tree that travels: {(tree or 0) / mib:.1f} MiB" + (" (git not found: not counted)" if tree is None
                                                                       else "") + f"; total {total / mib:.1f} MiB "
          f"of {LIMIT_BYTES // mib} MiB")
    if total > LIMIT_BYTES:
        shutil.rmtree(out)
        print(f"gpu_check prepare: refused: {total / mib:.1f} MiB > {LIMIT_BYTES // mib} MiB "
              "(drop --train-images or lower --quality); gpu_payload/ removed", file=sys.stderr)
        return 3
    return 0


def _data_root(arg: Path | None) -> Path:
    if arg is not None:
        return arg
    if (PAYLOAD / "MANIFEST.json").is_file():
        return PAYLOAD
    return Path(os.environ.get("DARKROOM_SHARED_DATA", ROOT.parent / "shared" / "data"))


def payload_record(run: Run) -> dict[str, Any]:
    """Which data root is used, whether the payload's files are there and match their digests."""
    rec: dict[str, Any] = {"root": str(run.data), "exists": run.data.is_dir()}
    manifest = run.data / "MANIFEST.json"
    if manifest.is_file():
        files = json.loads(manifest.read_text()).get("files", {})
        bad = [rel for rel, digest in files.items()
               if not (run.data / rel).is_file() or _sha256(run.data / rel) != digest]
        rec.update({"kind": "gpu_payload", "files": len(files), "sha256_mismatch_or_missing": bad,
                    "train_images": (run.data / TRAIN_256).is_dir()})
    else:
        rec["kind"] = "shared data" if (run.data / "SHA256SUMS").is_file() else "absent"
    rec["missing_parity_files"] = sorted({rel for files in PARITY_FILES.values() for rel in files
                                          if not (run.data / rel).is_file()})
    if rec["missing_parity_files"]:
        _say(f"data root {run.data}: {len(rec['missing_parity_files'])} parity files missing → those parity cases "
             "are skipped (python benchmarks/gpu_check.py prepare, and carry gpu_payload)")
    return rec
