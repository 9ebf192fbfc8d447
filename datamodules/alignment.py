"""Re-exports of DPED's SIFT/RANSAC dataset preparation, which lives outside the DataModules.

* :mod:`imaging.alignment`: SIFT + RANSAC homography of a phone/DSLR pair (:func:`align_pair`), its sanity
  checks, the warp into the common frame (:func:`warp_to_common`);
* :mod:`imaging.patches`: the shift-refined NCC patch pairs (:func:`extract_patch_pairs`);
* :mod:`experiments.prepare_dped`: ``darkroom prepare dped`` (:func:`prepare_dped`), which writes the DPED
  layout read by :mod:`datamodules.dped`.

Every name importable from here before the split still is (``datamodules.alignment.align_pair`` is a public
API); new code imports from the modules above.
"""

from __future__ import annotations

from experiments.prepare_dped import (  # noqa: F401  (the private names: kept importable)
    REPORT_FIELDS,
    PrepareReport,
    _empty_row,
    _PairJob,
    _process_pair,
    _read_uint8,
    _worker_init,
    pair_files,
    prepare_dped,
)
from imaging.alignment import (  # noqa: F401
    _NAN_H,
    Alignment,
    _check_rgb_uint8,
    _corners,
    _jacobian,
    _project,
    _scale_matrix,
    _sift_features,
    align_pair,
    check_homography,
    largest_valid_rectangle,
    linear_scale,
    warp_to_common,
)
from imaging.patches import _LUMA, PatchStats, extract_patch_pairs  # noqa: F401

__all__ = [
    "Alignment",
    "PatchStats",
    "PrepareReport",
    "align_pair",
    "check_homography",
    "extract_patch_pairs",
    "largest_valid_rectangle",
    "pair_files",
    "prepare_dped",
    "warp_to_common",
]
