"""Moved to :mod:`imaging.filters` (re-exported here, where earlier code imports it from)."""

from imaging.filters import _filter_valid_conv, filter_valid, gaussian_1d  # noqa: F401
