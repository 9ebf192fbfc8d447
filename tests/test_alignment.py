"""DPED alignment pipeline (imaging/alignment.py, imaging/patches.py, experiments/prepare_dped.py) on synthetic phone/DSLR pairs with known homographies."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from datamodules.image_io import DatasetLayoutError, read_image
from datamodules.synthetic.dped_pairs import read_homographies, write_phone_dslr_pairs
from datamodules.synthetic.photos import load_photo
from experiments.prepare_dped import pair_files, prepare_dped
from imaging.alignment import Alignment, align_pair, check_homography, largest_valid_rectangle, warp_to_common
from imaging.patches import extract_patch_pairs

SIZE = (480, 360)


def _u8(path: Path) -> np.ndarray:
    return (read_image(path) * 255 + 0.5).astype(np.uint8)


def _project(hom: np.ndarray, pts: np.ndarray) -> np.ndarray:
    ph = np.c_[pts, np.ones(len(pts))] @ hom.T
    return ph[:, :2] / ph[:, 2:]


@pytest.fixture(scope="module")
def pairs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 genuine pairs (astronaut, coffee, chelsea, immunohistochemistry) + 1 unrelated, 480×360 DSLR."""
    return write_phone_dslr_pairs(tmp_path_factory.mktemp("raw"), n_pairs=4, size=SIZE, seed=0, n_unrelated=1)


@pytest.fixture(scope="module")
def alignments(pairs_root: Path) -> dict[str, Alignment]:
    names = sorted(read_homographies(pairs_root))
    return {n: align_pair(_u8(pairs_root / "phone" / f"{n}.jpg"), _u8(pairs_root / "dslr" / f"{n}.jpg")) for n in names}


def test_synthetic_pairs_layout_and_determinism(pairs_root: Path, tmp_path: Path) -> None:
    truth = read_homographies(pairs_root)
    assert sorted(truth) == ["pair_000", "pair_001", "pair_002", "pair_003", "unrelated_000"]
    assert truth["unrelated_000"] is None and all(truth[f"pair_00{i}"].shape == (3, 3) for i in range(4))
    phone, dslr = _u8(pairs_root / "phone" / "pair_000.jpg"), _u8(pairs_root / "dslr" / "pair_000.jpg")
    assert dslr.shape == (360, 480, 3) and phone.shape == (270, 360, 3)
    a = write_phone_dslr_pairs(tmp_path / "a", n_pairs=1, size=(160, 120), seed=3)
    b = write_phone_dslr_pairs(tmp_path / "b", n_pairs=1, size=(160, 120), seed=3)
    c = write_phone_dslr_pairs(tmp_path / "c", n_pairs=1, size=(160, 120), seed=4)
    assert (a / "phone" / "pair_000.jpg").read_bytes() == (b / "phone" / "pair_000.jpg").read_bytes()
    assert (a / "homographies.json").read_text() == (b / "homographies.json").read_text()
    assert (a / "homographies.json").read_text() != (c / "homographies.json").read_text()


def test_homography_recovered_to_subpixel_corner_error(pairs_root: Path, alignments: dict[str, Alignment]) -> None:
    truth = read_homographies(pairs_root)
    for name in ("pair_000", "pair_001", "pair_002", "pair_003"):
        al = alignments[name]
        assert al.ok, f"{name}: {al.reason}"
        assert al.homography.shape == (3, 3) and al.homography.dtype == np.float64
        assert al.n_inliers >= 30 and al.n_matches >= al.n_inliers
        w, h = al.phone_size
        corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float64)
        err = np.linalg.norm(_project(al.homography, corners) - _project(truth[name], corners), axis=1).mean()
        assert err < 1.0, f"{name}: mean corner error {err:.3f} px"
        assert 0 < al.reprojection_error < 3.0


def test_matching_downscale_keeps_full_resolution_coordinates(pairs_root: Path) -> None:
    phone, dslr = _u8(pairs_root / "phone" / "pair_000.jpg"), _u8(pairs_root / "dslr" / "pair_000.jpg")
    al = align_pair(phone, dslr, match_max_side=400)  # DSLR matched at 400×300, phone at full size
    truth = read_homographies(pairs_root)["pair_000"]
    corners = np.array([[0, 0], [359, 0], [359, 269], [0, 269]], dtype=np.float64)
    assert al.ok, al.reason
    assert np.linalg.norm(_project(al.homography, corners) - _project(truth, corners), axis=1).mean() < 2.0


def test_unrelated_pair_rejected_with_reason(alignments: dict[str, Alignment]) -> None:
    al = alignments["unrelated_000"]
    assert not al.ok
    assert isinstance(al.reason, str) and ("match" in al.reason or "inlier" in al.reason)
    with pytest.raises(ValueError, match="failed alignment"):
        warp_to_common(np.zeros((270, 360, 3), np.uint8), np.zeros((360, 480, 3), np.uint8), al)


def test_degenerate_homographies_rejected() -> None:
    phone, dslr = (360, 270), (480, 360)
    good = np.array([[1.3, 0, 2], [0, 1.3, 3], [0, 0, 1]])
    assert check_homography(good, phone, dslr) is None
    flip = np.array([[-1.3, 0, 470], [0, 1.3, 3], [0, 0, 1]])
    assert "mirror" in check_homography(flip, phone, dslr)
    persp = np.array([[1.3, 0, 2], [0, 1.3, 3], [0.004, 0, 1]])
    assert "perspective" in check_homography(persp, phone, dslr)
    tiny = np.array([[0.05, 0, 200], [0, 0.05, 150], [0, 0, 1]])
    assert "scale" in check_homography(tiny, phone, dslr)
    shear = np.array([[1.3, 2.0, 2], [0, 0.6, 3], [0, 0, 1]])
    assert "shear" in check_homography(shear, phone, dslr) or "convex" in check_homography(shear, phone, dslr)
    away = np.array([[1.3, 0, 400], [0, 1.3, 300], [0, 0, 1]])
    assert "covers only" in check_homography(away, phone, dslr)
    assert "finite" in check_homography(np.full((3, 3), np.nan), phone, dslr)


def test_bad_input_named() -> None:
    with pytest.raises(ValueError, match="phone: expected an H×W×3 uint8"):
        align_pair(np.zeros((100, 100, 3), np.float32), np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(ValueError, match="dslr: expected"):
        align_pair(np.zeros((100, 100, 3), np.uint8), np.zeros((100, 100), np.uint8))


def test_warp_to_common_with_true_homography(pairs_root: Path, alignments: dict[str, Alignment]) -> None:
    name = "pair_001"
    phone, dslr = _u8(pairs_root / "phone" / f"{name}.jpg"), _u8(pairs_root / "dslr" / f"{name}.jpg")
    al = alignments[name]
    truth = Alignment(read_homographies(pairs_root)[name], 0, 0, 0.0, True, None, al.phone_size, al.dslr_size)
    pa, dc = warp_to_common(phone, dslr, truth)
    assert pa.shape == dc.shape and pa.shape[0] > 200 and pa.shape[1] > 280  # phone density: ≤ 270×360
    assert pa.shape[0] <= 270 and pa.shape[1] <= 360
    # no black (invalid) border left in the crop, and the two crops show the same content
    assert pa[[0, -1]].max(axis=-1).min() > 0 and pa[:, [0, -1]].max(axis=-1).min() > 0
    g1, g2 = pa.mean(-1).ravel(), dc.mean(-1).ravel()
    assert np.corrcoef(g1, g2)[0, 1] > 0.9
    pa_full, dc_full = warp_to_common(phone, dslr, truth, output_scale="dslr")
    assert pa_full.shape[0] > pa.shape[0]


def test_largest_valid_rectangle() -> None:
    mask = np.zeros((50, 60), bool)
    mask[5:40, 10:55] = True
    assert largest_valid_rectangle(mask) == (10, 5, 55, 40)
    yy, xx = np.mgrid[:101, :101]
    diamond = np.abs(yy - 50) + np.abs(xx - 50) <= 50  # convex; best inscribed rectangle is a ~50×50 square
    x0, y0, x1, y1 = largest_valid_rectangle(diamond)
    assert diamond[y0:y1, x0:x1].all() and (x1 - x0) * (y1 - y0) >= 0.95 * 51 * 51
    with pytest.raises(ValueError, match="empty"):
        largest_valid_rectangle(np.zeros((5, 5), bool))


@pytest.fixture(scope="module")
def textured() -> np.ndarray:
    return np.ascontiguousarray(load_photo("astronaut")[100:400, 50:470])  # 300×420, textured


def test_patch_grid_arithmetic_and_identity_pair(textured: np.ndarray) -> None:
    img = textured.copy()
    img[:120, :120] = 128  # a flat corner: its patches are "flat", not kept
    pp, dp, st = extract_patch_pairs(img, img.copy(), size=50, stride=40, max_shift=3)
    # ny = (300 - 56) // 40 + 1 = 7, nx = (420 - 56) // 40 + 1 = 10
    assert st.n_candidates == 70
    assert st.n_flat > 0 and st.n_low_similarity == 0
    assert st.n_kept + st.n_flat + st.n_low_similarity == st.n_candidates
    assert pp.shape == dp.shape == (st.n_kept, 50, 50, 3) and pp.dtype == np.uint8
    assert np.array_equal(pp, dp) and (st.shifts[st.keep] == 0).all()
    assert np.allclose(st.scores[st.keep], 1.0, atol=1e-4)
    # patch k sits at grid position (row, col) with top-left (3 + 40·row, 3 + 40·col)
    k = int(np.flatnonzero(st.keep)[0])
    r, c = divmod(k, 10)
    assert np.array_equal(pp[0], img[3 + 40 * r: 53 + 40 * r, 3 + 40 * c: 53 + 40 * c])
    # defaults: size 100, stride = size
    _, _, st100 = extract_patch_pairs(textured, textured, max_shift=4)
    assert st100.n_candidates == ((300 - 108) // 100 + 1) * ((420 - 108) // 100 + 1) == 8


def test_patch_shift_refinement(textured: np.ndarray) -> None:
    dslr = np.roll(textured, (2, -3), axis=(0, 1))  # content moved down 2 px, left 3 px
    pp, dp, st = extract_patch_pairs(textured, dslr, size=50, stride=50, max_shift=4)
    assert st.n_kept > 0
    assert (st.shifts[st.keep] == [2, -3]).all()
    assert np.array_equal(pp, dp)
    _, _, st_small = extract_patch_pairs(textured, dslr, size=50, stride=50, max_shift=1)
    assert st_small.n_low_similarity > 0  # the true shift is outside the search range


def test_corrupted_region_rejected(textured: np.ndarray) -> None:
    dslr = textured.copy()
    other = load_photo("coffee")
    dslr[150:300, 210:420] = other[:150, :210]  # a different scene in the bottom-right quarter
    _, _, st = extract_patch_pairs(textured, dslr, size=50, stride=50, max_shift=2)
    ny, nx = (300 - 54) // 50 + 1, (420 - 54) // 50 + 1
    rows, cols = np.divmod(np.arange(ny * nx), nx)
    y0, x0 = 2 + 50 * rows, 2 + 50 * cols
    inside = (y0 >= 148) & (x0 >= 208)  # windows fully in the replaced region
    outside = (y0 + 52 <= 150) | (x0 + 52 <= 210)
    assert inside.sum() >= 4
    assert not st.keep[inside].any()
    assert st.keep[outside].mean() >= 0.9  # untouched patches are kept
    assert st.n_low_similarity >= inside.sum()


def test_prepare_dped_layout(pairs_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "dped"
    rep = prepare_dped(str(pairs_root / "phone"), str(pairs_root / "dslr"), str(out), "iphone", n_full_test=1,
                       test_fraction=0.34, workers=2, seed=0, progress=False)
    root = out / "iphone"
    assert rep.n_pairs == 5
    splits = [r["split"] for r in rep.rows]
    assert splits.count("full_test") == 1 and splits.count("test") == 1 and splits.count("train") == 3
    for sub, n_expected in (("training_data", rep.n_train_patches), ("test_data/patches", rep.n_test_patches)):
        ph = sorted(int(p.stem) for p in (root / sub / "iphone").glob("*.jpg"))
        ca = sorted(int(p.stem) for p in (root / sub / "canon").glob("*.jpg"))
        assert ph == ca == list(range(n_expected)), sub
    assert rep.n_train_patches > 0
    sample = read_image(root / "training_data" / "canon" / f"{rep.n_train_patches - 1}.jpg")
    assert sample.shape == (100, 100, 3)
    full = [r for r in rep.rows if r["split"] == "full_test"][0]
    assert [p.name for p in (root / "test_data" / "full_size_test_images").iterdir()] == [f"{full['stem']}.jpg"]
    assert full["n_kept"] == 0  # held-out pairs give no patches
    by_stem = {r["stem"]: r for r in rep.rows}
    if by_stem["unrelated_000"]["split"] != "full_test":
        assert not by_stem["unrelated_000"]["ok"] and by_stem["unrelated_000"]["reason"]
    kept = [r for r in rep.rows if r["split"] == "train" and r["ok"]]
    assert sum(r["n_kept"] for r in kept) == rep.n_train_patches
    with open(root / "alignment_report.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [r["stem"] for r in table] == [r["stem"] for r in rep.rows]
    doc = json.loads((root / "alignment_report.json").read_text())
    assert doc["totals"]["n_train_patches"] == rep.n_train_patches and len(doc["pairs"]) == 5
    assert not (root / ".staging").exists()
    with pytest.raises(FileExistsError, match="overwrite"):
        prepare_dped(pairs_root / "phone", pairs_root / "dslr", out, n_full_test=1, workers=1, progress=False)


def test_prepare_dped_pairing_errors(tmp_path: Path) -> None:
    (tmp_path / "phone").mkdir()
    (tmp_path / "dslr").mkdir()
    with pytest.raises(DatasetLayoutError, match="no image files"):
        prepare_dped(tmp_path / "phone", tmp_path / "dslr", tmp_path / "out", progress=False)
    img = np.zeros((20, 20, 3), np.uint8)
    from datamodules.image_io import write_uint8

    write_uint8(tmp_path / "phone" / "a.jpg", img)
    write_uint8(tmp_path / "phone" / "b.jpg", img)
    write_uint8(tmp_path / "dslr" / "a.jpg", img)
    write_uint8(tmp_path / "dslr" / "c.png", img)
    with pytest.raises(DatasetLayoutError, match=r"(?s)2 file\(s\) without a partner.*b\.jpg.*c\.png"):
        pair_files(tmp_path / "phone", tmp_path / "dslr")


def test_datamodules_alignment_reexports_the_moved_names() -> None:
    """``datamodules.alignment`` (the public API before the split) still gives the same objects."""
    import datamodules.alignment as shim
    import experiments.prepare_dped
    import imaging.alignment
    import imaging.patches

    homes = {**{n: imaging.alignment for n in imaging.alignment.__all__},
             **{n: imaging.patches for n in imaging.patches.__all__},
             **{n: experiments.prepare_dped for n in experiments.prepare_dped.__all__}}
    assert set(shim.__all__) <= set(homes)
    for name, home in homes.items():
        assert getattr(shim, name) is getattr(home, name), name
