"""Stage 1, ``parity``: the official weights on the device reproduce the official reference outputs, to the
tolerances of the CPU parity tests (their loaders and input helpers are imported from ``tests/``)."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.gpu.common import ROOT, _say
from benchmarks.gpu.run import Run


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
