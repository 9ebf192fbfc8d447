"""What every part of the GPU check shares: the repository paths, the papers and precisions, the recipe configs,
the compile plan and estimates, the inference sizes, the payload's file list, and the log line."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

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
    """One progress line on stderr: ``[gpu_check] msg``."""
    print(f"[gpu_check] {msg}", file=sys.stderr, flush=True)
