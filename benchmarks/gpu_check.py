"""The prepared GPU check (issue 13, item 6): every paper's training, inference and official-weights parity on one
CUDA device, in one short run, written to one JSON.

    python benchmarks/gpu_check.py prepare [--train-images]     # here: build gpu_payload/ from ../shared/data
    benchmarks/gpu_check.sh --out $OUT/gpu_check.json            # on the GPU machine (carry gpu_payload)
    python benchmarks/gpu_check.py --dry-run --out /tmp/x.json   # here: every step on tiny sizes, on the CPU

**Needs** a Python with torch (a CUDA build for the real run), lightning, torchmetrics, kornia (+ kornia_rs), numpy,
opencv (cv2), scikit-image, scipy, pillow, pyyaml and tifffile, plus pytest (the parity reuses the helpers of the
parity tests). Nothing is installed by this script: where an import fails it prints one line naming the missing
modules and exits with status 2. The GPU machine's image has all of them except kornia; ``prepare`` puts kornia's
wheels into ``gpu_payload/wheels`` and ``benchmarks/gpu_check.sh`` installs them offline (``--no-index``) when
``import kornia`` fails. wandb, jsonargparse and albumentations are not needed (no CLI, no logger).

**Stages** (in this order; a failing case is recorded in the JSON and the next one runs):

1. ``parity``: the official weights on the device reproduce the official reference outputs, to the tolerances of the
   CPU parity tests (``tests/test_*_network.py``; their loaders and input helpers are imported, not re-written):
   Zero-DCE and Zero-DCE++ on LIME/6 (max |Δ| ≤ 1e-4, PNG mismatch ≤ 1e-4, curve-map range ± 1e-5), DeepFuse on
   forth4 (≤ 1 grey level, > 99.9 % exact; the dry run checks the 128² interior crop instead of the slow full
   image), DPED iPhone on the 100×100 crop (≤ 1e-4), ReFusion on TNO_05, MRI_PET_14 and MFIF_5 (≤ 1 grey
   level, ≥ 99.9 % exact; the dry run: TNO_05 only). On CUDA each case runs twice: ``default`` (PyTorch's defaults, under which
   cuDNN convolutions may use TF32) and ``fp32_strict`` (TF32 off for cuDNN and matmul). Files come from
   ``--data`` (default: ``gpu_payload/`` if present, else ``$DARKROOM_SHARED_DATA`` or ``../shared/data``); a
   missing file makes the case ``skipped`` with the path in the reason.
2. ``inference``: ms per image at each paper's runtime size, fp32 / bf16 autocast / fp16 autocast, the variants
   interleaved (``harness.interleave``: rotated order, CUDA synchronised, min and median): Zero-DCE and
   Zero-DCE++ 1200×900 (paper: 2.5 ms and 1.2 ms on a 2080 Ti, [CVPR Table 3], [TPAMI Table 7]), DeepFuse a
   512×384 exposure pair (the paper's runtime: not found; issue 13 quotes 70 ms, unverified),
   DPED 1280×720 (no GPU figure in the paper), ReFusion 640×480 grey pair (none). ``network`` times the bare
   network, ``module`` the LightningModule's forward (the whole inference path: curves, colour, normalisation).
   Official weights where the payload has them (``weights`` says which), else the default init (same cost).
   Each variant's first call also checks that its output is finite (``output_finite``; a non-finite output is
   listed in ``errors``).
3. ``fit``: 200 optimiser steps (``global_step``) of each paper's LightningModule through ``lightning.Trainer`` in
   ``32-true``, ``bf16-mixed`` and ``16-mixed`` (mixed: ``experiments.precision.FP32EvalMixedPrecision``, the
   plugin ``darkroom fit`` uses), with the recipe's model settings read from ``experiments/<paper>/*.yaml`` and its
   training patch size and batch size. Data: the paper's DataModule on synthetic files in the real layout
   (``datamodules.synthetic``, as ``darkroom demo``), drawn once into 4 batches that are then cycled from memory
   (pinned), so samples/s measures the training step (+ host-to-device copy), not image decoding. Figures:
   samples/s over the steps after the first 20 (warm-up and compilation excluded), peak
   ``torch.cuda.max_memory_allocated``, the loss finite at every step (checked on the device, read once at the end),
   parameters finite at the end, the GradScaler's last scale (16-mixed). ReFusion runs its meta phase first
   (5 meta iterations, timed apart) and then 200 fusion steps; DPED uses a randomly initialised VGG-19 for the
   content term (VGG-19 weights do not travel; same cost). Logger, checkpointing, progress bar and validation off.
4. ``compile``: the same fits with the networks compiled in place (``nn.Module.compile``, inductor, default mode;
   the losses stay eager). **Decision:** only ``bf16-mixed`` is compiled by default (``--compile-precisions``):
   inductor takes ~30–120 s per network and precision on 16 cores, so 15 compiled fits would not fit 8 minutes,
   and bf16-mixed is the precision a run on this GPU would use. The other two are recorded as ``skipped`` with that
   reason. Each compiled case runs only if the time left (``--budget``) covers its estimate, under an alarm. When
   ReFusion's compiled fit fails in its meta phase, ``<case>:meta-off`` retries it with ``meta=False`` (the
   fixed-loss ablation), so the compiled fusion step is still measured.
5. ``recipe`` (optional, ``--zero-dce-recipe EPOCHS``): the Zero-DCE reproduction recipe of issue 15 (256², batch
   8, Adam 1e-4, weight decay 1e-4, grad-norm clip 0.1, ``experiments/zero_dce/paper.yaml``) on the 2002 training
   images (``gpu_payload/lowlight_train_256`` from ``prepare --train-images``, or ``lowlight/train``); per-epoch
   mean loss, samples/s, and the trained network's output on LIME/6 against the official weights' reference
   output (PSNR). Not bounded by ``--budget`` (``--recipe-max-s`` bounds it; ``--stages`` with no stage runs the
   recipe alone).

``--dry-run`` runs every stage on the CPU on tiny sizes, one torch thread (2 steps, the first one warm-up; 32×32
crops, DeepFuse 24², ReFusion 16²; batch 2, ReFusion 1; DPED with a tiny generator, 32² patches and the per-pixel
content term; compile with the ``aot_eager`` backend, which traces with dynamo and AOTAutograd without generating
code), in about a minute. 16-mixed runs there too: the plugin is given
directly (as ``darkroom fit`` does), which keeps float16 autocast and a GradScaler on the CPU (a plain
``Trainer(precision="16-mixed")`` would switch to bf16 on a CPU).

**Output** (``--out``, default ``benchmarks/results/gpu/gpu_check.json``; ``gpu_check.dry-run.json`` for a dry
run), rewritten after every case so that a run stopped early keeps what it measured (SIGTERM, as sent by
``gpu_check.sh``'s timeout, ends the run with ``"status": "interrupted after … s"``)::

    {"benchmark": "gpu_check", "mode": "gpu" | "dry-run", "status": "running" | "complete" | "interrupted …",
     "environment": {harness.environment(...) + gpu, driver, cuda, cudnn, tf32 flags, versions},
     "payload": {...}, "decisions": {...}, "budget": {...},
     "parity":    {paper: {"status", "cases": {name: {"test": "tests/…::…", "status",
                                                   "modes": {"default" | "fp32_strict": {"status", "checks":
                                                             {check: {"value", "limit", "ok"}}}}}}}},
     "inference": {paper: {"size_wxh", "paper_ms", "paper_device", "source", "weights", "input", "gflop",
                           "variants": {"network/32-true": {"status", "output_finite", "min_ms", "median_ms",
                                                            "runs_ms"}, "module/bf16-mixed": …, …}}},
     "fit":       {paper: {"data": {...}, "32-true": case, "bf16-mixed": case, "16-mixed": case,
                           "32-true+compile": case, "bf16-mixed+compile": case, "16-mixed+compile": case}},
     "recipe":    {"status", "per_epoch", "samples_per_s", "vs_official_LIME_6", …},
     "errors":    ["<case>: <error> (at <file:line in the project>)", …]}

with a fit ``case`` = ``{"status": "ok" | "error" | "skipped", "reason" | "error" + "where" + "traceback" +
"context", "samples_per_s", "steps_timed", "step_ms_mean", "warmup_s", "peak_gib", "loss_finite_all_steps",
"nonfinite_steps", "params_finite", "grad_scaler_scale", "meta" (ReFusion), "graph_breaks" (compiled), …}``.

**Time** (H200, 16 cores; estimated, not measured): parity ~15 s, inference ~20 s, synthetic data ~20 s, 15 eager
fits ~2 min, 5 compiled fits ~3–4 min (the estimate per paper is in ``COMPILE_ESTIMATE_S``), i.e. ~6–7 min
under the default ``--budget 450`` s; ``gpu_check.sh`` stops the whole run at 540 s.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import importlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PAPERS = ("zero_dce", "zero_dce_pp", "deepfuse", "dped", "refusion")
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
PAYLOAD = ROOT / "gpu_payload"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "gpu" / "gpu_check.json"
DRY_OUT = ROOT / "benchmarks" / "results" / "gpu" / "gpu_check.dry-run.json"
LIMIT_BYTES = 64 * 2**20  # what the device tool carries: working tree + carried paths
#: modules the run imports (import name → what to install)
REQUIRED = {"torch": "torch (CUDA build)", "lightning": "lightning", "torchmetrics": "torchmetrics",
            "kornia": "kornia + kornia_rs", "numpy": "numpy", "cv2": "opencv-python-headless",
            "skimage": "scikit-image", "scipy": "scipy", "PIL": "pillow", "yaml": "pyyaml",
            "tifffile": "tifffile", "pytest": "pytest"}
#: the recipe configs the fits read their model settings, patch and batch sizes from
RECIPES = {"zero_dce": "experiments/zero_dce/paper.yaml", "zero_dce_pp": "experiments/zero_dce/paper_pp.yaml",
           "deepfuse": "experiments/deepfuse/paper.yaml", "dped": "experiments/dped/iphone.yaml",
           "refusion": "experiments/refusion/mfif.yaml"}
#: the networks compiled in place for the compile cases (the losses stay eager; DPED's VGG-19 too, see _compile)
COMPILED = {"zero_dce": ("net",), "zero_dce_pp": ("net",), "deepfuse": ("net",),
            "dped": ("generator", "discriminator"), "refusion": ("fusion", "loss_proposal", "reconstruction")}
#: estimated wall time of one compiled 200-step fit on the H200 (compile included): a case runs only if this is left
COMPILE_ESTIMATE_S = {"zero_dce": 60, "zero_dce_pp": 60, "deepfuse": 45, "dped": 90, "refusion": 150}
#: inference sizes (W, H), paper figures
RUNTIME = {
    "zero_dce": {"size": (1200, 900), "paper_ms": 2.5, "paper_device": "RTX 2080 Ti", "source": "[CVPR Table 3]"},
    "zero_dce_pp": {"size": (1200, 900), "paper_ms": 1.2, "paper_device": "RTX 2080 Ti",
                    "source": "[TPAMI Table 7] (scale factor 12)"},
    "deepfuse": {"size": (512, 384), "paper_ms": None, "paper_device": None,
                 "source": "not found (../shared/papers/deepfuse.md: runtime not found; issue 13's text quotes "
                           "70 ms, unverified, so not used)"},
    "dped": {"size": (1280, 720), "paper_ms": None, "paper_device": None,
             "source": "no GPU figure (experiments/dped/results.yaml: ~20 s per HD image on a CPU)"},
    "refusion": {"size": (640, 480), "paper_ms": None, "paper_device": None,
                 "source": "no runtime figure recorded (MSRS size, as benchmarks/refusion_speed.py)"},
}
DRY_RUNTIME_SIZE = {"zero_dce": (48, 36), "zero_dce_pp": (48, 36), "deepfuse": (32, 24), "dped": (32, 24),
                    "refusion": (32, 24)}

# ---------------------------------------------------------------------------------------------- payload files
#: what the parity needs, as paths under shared/data (the payload mirrors that layout)
PARITY_FILES = {
    "zero_dce": ["weights/zero_dce/Epoch99.pth", "lowlight/test/LIME/6.bmp",
                 "reference/zero_dce/LIME/6_float32.npz", "reference/zero_dce/LIME/6.png"],
    "zero_dce_pp": ["weights/zero_dce_pp/Epoch99.pth", "lowlight/test/LIME/6.bmp",
                    "reference/zero_dce_pp_sf12/LIME/6_float32.npz", "reference/zero_dce_pp_sf12/LIME/6.png"],
    "deepfuse": ["weights/deepfuse/DF_model_Epoch99.npz",
                 "exposure_stacks_official_deepfuse/input_test_pairs/forth4.png",
                 "reference/deepfuse_official/forth4.png"],
    "dped": ["weights/dped/iphone_orig.index", "weights/dped/iphone_orig.data-00000-of-00001",
             "reference/dped_official/A_venice_normal_r40_c170_100x100_input.png",
             "reference/dped_official/A_venice_normal_r40_c170_100x100_output.npz"],
    "refusion": [f"weights/refusion/ReFusion_{t}.pth" for t in ("IVIF", "MIF", "MFIF")]
    + ["fusion/ir_vis/TNO_05_ir.png", "fusion/ir_vis/TNO_05_vi.png", "fusion/medical/MRI_PET_14_pet.png",
       "fusion/medical/MRI_PET_14_mri.png", "fusion/multi_focus/MFIF_5_near.jpg", "fusion/multi_focus/MFIF_5_far.jpg"]
    + [f"reference/refusion_official/{p}_refusion.png" for p in ("TNO_05", "MRI_PET_14", "MFIF_5")],
}
TRAIN_256 = "lowlight_train_256"  # payload folder of the re-encoded Zero-DCE training images
WHEELS = "wheels"
WHEEL_PACKAGES = ("kornia", "kornia_rs")  # not in the GPU machine's image (its other packages are)


def _say(msg: str) -> None:
    print(f"[gpu_check] {msg}", file=sys.stderr, flush=True)


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


# ---------------------------------------------------------------------------------------------- the run
def check_modules() -> None:
    """Import what the run needs; on failure print one line naming the missing modules and exit 2."""
    missing = []
    for name, what in REQUIRED.items():
        try:
            importlib.import_module(name)
        except Exception as err:  # ImportError, or an extension that fails to load
            missing.append(f"{what} ({type(err).__name__}: {err})")
    if missing:
        print("gpu_check: missing Python modules: " + "; ".join(missing) + " — needs an environment with torch "
              "(CUDA build), lightning, torchmetrics, kornia, numpy, opencv, scikit-image, scipy, pillow, pyyaml, "
              "tifffile and pytest; benchmarks/gpu_check.sh installs kornia from gpu_payload/wheels", file=sys.stderr)
        raise SystemExit(2)


class CaseTimeout(Exception):
    """A case ran past its share of the time budget (SIGALRM)."""


@contextlib.contextmanager
def alarm(seconds: float | None) -> Iterator[None]:
    """Raise :class:`CaseTimeout` in the main thread after ``seconds`` (None/≤0: no alarm)."""
    if not seconds or seconds <= 0 or not hasattr(signal, "setitimer"):
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise CaseTimeout(f"ran past its {seconds:.0f} s share of the time budget")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _error(err: BaseException) -> dict[str, Any]:
    """``{"error": first line, "where": the innermost frame in the project's code, "traceback": its tail}``."""
    frames = traceback.extract_tb(err.__traceback__)
    ours = [f for f in frames if f.filename.startswith(str(ROOT)) and "/.venv/" not in f.filename
            and not f.filename.endswith("gpu_check.py")]
    where = ours[-1] if ours else (frames[-1] if frames else None)
    place = None
    if where is not None:
        name = where.filename[len(str(ROOT)) + 1:] if where.filename.startswith(str(ROOT)) else where.filename
        place = f"{name}:{where.lineno} in {where.name}"
    out: dict[str, Any] = {"error": f"{type(err).__name__}: {err}"[:1500], "where": place,
                           "traceback": "".join(traceback.format_exception(type(err), err, err.__traceback__))[-4000:]}
    context = getattr(err, "gpu_check_context", None)
    if context:
        out["context"] = context
    return out


class Run:
    """State of one run: the JSON document, the clock, the device."""

    def __init__(self, args: argparse.Namespace) -> None:
        import torch

        self.args = args
        self.dry = args.dry_run
        self.t0 = time.perf_counter()
        self.device = torch.device("cpu" if self.dry or not torch.cuda.is_available() else "cuda")
        self.out: Path = args.out or (DRY_OUT if self.dry else DEFAULT_OUT)
        self.data = _data_root(args.data)
        self.work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
        self.broken: str | None = None  # set when the CUDA context fails: later cases are skipped
        self.doc: dict[str, Any] = {"benchmark": "gpu_check", "mode": "dry-run" if self.dry else "gpu",
                                    "status": "running", "args": {k: (str(v) if isinstance(v, Path) else v)
                                                                  for k, v in vars(args).items()},
                                    "errors": []}

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    @property
    def left(self) -> float:
        return self.args.budget - self.elapsed

    def save(self) -> None:
        self.doc["budget"] = {"budget_s": self.args.budget, "elapsed_s": round(self.elapsed, 1)}
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_name(self.out.name + ".tmp")
        tmp.write_text(json.dumps(self.doc, indent=2, default=str) + "\n")
        os.replace(tmp, self.out)

    def record_error(self, case: str, err: BaseException) -> dict[str, Any]:
        info = _error(err)
        line = info["error"].splitlines()[0] if info["error"] else type(err).__name__
        self.doc["errors"].append(f"{case}: {line} (at {info['where']})")
        _say(f"{case}: ERROR {line} (at {info['where']})")
        self._check_device()
        return {"status": "error", **info}

    def _check_device(self) -> None:
        """After an error on CUDA: is the context still usable? If not, skip everything that follows."""
        if self.device.type != "cuda" or self.broken:
            return
        import torch

        try:
            torch.zeros(1, device=self.device).add_(1).item()
            torch.cuda.synchronize()
        except Exception as err:  # a sticky CUDA error (illegal address, …) poisons the process
            self.broken = f"the CUDA context failed after an earlier error ({type(err).__name__}: {err})"

    def skip_reason(self, estimate_s: float = 0.0) -> str | None:
        if self.broken:
            return self.broken
        if self.left < estimate_s or self.left <= 0:
            return (f"time budget: {max(self.left, 0):.0f} s left of --budget {self.args.budget:.0f} s, "
                    f"this case needs ~{estimate_s:.0f} s")
        return None


def _data_root(arg: Path | None) -> Path:
    if arg is not None:
        return arg
    if (PAYLOAD / "MANIFEST.json").is_file():
        return PAYLOAD
    return Path(os.environ.get("DARKROOM_SHARED_DATA", ROOT.parent / "shared" / "data"))


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "lightning", "torchmetrics", "kornia", "numpy", "opencv-python-headless", "scikit-image",
                 "triton"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def environment(run: Run) -> dict[str, Any]:
    import torch

    from benchmarks import harness

    env = harness.environment(run.device)
    env["versions"] = _versions()
    env["cuda"] = torch.version.cuda
    env["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    env["tf32"] = {"cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
                   "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                   "float32_matmul_precision": torch.get_float32_matmul_precision(),
                   "cudnn.benchmark": torch.backends.cudnn.benchmark}
    if run.device.type == "cuda":
        prop = torch.cuda.get_device_properties(run.device)
        env["gpu"] = {"name": prop.name, "capability": f"{prop.major}.{prop.minor}",
                      "memory_gib": round(prop.total_memory / 2**30, 1), "multiprocessors": prop.multi_processor_count}
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
            env["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
            env["driver"] = smi.stdout.split(",")[1].strip() if smi.returncode == 0 and "," in smi.stdout else None
        except (OSError, subprocess.SubprocessError) as err:
            env["nvidia_smi"], env["driver"] = f"not available: {err}", None
    try:
        env["git"] = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                                    text=True, timeout=30).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        env["git"] = None
    return env


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


# ---------------------------------------------------------------------------------------------- parity
class Missing(Exception):
    """A data file the case needs is not there."""


@contextlib.contextmanager
def tf32(enabled: bool | None) -> Iterator[None]:
    """``None``: PyTorch's settings as they are; True/False: TF32 for cuDNN and matmul on/off inside."""
    import torch

    if enabled is None:
        yield
        return
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def _check(value: float, limit: float, op: str = "<=") -> dict[str, Any]:
    ok = value <= limit if op == "<=" else value >= limit if op == ">=" else value > limit
    return {"value": value, "limit": f"{op} {limit:g}", "ok": bool(ok)}


def _tests_on_path() -> None:
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)


def parity_zero_dce(shared: Callable[[str], Path], device: Any, pp: bool) -> dict[str, Any]:
    """tests/test_zero_dce_networks.py::test_official_zero_dce(_pp_sf12)_matches_reference_output on ``device``."""
    import numpy as np
    import test_zero_dce_networks as t
    import torch
    from PIL import Image

    from datamodules.image_io import load_tensor, quantize
    from lightning_modules.zero_dce import crop_to_multiple, load_official_weights

    if pp:
        net, ref_dir, a_checks = (load_official_weights(shared(t.ZERO_DCE_PP), "zero_dce_pp", scale_factor=12),
                                  "reference/zero_dce_pp_sf12/LIME", {"A_min": -0.334226})
        x = crop_to_multiple(load_tensor(shared(t.LIME6))[None], 12)
    else:
        net, ref_dir, a_checks = (load_official_weights(shared(t.ZERO_DCE)), "reference/zero_dce/LIME",
                                  {"A_min": -0.331955, "A_max": -0.070920})
        x = load_tensor(shared(t.LIME6))[None]
    net = net.to(device).eval()
    with torch.no_grad():
        y, a = net(x.to(device))
    ref = np.load(shared(f"{ref_dir}/6_float32.npz"))["enhanced"]
    out = y[0].permute(1, 2, 0).float().cpu().numpy()
    if out.shape != ref.shape:
        raise AssertionError(f"output {out.shape} vs reference {ref.shape}")
    png = np.asarray(Image.open(shared(f"{ref_dir}/6.png")).convert("RGB"))
    checks = {"max_abs_diff": _check(float(np.abs(out - ref).max()), 1e-4),
              "png_mismatch_fraction": _check(float((quantize(y[0].cpu()) != png).mean()), 1e-4)}
    for name, want in a_checks.items():
        got = float(a.min() if name == "A_min" else a.max())
        checks[f"{name}_abs_error"] = _check(abs(got - want), 1e-5)
    return checks


def parity_deepfuse(shared: Callable[[str], Path], device: Any, full: bool) -> dict[str, Any]:
    """tests/test_deepfuse_network.py::test_official_weights_reproduce_reference_full (or _crop) on ``device``."""
    import numpy as np
    import test_deepfuse_network as t
    import torch

    from lightning_modules.deepfuse import load_official_deepfuse

    x, ref = t._official_pair(shared)
    if full:
        net = load_official_deepfuse(shared(t.WEIGHTS)).to(device).eval()
        with torch.inference_mode():
            fused = net(x.to(device) / 255.0)[0, 0].float().cpu().numpy()
        if fused.shape != ref.shape:
            raise AssertionError(f"output {fused.shape} vs reference {ref.shape}")
        diff = np.abs(t._bytescale(fused) - ref)
        return {"max_grey_level_diff": _check(float(diff.max()), 1),
                "exact_fraction": _check(float((diff == 0).mean()), 0.999, ">")}
    net = load_official_deepfuse(shared(t.WEIGHTS), normalize_output=False).to(device).eval()
    r0, c0, size, rf = 300, 500, 128, t.RF
    crop = x[..., r0 - rf: r0 + size + rf, c0 - rf: c0 + size + rf] / 255.0
    with torch.inference_mode():
        raw = net(crop.to(device))[0, 0, rf:-rf, rf:-rf].double().cpu().numpy().ravel()
    target = ref[r0: r0 + size, c0: c0 + size].ravel()
    a, b = np.polyfit(raw, target, 1)
    diff = np.abs(np.floor(a * raw + b + 0.5) - target)
    return {"slope_positive": _check(float(a), 0.0, ">"), "max_grey_level_diff": _check(float(diff.max()), 1),
            "exact_fraction": _check(float((diff == 0).mean()), 0.99, ">")}


def parity_dped(shared: Callable[[str], Path], device: Any) -> dict[str, Any]:
    """tests/test_dped_network.py::test_official_iphone_reproduces_reference on ``device``."""
    import numpy as np
    import test_dped_network as t
    import torch
    from PIL import Image

    from lightning_modules.dped import load_official_dped

    g = load_official_dped(shared("weights/dped/iphone_orig.index").with_suffix("")).to(device).eval()
    crop = np.asarray(Image.open(shared(f"{t.REF}_input.png")).convert("RGB"))
    ref = np.load(shared(f"{t.REF}_output.npz"))["output"]
    x = torch.from_numpy(crop.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        y = g(x.to(device))[0].permute(1, 2, 0).float().cpu().numpy()
    return {"max_abs_diff": _check(float(np.abs(y - ref).max()), 1e-4)}


REFUSION_PAIRS = {  # pair: (first, second, task) — tests/test_refusion_network.py
    "TNO_05": ("fusion/ir_vis/TNO_05_ir.png", "fusion/ir_vis/TNO_05_vi.png", "IVIF"),
    "MRI_PET_14": ("fusion/medical/MRI_PET_14_pet.png", "fusion/medical/MRI_PET_14_mri.png", "MIF"),
    "MFIF_5": ("fusion/multi_focus/MFIF_5_near.jpg", "fusion/multi_focus/MFIF_5_far.jpg", "MFIF"),
}


def parity_refusion(shared: Callable[[str], Path], device: Any, pair: str) -> dict[str, Any]:
    """tests/test_refusion_network.py::_check_reference(pair) on ``device``."""
    import cv2
    import numpy as np
    import test_refusion_network as t
    import torch

    from lightning_modules.refusion import load_official_refusion

    first, second, task = REFUSION_PAIRS[pair]
    net = load_official_refusion(shared(f"weights/refusion/ReFusion_{task}.pth")).to(device).eval()
    x = torch.cat([t._official_y(shared(first)), t._official_y(shared(second))], 1)
    with torch.inference_mode():
        fused = net(x.to(device))
    f = (fused - fused.min()) / (fused.max() - fused.min())
    ours = np.floor(f.squeeze().double().cpu().numpy() * 255 + 0.499999999).astype(np.int64)
    ref = cv2.imread(str(shared(f"reference/refusion_official/{pair}_refusion.png")), cv2.IMREAD_UNCHANGED)
    if ref is None or ref.ndim != 2 or ref.shape != ours.shape:
        raise AssertionError(f"reference {None if ref is None else ref.shape} vs output {ours.shape}")
    diff = np.abs(ours - ref.astype(np.int64))
    return {"max_grey_level_diff": _check(float(diff.max()), 1),
            "exact_fraction": _check(float((diff == 0).mean()), 0.999, ">=")}


def parity_cases(dry: bool) -> dict[str, list[tuple[str, str, Callable[..., dict]]]]:
    """paper → [(case name, test node, fn(shared, device))]."""
    t = "tests/test_"
    refusion = [(p, f"{t}refusion_network.py::" + ("test_official_reference_reproduced_mfif_520" if p == "MFIF_5"
                                                    else f"test_official_reference_reproduced[{p}]"),
                 lambda s, d, p=p: parity_refusion(s, d, p)) for p in REFUSION_PAIRS if not dry or p == "TNO_05"]
    return {
        "zero_dce": [("LIME_6", f"{t}zero_dce_networks.py::test_official_zero_dce_matches_reference_output",
                      lambda s, d: parity_zero_dce(s, d, pp=False))],
        "zero_dce_pp": [("LIME_6", f"{t}zero_dce_networks.py::test_official_zero_dce_pp_sf12_matches_reference_output",
                         lambda s, d: parity_zero_dce(s, d, pp=True))],
        "deepfuse": [("forth4_crop" if dry else "forth4", f"{t}deepfuse_network.py::test_official_weights_reproduce_"
                      + ("reference_crop" if dry else "reference_full"),
                      lambda s, d: parity_deepfuse(s, d, full=not dry))],
        "dped": [("venice_100", f"{t}dped_network.py::test_official_iphone_reproduces_reference", parity_dped)],
        "refusion": refusion,
    }


def stage_parity(run: Run) -> None:
    _tests_on_path()
    out: dict[str, Any] = run.doc.setdefault("parity", {})
    modes = {"default": None, "fp32_strict": False} if run.device.type == "cuda" else {"default": None}

    def shared(rel: str) -> Path:
        path = run.data / rel
        if not path.exists():
            raise Missing(f"data file not found: {path} (python benchmarks/gpu_check.py prepare builds gpu_payload/;"
                          " carry it)")
        return path

    for paper, cases in parity_cases(run.dry).items():
        if paper not in run.args.papers:
            continue
        rec: dict[str, Any] = {"cases": {}}
        if run.dry:
            rec["note"] = "dry run: ReFusion on TNO_05 only (MFIF_5 is marked slow); DeepFuse on the 128² crop"
        for name, test, fn in cases:
            case: dict[str, Any] = {"test": test, "modes": {}}
            for mode, tf in modes.items():
                reason = run.skip_reason()
                if reason:
                    case["modes"][mode] = {"status": "skipped", "reason": reason}
                    continue
                t0 = time.perf_counter()
                try:
                    with tf32(tf):
                        checks = fn(shared, run.device)
                    ok = all(c["ok"] for c in checks.values())
                    case["modes"][mode] = {"status": "pass" if ok else "fail", "checks": checks,
                                           "seconds": round(time.perf_counter() - t0, 2)}
                    _say(f"parity {paper} {name} [{mode}]: {'pass' if ok else 'FAIL'} "
                         + ", ".join(f"{k}={c['value']:.3g}" for k, c in checks.items()))
                except Missing as err:
                    case["modes"][mode] = {"status": "skipped", "reason": str(err)}
                except Exception as err:
                    case["modes"][mode] = run.record_error(f"parity {paper} {name} [{mode}]", err)
            case["status"] = _overall([m["status"] for m in case["modes"].values()])
            rec["cases"][name] = case
        rec["status"] = _overall([c["status"] for c in rec["cases"].values()])
        reasons = [m.get("reason") for c in rec["cases"].values() for m in c["modes"].values() if m.get("reason")]
        if rec["status"] == "skipped":
            rec["reason"] = reasons[0]
        out[paper] = rec
        run.save()


def _overall(statuses: list[str]) -> str:
    for s in ("error", "fail"):
        if s in statuses:
            return s
    if statuses and all(s == "skipped" for s in statuses):
        return "skipped"
    return "pass" if "pass" in statuses else (statuses[0] if statuses else "skipped")


# ---------------------------------------------------------------------------------------------- models and data
def _recipe(paper: str) -> dict[str, Any]:
    import yaml

    return yaml.safe_load((ROOT / RECIPES[paper]).read_text())


def _import(class_path: str) -> Any:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def build_model(paper: str, dry: bool, overrides: dict[str, Any] | None = None) -> Any:
    """The paper's LightningModule with its recipe's settings (+ what a benchmark without a logger needs)."""
    conf = _recipe(paper)["model"]
    kwargs = dict(conf.get("init_args") or {})
    kwargs["log_images"] = False if paper == "refusion" else 0
    if paper == "dped":
        kwargs.update(vgg_pretrained=False, vgg_weights=None)  # random VGG-19: the cost without the weight file
        if dry:
            kwargs.update(n_blocks=1, channels=8, disc_width=0.25, patch_size=32, content_features="pixel")
    if paper == "refusion":
        kwargs.update(meta_steps=1 if dry else 5, first_meta_steps=1 if dry else 5)
    kwargs.update(overrides or {})
    return _import(conf["class_path"])(**kwargs)


def fit_sizes(paper: str, dry: bool) -> dict[str, Any]:
    """Training patch side and batch size: the recipe's (dry run: 32 px and 2, ReFusion 1)."""
    data = _recipe(paper)["data"]["init_args"]
    side = data.get("image_size", data.get("crop_size", data.get("patch_size", 100)))
    if dry:
        return {"side": {"deepfuse": 24, "refusion": 16}.get(paper, 32), "batch_size": 1 if paper == "refusion" else 2}
    return {"side": int(side), "batch_size": int(data["batch_size"])}


def synthetic_batches(run: Run, paper: str, k: int) -> tuple[list[dict], dict[str, Any]]:
    """``k`` training batches from the paper's DataModule on synthetic files (written once per run)."""
    from datamodules.dped import DPEDDataModule
    from datamodules.exposure_stacks import ExposureStackDataModule
    from datamodules.fusion_pairs import FusionPairDataModule
    from datamodules.sice import SICEDataModule

    sizes = fit_sizes(paper, run.dry)
    side, bs, w = sizes["side"], sizes["batch_size"], run.work
    workers = 0 if run.dry else min(8, os.cpu_count() or 1)  # only to draw the batches once
    if paper in ("zero_dce", "zero_dce_pp"):
        from datamodules.synthetic.sice import write_sice

        root = w / "sice"
        if not root.exists():
            write_sice(root, n_train=1 if run.dry else 2, n_test=1, size=(64, 48) if run.dry else (256, 192), seed=0)
        dm = SICEDataModule(train_root=str(root / "Dataset_Part1"), image_size=side, batch_size=bs,
                            num_workers=workers)
        source = "datamodules.synthetic.sice.write_sice → SICEDataModule (Part1 layout)"
    elif paper == "deepfuse":
        from datamodules.synthetic.exposure_stacks import write_exposure_stacks

        root = w / "exposure_stacks"
        if not root.exists():
            write_exposure_stacks(root, n_train=2, n_test=1, size=(48, 36) if run.dry else (160, 120), seed=0)
        dm = ExposureStackDataModule(train_root=str(root / "train"), crop_size=side, batch_size=bs, num_workers=workers,
                                     exposures="extreme_pair", crops_per_stack=4 if run.dry else 25)
        source = "datamodules.synthetic.exposure_stacks → ExposureStackDataModule (extreme pairs)"
    elif paper == "dped":
        from datamodules.synthetic.dped_pairs import write_phone_dslr_pairs
        from experiments.prepare_dped import prepare_dped

        root = w / "dped"
        if not root.exists():
            raw = write_phone_dslr_pairs(w / "dped_raw", n_pairs=3 if run.dry else 4, size=(480, 360), seed=0)
            prepare_dped(raw / "phone", raw / "dslr", root, "iphone", n_full_test=1, test_fraction=0.34,
                         workers=1 if run.dry else min(8, os.cpu_count() or 1), progress=False, patch_size=side,
                         seed=0)
        dm = DPEDDataModule(root=str(root), phone="iphone", batch_size=bs, num_workers=workers, val_max_patches=0,
                            patch_size=side)
        source = "datamodules.synthetic.dped_pairs + experiments.prepare_dped.prepare_dped → DPEDDataModule"
    else:
        from datamodules.synthetic.fusion_pairs import write_multi_focus

        root = w / "multi_focus"
        if not root.exists():
            write_multi_focus(root, n_train=2 if run.dry else 4, n_test=1, size=(48, 48) if run.dry else (288, 288),
                              seed=0)
        dm = FusionPairDataModule(task="mfif", layout="folders", train_root=str(root / "train"), crop_size=side,
                                  batch_size=bs, num_workers=workers)
        source = "datamodules.synthetic.fusion_pairs.write_multi_focus → FusionPairDataModule (mfif, folders)"
    dm.setup("fit")
    batches = _rebatch(dm.train_dataloader, bs, k)
    key = "sources" if "sources" in batches[0] else "input"
    shapes = {name: list(v.shape) for name, v in batches[0].items() if hasattr(v, "shape")}
    return batches, {"source": source, "batch_size": bs, "side": side, "shapes": shapes, "samples_key": key,
                     "distinct_batches": len(batches)}


def _rebatch(make_loader: Callable[[], Any], batch_size: int, k: int) -> list[dict]:
    """``k`` batches of exactly ``batch_size`` samples: the DataModule's batches concatenated (over as many passes of
    its loader as the small synthetic set needs)."""
    import torch

    parts: list[dict] = []
    have = 0
    for _ in range(1000):
        for b in make_loader():
            parts.append(b)
            have += len(next(iter(v for v in b.values() if isinstance(v, torch.Tensor))))
            if have >= batch_size * k:
                break
        if have >= batch_size * k:
            break
    merged = {key: (torch.cat([p[key] for p in parts]) if isinstance(parts[0][key], torch.Tensor)
                    else [x for p in parts for x in p[key]]) for key in parts[0]}
    out = []
    for i in range(k):
        sl = slice(i * batch_size, (i + 1) * batch_size)
        b = {key: v[sl] for key, v in merged.items()}
        out.append({key: (v.contiguous().pin_memory() if isinstance(v, torch.Tensor) and torch.cuda.is_available()
                          else v) for key, v in b.items()})
    return out


def cached_loader(batches: list[dict], length: int) -> Any:
    """A DataLoader that cycles ``batches`` (already collated, pinned on CUDA) for ``length`` steps."""
    from torch.utils.data import DataLoader, Dataset

    class Cycle(Dataset):
        def __len__(self) -> int:
            return length

        def __getitem__(self, i: int) -> dict:
            return batches[i % len(batches)]

    return DataLoader(Cycle(), batch_size=None, shuffle=False, num_workers=0)


# ---------------------------------------------------------------------------------------------- fits
def make_probe(device: Any, warmup: int, key: str) -> Any:
    """A Lightning callback: loss finiteness at every batch (kept on the device), samples/s after ``warmup``
    optimiser-step batches, ReFusion's meta phase timed apart."""
    import torch
    from lightning.pytorch.callbacks import Callback

    from benchmarks.harness import synchronize

    class Probe(Callback):
        def __init__(self) -> None:
            self.finite: list[torch.Tensor] = []
            self.losses: list[torch.Tensor] = []
            self.no_loss = 0
            self.steps = 0
            self.samples = 0
            self.t_fit = self.t0 = self.t1 = None
            self.meta_s, self.meta_batches, self._meta_t = 0.0, 0, None

        @staticmethod
        def _meta(module: Any) -> bool:
            return getattr(module, "phase", None) == "meta"

        def on_train_start(self, trainer: Any, module: Any) -> None:
            synchronize(device)
            self.t_fit = time.perf_counter()

        def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
            if self._meta(module):
                synchronize(device)
                self._meta_t = time.perf_counter()

        def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
            if self._meta(module) and self._meta_t is not None:
                synchronize(device)
                self.meta_s += time.perf_counter() - self._meta_t
                self._meta_t = None

        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            if isinstance(loss, torch.Tensor):
                loss = loss.detach()
                self.finite.append(torch.isfinite(loss).all().reshape(1))
                self.losses.append(loss.float().reshape(-1)[:1])
            else:
                self.no_loss += 1
            if self._meta(module):
                self.meta_batches += 1
                return
            self.steps += 1
            if self.steps == warmup:
                synchronize(device)
                self.t0 = time.perf_counter()
            elif self.steps > warmup:
                self.samples += int(batch[key].shape[0])

        def on_train_end(self, trainer: Any, module: Any) -> None:
            synchronize(device)
            self.t1 = time.perf_counter()

    return Probe()


def _compile(model: Any, paper: str, backend: str) -> list[str]:
    """Compile the paper's networks in place (state-dict keys unchanged); returns their names."""
    names = list(COMPILED[paper])
    for name in names:
        getattr(model, name).compile(backend=backend)
    if paper == "dped":
        loss = model.build_loss()
        if loss.vgg is not None and type(loss.vgg).__name__ != "Identity":
            loss.vgg.compile(backend=backend)
            names.append("loss.vgg")
    return names


def run_fit(run: Run, paper: str, precision: str, compiled: bool, batches: list[dict],
            data_info: dict[str, Any], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    import lightning as L
    import torch

    from experiments.precision import MIXED, FP32EvalMixedPrecision

    steps, warmup = (2, 1) if run.dry else (run.args.steps, run.args.warmup)
    recipe = _recipe(paper)
    seed = int(recipe.get("seed_everything", 0))
    L.seed_everything(seed, verbose=False)
    model = build_model(paper, run.dry, overrides)
    case: dict[str, Any] = {"status": "running", "precision": precision, "compile": compiled, "steps": steps,
                            "model_overrides": overrides or None,
                            "warmup_steps": warmup, "batch_size": data_info["batch_size"],
                            "side": data_info["side"], "seed": seed}
    if compiled:
        backend = "aot_eager" if run.dry else run.args.compile_backend
        case["compiled"] = _compile(model, paper, backend)
        case["compile_backend"] = backend
    trainer_cfg = recipe.get("trainer", {})
    clip = {k: trainer_cfg[k] for k in ("gradient_clip_val", "gradient_clip_algorithm") if k in trainer_cfg}
    meta_batches = 2 * int(getattr(model.hparams, "first_meta_steps", 0) or 0) if paper == "refusion" else 0
    probe = make_probe(run.device, warmup, data_info["samples_key"])
    kwargs: dict[str, Any] = dict(
        accelerator="gpu" if run.device.type == "cuda" else "cpu", devices=1, max_steps=steps, max_epochs=-1,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0, callbacks=[probe], **clip)
    if precision in MIXED:
        kwargs["plugins"] = [FP32EvalMixedPrecision(precision, run.device.type)]
    else:
        kwargs["precision"] = precision
    trainer = L.Trainer(**kwargs)
    case["precision_plugin"] = f"{type(trainer.precision_plugin).__name__}({trainer.precision_plugin.precision!r}, " \
                               f"{getattr(trainer.precision_plugin, 'device', run.device.type)!r})"
    case["gradient_clip"] = clip or None
    if run.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    p = probe
    try:
        trainer.fit(model, train_dataloaders=cached_loader(batches, meta_batches + steps + 1))
    except BaseException as err:
        err.gpu_check_context = {"epoch": trainer.current_epoch, "global_step": trainer.global_step,  # type: ignore[attr-defined]
                                 "phase": getattr(model, "phase", None), "steps_done": p.steps,
                                 "meta_batches_done": p.meta_batches}
        raise
    case["wall_s"] = round(time.perf_counter() - t0, 2)
    if p.t0 is None or p.t1 is None or p.steps <= warmup:
        raise RuntimeError(f"only {p.steps} optimiser-step batches ran (global_step {trainer.global_step}); "
                           f"need more than the {warmup} warm-up steps")
    finite = torch.cat(p.finite).cpu() if p.finite else torch.ones(0, dtype=torch.bool)
    losses = torch.cat(p.losses).cpu() if p.losses else torch.zeros(0)
    params = [q.detach() for q in model.parameters()]
    params_finite = bool(torch.stack([torch.isfinite(q).all() for q in params]).all().item()) if params else True
    bad = (~finite).nonzero().flatten().tolist()
    case.update({
        "status": "ok", "global_step": int(trainer.global_step), "steps_timed": p.steps - warmup,
        "samples_timed": p.samples, "timed_s": round(p.t1 - p.t0, 3),
        "samples_per_s": round(p.samples / (p.t1 - p.t0), 2) if p.t1 > p.t0 else None,
        "step_ms_mean": round(1000 * (p.t1 - p.t0) / max(p.steps - warmup, 1), 3),
        "warmup_s": round(p.t0 - p.t_fit, 2),
        "loss_finite_all_steps": not bad and p.no_loss == 0, "nonfinite_steps": len(bad),
        "first_nonfinite_batch": bad[0] if bad else None, "batches_without_loss": p.no_loss,
        "params_finite": params_finite,
        "loss_first": float(losses[0]) if len(losses) else None, "loss_last": float(losses[-1]) if len(losses) else None,
    })
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    if scaler is not None:
        case["grad_scaler_scale"] = float(scaler.get_scale())
    if paper == "refusion":
        its = p.meta_batches // 2
        case["meta"] = {"iterations": its, "batches": p.meta_batches, "seconds": round(p.meta_s, 2),
                        "s_per_iteration": round(p.meta_s / its, 3) if its else None,
                        "note": "the meta phase runs first: its time includes the first-call warm-up"}
        case["samples_note"] = "samples = source pairs per batch as loaded (the swapped copy not counted)"
    if run.device.type == "cuda":
        case["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        case["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 3)
    else:
        case["peak_gib"] = None
        case["peak_note"] = "CPU: no CUDA memory statistics"
    if compiled:
        from torch._dynamo.utils import counters

        case["graph_breaks"] = int(sum(counters["graph_break"].values()))
    return case


def stage_fit(run: Run, compiled: bool) -> None:
    import torch

    out: dict[str, Any] = run.doc.setdefault("fit", {})
    data_cache: dict[str, tuple[list[dict], dict]] = run.__dict__.setdefault("_batches", {})
    wanted = set(run.args.compile_precisions)
    for paper in run.args.papers:
        rec = out.setdefault(paper, {})
        for precision in PRECISIONS:
            name = f"{precision}+compile" if compiled else precision
            if compiled and precision not in wanted:
                rec[name] = {"status": "skipped", "reason": "not in the plan: compile runs for "
                             f"{', '.join(sorted(wanted)) or 'no precision'} only (--compile-precisions; time budget, "
                             "see decisions.compile)"}
                continue
            estimate = (COMPILE_ESTIMATE_S[paper] if compiled else 15) if not run.dry else 0
            reason = run.skip_reason(estimate)
            if reason:
                rec[name] = {"status": "skipped", "reason": reason}
                run.save()
                continue
            t0 = time.perf_counter()
            try:
                with alarm(None if run.dry else max(run.left - 5, 10)):
                    if paper not in data_cache:
                        data_cache[paper] = synthetic_batches(run, paper, 2 if run.dry else 4)
                        rec["data"] = data_cache[paper][1]
                    rec[name] = run_fit(run, paper, precision, compiled, *data_cache[paper])
                c = rec[name]
                _say(f"fit {paper} {name}: {c['samples_per_s']} samples/s, peak {c['peak_gib']} GiB, "
                     f"loss finite {c['loss_finite_all_steps']}, params finite {c['params_finite']}, "
                     f"warm-up {c['warmup_s']} s ({time.perf_counter() - t0:.0f} s)")
            except Exception as err:
                rec[name] = run.record_error(f"fit {paper} {name}", err)
            finally:
                if compiled:
                    torch._dynamo.reset()
                gc.collect()
                if run.device.type == "cuda":
                    torch.cuda.empty_cache()
            run.save()
            if compiled and paper == "refusion" and rec[name]["status"] == "error" \
                    and rec[name].get("context", {}).get("phase") == "meta":
                _refusion_meta_off(run, rec, name, precision, data_cache[paper])


def _refusion_meta_off(run: Run, rec: dict[str, Any], name: str, precision: str,
                       data: tuple[list[dict], dict[str, Any]]) -> None:
    """The compiled ReFusion fit failed in its meta phase: measure the compiled fusion phase alone (``meta=False``,
    the fixed-loss ablation), so the compile figures are not lost with it."""
    import torch

    key = f"{name}:meta-off"
    reason = run.skip_reason(0 if run.dry else COMPILE_ESTIMATE_S["refusion"])
    if reason:
        rec[key] = {"status": "skipped", "reason": reason}
        return
    try:
        with alarm(None if run.dry else max(run.left - 5, 10)):
            rec[key] = run_fit(run, "refusion", precision, True, *data, overrides={"meta": False})
        rec[key]["note"] = f"retry of {name} without the meta phase, which failed (see {name})"
        _say(f"fit refusion {key}: {rec[key]['samples_per_s']} samples/s")
    except Exception as err:
        rec[key] = run.record_error(f"fit refusion {key}", err)
    finally:
        torch._dynamo.reset()
        gc.collect()
    run.save()


# ---------------------------------------------------------------------------------------------- inference
def _inference_model(run: Run, paper: str) -> tuple[Any, str]:
    """The module in eval mode on the device, with the official weights where the data root has them."""
    from lightning_modules.deepfuse import DeepFuse
    from lightning_modules.dped import DPED
    from lightning_modules.refusion import ReFusion
    from lightning_modules.zero_dce import ZeroDCE

    d = run.data
    files = {"zero_dce": d / "weights/zero_dce/Epoch99.pth", "zero_dce_pp": d / "weights/zero_dce_pp/Epoch99.pth",
             "deepfuse": d / "weights/deepfuse/DF_model_Epoch99.npz", "dped": d / "weights/dped/iphone_orig.index",
             "refusion": d / "weights/refusion/ReFusion_IVIF.pth"}
    official = files[paper].is_file()
    weights = f"official ({files[paper].relative_to(d)})" if official else "default init (official weights absent)"
    if paper in ("zero_dce", "zero_dce_pp"):
        kw = {"log_images": 0}
        if paper == "zero_dce_pp":
            kw["eval_scale_factor"] = 12.0
        model = (ZeroDCE.from_official(files[paper], variant=paper, **kw) if official
                 else ZeroDCE(variant=paper, **kw))
    elif paper == "deepfuse":
        model = DeepFuse.from_official(files[paper], log_images=0) if official else DeepFuse(log_images=0)
    elif paper == "dped":
        model = DPED.from_official(files[paper].with_suffix(""), log_images=0) if official else DPED(log_images=0)
    else:
        model = ReFusion.from_official(files[paper], task="ivif", log_images=False) if official else \
            ReFusion(task="ivif", log_images=False)
    return model.to(run.device).eval(), weights


def inference_calls(paper: str, model: Any, device: Any, w: int, h: int) -> tuple[dict[str, Callable[[], Any]], str]:
    """``{"network": fn, "module": fn}`` on a seeded random input of W×H, and what they run."""
    import torch

    g = torch.Generator().manual_seed(0)
    if paper in ("zero_dce", "zero_dce_pp"):
        x = torch.rand(1, 3, h, w, generator=g).to(device)
        return ({"network": lambda: model.net(x), "module": lambda: model.enhance(x, tile_size=None)},
                f"1×3×{h}×{w} RGB; module = ZeroDCE.enhance(tile_size=None)")
    if paper == "deepfuse":
        from lightning_modules.deepfuse import rgb_to_ycbcr

        x = torch.rand(1, 2, 3, h, w, generator=g).to(device)
        y = rgb_to_ycbcr(x)[:, :, :1].contiguous()
        return ({"network": lambda: model.net(y), "module": lambda: model(x)},
                f"1×2×3×{h}×{w} RGB pair; network on the Y pair; module = DeepFuse.forward (colour, official luma)")
    if paper == "dped":
        x = torch.rand(1, 3, h, w, generator=g).to(device)
        return {"network": lambda: model.generator(x)}, f"1×3×{h}×{w} RGB; DPED.forward is the generator"
    x = torch.rand(1, 2, 1, h, w, generator=g).to(device)
    return ({"network": lambda: model.fusion(x.flatten(1, 2)), "module": lambda: model(x)},
            f"1×2×1×{h}×{w} grey pair; module = ReFusion.forward (min–max normalised Y)")


def stage_inference(run: Run) -> None:
    import torch

    from benchmarks import harness

    out: dict[str, Any] = run.doc.setdefault("inference", {})
    rounds, warmup = (2, 0) if run.dry else (run.args.rounds, 3)  # + the checking call below
    for paper in run.args.papers:
        info = RUNTIME[paper]
        w, h = DRY_RUNTIME_SIZE[paper] if run.dry else info["size"]
        rec: dict[str, Any] = {"size_wxh": f"{w}x{h}", **{k: v for k, v in info.items() if k != "size"},
                               "rounds": rounds, "warmup_calls": warmup, "variants": {}}
        out[paper] = rec
        reason = run.skip_reason(0 if run.dry else 10)
        if reason:
            rec.update(status="skipped", reason=reason)
            run.save()
            continue
        try:
            model, rec["weights"] = _inference_model(run, paper)
            calls, rec["input"] = inference_calls(paper, model, run.device, w, h)
            variants: dict[str, Callable[[], Any]] = {}
            for what, fn in calls.items():
                for precision in PRECISIONS:
                    variants[f"{what}/{precision}"] = _autocast_call(fn, run.device, precision)
            alive, finite = {}, {}
            for name, fn in variants.items():  # one call each: an error is this variant's, not the stage's
                try:
                    result = fn()
                    harness.synchronize(run.device)
                    first = result[0] if isinstance(result, (tuple, list)) else result
                    finite[name] = bool(torch.isfinite(first).all().item())
                    alive[name] = fn
                except Exception as err:
                    rec["variants"][name] = run.record_error(f"inference {paper} {name}", err)
            if alive:
                with alarm(None if run.dry else max(run.left - 5, 10)):
                    timed = harness.interleave(alive, rounds=rounds, warmup=warmup, device=run.device, progress=False)
                for name, summary in timed.items():
                    rec["variants"][name] = {"status": "ok", "output_finite": finite[name], **summary}
                    if not finite[name]:
                        run.doc["errors"].append(f"inference {paper} {name}: output not finite")
            try:
                rec["gflop"] = {what: round(harness.count_flops(_autocast_call(fn, run.device, "32-true")) / 1e9, 3)
                                for what, fn in calls.items()}
            except Exception as err:  # FLOP counting is a side figure
                rec["gflop"] = f"not counted: {type(err).__name__}: {err}"
            rec["status"] = "ok"
            best = {k: v["median_ms"] for k, v in rec["variants"].items() if v.get("status") == "ok"}
            _say(f"inference {paper} {w}x{h}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in best.items()))
        except Exception as err:
            rec.update(run.record_error(f"inference {paper}", err))
        gc.collect()
        if run.device.type == "cuda":
            torch.cuda.empty_cache()
        run.save()


def _autocast_call(fn: Callable[[], Any], device: Any, precision: str) -> Callable[[], Any]:
    import torch

    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)

    def call() -> Any:
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype or torch.bfloat16,
                                                    enabled=dtype is not None):
            return fn()

    return call


# ---------------------------------------------------------------------------------------------- recipe
def stage_recipe(run: Run) -> None:
    """Issue 15's Zero-DCE recipe for ``--zero-dce-recipe`` epochs on the 2002 training images."""
    import lightning as L
    import numpy as np
    import torch
    from lightning.pytorch.callbacks import Callback

    from datamodules.sice import SICEDataModule
    from experiments.precision import MIXED, FP32EvalMixedPrecision

    epochs = run.args.zero_dce_recipe
    rec: dict[str, Any] = {"epochs": epochs}
    run.doc["recipe"] = rec
    if not epochs:
        rec.update(status="skipped", reason="not requested (--zero-dce-recipe EPOCHS)")
        return
    folder = next((p for p in (run.data / TRAIN_256, run.data / "lowlight" / "train") if p.is_dir()), None)
    if folder is None or run.broken:
        rec.update(status="skipped", reason=run.broken or f"training images not found: {run.data / TRAIN_256} or "
                   f"{run.data / 'lowlight/train'} (prepare --train-images)")
        return
    recipe = _recipe("zero_dce")
    data = recipe["data"]["init_args"]
    side, bs = (32, 2) if run.dry else (int(data["image_size"]), int(data["batch_size"]))
    rec.update(images=str(folder), image_size=side, batch_size=bs, config=RECIPES["zero_dce"],
               precision=run.args.recipe_precision)
    try:
        L.seed_everything(int(recipe.get("seed_everything", 0)), verbose=False)
        model = build_model("zero_dce", run.dry)
        dm = SICEDataModule(train_root=str(folder), image_size=side, batch_size=bs,
                            num_workers=0 if run.dry else min(8, max((os.cpu_count() or 2) - 2, 1)))
        per_epoch: list[dict[str, float]] = []

        class Epochs(Callback):
            def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
                self.t = time.perf_counter()

            def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
                loss = trainer.callback_metrics.get("train/loss_epoch")
                per_epoch.append({"epoch": trainer.current_epoch, "loss": float(loss) if loss is not None else None,
                                  "seconds": round(time.perf_counter() - self.t, 2)})
                _say(f"recipe epoch {trainer.current_epoch}: loss {per_epoch[-1]['loss']}, "
                     f"{per_epoch[-1]['seconds']} s")

        prec = run.args.recipe_precision
        tcfg = recipe["trainer"]
        kwargs: dict[str, Any] = dict(
            accelerator="gpu" if run.device.type == "cuda" else "cpu", devices=1, max_epochs=epochs, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            num_sanity_val_steps=0, limit_val_batches=0, callbacks=[Epochs()],
            gradient_clip_val=tcfg.get("gradient_clip_val"), gradient_clip_algorithm=tcfg.get("gradient_clip_algorithm"))
        if run.dry:
            kwargs["limit_train_batches"] = 2
        if run.args.recipe_max_s:
            from datetime import timedelta

            kwargs["max_time"] = timedelta(seconds=run.args.recipe_max_s)
        if prec in MIXED:
            kwargs["plugins"] = [FP32EvalMixedPrecision(prec, run.device.type)]
        else:
            kwargs["precision"] = prec
        t0 = time.perf_counter()
        trainer = L.Trainer(**kwargs)
        trainer.fit(model, datamodule=dm)
        wall = time.perf_counter() - t0
        samples = int(trainer.global_step) * bs
        rec.update(status="ok", wall_s=round(wall, 1), global_step=int(trainer.global_step), per_epoch=per_epoch,
                   epochs_done=len(per_epoch), train_images=len(dm.train_set),
                   samples_per_s=round(samples / wall, 1) if wall > 0 else None,
                   params_finite=bool(all(torch.isfinite(q).all() for q in model.parameters())))
        ref = run.data / "reference/zero_dce/LIME/6_float32.npz"
        img = run.data / "lowlight/test/LIME/6.bmp"
        if ref.is_file() and img.is_file():
            from datamodules.image_io import load_tensor

            model.eval()
            with torch.no_grad():
                y, _ = model.net.to(run.device)(load_tensor(img)[None].to(run.device))
            out = y[0].permute(1, 2, 0).float().cpu().numpy()
            mse = float(np.mean((out - np.load(ref)["enhanced"]) ** 2))
            rec["vs_official_LIME_6"] = {"psnr_db": round(10 * math.log10(1 / mse), 2) if mse > 0 else None,
                                         "mean_ours": float(out.mean()),
                                         "mean_official": float(np.load(ref)["enhanced"].mean()),
                                         "note": "the retrained network's output vs the official weights' output"}
        if run.args.recipe_weights:
            run.args.recipe_weights.parent.mkdir(parents=True, exist_ok=True)
            torch.save(model.net.state_dict(), run.args.recipe_weights)
            rec["weights_file"] = str(run.args.recipe_weights)
    except Exception as err:
        rec.update(run.record_error("recipe", err))
    run.save()


# ---------------------------------------------------------------------------------------------- main
def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="every stage on tiny sizes, on the CPU (~1 min)")
    p.add_argument("--out", type=Path, default=None, help=f"result JSON (default {DEFAULT_OUT.relative_to(ROOT)})")
    p.add_argument("--data", type=Path, default=None,
                   help="data root in the shared/data layout (default gpu_payload/, else $DARKROOM_SHARED_DATA or "
                        "../shared/data)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds for stages 1–4: a case is skipped (recorded) when the time left is below its "
                        "estimate (default 450; dry run 600)")
    p.add_argument("--stages", nargs="*", default=["parity", "inference", "fit", "compile"],
                   choices=["parity", "inference", "fit", "compile"],
                   help="stages 1-4 to run (default all; none: only the recipe, e.g. --stages --zero-dce-recipe 100)")
    p.add_argument("--papers", nargs="+", default=list(PAPERS), choices=PAPERS)
    p.add_argument("--steps", type=int, default=200, help="optimiser steps per fit (200)")
    p.add_argument("--warmup", type=int, default=20, help="steps left out of samples/s (20)")
    p.add_argument("--rounds", type=int, default=20, help="timed inference calls per variant (20)")
    p.add_argument("--compile-precisions", nargs="*", default=["bf16-mixed"], choices=PRECISIONS,
                   help="precisions whose fits are also run compiled (default bf16-mixed; see decisions.compile)")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend on the GPU (inductor)")
    p.add_argument("--zero-dce-recipe", type=int, default=0, metavar="EPOCHS",
                   help="also train the Zero-DCE recipe (issue 15) for EPOCHS epochs on the 2002 training images")
    p.add_argument("--recipe-precision", default="32-true", choices=PRECISIONS)
    p.add_argument("--recipe-weights", type=Path, default=None, help="save the recipe's trained network here (.pt)")
    p.add_argument("--recipe-max-s", type=float, default=None,
                   help="stop the recipe after this many seconds (Lightning's max_time; the epochs done are kept)")
    args = p.parse_args(argv)
    if args.budget is None:
        args.budget = 600.0 if args.dry_run else 450.0
    if args.warmup < 1 or args.steps <= args.warmup:
        p.error("need --steps > --warmup ≥ 1")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["prepare"]:
        return prepare(argv[1:])
    args = parse(argv)
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("WANDB_MODE", "disabled")
    check_modules()
    import logging
    import warnings

    import torch

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*(does not have many workers|GPU available but not used"
                            "|predict_dataloader|val_dataloader|TF32|tensor cores|LeafSpec).*")
    if args.dry_run:  # one thread: on a small shared CPU two threads mostly wait for each other (tests do the same)
        torch.set_num_threads(1)
    elif not torch.cuda.is_available():
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False; torch "
              f"{torch.__version__}); use --dry-run on a CPU", file=sys.stderr)
        return 3
    run = Run(args)
    run.doc["environment"] = environment(run)
    run.doc["payload"] = payload_record(run)
    run.doc["decisions"] = {
        "compile": f"compiled fits for {args.compile_precisions} only: inductor takes ~30-120 s per network and "
                   "precision, so all 15 would not fit the 8-minute budget; bf16-mixed is what this GPU would train "
                   "in. Networks compiled in place (nn.Module.compile, default mode), losses eager"
                   + ("; dry run: aot_eager backend (dynamo + AOTAutograd, no code generation)" if args.dry_run else ""),
        "data": "the paper's DataModule on synthetic files in the real layout, 4 batches drawn once and cycled from "
                "pinned memory: samples/s measures the training step and the host-to-device copy, not decoding",
        "samples_per_s": f"over the optimiser steps after the first {1 if args.dry_run else args.warmup} "
                         "(warm-up, cuDNN autotuning and compilation excluded); CUDA synchronised at both ends",
        "nan_check": "torch.isfinite(loss) kept on the device at every batch, read once after fit; parameters checked "
                     "after fit",
        "dped": "content term on a randomly initialised VGG-19 (vgg_pretrained=False): the cost without the weights",
        "refusion": "meta phase (5 meta iterations) first, timed apart, then the fusion steps; samples = pairs",
        "16-mixed_on_cpu": "the plugin is passed directly (as darkroom fit does): float16 autocast + GradScaler on "
                           "the CPU; Trainer(precision='16-mixed') would have switched to bf16 there",
    }
    run.save()
    _say(f"{run.doc['mode']} on {run.doc['environment'].get('device_name')} ({run.device}); data {run.data}; "
         f"writing {run.out}")
    stages = {"parity": lambda: stage_parity(run), "inference": lambda: stage_inference(run),
              "fit": lambda: stage_fit(run, compiled=False), "compile": lambda: stage_fit(run, compiled=True)}
    def on_term(signum: int, frame: Any) -> None:  # gpu_check.sh's timeout: keep what was measured
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    try:
        for name in ("parity", "inference", "fit", "compile"):
            if name in args.stages:
                _say(f"stage {name} ({run.elapsed:.0f} s)")
                try:
                    stages[name]()
                except Exception as err:  # a bug in the stage itself: record it, go on
                    run.record_error(f"stage {name}", err)
        stage_recipe(run)
        run.doc["status"] = "complete"
    finally:  # also on KeyboardInterrupt / SystemExit (Lightning exits on an interrupt inside fit)
        if run.doc["status"] == "running":
            run.doc["status"] = f"interrupted after {run.elapsed:.0f} s"
        run.save()
        shutil.rmtree(run.work, ignore_errors=True)
        _say(f"{run.doc['status']} in {run.elapsed:.0f} s: {len(run.doc['errors'])} error(s); wrote {run.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
