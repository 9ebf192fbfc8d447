"""Moved to :mod:`imaging.precision` (re-exported here, where earlier code imports it from)."""

from imaging.precision import autocast_off

__all__ = ["autocast_off"]
